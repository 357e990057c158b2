"""The Polars front-end: `pl_df.foundry.*` and `pl_series.foundry.*`, a thin converter over `ops/`.

    s   = pl_df.foundry.prompt("Summarize: {text}")                   # pl.Series named "prompt"
    s   = pl_df.foundry.prompt("Summarize: {text}", output_col="summary")
    out = pl_df.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float})  # pl.DataFrame
    est = pl_df.foundry.estimate("Summarize: {text}")                 # fm.Estimate: nothing sent
    pl_df["text"].foundry.classify(["positive", "negative"])          # pl.Series of Enum, null if none
    pl_df["text"].foundry.extract({"name": str, "age": int})          # pl.DataFrame
    pl_df["text"].foundry.embed()                                     # pl.Series of Array(Float32, dim)
    pl_df["text"].foundry.summarize(), .translate("French"), .sentiment()
    pl_df.foundry.search("broken zipper", k=10, column="text")        # k most similar rows + "score"
    pl_df.foundry.similarity("text", "title"); pl_df["text"].foundry.similarity("delivery was late")
    pl_df.foundry.join(products, "{left.text} is about {right.title}") # the matching pairs
    ev  = pl_df.foundry.evaluate(gold="label", labels=[...], template="...", models=[...])  # fm.Evaluation

What happens here: the frame's columns become Arrow arrays (`Series.to_arrow`, no pandas), the
operation of `ops.operations` validates the options, plans, runs (online, `batch=True`,
`estimate=True`) and reads the replies; the `Outcome` comes back through Arrow as Polars
objects, one value per row in the input's order. Nulls send nothing and give null; failed
rows are null, listed by row number in `fm.last_run().failures`.

The options are those of the pandas front-end and mean the same (`ops.options`); results of a
Series operation keep the Series' name. Registered by `frames.hook` when polars is imported.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from foundry_magics.engine import RunReport, last_run
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import operations as ops
from foundry_magics.ops.operations import Outcome, Rows

__all__ = ["FoundryPolarsFrame", "FoundryPolarsSeries", "register", "prompt", "classify", "extract", "embed",
           "summarize", "translate", "sentiment", "estimate", "rows_of", "to_polars", "similarity", "search",
           "join", "mask", "filter_rows", "topk", "agg"]


# ====================================================================== Polars -> Rows


def _arrow(series: Any) -> Any:
    """A Polars Series as a pyarrow Array (Object columns by their values)."""
    from foundry_magics.ops.plan import arrow_column

    try:
        return arrow_column(series.to_arrow())
    except Exception:  # noqa: BLE001 - e.g. an Object column: Arrow has no type for it
        return arrow_column(series.to_list())


def _is_series(obj: Any) -> bool:
    import polars as pl

    return isinstance(obj, pl.Series)


def rows_of(obj: Any, images: Any = None) -> Rows:
    """A Polars DataFrame or Series as the operation's input: columns converted to Arrow on demand."""
    import polars as pl

    if isinstance(obj, pl.Series):
        name = obj.name or None  # an unnamed Series (name "") is the value only, as in pandas
        return Rows(names=[name] if name is not None else [], n=len(obj), column=lambda _key: _arrow(obj),
                    series=True, series_name=name, images=_images_of(obj.to_frame(), images))
    if isinstance(obj, pl.DataFrame):
        return Rows(names=list(obj.columns), n=obj.height, column=lambda key: _arrow(obj.get_column(key)),
                    images=_images_of(obj, images))
    if isinstance(obj, pl.LazyFrame):
        raise ConfigurationError("A Polars LazyFrame has no rows yet.",
                                 hint="Collect it first: lf.collect().foundry.prompt(...).")
    raise ConfigurationError(f"Expected a Polars DataFrame or Series, got {type(obj).__name__}.",
                             hint="Call it as pl_df.foundry.prompt(...) or pl_df['col'].foundry.prompt(...).")


