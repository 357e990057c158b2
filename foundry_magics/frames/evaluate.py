"""`df.foundry.evaluate(...)` -> `fm.Evaluation`: which prompt and model, at what cost.

    ev = df.foundry.evaluate(gold="label", op="classify", labels=["positive", "negative", "neutral"],
                             prompts={"short": "Sentiment of: {text}", "long": "..."},
                             models=["gpt-4o", "gpt-4.1-nano", "phi-4"], sample=200)
    ev.table            # one row per (prompt, model): scores, failures, tokens, cost, cost per 1k rows, p50/p95
    ev.best             # the cheapest within one point of the best score
    ev.confusion("gpt-4o"), ev.errors("phi-4"), ev.plot()

The runs and the scores are the core's (`ops.evaluate`); this module samples the frame,
hands its rows over and shows the result with pandas (and matplotlib for the plot, the
`[plot]` extra).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from typing import Any, Callable, Mapping, Sequence

from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import evaluate as core

__all__ = ["Evaluation", "evaluate", "evaluate_polars"]

_NAME = re.compile(r"(?<!\{)\{([^{}!:]+)(?:[!:][^{}]*)?\}(?!\})")


class Evaluation:
    """The result of `df.foundry.evaluate(...)`. `.table`, `.best`, `.confusion(model)`,
    `.errors(model)`, `.plot()`; shown in a notebook as the table, the best choice and the plot."""

    def __init__(self, data: core.EvalData, index: Any) -> None:
        self.data = data
        self.index = index
        self.op = data.op
        self.score = data.score  # the column the best choice and the plot go by
        self.report = data.report

    # -- the table --------------------------------------------------------------------------

    @property
    def table(self) -> Any:
        """One row per (prompt, model): rows, the scores by op, failures, input_tokens,
        output_tokens, cost, cost_per_1k_rows, p50_s, p95_s (and error where a run failed).
        Tokens and cost count every answer, those from the cache too (what the run costs);
        latencies are those of the requests sent by this call."""
        import pandas as pd

        recs = []
        for run in self.data.runs:
            rep = run.report
            n = len(self.data.gold)
            tin = (rep.input_tokens + rep.replayed_input_tokens) if rep is not None else 0
            tout = (rep.output_tokens + rep.replayed_output_tokens) if rep is not None else 0
            cost = _cost(run.model, rep, tin, tout)
            rec = {"prompt": run.prompt, "model": run.model, "rows": n, **run.scores, "failures": run.failures,
                   "input_tokens": tin, "output_tokens": tout, "cost": cost,
                   "cost_per_1k_rows": cost / n * 1000 if cost is not None and n else None,
                   "p50_s": rep.p50_s if rep is not None else None, "p95_s": rep.p95_s if rep is not None else None,
                   "error": run.error}
            recs.append(rec)
        table = pd.DataFrame.from_records(recs)
        for col in ("cost", "cost_per_1k_rows", "p50_s", "p95_s"):
            table[col] = table[col].astype("float64")
        if table["error"].isna().all():
            table = table.drop(columns="error")
        return table

    def _points(self, table: Any) -> list[tuple[Any, Any]]:
        out = []
        for s, c in zip(table[self.score], table["cost_per_1k_rows"]):
            out.append((None if _nan(s) else float(s), None if _nan(c) else float(c)))
        return out

    @property
    def best(self) -> Any:
        """The (prompt, model) to use: the cheapest whose score is within one point of the best
        one, as a row of `table` (a Series); None when no run has a score."""
        table = self.table
        i = core.best_index(self._points(table))
        return None if i is None else table.iloc[i].rename("best")

    def pareto(self) -> Any:
        """The rows of `table` no other beats on both score and cost per 1,000 rows."""
        table = self.table
        return table.iloc[core.pareto(self._points(table))]

    # -- per run ----------------------------------------------------------------------------

    def _run(self, model: str, prompt: str | None) -> core.EvalRun:
        runs = [r for r in self.data.runs if r.model == str(model)]
        if not runs:
            raise ConfigurationError(f"No run of model {model!r} in this evaluation.",
                                     hint=f"Models: {', '.join(dict.fromkeys(r.model for r in self.data.runs))}.")
        if prompt is None:
            if len(runs) > 1:
                raise ConfigurationError(f"Model {model!r} ran with several prompts: name one.",
                                         hint=f"prompt= one of: {', '.join(r.prompt for r in runs)}.")
            return runs[0]
        for r in runs:
            if r.prompt == prompt:
                return r
        raise ConfigurationError(f"No prompt {prompt!r} for model {model!r}.",
                                 hint=f"Prompts: {', '.join(r.prompt for r in runs)}.")

    def confusion(self, model: str, prompt: str | None = None) -> Any:
        """Classify / mask: a DataFrame counting rows by gold label (index) and answer (columns);
        "(none)" counts the rows without an answer."""
        import pandas as pd

        if self.op not in ("classify", "mask"):
            raise ConfigurationError(f"confusion() is for classify and mask evaluations, not {self.op!r}.",
                                     hint="Use errors(model) to see the rows a model got wrong.")
        run = self._run(model, prompt)
        rows, cols, counts = core.confusion(run.answers, self.data.gold, self.data.labels)
        return pd.DataFrame(counts, index=pd.Index(rows, name="gold"), columns=pd.Index(cols, name="answer"))

    def errors(self, model: str, prompt: str | None = None) -> Any:
        """The rows `model` got wrong (or could not answer): input, gold, answer, on the frame's index."""
        import pandas as pd

        run = self._run(model, prompt)
        data = self.data
        if data.op == "extract":
            wrong = [not all(core.same((a or {}).get(f), (core.gold_fields(g) or {}).get(f)) for f in data.fields)
                     for a, g in zip(run.answers, data.gold)]
        elif data.op == "prompt" and data.metric is not None:
            wrong = [a is None or not data.metric(a, g) for a, g in zip(run.answers, data.gold)]
        elif data.op == "prompt":
            wrong = [a is None or core.normalise(a) != core.normalise(g) for a, g in zip(run.answers, data.gold)]
        else:
            wrong = [not core.same(a, g) for a, g in zip(run.answers, data.gold)]
        pos = [i for i, w in enumerate(wrong) if w]
        return pd.DataFrame({"input": [data.inputs[i] for i in pos], "gold": [data.gold[i] for i in pos],
                             "answer": [run.answers[i] for i in pos]}, index=self.index[pos])

    # -- the plot ---------------------------------------------------------------------------

    def plot(self, ax: Any = None) -> Any:
        """A matplotlib Figure: the score against the cost per 1,000 rows, one labelled point per
        (prompt, model), the Pareto front joined and marked, the best choice circled."""
        try:
            from matplotlib.figure import Figure  # not pyplot: no global figure left open, no backend chosen
        except ImportError as exc:
            raise ConfigurationError("Evaluation.plot() needs matplotlib, which is not installed.",
                                     hint='Install the plot extra: pip install "foundry-magics[plot]".') from exc
        table = self.table
        points = self._points(table)
        front = core.pareto(points)
        best = core.best_index(points)
        if ax is None:
            fig = Figure(figsize=(6.4, 4.2), dpi=100)
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        known = [c for _, c in points if c is not None]
        fallback = 0.0 if not known else min(known)
        xs = [c if c is not None else fallback for _, c in points]
        ys = [s if s is not None else 0.0 for s, _ in points]
        several = table["prompt"].nunique() > 1
        for i, (x, y) in enumerate(zip(xs, ys)):
            on = i in front
            ax.scatter([x], [y], s=60 if on else 36, marker="o" if on else "x",
                       color="tab:blue" if on else "tab:gray", zorder=3)
            name = table["model"].iloc[i] + (f" · {table['prompt'].iloc[i]}" if several else "")
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=8)
        if front:
            pts = sorted((xs[i], ys[i]) for i in front)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", linewidth=1, linestyle="--",
                    label="Pareto front", zorder=2)
        if best is not None:
            ax.scatter([xs[best]], [ys[best]], s=220, facecolors="none", edgecolors="tab:green", linewidths=2,
                       label="best (cheapest within 1 point)", zorder=4)
        ax.set_xlabel("cost per 1,000 rows" + ("" if len(known) == len(points) else " (unpriced at the left)"))
        ax.set_ylabel(self.score.replace("_", " "))
        ax.set_title(f"{self.op}: {self.score.replace('_', ' ')} against cost")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        if not hasattr(fig, "_repr_png_"):  # shown as an image in a notebook, with or without pyplot
            fig._repr_png_ = lambda: _png_bytes(fig)  # type: ignore[attr-defined]  # Figure has no such method
        return fig

    def _png(self) -> str | None:
        try:
            fig = self.plot()
        except ConfigurationError:
            return None
        return base64.b64encode(_png_bytes(fig)).decode("ascii")

    # -- display ----------------------------------------------------------------------------

    def _best_line(self) -> str:
        b = self.best
        if b is None:
            return "No run has a score."
        cost = "cost unknown" if _nan(b["cost_per_1k_rows"]) else f"{b['cost_per_1k_rows']:.4g} per 1,000 rows"
        return (f"Best: {b['model']} with prompt {b['prompt']!r}: {self.score.replace('_', ' ')} "
                f"{b[self.score]:.1%}, {cost} (the cheapest within 1 point of the best score).")

    def __repr__(self) -> str:
        return f"{self.table.to_string(index=False)}\n{self._best_line()}"

    def _repr_html_(self) -> str:
        table = self.table
        png = self._png()
        img = (f"<img alt='score against cost per 1,000 rows' src='data:image/png;base64,{png}'/>" if png else
               "<p><i>pip install \"foundry-magics[plot]\" to see the plot.</i></p>")
        return (f"<div class='foundry-evaluation'>{table.to_html(index=False, float_format=_fmt, na_rep='')}"
                f"<p><b>{html.escape(self._best_line())}</b></p>{img}</div>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cost(model: str, report: Any, tin: int, tout: int) -> float | None:
    if report is None:
        return None
    from foundry_magics.store.prices import cost

    try:
        return cost(report.model or model, tin, tout, cached_input_tokens=report.cached_input_tokens)
    except Exception:  # noqa: BLE001 - pricing never breaks the table
        return None


# ====================================================================== the front-end


def _input_columns(df: Any, gold: Any, templates: Sequence[str | None]) -> list[Any]:
    named = [m.group(1).strip() for t in templates if t for m in _NAME.finditer(t)]
    cols = [c for c in df.columns if str(c) in named and c != gold]
    return cols or [c for c in df.columns if c != gold]


def evaluate(df: Any, gold: Any, *, op: str = "classify", template: str | None = None,
             prompts: Mapping[str, str] | None = None, models: Any = None, labels: Any = None, schema: Any = None,
             sample: int | None = None, metric: Callable[[Any, Any], Any] | None = None,
             namespace: Mapping[str, Any] | None = None, where: str = "df.foundry.evaluate()",
             **options: Any) -> Evaluation:
    """Every (prompt, model) over the labelled rows of `df` (the `sample` first after a fixed
    shuffle, when given), at once; scored against `df[gold]`. See `Evaluation`."""
    import pandas as pd

    from foundry_magics.frames.pandas import rows_of

    if not isinstance(df, pd.DataFrame):
        raise ConfigurationError(f"evaluate() needs a pandas DataFrame, got {type(df).__name__}.",
                                 hint="df.foundry.evaluate(gold='label', ...).")
    if gold not in df.columns:
        shown = ", ".join(repr(str(c)) for c in list(df.columns)[:30])
        raise ConfigurationError(f"gold={gold!r} is not a column of the frame.",
                                 hint=f"Name the column of true answers. Columns: {shown}.")
    frame = df[df[gold].notna()]
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int) or sample <= 0:
            raise ConfigurationError(f"sample= must be a positive number of rows, got {sample!r}.",
                                     hint="For example sample=200.")
        if sample < len(frame):
            frame = frame.sample(n=sample, random_state=0)
    if not len(frame):
        raise ConfigurationError(f"No labelled rows: the column {gold!r} is empty.",
                                 hint="Fill in the true answers of a few rows first.")
    templates = list(prompts.values()) if isinstance(prompts, Mapping) else [template]
    inputs = _input_columns(frame, gold, templates)
    if all(t is None for t in templates):  # the op's own prompt: over the one input column
        if len(inputs) != 1:
            raise ConfigurationError(f"evaluate(op={op!r}) without a template needs a frame of one input column "
                                     f"besides {gold!r}; this one has {len(inputs)}.",
                                     hint="Name the input in a template: template='Sentiment of: {text}'.")
        rows = rows_of(frame[inputs[0]])
    else:
        rows = rows_of(frame)
    values = (frame[inputs[0]].tolist() if len(inputs) == 1
              else [dict(zip(inputs, r)) for r in frame[inputs].itertuples(index=False, name=None)])
    data = core.evaluate(rows, frame[gold].tolist(), op=op, template=template, prompts=prompts, models=models,
                         labels=labels, schema=schema, metric=metric, where=where, namespace=namespace,
                         inputs=values, **options)
    return Evaluation(data, frame.index)


