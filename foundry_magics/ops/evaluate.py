"""Evaluating prompts and models on labelled rows: every (prompt, model) run at once, scored.

    data = evaluate(rows, gold, op="classify", labels=[...], prompts={"short": "..."},
                    models=["gpt-4o", "phi-4"], where="df.foundry.evaluate()", concurrency=32)
    data.runs[0].scores      # {"accuracy": 0.94, "macro_f1": 0.93}
    best_index(...), pareto(...)

The front-end (`frames.evaluate`) samples its frame, hands the rows and the gold answers
over and turns the `EvalData` into tables and a plot. Everything here is plain Python: the
metrics, the Pareto front and the choice of the best run are unit-tested without a server.

Every (prompt, model) is an operation of `ops.operations` (the same options, checks and
request builders as a single call), planned once, and all their requests go to the engine
together (`engine.together.run_together`): one cache, one `max_cost`, one progress display.
A model that fails (an unknown deployment, every request refused) fails its own runs only.

`op="mask"` is a yes/no classify (the answer True / False) until a mask operator exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from foundry_magics.errors import ConfigurationError, describe
from foundry_magics.ops import operations as _ops
from foundry_magics.ops.operations import Rows

__all__ = ["OPS", "EvalRun", "EvalData", "evaluate", "normalise", "same", "accuracy", "macro_f1", "confusion",
           "field_scores", "exact_match", "score_answers", "pareto", "best_index", "main_score", "MASK_LABELS"]

OPS = ("classify", "mask", "extract", "prompt")
MASK_LABELS = ("yes", "no")  # what a mask is asked for; read back as True / False
MASK_TEMPLATE = "Answer yes or no: {condition}"
ONE_POINT = 0.01  # "within one point" of the best score (scores are fractions)


# ====================================================================== metrics


def normalise(value: Any) -> str:
    """Text compared the way people read it: whitespace collapsed, case folded, outer quotes
    and a final full stop dropped."""
    text = " ".join(str(value).split()).casefold()
    return text.strip("\"'` ").rstrip(".").strip()


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def same(answer: Any, gold: Any) -> bool:
    """One answer against its gold value: equal, equal as numbers, or equal as normalised text.
    A missing answer is never right."""
    if _missing(answer):
        return False
    if _missing(gold):
        return False
    if isinstance(answer, bool) or isinstance(gold, bool):
        return _as_bool(answer) == _as_bool(gold)
    if answer == gold:
        return True
    try:
        return math.isclose(float(answer), float(gold), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        pass
    return normalise(answer) == normalise(gold)


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = normalise(value)
    if text in ("true", "yes", "y", "1"):
        return True
    if text in ("false", "no", "n", "0"):
        return False
    return value


def accuracy(answers: Sequence[Any], gold: Sequence[Any]) -> float:
    """The share of rows answered right (a failed row counts as wrong)."""
    if not gold:
        return math.nan
    return sum(same(a, g) for a, g in zip(answers, gold)) / len(gold)


def _label_of(value: Any, labels: Sequence[Any]) -> Any:
    """`value` as one of `labels` (by `same`), else itself (None when missing)."""
    if _missing(value):
        return None
    for lab in labels:
        if same(value, lab):
            return lab
    return value


def confusion(answers: Sequence[Any], gold: Sequence[Any], labels: Sequence[Any]) -> tuple[list, list, list[list[int]]]:
    """(gold labels as rows, answers as columns, counts): columns are `labels` plus "(none)"
    for failed rows and anything else answered; rows are `labels` plus any other gold value."""
    rows = list(labels)
    cols = list(labels)
    pairs = []
    for a, g in zip(answers, gold):
        gl, al = _label_of(g, labels), _label_of(a, labels)
        if gl not in rows:
            rows.append(gl)
        al = "(none)" if al is None else al
        if al not in cols:
            cols.append(al)
        pairs.append((rows.index(gl), cols.index(al)))
    counts = [[0] * len(cols) for _ in rows]
    for r, c in pairs:
        counts[r][c] += 1
    return rows, cols, counts


def macro_f1(answers: Sequence[Any], gold: Sequence[Any], labels: Sequence[Any]) -> float:
    """The mean over the labels that occur (in gold or in the answers) of each label's F1."""
    if not gold:
        return math.nan
    ans = [_label_of(a, labels) for a in answers]
    gol = [_label_of(g, labels) for g in gold]
    present = [lab for lab in labels if lab in gol or lab in ans]
    if not present:
        return math.nan
    scores = []
    for lab in present:
        tp = sum(1 for a, g in zip(ans, gol) if a == lab and g == lab)
        fp = sum(1 for a, g in zip(ans, gol) if a == lab and g != lab)
        fn = sum(1 for a, g in zip(ans, gol) if a != lab and g == lab)
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