def _images_of(frame: Any, images: Any) -> Any:
    """`images=`: a column name of the frame, or a Series / list with one cell per row (by position)."""
    import polars as pl

    if images is None:
        return None
    if isinstance(images, str):
        if images not in frame.columns:
            shown = ", ".join(repr(c) for c in frame.columns[:30])
            raise ConfigurationError(f"images={images!r} is not a column of the frame.",
                                     hint=f"Columns: {shown}. Pass images='column' holding paths, URLs or bytes.")
        return frame.get_column(images).to_list()
    if isinstance(images, (pl.Series, list, tuple)):
        if len(images) != frame.height:
            raise ConfigurationError(f"images= has {len(images):,} values for {frame.height:,} rows.",
                                     hint="Give one cell per row, or the name of a column: images='path'.")
        return images.to_list() if isinstance(images, pl.Series) else list(images)
    raise ConfigurationError(f"images= must be a column name or one cell per row, got {type(images).__name__}.",
                             hint="e.g. pl_df.foundry.prompt('Describe {name}', images='photo_path').")


# ====================================================================== Outcome -> Polars


def _row_values(outcome: Outcome, field: str) -> list:
    return outcome.rows(field).tolist()


def _series(name: str, values: Callable[[], Any], fallback: Callable[[], list]) -> Any:
    """A Polars Series from an Arrow array, or from Python values when Arrow cannot type them."""
    import polars as pl
    import pyarrow as pa

    try:
        return pl.Series(name, values())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError):
        items = fallback()
        try:
            return pl.Series(name, items, strict=False)
        except Exception:  # noqa: BLE001 - values Polars cannot hold but as objects
            return pl.Series(name, items, dtype=pl.Object)


def _labels(outcome: Outcome, name: str) -> Any:
    """Enum of the labels when they are text; otherwise the labels' own type (Categorical of
    their text when Arrow cannot type them). Null where the reply named none of them."""
    import polars as pl
    import pyarrow as pa

    labels = list(outcome.labels or [])
    if labels and all(isinstance(x, str) for x in labels):
        return pl.Series(name, outcome.arrow(type=pa.large_string())).cast(pl.Enum(labels))
    try:
        return pl.Series(name, outcome.arrow())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError):
        text = [None if v is None else str(v) for v in outcome.rows().tolist()]
        return pl.Series(name, text, dtype=pl.String).cast(pl.Categorical)


