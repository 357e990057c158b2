"""Operations: what a front-end asks for, validated once, planned, run in a mode, read back.

    op = Classify(["positive", "negative"], model="gpt-4.1-mini", where="s.foundry.classify()")
    plan = op.plan(rows)                            # rows: a `Rows` a front-end made from its data
    result = op.run(plan, convert=to_my_frame)      # online, Batch API or estimate, by the options

Every front-end (pandas, Polars, Spark, the `%%foundry --df` cell) builds the same operation
from the user's arguments, so an option means the same and is checked the same everywhere
(`ops.options.check`), and every mode works on every front-end:

* online (`engine.run_batch` / `engine.embed_texts`); `max_cost` stops it before its spend
  could pass the amount (the result as usual, the rest NA with the reason);
* `batch=True`: the Batch API (`wait=False` returns the `fm.BatchJob`, whose `result()` later
  gives what the call would have returned); with `max_cost`, a job whose estimate's upper
  bound passes the amount is not submitted;
* `estimate=True`: the `fm.Estimate` of the run, nothing sent (`sample=N`: N requests
  answered to forecast the output, cost and time; they are cached for the run).

`run` hands the `Outcome` (per-distinct values, spread back onto rows by the plan) to the
front-end's `convert`, which only turns it into its own objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from foundry_magics.defaults import (
    CHARS_PER_TOKEN,
    CLASSIFY_MAX_TOKENS,
    EMBED_CONCURRENCY,
    EXTRACT_MAX_TOKENS,
    REASONING_CAP_FLOOR,
    SUMMARIZE_CAP,
    TRANSLATE_CAP,
)
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import options as _options
from foundry_magics.ops.plan import Plan, memory_pool
from foundry_magics.ops.replies import MISSING, json_fields, match_label
from foundry_magics.ops.template import escape, parse_template, resolve_names

__all__ = ["Rows", "Outcome", "Operation", "Prompt", "Classify", "Extract", "Summarize", "Translate", "Sentiment",
           "Embed", "SUMMARIZE", "TRANSLATE", "CLASSIFY", "SENTIMENT", "EXTRACT", "SENTIMENT_LABELS", "VALUE"]

SUMMARIZE = "Summarize in one or two sentences: {}"
TRANSLATE = "Translate into {lang}, replying with the translation only: {}"
CLASSIFY = "Classify the text into one of these labels: {labels}. Text: {}"
SENTIMENT = "Classify the sentiment of this text as positive, negative or neutral: {}"
EXTRACT = "Extract these fields from the text: {fields}. Text: {}"
SENTIMENT_LABELS = ("positive", "negative", "neutral")
VALUE = "__value__"  # the column key of the Series form's value
_ARROW_CHUNK = 65_536  # replies converted to Arrow at a time


@dataclass
class Rows:
    """The input of an operation, as a front-end hands it over.

    `names`: the column labels (for the template's names and messages); `column(label)`: that
    column as a pyarrow Array (or a list), asked only for the columns the template reads;
    `series`: the Series form (`{}` is the value, `column(VALUE)`), `series_name` its name;
    `images`: one cell per row (paths, URLs, bytes, PIL images, lists of them) or None."""

    names: Sequence[Any]
    n: int
    column: Callable[[Any], Any]
    series: bool = False
    series_name: Any = None
    images: Sequence[Any] | None = None


@dataclass
class Outcome:
    """What a run gave, per distinct request (`values`: output name -> values; None names the
    single result), with the plan that spreads it onto rows and the run's report."""

    kind: str  # "text", "label", "fields", "vector"
    plan: Plan
    values: dict[Any, list]
    report: Any  # engine.RunReport
    result: Any  # engine.BatchResult
    labels: list | None = None
    errors: dict[int, str] = field(default_factory=dict)  # per distinct request: why it has no value

    def rows(self, name: Any = None) -> Any:
        """One output's values per row, as a numpy object array (None where there is none)."""
        return self.plan.spread(self.values[name])

    def arrow(self, name: Any = None, type: Any = None) -> Any:  # noqa: A002
        """One output's values per row, as a pyarrow Array. The per-distinct Python values are
        released once converted (a million replies are a few hundred MB as Python strings)."""
        import pyarrow as pa

        values = self.values[name]
        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            chunks = []
            for start in range(0, len(values), _ARROW_CHUNK):  # converted and released a chunk at a time
                part = values[start:start + _ARROW_CHUNK]
                chunks.append(pa.array(part, type=type, from_pandas=True, memory_pool=memory_pool()))
                values[start:start + _ARROW_CHUNK] = [None] * len(part)
            arrow = pa.chunked_array(chunks, type=type or (chunks[0].type if chunks else pa.null()))
            if values is self.result.texts:
                self.result.texts = arrow
            self.values[name] = arrow
            values = arrow
        return self.plan.spread_arrow(values, type)

    def failures(self) -> list[tuple[int, str]]:
        """(row position, reason) of every row without a value."""
        return self.plan.failures(self.errors)

    def label_failures(self, label_of: Callable[[Any], Sequence[Any]] | None = None) -> None:
        """Put the failures into the report, by the front-end's row labels (positions if None)."""
        fails = self.failures()
        if label_of is not None and fails:
            import numpy as np

            labels = label_of(np.fromiter((p for p, _ in fails), dtype=np.int64, count=len(fails)))
            fails = [(lab, reason) for lab, (_, reason) in zip(labels, fails)]
        self.report.failures = fails

    def raise_if_stopped(self) -> None:
        self.result.raise_if_stopped()


# ====================================================================== operations


class Operation:
    """A prompt per row (the base of the others): the template, the request options, the mode."""

    kind = "prompt"
    output = "text"  # what a reply becomes: "text", "label", "fields", "vector"
    allowed: frozenset[str] = _options.ROW_OPTIONS
    default_cap: Any = None  # an output cap when the caller gives no max_tokens
    spend: Any = None  # an engine.budget.Budget its online runs share (several runs, one max_cost)

    def __init__(self, template: str, *, where: str | None = None, **options: Any) -> None:
        self.where = where or f"{self.kind}()"
        self.options = _options.check(options, self.allowed, self.where)
        self.template = parse_template(template)
        self.schema = self.options.get("schema")
        self.cap_rule: Callable[[str], int] | None = None

    # -- options ---------------------------------------------------------------------------

    @property
    def estimate(self) -> bool:
        return bool(self.options.get("estimate"))

    @property
    def batch(self) -> bool:
        return bool(self.options.get("batch"))

    def connection(self) -> Any:
        from foundry_magics.connections.session import connection_for

        return connection_for(self.options.get("connection"))

    def request_spec(self, conn: Any) -> Any:
        """What every request of the run shares (the run, its estimate and Batch lines alike)."""
        from foundry_magics.engine.prompts import RequestSpec

        o = self.options
        op = o.get("api") or getattr(conn, "api", None) or "chat"
        return RequestSpec(op=op, system=o.get("system"), model=o.get("model"), schema=self.request_schema(),
                           temperature=o.get("temperature"), max_tokens=o.get("max_tokens"))

    def request_schema(self) -> Any:
        return self.schema

    def apply_cap(self, plan: Plan, conn: Any) -> None:
        """Give `plan` the operation's default output cap (what `run` does first); for front-ends
        that run a plan's requests themselves (Spark's estimate on the executors)."""
        self._apply_cap(plan, conn)

    def _apply_cap(self, plan: Plan, conn: Any) -> None:
        """The operation's default output cap, unless the caller gave max_tokens (None included)."""
        cap = self.default_cap
        if cap is None or "max_tokens" in self.options:
            return
        from foundry_magics.rest.routes import uses_max_completion_tokens

        floor = REASONING_CAP_FLOOR if uses_max_completion_tokens(self.options.get("model") or conn.model) else 0
        if isinstance(cap, tuple):
            ratio, low, high = cap
            plan.cap_rule = lambda text: max(floor, min(high, max(low, math.ceil(len(text) / CHARS_PER_TOKEN * ratio))))
        else:
            self.options["max_tokens"] = max(floor, cap)

    # -- planning ------------------------------------------------------------------------

    def plan(self, rows: Rows, namespace: Mapping[str, Any] | None = None) -> Plan:
        """The distinct requests of `rows`; raises (naming what is wrong) before anything is sent."""
        tpl = self.template
        if tpl.positional and not rows.series:
            raise ConfigurationError(
                "The template uses {}, which only works on a Series.",
                hint="Use df['column'].foundry.prompt('...{}...'), or name the column: {column}.",
            )
        if rows.series:
            name = rows.series_name
            names = [name] if name is not None else []
            cols, consts = resolve_names(tpl, names, namespace, series_name=name if name is not None else "")
            fields = {k: VALUE for k in cols}  # {series name} means the value too
        else:
            cols, consts = resolve_names(tpl, list(rows.names), namespace)
            fields = dict(cols)
        used = list(dict.fromkeys([*fields.values(), *([VALUE] if tpl.positional else [])]))
        columns = {key: rows.column(key) for key in used}
        return Plan(tpl, columns, rows.n, fields, consts, series_col=VALUE if tpl.positional else None,
                    images=rows.images)

    # -- running -------------------------------------------------------------------------

    def run(self, plan: Plan, convert: Callable[[Outcome], Any], *, label: str | None = None) -> Any:
        """Run `plan` in the mode the options ask for: `convert(Outcome)` online or from a
        finished Batch API job; the `fm.Estimate` with estimate=True; the `fm.BatchJob` with
        batch=True, wait=False (its `result()` gives `convert(...)`)."""
        conn = self.connection()
        self._apply_cap(plan, conn)
        label = label or self.kind
        o = self.options
        if self.estimate:
            return self._estimate(plan, conn)

        def finish(result: Any) -> Any:
            outcome = self.outcome(plan, result)
            value = convert(outcome)
            outcome.raise_if_stopped()
            return value

        if self.batch:
            job = self._submit(plan, conn, label, finish)
            return job.result() if o.get("wait", True) else job
        return finish(self._online(plan, conn, label))

    def _progress(self, batch: bool = False) -> Any:
        from foundry_magics.ops.display import resolve

        return resolve(self.options.get("progress", True), batch=batch)

    def _online(self, plan: Plan, conn: Any, label: str) -> Any:
        from foundry_magics import engine

        o = self.options
        return engine.run_requests(plan.requests(), self.request_spec(conn), connection=conn,
                                concurrency=o.get("concurrency"), rpm=o.get("rpm"), tpm=o.get("tpm"),
                                cache=o.get("cache", True), progress=self._progress(), label=label,
                                max_cost=o.get("max_cost"), pack=self.packing(plan, conn), budget=self.spend)

    def packing(self, plan: Plan, conn: Any = None) -> Any:
        """pack=N / "auto": how the run packs rows (`ops.packing`); None: one row per request."""
        if self.options.get("pack") is None:
            return None
        from foundry_magics.ops.packing import packing_for

        return packing_for(self, plan, conn)

    def _submit(self, plan: Plan, conn: Any, label: str, finish: Callable[[Any], Any]) -> Any:
        from foundry_magics.batch_api.submit import submit

        o = self.options
        return submit(plan.requests(), self.request_spec(conn), connection=conn, cache=o.get("cache", True),
                      progress=self._progress(batch=True), label=label, poll_interval=o.get("poll_interval"),
                      finish=finish, max_cost=o.get("max_cost"), pack=self.packing(plan, conn))

    def _estimate(self, plan: Plan, conn: Any) -> Any:
        from foundry_magics.engine.estimate import estimate_batch

        o = self.options
        sample = o.get("sample")  # sample=N: N requests answered (cached for the run) to forecast it
        pack = self.packing(plan, conn)
        if pack is not None and sample:
            raise ConfigurationError(f"{self.where}: an estimate with pack= counts the packed requests; it takes "
                                     "no sample=.", hint="Leave sample= out of a packed estimate, or pack= out.")
        return estimate_batch(plan.requests(), self.request_spec(conn), connection=conn, cache=o.get("cache", True),
                              batch_api=self.batch, sample=sample, concurrency=o.get("concurrency"),
                              rpm=o.get("rpm"), tpm=o.get("tpm"), progress=self._progress() if sample else False,
                              **({"pack": pack} if pack is not None else {}))

    # -- reading the replies -------------------------------------------------------------

    def outcome(self, plan: Plan, result: Any) -> Outcome:
        values, bad = self.read(result.texts)
        errors = dict(result.errors)
        report = result.report
        if bad:
            moved = sum(int(plan.weights[i]) for i in bad if i not in errors)
            report.done = max(0, report.done - moved)
            report.failed += moved
            for i, reason in bad.items():
                errors[i] = reason if i not in errors else f"{errors[i]}; {reason}"
        if plan.skipped:
            report.failed += len(plan.skipped)
            report.na_rows = max(0, report.na_rows - len(plan.skipped))
        out = Outcome(self.output, plan, values, report, result, labels=self.labels_out(), errors=errors)
        out.label_failures()
        return out

    def labels_out(self) -> list | None:
        return None

    def read(self, texts: Sequence[Any]) -> tuple[dict[Any, list], dict[int, str]]:
        """Per-distinct replies -> output name -> values, and reasons for replies that do not fit."""
        if self.schema is None:
            return {None: texts if isinstance(texts, list) else list(texts)}, {}
        cols, bad = json_fields(texts, self.schema)
        for vals in cols.values():
            for i in bad:
                vals[i] = None
        return dict(cols), bad


class Prompt(Operation):
    """A prompt per row: text, or with `schema` a value per field."""

    def __init__(self, template: str, *, where: str | None = None, **options: Any) -> None:
        super().__init__(template, where=where or "prompt()", **options)
        if self.schema is not None:
            self.output = "fields"


class Summarize(Prompt):
    kind = "summarize"
    default_cap = SUMMARIZE_CAP

    def __init__(self, *, where: str | None = None, **options: Any) -> None:
        super().__init__(SUMMARIZE, where=where or "summarize()", **options)


class Translate(Prompt):
    kind = "translate"
    default_cap = TRANSLATE_CAP

    def __init__(self, lang: str, *, where: str | None = None, **options: Any) -> None:
        if not isinstance(lang, str) or not lang.strip():
            raise ConfigurationError(f"translate() needs a language, got {lang!r}.",
                                     hint="For example translate('French').")
        self.lang = lang.strip()
        super().__init__(TRANSLATE.replace("{lang}", escape(self.lang)), where=where or "translate()", **options)


class Classify(Operation):
    """One of `labels` per row; a reply that names none of them fails the row."""

    kind = "classify"
    output = "label"
    default_cap = CLASSIFY_MAX_TOKENS
    allowed = _options.ROW_OPTIONS - {"schema"}

    def __init__(self, labels: Sequence[Any], *, template: str | None = None, where: str | None = None,
                 **options: Any) -> None:
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)) and not hasattr(labels, "__iter__"):
            labels = [labels]
        labels = list(dict.fromkeys(labels))
        if len(labels) < 2:
            raise ConfigurationError("classify() needs at least two labels.",
                                     hint="For example classify(['positive', 'negative', 'neutral']).")
        self.labels = labels
        if template is None:
            template = CLASSIFY.replace("{labels}", escape(", ".join(map(str, labels))))
        super().__init__(template, where=where or "classify()", **options)

    def request_schema(self) -> Any:
        return {"type": "object", "properties": {"label": {"type": "string", "enum": [str(x) for x in self.labels]}},
                "required": ["label"], "additionalProperties": False}

    def labels_out(self) -> list | None:
        return self.labels

    def read(self, texts: Sequence[Any]) -> tuple[dict[Any, list], dict[int, str]]:
        chosen: list[Any] = [None] * len(texts)
        bad: dict[int, str] = {}
        for i, text in enumerate(texts):
            if text is None:
                continue
            lab = match_label(text, self.labels)
            if lab is MISSING:
                bad[i] = f"the reply is none of the labels: {text[:80]!r}"
            else:
                chosen[i] = lab
        return {None: chosen}, bad