def gold_fields(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def field_scores(answers: Sequence[Mapping[str, Any] | None], gold: Sequence[Any],
                 fields: Sequence[str]) -> dict[str, float]:
    """Extract: per field, the share of rows whose value matches the gold one (`same`), and
    `all_fields`: the share of rows where every field matches. A gold row is a dict (or its JSON)."""
    n = len(gold)
    if not n:
        return {**{f: math.nan for f in fields}, "all_fields": math.nan}
    right = {f: 0 for f in fields}
    every = 0
    for a, g in zip(answers, gold):
        gf = gold_fields(g) or {}
        a = a or {}
        ok_all = True
        for f in fields:
            ok = same(a.get(f), gf.get(f))
            right[f] += ok
            ok_all = ok_all and ok
        every += ok_all
    return {**{f: right[f] / n for f in fields}, "all_fields": every / n}


def exact_match(answers: Sequence[Any], gold: Sequence[Any]) -> float:
    """Prompt: the share of answers equal to the gold text once whitespace and case are normalised."""
    if not gold:
        return math.nan
    return sum(not _missing(a) and not _missing(g) and normalise(a) == normalise(g)
               for a, g in zip(answers, gold)) / len(gold)


def main_score(op: str, metric: Callable[[Any, Any], Any] | None = None) -> str:
    """The score column the best choice and the plot go by."""
    if op in ("classify", "mask"):
        return "accuracy"
    if op == "extract":
        return "all_fields"
    return "metric" if metric is not None else "exact_match"


def score_answers(op: str, answers: Sequence[Any], gold: Sequence[Any], *, labels: Sequence[Any] = (),
                  fields: Sequence[str] = (), metric: Callable[[Any, Any], Any] | None = None) -> dict[str, float]:
    """The score columns of one run, by op."""
    if op in ("classify", "mask"):
        return {"accuracy": accuracy(answers, gold), "macro_f1": macro_f1(answers, gold, labels)}
    if op == "extract":
        return field_scores(answers, gold, fields)
    if metric is not None:
        values = []
        for a, g in zip(answers, gold):
            if _missing(a):
                values.append(0.0)
                continue
            try:
                values.append(float(metric(a, g)))
            except Exception as exc:  # noqa: BLE001 - the user's function: say which row broke it
                raise ConfigurationError(f"metric(answer, gold) failed on answer {str(a)[:60]!r}: {describe(exc)}",
                                         hint="Make the metric return a number for every (answer, gold) pair.") from exc
        return {"metric": sum(values) / len(values) if values else math.nan}
    return {"exact_match": exact_match(answers, gold)}


# ====================================================================== choosing


def pareto(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """The indices of the (score, cost) points no other point beats: none has a score at least
    as high and a cost at most as low, with one of them strictly better. Points with a missing
    score are never on the front; a missing cost counts as unknown (only compared on score)."""
    front = []
    for i, (s, c) in enumerate(points):
        if s is None or (isinstance(s, float) and math.isnan(s)):
            continue
        beaten = False
        for j, (s2, c2) in enumerate(points):
            if j == i or s2 is None or (isinstance(s2, float) and math.isnan(s2)):
                continue
            if c is None or c2 is None:
                if c is None and c2 is None and s2 > s:
                    beaten = True
                continue
            if s2 >= s and c2 <= c and (s2 > s or c2 < c):
                beaten = True
                break
        if not beaten:
            front.append(i)
    return front


def best_index(points: Sequence[tuple[float | None, float | None]], tolerance: float = ONE_POINT) -> int | None:
    """The cheapest point whose score is within `tolerance` of the best score (ties: the higher
    score, then the earlier). Points without a known cost come after every priced one."""
    scored = [(i, s, c) for i, (s, c) in enumerate(points)
              if s is not None and not (isinstance(s, float) and math.isnan(s))]
    if not scored:
        return None
    top = max(s for _, s, _ in scored)
    near = [(i, s, c) for i, s, c in scored if s >= top - tolerance - 1e-12]
    near.sort(key=lambda t: (t[2] is None, t[2] if t[2] is not None else 0.0, -t[1], t[0]))
    return near[0][0]


# ====================================================================== running


@dataclass
class EvalRun:
    """One (prompt, model): its answers per row, its scores and what it spent."""

    prompt: str
    model: str
    template: str
    answers: list[Any] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    report: Any = None  # engine.RunReport, None when the run could not start
    error: str | None = None  # why it failed (could not start, or stopped)
    failures: int = 0  # rows without an answer

    @property
    def cost(self) -> float | None:
        return self.report.cost if self.report is not None else None


@dataclass
class EvalData:
    op: str
    runs: list[EvalRun]
    gold: list[Any]
    inputs: list[Any]
    labels: list[Any] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    metric: Callable[[Any, Any], Any] | None = None
    report: Any = None  # the combined RunReport of the whole evaluation

    @property
    def score(self) -> str:
        return main_score(self.op, self.metric)


def _prompts(op: str, template: str | None, prompts: Mapping[str, str] | None) -> dict[str, str | None]:
    if template is not None and prompts is not None:
        raise ConfigurationError("Give template= or prompts=, not both.",
                                 hint="prompts={'short': '...', 'long': '...'} compares several templates.")
    if prompts is not None:
        if not isinstance(prompts, Mapping) or not prompts:
            raise ConfigurationError("prompts= must be a non-empty dict: name -> template.",
                                     hint="For example prompts={'short': 'Sentiment of: {text}'}.")
        return {str(k): v for k, v in prompts.items()}
    if template is None and op in ("prompt", "mask"):
        raise ConfigurationError(f"evaluate(op={op!r}) needs the prompt: template='... {{column}} ...'.",
                                 hint="Or prompts={'name': template, ...} to compare several.")
    return {"default" if template is None else "prompt": template}


def _models(models: Any, options: dict[str, Any]) -> list[Any]:
    if models is None:
        models = [options.pop("model", None)]
    elif "model" in options:
        raise ConfigurationError("Give models=[...] or model=..., not both.", hint="models=['gpt-4o', 'phi-4'].")
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    models = list(dict.fromkeys(models))
    if not models:
        raise ConfigurationError("evaluate() needs at least one model.", hint="models=['gpt-4o', 'phi-4'].")
    return models


def _operation(op: str, template: str | None, model: Any, *, labels: Any, schema: Any, where: str,
               options: dict[str, Any]) -> _ops.Operation:
    opts = dict(options, model=model)
    if op == "classify":
        if labels is None:
            raise ConfigurationError("evaluate(op='classify') needs labels=[...].",
                                     hint="For example labels=['positive', 'negative', 'neutral'].")
        return _ops.Classify(labels, template=template, where=where, **opts)
    if op == "mask":
        return _ops.Classify(list(MASK_LABELS), template=MASK_TEMPLATE.replace("{condition}", template or ""),
                             where=where, **opts)
    if op == "extract":
        if schema is None:
            raise ConfigurationError("evaluate(op='extract') needs schema= (the fields).",
                                     hint="For example schema={'name': str, 'age': int}.")
        return _ops.Extract(schema, template=template, where=where, **opts)
    return _ops.Prompt(template or "{}", where=where, **opts)


_REFUSED = ("batch", "estimate", "wait", "poll_interval", "sample")


def evaluate(rows: Rows, gold: Sequence[Any], *, op: str = "classify", template: str | None = None,
             prompts: Mapping[str, str] | None = None, models: Any = None, labels: Any = None, schema: Any = None,
             metric: Callable[[Any, Any], Any] | None = None, where: str = "evaluate()",
             namespace: Mapping[str, Any] | None = None, inputs: Sequence[Any] | None = None,
             **options: Any) -> EvalData:
    """Run every (prompt, model) over `rows` together and score each against `gold` (one per row)."""
    from foundry_magics.engine.together import Job, run_together

    if op not in OPS:
        raise ConfigurationError(f"evaluate(op={op!r}) is not an operation it can evaluate.",
                                 hint=f"Use one of: {', '.join(OPS)}.")
    if metric is not None and not callable(metric):
        raise ConfigurationError("metric= must be a function metric(answer, gold) -> number.",
                                 hint="For example metric=lambda a, g: float(g.lower() in a.lower()).")
    for name in _REFUSED:
        if options.get(name):
            raise ConfigurationError(f"evaluate() takes no {name}=: an evaluation runs online, all at once.",
                                     hint="Leave it out; sample=N on evaluate() picks N labelled rows.")
        options.pop(name, None)
    if len(gold) != rows.n:
        raise ConfigurationError(f"{len(gold):,} gold values for {rows.n:,} rows.", hint="Give one gold value per row.")
    if op == "mask":
        labels = [True, False]
    templates = _prompts(op, template, prompts)
    model_list = _models(models, options)
    combos = [(name, tpl, m) for name, tpl in templates.items() for m in model_list]
    operations = [_operation(op, tpl, m, labels=labels, schema=schema, where=where, options=options)
                  for name, tpl, m in combos]
    conn = operations[0].connection()
    plans = []
    for operation in operations:
        plan = operation.plan(rows, namespace)
        operation.apply_cap(plan, conn)
        plans.append(plan)
    jobs = [Job(plan.requests(), operation.request_spec(conn), f"{name} / {m}", operation.packing(plan, conn))
            for plan, operation, (name, _, m) in zip(plans, operations, combos)]
    first = operations[0].options
    results = run_together(jobs, connection=conn, concurrency=first.get("concurrency"), rpm=first.get("rpm"),
                           tpm=first.get("tpm"), cache=first.get("cache", True), progress=operations[0]._progress(),
                           label="evaluate", max_cost=first.get("max_cost"))
    from foundry_magics.engine.report import last_run

    fields: list[str] = []
    if op == "extract":
        from foundry_magics.ops.replies import schema_fields

        fields = schema_fields(operations[0].schema)
    gold = list(gold)
    runs = []
    interrupted = False
    for (name, tpl, m), operation, plan, result in zip(combos, operations, plans, results):
        run = EvalRun(prompt=name, model=str(m), template=tpl or "(default)")
        if isinstance(result, BaseException):
            run.error = describe(result)
            run.answers = [None] * rows.n
            run.failures = rows.n
        else:
            outcome = operation.outcome(plan, result)
            run.report = outcome.report
            interrupted = interrupted or bool(outcome.report.interrupted)
            if op == "extract":
                cols = {f: outcome.rows(f) for f in fields}
                run.answers = [None if all(_missing(cols[f][i]) for f in fields) else {f: cols[f][i] for f in fields}
                               for i in range(rows.n)]
            else:
                run.answers = list(outcome.rows())
                if op == "mask":
                    run.answers = [None if a is None else a == MASK_LABELS[0] for a in run.answers]
            run.failures = sum(1 for a in run.answers if a is None)
            if result.error is not None or outcome.report.stopped:
                run.error = outcome.report.stopped or describe(result.error)
        run.scores = score_answers(op, run.answers, gold, labels=list(labels or ()), fields=fields, metric=metric)
        runs.append(run)
    data = EvalData(op=op, runs=runs, gold=gold, inputs=list(inputs) if inputs is not None else [None] * rows.n,
                    labels=list(labels or ()), fields=fields, metric=metric, report=last_run())
    if interrupted:
        from foundry_magics.errors import RunInterrupted

        raise RunInterrupted(data.report.kept() if data.report is not None else "Interrupted.", report=data.report)
    return data