def _vectors(outcome: Outcome, name: str) -> Any:
    """Array(Float32, dim) when every vector has one length (List(Float32) otherwise), null where
    there is none; built per distinct text, then spread onto rows by Arrow."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    vecs = outcome.values[None]
    dims = {len(v) for v in vecs if v is not None}
    if len(dims) == 1 and all(v is not None for v in vecs):
        dim = dims.pop()
        flat = np.concatenate([np.asarray(v, dtype=np.float32) for v in vecs])
        per_unique = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    elif len(dims) == 1:  # some failed: null there
        per_unique = pa.array([None if v is None else np.asarray(v, dtype=np.float32) for v in vecs],
                              type=pa.list_(pa.float32(), dims.pop()))
    else:
        per_unique = pa.array([None if v is None else np.asarray(v, dtype=np.float32) for v in vecs],
                              type=pa.list_(pa.float32()))
    return pl.Series(name, outcome.plan.spread_arrow(per_unique))


def to_polars(outcome: Outcome, name: str = "", prefix: str | None = None) -> Any:
    """The pl.Series (text, label, vector) named `name`, or pl.DataFrame (fields; with `prefix`
    the columns are `prefix` for one field, else `prefix_field`) of an outcome, in row order."""
    import polars as pl
    import pyarrow as pa

    outcome.label_failures(lambda pos: pos.tolist())  # a row's label is its number
    if outcome.kind == "text":
        return pl.Series(name, outcome.arrow(type=pa.large_string()))
    if outcome.kind == "label":
        return _labels(outcome, name)
    if outcome.kind == "vector":
        return _vectors(outcome, name)
    if outcome.kind == "score":  # a float per row, null where there is none
        return pl.Series(name, outcome.arrow(type=pa.float64()))
    fields = list(outcome.values)
    columns = []
    for f in fields:
        col = f if prefix is None else (prefix if len(fields) == 1 else f"{prefix}_{f}")
        columns.append(_series(col, functools.partial(outcome.arrow, f), functools.partial(_row_values, outcome, f)))
    return pl.DataFrame(columns)


def _run(op: ops.Operation, obj: Any, images: Any = None, namespace: Mapping[str, Any] | None = None,
         name: str | None = None, prefix: str | None = None, convert: Callable[[Outcome], Any] | None = None,
         label: str | None = None) -> Any:
    plan = op.plan(rows_of(obj, images), namespace)
    if name is None:
        name = obj.name if _is_series(obj) else "prompt"
    return op.run(plan, convert or (lambda outcome: to_polars(outcome, name, prefix)), label=label)


# ====================================================================== the operations


def prompt(obj: Any, template: str, *, output_col: str | None = None, images: Any = None,
           namespace: Mapping[str, Any] | None = None, where: str = "prompt()", **options: Any) -> Any:
    """A prompt per row -> pl.Series (named `output_col`, else "prompt" for a DataFrame and the
    Series' own name for a Series); with `schema` a pl.DataFrame with a column per field
    (`output_col` for a single field, else `output_col_field`, when given)."""
    if output_col is not None and (not isinstance(output_col, str) or not output_col.strip()):
        raise ConfigurationError(f"output_col must be a column name, got {output_col!r}.",
                                 hint='For example output_col="summary".')
    op = ops.Prompt(template, where=where, **options)
    prefix = output_col.strip() if output_col is not None and op.schema is not None else None
    return _run(op, obj, images, namespace, name=output_col.strip() if output_col is not None else None,
                prefix=prefix)


def estimate(obj: Any, template: str = "{}", *, images: Any = None, where: str = "estimate()", **options: Any) -> Any:
    """The `fm.Estimate` of `prompt(obj, template, **options)`: nothing is sent."""
    return _run(ops.Prompt(template, where=where, estimate=True, **options), obj, images)


def classify(series: Any, labels: Any, *, template: str | None = None, images: Any = None,
             where: str = "classify()", **options: Any) -> Any:
    return _run(ops.Classify(labels, template=template, where=where, **options), series, images)


def extract(series: Any, fields: Any, *, template: str | None = None, images: Any = None,
            where: str = "extract()", **options: Any) -> Any:
    return _run(ops.Extract(fields, template=template, where=where, **options), series, images)


def summarize(series: Any, *, images: Any = None, where: str = "summarize()", **options: Any) -> Any:
    return _run(ops.Summarize(where=where, **options), series, images)


def translate(series: Any, lang: str, *, images: Any = None, where: str = "translate()", **options: Any) -> Any:
    return _run(ops.Translate(lang, where=where, **options), series, images)


def sentiment(series: Any, *, images: Any = None, where: str = "sentiment()", **options: Any) -> Any:
    return _run(ops.Sentiment(where=where, **options), series, images)


def embed(series: Any, *, where: str = "embed()", **options: Any) -> Any:
    return _run(ops.Embed(where=where, **options), series)


def similarity(obj: Any, a: Any = None, b: Any = None, *, text: str | None = None,
               where: str = "similarity()", **options: Any) -> Any:
    """Cosine similarity of the embeddings of columns `a` and `b` (or of the Series' values and
    `text`), row by row: a Float64 pl.Series "similarity" in [-1, 1], null where a value is null."""
    from foundry_magics.ops.search import Similarity

    op = Similarity(a, b, text=text, where=where, **options)
    return _run(op, obj, convert=lambda outcome: to_polars(outcome, "similarity"), label="similarity")


def search(obj: Any, query: str, k: int = 10, column: Any = None, *, where: str = "search()",
           **options: Any) -> Any:
    """The `k` rows whose `column` is most similar to `query`, best first, with a "score" column
    ("search_score" if the frame has a "score" column)."""
    import numpy as np
    import polars as pl

    from foundry_magics.ops.search import Similarity, check_k, top_k

    k = check_k(k, where)
    series = _is_series(obj)
    frame = obj.to_frame() if series else obj
    if column is None and not series:
        if len(frame.columns) != 1:
            raise ConfigurationError(f"{where} needs the column to search: column='text'.",
                                     hint=f"Columns: {', '.join(repr(c) for c in frame.columns[:30])}.")
        column = frame.columns[0]
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError(f"{where} needs a text to search for, got {query!r}.",
                                 hint='For example search("broken zipper", k=10, column="text").')
    op = Similarity(None if series else column, text=query, where=where, **options)

    def convert(outcome: Outcome) -> Any:
        scores = to_polars(outcome, "score").fill_null(float("nan")).to_numpy()
        best = top_k(scores, k)
        name = "search_score" if "score" in frame.columns else "score"
        return frame[best].with_columns(pl.Series(name, np.asarray(scores[best], dtype=np.float64)))

    return _run(op, obj, convert=convert, label="search")


def join(left: Any, right: Any, predicate: str, *, shortlist: Any = "auto", on: Any = None,
         where: str = "join()", **options: Any) -> Any:
    """The pairs of rows the model judges to match `predicate` (`{left.col}`, `{right.col}`):
    left columns, then right columns (clashing names get _left / _right), in left-row order.
    Failures are listed by (left row number, right row number)."""
    import polars as pl

    from foundry_magics.ops.join import Join, joined_names

    for side, frame in (("left", left), ("right", right)):
        if not isinstance(frame, pl.DataFrame):
            raise ConfigurationError(f"join() needs a Polars DataFrame on the {side}, got {type(frame).__name__}.",
                                     hint="pl_df.foundry.join(other_pl_df, '{left.text} ... {right.title}').")
    op = Join(predicate, shortlist=shortlist, on=on, where=where, **options)

    def convert(lpos: Any, rpos: Any) -> Any:
        lcols, rcols = joined_names(left.columns, right.columns)
        a = left[lpos].rename(dict(zip(left.columns, lcols)))
        b = right[rpos].rename(dict(zip(right.columns, rcols)))
        return pl.concat([a, b], how="horizontal")

    return op.join(rows_of(left), rows_of(right), convert, lambda pos: pos.tolist(), lambda pos: pos.tolist(),
                   label="join")

# ====================================================================== semantic operators


def _judged(outcome: Outcome, name: str) -> Any:
    import polars as pl
    import pyarrow as pa

    from foundry_magics.ops.judge import ANSWER

    outcome.label_failures(lambda pos: pos.tolist())
    return pl.Series(name, outcome.arrow(ANSWER, type=pa.bool_()))


def mask(obj: Any, predicate: str, *, output_col: str | None = None, namespace: Mapping[str, Any] | None = None,
         where: str = "mask()", **options: Any) -> Any:
    """One yes/no judgement per distinct row -> a pl.Series of Boolean named "mask" (or `output_col`),
    null where the judgement failed or a value is missing."""
    from foundry_magics.ops.judge import Judge

    op = Judge(predicate, kind="mask", where=where, **options)
    plan = op.plan(rows_of(obj), namespace)
    return op.run(plan, lambda outcome: _judged(outcome, output_col or "mask"))


def filter_rows(obj: Any, predicate: str, *, namespace: Mapping[str, Any] | None = None, where: str = "filter()",
                **options: Any) -> Any:
    """The rows judged true, in order; rows whose judgement failed are left out (one warning line,
    listed by row number in fm.last_run().failures)."""
    import polars as pl

    from foundry_magics.ops.judge import Judge, left_out

    op = Judge(predicate, kind="filter", where=where, **options)
    plan = op.plan(rows_of(obj), namespace)
    frame = obj.to_frame() if _is_series(obj) else obj

    def keep(outcome: Outcome) -> Any:
        judged = _judged(outcome, "mask").fill_null(False)
        left_out(outcome.report, "filter")
        kept = frame.filter(judged)
        return kept.to_series() if _is_series(obj) else kept

    _ = pl  # polars is loaded for the result's types
    return op.run(plan, keep)


def topk(obj: Any, instruction: str, k: int = 5, *, namespace: Mapping[str, Any] | None = None,
         where: str = "topk()", **options: Any) -> Any:
    """The k best rows, best first, with a `rank` column (1 = best)."""
    import polars as pl

    from foundry_magics.ops.topk import TopK

    op = TopK(instruction, k, where=where, **options)
    plan = op.plan(rows_of(obj), namespace)
    frame = obj.to_frame() if _is_series(obj) else obj

    def ranked(ranking: Any) -> Any:
        ranking.label_failures(lambda pos: pos.tolist())
        out = frame[ranking.positions] if ranking.positions else frame.clear()
        col = "rank" if "rank" not in out.columns else "foundry_rank"
        return out.with_columns(pl.Series(col, list(range(1, out.height + 1)), dtype=pl.Int64))

    return op.run(plan, ranked)


def agg(obj: Any, instruction: str, *, by: Any = None, namespace: Mapping[str, Any] | None = None,
        where: str = "agg()", **options: Any) -> Any:
    """One answer over every row (an `fm.Reply`); with `by=COL`, a pl.DataFrame (COL, "agg"), one row per group."""
    import polars as pl

    from foundry_magics.ops.agg import Agg

    op = Agg(instruction, by=by, where=where, **options)
    plan = op.plan(rows_of(obj), namespace)

    def answer(result: Any) -> Any:
        result.label_failures(lambda pos: pos.tolist())
        if by is None:
            return result.reply(0)
        keys = pl.Series(str(by), result.labels, dtype=obj.schema[by] if not _is_series(obj) else None)
        return pl.DataFrame([keys, pl.Series("agg", result.texts, dtype=pl.String)])

    return op.run(plan, answer)


# ====================================================================== the namespaces


def _common(system: Any, model: Any, connection: Any, concurrency: Any, rpm: Any, tpm: Any, cache: Any,
            progress: Any, schema: Any = None) -> dict[str, Any]:
    """The options every namespace method names in its signature, as keyword options."""
    out = dict(system=system, model=model, connection=connection, concurrency=concurrency, rpm=rpm, tpm=tpm,
               cache=cache, progress=progress)
    if schema is not None:
        out["schema"] = schema
    return out


class _Base:
    _who = "df.foundry"

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def last_run(self) -> RunReport | None:
        """The report of the last run in this process (`fm.last_run()`)."""
        return last_run()


class _Operators:
    """The semantic operators of `pl_df.foundry` and `pl_series.foundry` (as in pandas): the same
    methods on both; in the Series form `{}` is the value."""

    _obj: Any
    _who: str

    def mask(self, predicate: str, system: str | None = None, model: str | None = None, connection: Any = None,
             concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
             cache: bool = True, progress: Any = True, *, output_col: str | None = None, **options: Any) -> Any:
        """One yes/no judgement per distinct row -> pl.Series of Boolean named "mask" (or `output_col`),
        null where the judgement failed or a value is missing. Options as for prompt()."""
        return mask(self._obj, predicate, output_col=output_col, where=f"{self._who}.mask()",
                    **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def filter(self, predicate: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """The rows judged true; rows whose judgement failed are left out (said in one warning line,
        listed by row number in fm.last_run().failures). Options as for prompt()."""
        return filter_rows(self._obj, predicate, where=f"{self._who}.filter()",
                           **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def topk(self, instruction: str, k: int = 5, system: str | None = None, model: str | None = None,
             connection: Any = None, concurrency: int | None = None, rpm: float | None = None,
             tpm: float | None = None, cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """The k best rows for `instruction`, best first, with a `rank` column (1 = best)."""
        return topk(self._obj, instruction, k, where=f"{self._who}.topk()",
                    **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def agg(self, instruction: str, by: Any = None, system: str | None = None, model: str | None = None,
            connection: Any = None, concurrency: int | None = None, rpm: float | None = None,
            tpm: float | None = None, cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """One answer over every row (fm.Reply); with by="col" a pl.DataFrame (col, agg), one row per group."""
        return agg(self._obj, instruction, by=by, where=f"{self._who}.agg()",
                   **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)


class FoundryPolarsFrame(_Operators, _Base):
    """`pl_df.foundry`: prompts over the frame's columns."""

    def prompt(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, schema: Any = None, *, output_col: str | None = None,
               images: Any = None, **options: Any) -> Any:
        """One request per row, `{column}` filled in: a pl.Series named "prompt" (or `output_col`),
        or with `schema` a pl.DataFrame with a column per field. Rows with a null get null and
        no request.

        Options (checked before anything is sent) as for pandas' df.foundry.prompt: system,
        model, connection, temperature, max_tokens, schema, api, concurrency, rpm, tpm, cache,
        progress, images='column', batch, wait, poll_interval, estimate."""
        return prompt(self._obj, template, output_col=output_col, images=images, where="df.foundry.prompt()",
                      **_common(system, model, connection, concurrency, rpm, tpm, cache, progress, schema), **options)

    def estimate(self, template: str, *, images: Any = None, **options: Any) -> Any:
        """What `prompt(template, ...)` with the same options would send and cost, as an
        `fm.Estimate`. Sends nothing."""
        return estimate(self._obj, template, images=images, where="df.foundry.estimate()", **options)

    def evaluate(self, gold: Any, op: str = "classify", template: str | None = None, *,
                 prompts: Mapping[str, str] | None = None, models: Any = None, labels: Any = None,
                 schema: Any = None, sample: int | None = None, metric: Any = None, **options: Any) -> Any:
        """Every (prompt, model) over the labelled rows at once, scored against the column `gold`:
        an `fm.Evaluation`, as for pandas' df.foundry.evaluate (its tables are pandas DataFrames;
        `errors()` is indexed by row number)."""
        from foundry_magics.frames.evaluate import evaluate_polars

        return evaluate_polars(self._obj, gold, op=op, template=template, prompts=prompts, models=models,
                               labels=labels, schema=schema, sample=sample, metric=metric, **options)

    def search(self, query: str, k: int = 10, column: Any = None, **options: Any) -> Any:
        """The `k` rows whose `column` is most similar to `query`, best first, with a "score"
        column (embeddings, cosine; no chat request; each text embedded once and cached).
        Options: model (the embeddings deployment), dimensions, connection, cache, progress,
        concurrency, batch, wait, poll_interval, estimate."""
        return search(self._obj, query, k, column, where="df.foundry.search()", **options)

    def similarity(self, a: Any, b: Any = None, *, text: str | None = None, **options: Any) -> Any:
        """Cosine similarity of the embeddings of columns `a` and `b` row by row (or of `a` and
        one `text`): a Float64 pl.Series in [-1, 1], null where a value is null."""
        return similarity(self._obj, a, b, text=text, where="df.foundry.similarity()", **options)

    def join(self, other: Any, predicate: str, *, shortlist: Any = "auto", on: Any = None, **options: Any) -> Any:
        """The pairs of rows of this frame and `other` the model judges to match `predicate`
        ({left.col}, {right.col}); shortlist / on / options as for pandas' df.foundry.join."""
        return join(self._obj, other, predicate, shortlist=shortlist, on=on, where="df.foundry.join()", **options)


class FoundryPolarsSeries(_Operators, _Base):
    """`pl_series.foundry`: prompts over one column; `{}` is the value. Results keep its name."""

    _who = "s.foundry"

    def prompt(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, schema: Any = None, *, images: Any = None,
               **options: Any) -> Any:
        """One request per value, `{}` filled in: a pl.Series (a pl.DataFrame with `schema`)."""
        return prompt(self._obj, template, images=images, where="s.foundry.prompt()",
                      **_common(system, model, connection, concurrency, rpm, tpm, cache, progress, schema), **options)

    def estimate(self, template: str = "{}", *, images: Any = None, **options: Any) -> Any:
        """The `fm.Estimate` of `prompt(template, ...)`; sends nothing. Every other operation
        takes estimate=True too: `s.foundry.summarize(estimate=True)`."""
        return estimate(self._obj, template, images=images, where="s.foundry.estimate()", **options)

    def classify(self, labels: Any, system: str | None = None, model: str | None = None, connection: Any = None,
                 concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                 cache: bool = True, progress: Any = True, *, template: str | None = None, **options: Any) -> Any:
        """pl.Series of Enum(labels) (text labels); null where the reply is none of them."""
        return classify(self._obj, labels, template=template, where="s.foundry.classify()",
                        **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def extract(self, fields: Any, system: str | None = None, model: str | None = None, connection: Any = None,
                concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                cache: bool = True, progress: Any = True, *, template: str | None = None, **options: Any) -> Any:
        """pl.DataFrame with a column per field of `fields` ({"name": str, "age": int} or a JSON Schema)."""
        return extract(self._obj, fields, template=template, where="s.foundry.extract()",
                       **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def embed(self, model: str | None = None, dimensions: int | None = None, connection: Any = None,
              cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """pl.Series of Array(Float32, dim), null where the value is null. Options: concurrency,
        batch, wait, poll_interval, estimate."""
        return embed(self._obj, where="s.foundry.embed()", model=model, dimensions=dimensions, connection=connection,
                     cache=cache, progress=progress, **options)

    def similarity(self, text: str, **options: Any) -> Any:
        """Cosine similarity of each value's embedding and `text`'s: a Float64 pl.Series, null where null."""
        return similarity(self._obj, None, text=text, where="s.foundry.similarity()", **options)

    def search(self, query: str, k: int = 10, **options: Any) -> Any:
        """The `k` values most similar to `query`, best first, as a pl.DataFrame with a "score" column."""
        return search(self._obj, query, k, where="s.foundry.search()", **options)

    def summarize(self, system: str | None = None, model: str | None = None, connection: Any = None,
                  concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                  cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """One or two sentences per value (output capped in proportion to the input)."""
        return summarize(self._obj, where="s.foundry.summarize()",
                         **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def translate(self, lang: str, system: str | None = None, model: str | None = None, connection: Any = None,
                  concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                  cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """Each value translated into `lang`."""
        return translate(self._obj, lang, where="s.foundry.translate()",
                         **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def sentiment(self, system: str | None = None, model: str | None = None, connection: Any = None,
                  concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                  cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """pl.Series of Enum: positive / negative / neutral (null when unclassifiable)."""
        return sentiment(self._obj, where="s.foundry.sentiment()",
                         **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)


def register() -> None:
    """Register `.foundry` on pl.DataFrame and pl.Series (idempotent)."""
    import polars as pl

    for cls, ns, reg in ((pl.DataFrame, FoundryPolarsFrame, pl.api.register_dataframe_namespace),
                         (pl.Series, FoundryPolarsSeries, pl.api.register_series_namespace)):
        if getattr(cls.__dict__.get("foundry"), "_ns", None) is ns:
            continue
        reg("foundry")(ns)