class Sentiment(Classify):
    kind = "sentiment"

    def __init__(self, *, where: str | None = None, **options: Any) -> None:
        super().__init__(list(SENTIMENT_LABELS), template=SENTIMENT, where=where or "sentiment()", **options)


class Extract(Operation):
    """Structured fields from each value: a value per field of `fields`."""

    kind = "extract"
    output = "fields"
    default_cap = EXTRACT_MAX_TOKENS
    allowed = _options.ROW_OPTIONS - {"schema"}

    def __init__(self, fields: Any, *, template: str | None = None, where: str | None = None,
                 **options: Any) -> None:
        from foundry_magics.rest.schemas import to_json_schema

        js = to_json_schema(fields)
        if template is None:
            template = EXTRACT.replace("{fields}", escape(", ".join((js.get("properties") or {}).keys())))
        super().__init__(template, where=where or "extract()", **options)
        self.schema = fields


class Embed(Operation):
    """One vector per distinct value (EMBED_BATCH texts per request), cached per text."""

    kind = "embed"
    output = "vector"
    allowed = _options.EMBED

    def __init__(self, *, where: str | None = None, **options: Any) -> None:
        super().__init__("{}", where=where or "embed()", **options)
        if self.options.get("sample") is not None:
            raise ConfigurationError(f"{self.where} takes no sample=: embeddings have no output tokens, so the "
                                     "estimate's cost is exact without one.", hint="Leave sample= out.")

    def _online(self, plan: Plan, conn: Any, label: str) -> Any:
        from foundry_magics import engine

        o = self.options
        return engine.embed_texts(plan.texts(), connection=conn, model=o.get("model"), dimensions=o.get("dimensions"),
                                  cache=o.get("cache", True), progress=self._progress(),
                                  concurrency=min(o.get("concurrency") or EMBED_CONCURRENCY, 4),
                                  weights=plan.weights, rows=plan.n, na_rows=plan.na_rows, label=label,
                                  max_cost=o.get("max_cost"), budget=self.spend)

    def _submit(self, plan: Plan, conn: Any, label: str, finish: Callable[[Any], Any]) -> Any:
        from foundry_magics.batch_api.submit import submit_embeddings

        o = self.options
        return submit_embeddings(plan.texts(), connection=conn, model=o.get("model"), dimensions=o.get("dimensions"),
                                 weights=plan.weights, rows=plan.n, na_rows=plan.na_rows, cache=o.get("cache", True),
                                 progress=self._progress(batch=True), label=label,
                                 poll_interval=o.get("poll_interval"), finish=finish, max_cost=o.get("max_cost"))

    def _estimate(self, plan: Plan, conn: Any) -> Any:
        from foundry_magics.engine.estimate import estimate_embeddings

        o = self.options
        return estimate_embeddings(plan.texts(), connection=conn, model=o.get("model"), dimensions=o.get("dimensions"),
                                   cache=o.get("cache", True), rows=plan.n, na_rows=plan.na_rows,
                                   batch_api=self.batch)

    def _apply_cap(self, plan: Plan, conn: Any) -> None:
        return None