def evaluate_polars(df: Any, gold: Any, *, op: str = "classify", template: str | None = None,
                    prompts: Mapping[str, str] | None = None, models: Any = None, labels: Any = None,
                    schema: Any = None, sample: int | None = None, metric: Callable[[Any, Any], Any] | None = None,
                    namespace: Mapping[str, Any] | None = None, where: str = "df.foundry.evaluate()",
                    **options: Any) -> Evaluation:
    """`evaluate` over a Polars DataFrame: the same rows sampled (the same fixed shuffle as
    pandas'), the same runs and scores; `errors()` is indexed by the frame's row numbers."""
    import numpy as np
    import pandas as pd
    import polars as pl

    from foundry_magics.frames.polars import rows_of

    if not isinstance(df, pl.DataFrame):
        raise ConfigurationError(f"evaluate() needs a Polars DataFrame, got {type(df).__name__}.",
                                 hint="Collect a LazyFrame first: lf.collect().foundry.evaluate(gold='label', ...).")
    if gold not in df.columns:
        shown = ", ".join(repr(str(c)) for c in df.columns[:30])
        raise ConfigurationError(f"gold={gold!r} is not a column of the frame.",
                                 hint=f"Name the column of true answers. Columns: {shown}.")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample <= 0):
        raise ConfigurationError(f"sample= must be a positive number of rows, got {sample!r}.",
                                 hint="For example sample=200.")
    positions = [i for i, v in enumerate(df.get_column(gold).to_list()) if not _nan(v)]
    if sample is not None and sample < len(positions):  # what pandas' sample(n, random_state=0) picks
        positions = [positions[i] for i in np.random.RandomState(0).permutation(len(positions))[:sample]]
    if not positions:
        raise ConfigurationError(f"No labelled rows: the column {gold!r} is empty.",
                                 hint="Fill in the true answers of a few rows first.")
    frame = df[positions]
    templates = list(prompts.values()) if isinstance(prompts, Mapping) else [template]
    inputs = _input_columns(frame, gold, templates)
    if all(t is None for t in templates):
        if len(inputs) != 1:
            raise ConfigurationError(f"evaluate(op={op!r}) without a template needs a frame of one input column "
                                     f"besides {gold!r}; this one has {len(inputs)}.",
                                     hint="Name the input in a template: template='Sentiment of: {text}'.")
        rows = rows_of(frame.get_column(inputs[0]))
    else:
        rows = rows_of(frame)
    values = (frame.get_column(inputs[0]).to_list() if len(inputs) == 1
              else [dict(zip(inputs, r)) for r in frame.select(inputs).iter_rows()])
    data = core.evaluate(rows, frame.get_column(gold).to_list(), op=op, template=template, prompts=prompts,
                         models=models, labels=labels, schema=schema, metric=metric, where=where,
                         namespace=namespace, inputs=values, **options)
    return Evaluation(data, pd.Index(positions, name="row"))
