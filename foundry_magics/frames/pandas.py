"""The pandas front-end: `df.foundry.*` and `series.foundry.*`, a thin converter over `ops/`.

    s   = df.foundry.prompt("Summarize: {text}")                    # Series on df.index
    est = df.foundry.estimate("Summarize: {text}")                  # fm.Estimate: nothing sent
    df.foundry.prompt("Describe: {name}", images="photo")           # a column of paths / URLs / bytes
    out = df.foundry.prompt("...", schema={"label": str, "score": float})   # DataFrame
    df["text"].foundry.prompt("Translate to French: {}")
    df["text"].foundry.classify(["positive", "negative", "neutral"])   # categorical, NA if none
    df["text"].foundry.extract({"name": str, "age": int})             # DataFrame
    df["text"].foundry.embed()                                        # Series of numpy vectors
    df["text"].foundry.summarize(), .translate("French"), .sentiment()
    df.foundry.search("broken zipper", k=10, column="text")          # k most similar rows + "score"
    df.foundry.similarity("text", "title"); df["text"].foundry.similarity("delivery was late")
    df.foundry.join(products, "{left.text} is about {right.title}")   # the matching pairs

What happens here: the frame's columns become Arrow arrays (`Rows`), the operation of
`ops.operations` validates the options, plans, runs (online, `batch=True`, `estimate=True`)
and reads the replies; the `Outcome` comes back as a Series / DataFrame on the frame's index.
Failed rows are NA, listed by index label in `fm.last_run().failures`.

Every call shows progress (`progress=False` to hide it), keeps finished replies in the cache
(`cache=False` to opt out) and leaves its report in `fm.last_run()`. classify, sentiment and
extract send a small output cap, summarize and translate one in proportion to the input
(defaults.py); `max_tokens=N` sets another, `max_tokens=None` sends none. `batch=True` goes
through the Batch API (half the price, results within 24 h); `wait=False` returns the
`fm.BatchJob` at once (`job.result()` later gives the same Series / DataFrame).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from foundry_magics.engine import RunReport, last_run
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import operations as ops
from foundry_magics.ops.operations import Outcome, Rows

__all__ = ["FoundryDataFrameAccessor", "FoundrySeriesAccessor", "register", "prompt", "classify", "extract",
           "embed", "summarize", "translate", "sentiment", "estimate", "run_frame", "batch_jobs", "rows_of",
           "to_pandas", "similarity", "search", "join", "mask", "filter_rows", "topk", "agg"]


# ====================================================================== pandas -> Rows


def _arrow(series: Any) -> Any:
    import pyarrow as pa

    from foundry_magics.ops.plan import arrow_column

    try:
        return pa.Array.from_pandas(series)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError):
        return arrow_column(series.tolist())


def rows_of(obj: Any, images: Any = None) -> Rows:
    """A DataFrame or Series as the operation's input: columns converted to Arrow on demand."""
    import pandas as pd

    if isinstance(obj, pd.Series):
        return Rows(names=[obj.name] if obj.name is not None else [], n=len(obj), column=lambda _key: _arrow(obj),
                    series=True, series_name=obj.name, images=_images_of(obj, images))
    if isinstance(obj, pd.DataFrame):
        def column(key: Any) -> Any:
            col = obj[key]
            if isinstance(col, pd.DataFrame):
                raise ConfigurationError(f"Column {key!r} appears more than once in the frame.",
                                         hint="Rename the duplicate columns first.")
            return _arrow(col)

        return Rows(names=list(obj.columns), n=len(obj), column=column, images=_images_of(obj, images))
    raise ConfigurationError(f"Expected a pandas DataFrame or Series, got {type(obj).__name__}.",
                             hint="Call it as df.foundry.prompt(...) or df['col'].foundry.prompt(...).")


def _images_of(obj: Any, images: Any) -> Any:
    """`images=`: a column name of the frame, or a Series / list with one cell per row (by position)."""
    import pandas as pd

    if images is None:
        return None
    frame = obj.to_frame() if isinstance(obj, pd.Series) else obj
    if isinstance(images, str) or (not isinstance(images, (list, tuple, pd.Series)) and images in frame.columns):
        if images not in frame.columns:
            shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:30])
            raise ConfigurationError(f"images={images!r} is not a column of the frame.",
                                     hint=f"Columns: {shown}. Pass images='column' holding paths, URLs or bytes.")
        return frame[images].tolist()
    if isinstance(images, (pd.Series, list, tuple)):
        if len(images) != len(frame):
            raise ConfigurationError(f"images= has {len(images):,} values for {len(frame):,} rows.",
                                     hint="Give one cell per row, or the name of a column: images='path'.")
        return list(images)
    raise ConfigurationError(f"images= must be a column name or one cell per row, got {type(images).__name__}.",
                             hint="e.g. df.foundry.prompt('Describe {name}', images='photo_path').")


# ====================================================================== Outcome -> pandas


def _array(values: Any) -> Any:
    """A pandas array with a nullable dtype where one fits (Int64, Float64, boolean, string)."""
    import pandas as pd

    try:
        return pd.array(values)
    except (TypeError, ValueError):
        return pd.array(values, dtype=object)


def to_pandas(outcome: Outcome, index: Any, name: Any = None, prefix: str | None = None) -> Any:
    """The Series (text, label, vector) or DataFrame (fields) of an outcome, on `index`."""
    import pandas as pd
    import pyarrow as pa

    outcome.label_failures(lambda pos: list(index[pos]))
    if outcome.kind == "text":
        return pd.Series(pd.array(outcome.arrow(type=pa.string()), dtype="string"), index=index, name=name)
    if outcome.kind == "label":
        return pd.Series(pd.Categorical(outcome.rows(), categories=outcome.labels), index=index, name=name)
    if outcome.kind == "vector":
        return pd.Series(outcome.rows(), index=index, name=name, dtype=object)
    if outcome.kind == "score":  # a float per row, NaN where there is none
        return pd.Series(outcome.arrow(type=pa.float64()).to_numpy(zero_copy_only=False), index=index, name=name,
                         dtype="float64")
    fields = list(outcome.values)
    data = {}
    for f in fields:
        col = f if prefix is None else (prefix if len(fields) == 1 else f"{prefix}_{f}")
        data[col] = _array(outcome.rows(f))
    return pd.DataFrame(data, index=index)


def _run(op: ops.Operation, obj: Any, images: Any = None, namespace: Mapping[str, Any] | None = None,
         convert: Callable[[Outcome], Any] | None = None, label: str | None = None) -> Any:
    plan = op.plan(rows_of(obj, images), namespace)
    name = obj.name if _is_series(obj) else None
    return op.run(plan, convert or (lambda outcome: to_pandas(outcome, obj.index, name)), label=label)


def _is_series(obj: Any) -> bool:
    import pandas as pd

    return isinstance(obj, pd.Series)


# ====================================================================== the operations


def prompt(obj: Any, template: str, *, images: Any = None, namespace: Mapping[str, Any] | None = None,
           where: str = "prompt()", **options: Any) -> Any:
    """A prompt per row -> Series on obj.index (DataFrame with a column per field for `schema`)."""
    return _run(ops.Prompt(template, where=where, **options), obj, images, namespace)


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
    """Cosine similarity of the embeddings of `a` and `b` (columns), or of `a` (the Series'
    values) and `text`, row by row: a float64 Series in [-1, 1] on obj.index, NaN where a value is missing."""
    from foundry_magics.ops.search import Similarity

    op = Similarity(a, b, text=text, where=where, **options)
    return _run(op, obj, convert=lambda outcome: to_pandas(outcome, obj.index, "similarity"), label="similarity")


def search(obj: Any, query: str, k: int = 10, column: Any = None, *, where: str = "search()",
           **options: Any) -> Any:
    """The `k` rows whose `column` is most similar to `query` (embeddings, cosine), best first,
    with a "score" column ("search_score" if the frame has a "score" column)."""
    import pandas as pd

    from foundry_magics.ops.search import Similarity, check_k, top_k

    k = check_k(k, where)
    frame = obj.to_frame() if isinstance(obj, pd.Series) else obj
    if column is None and not isinstance(obj, pd.Series):
        if len(frame.columns) != 1:
            raise ConfigurationError(f"{where} needs the column to search: column='text'.",
                                     hint=f"Columns: {', '.join(repr(str(c)) for c in list(frame.columns)[:30])}.")
        column = frame.columns[0]
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError(f"{where} needs a text to search for, got {query!r}.",
                                 hint='For example search("broken zipper", k=10, column="text").')
    op = Similarity(None if isinstance(obj, pd.Series) else column, text=query, where=where, **options)

    def convert(outcome: Outcome) -> Any:
        scores = to_pandas(outcome, obj.index, "score").to_numpy()
        best = top_k(scores, k)
        out = frame.iloc[best].copy()
        out["search_score" if "score" in frame.columns else "score"] = scores[best]
        return out

    return _run(op, obj, convert=convert, label="search")


def join(left: Any, right: Any, predicate: str, *, shortlist: Any = "auto", on: Any = None,
         where: str = "join()", **options: Any) -> Any:
    """The pairs of rows the model judges to match `predicate` (`{left.col}`, `{right.col}`):
    left columns, then right columns (clashing names get _left / _right), index reset."""
    import pandas as pd

    from foundry_magics.ops.join import Join, joined_names

    for side, frame in (("left", left), ("right", right)):
        if not isinstance(frame, pd.DataFrame):
            raise ConfigurationError(f"join() needs a pandas DataFrame on the {side}, got {type(frame).__name__}.",
                                     hint="df.foundry.join(other_df, '{left.text} ... {right.title}').")
    op = Join(predicate, shortlist=shortlist, on=on, where=where, **options)

    def convert(lpos: Any, rpos: Any) -> Any:
        lcols, rcols = joined_names(list(left.columns), list(right.columns))
        a = left.iloc[lpos].reset_index(drop=True)
        b = right.iloc[rpos].reset_index(drop=True)
        a.columns, b.columns = lcols, rcols
        return pd.concat([a, b], axis=1)

    return op.join(rows_of(left), rows_of(right), convert, lambda pos: list(left.index[pos]),
                   lambda pos: list(right.index[pos]), label="join")


def run_frame(df: Any, template: str, *, out: str | None, namespace: Mapping[str, Any] | None = None,
              images: Any = None, where: str = "%%foundry --df", **options: Any) -> Any:
    """`%%foundry --df DF --out COL`: write the result column(s) into `df` in place; the run report
    (the `fm.Estimate` with estimate=True; the `fm.BatchJob` with batch=True, wait=False).

    With `schema`, one column per field: `COL` for a single field, else `COL_field`. What
    finished is written even when the run is interrupted or stopped (then it re-raises).
    A COL the template reads is refused: it would overwrite the input.
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigurationError(f"--df needs a pandas DataFrame, got {type(df).__name__}.",
                                 hint="Pass the name of a DataFrame variable: --df my_frame.")
    op = ops.Prompt(template, where=where, **options)
    if (not isinstance(out, str) or not out.strip()) and not op.estimate:
        raise ConfigurationError("Name the output column: --out COL.", hint="For example --out summary.")
    out = (out or "").strip()
    plan = op.plan(rows_of(df, images), namespace)
    read = {str(c) for c in plan.fields.values()}
    if out and not op.estimate:
        from foundry_magics.ops.replies import schema_fields

        fields = schema_fields(op.schema) if op.schema is not None else []
        written = [out] if len(fields) <= 1 else [f"{out}_{f}" for f in fields]
        clash = [c for c in written if c in read]
        if clash:
            raise ConfigurationError(
                f"--out {out} would overwrite the column {clash[0]!r}, which the template reads.",
                hint=f"Write the result into a new column, e.g. --out {clash[0]}_result.")

    def write(outcome: Outcome) -> RunReport:
        result = to_pandas(outcome, df.index, out, prefix=out if op.schema is not None else None)
        if isinstance(result, pd.DataFrame):
            for name in result.columns:
                df[name] = result[name].array
        else:
            df[out] = result.array
        return outcome.report

    return op.run(plan, write, label=out or "estimate")


# ====================================================================== semantic operators


def _judged(outcome: Outcome, index: Any, name: Any = None) -> Any:
    """The boolean Series of a mask/filter outcome (NA where the judgement failed or a value is missing)."""
    import pandas as pd

    from foundry_magics.ops.judge import ANSWER

    outcome.label_failures(lambda pos: list(index[pos]))
    return pd.Series(pd.array(outcome.rows(ANSWER).tolist(), dtype="boolean"), index=index, name=name)


def mask(obj: Any, predicate: str, *, namespace: Mapping[str, Any] | None = None, where: str = "mask()",
         **options: Any) -> Any:
    """One yes/no judgement per distinct row -> a boolean Series on obj.index (NA: failed or not judged)."""
    from foundry_magics.ops.judge import Judge

    name = obj.name if _is_series(obj) else None
    return _run(Judge(predicate, kind="mask", where=where, **options), obj, namespace=namespace,
                convert=lambda outcome: _judged(outcome, obj.index, name))


def filter_rows(obj: Any, predicate: str, *, namespace: Mapping[str, Any] | None = None, where: str = "filter()",
                **options: Any) -> Any:
    """The rows of `obj` judged true (index kept). Rows whose judgement failed are left out, said so
    in one warning line and listed in `fm.last_run().failures`."""
    from foundry_magics.ops.judge import Judge, left_out

    def keep(outcome: Outcome) -> Any:
        judged = _judged(outcome, obj.index)
        kept = obj[judged.fillna(False).to_numpy(dtype=bool)]
        left_out(outcome.report, "filter")
        return kept

    return _run(Judge(predicate, kind="filter", where=where, **options), obj, namespace=namespace, convert=keep)


def topk(obj: Any, instruction: str, k: int = 5, *, namespace: Mapping[str, Any] | None = None,
         where: str = "topk()", **options: Any) -> Any:
    """The k best rows for `instruction`, best first, with a `rank` column (1 = best); index kept."""
    from foundry_magics.ops.topk import TopK

    def ranked(ranking: Any) -> Any:
        import pandas as pd

        ranking.label_failures(lambda pos: list(obj.index[pos]))
        frame = obj.to_frame() if _is_series(obj) else obj
        out = frame.iloc[ranking.positions].copy()
        rank_col = "rank" if "rank" not in out.columns else "foundry_rank"
        out[rank_col] = pd.array(range(1, len(out) + 1), dtype="Int64")
        return out

    return _run(TopK(instruction, k, where=where, **options), obj, namespace=namespace, convert=ranked)


def agg(obj: Any, instruction: str, *, by: Any = None, namespace: Mapping[str, Any] | None = None,
        where: str = "agg()", **options: Any) -> Any:
    """One answer over every row (an `fm.Reply`); with `by=COL`, a Series of str, one per group."""
    from foundry_magics.ops.agg import Agg

    def answer(result: Any) -> Any:
        import pandas as pd

        result.label_failures(lambda pos: list(obj.index[pos]))
        if by is None:
            return result.reply(0)
        index = pd.Index(result.labels, name=by)
        return pd.Series(pd.array(result.texts, dtype="string"), index=index, name="agg")

    return _run(Agg(instruction, by=by, where=where, **options), obj, namespace=namespace, convert=answer)


# ====================================================================== the accessors


def _common(system: Any, model: Any, connection: Any, concurrency: Any, rpm: Any, tpm: Any, cache: Any,
            progress: Any, schema: Any = None) -> dict[str, Any]:
    """The options every accessor method names in its signature, as keyword options."""
    out = dict(system=system, model=model, connection=connection, concurrency=concurrency, rpm=rpm, tpm=tpm,
               cache=cache, progress=progress)
    if schema is not None:
        out["schema"] = schema
    return out


class _Base:
    _who = "df.foundry"  # how messages name the accessor

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def last_run(self) -> RunReport | None:
        """The report of the last run in this process (`fm.last_run()`)."""
        return last_run()


class _Operators:
    """The semantic operators of `df.foundry` and `s.foundry` (ops/judge.py, ops/topk.py, ops/agg.py):
    the same methods on both; in the Series form `{}` is the value."""

    _obj: Any
    _who: str

    def mask(self, predicate: str, system: str | None = None, model: str | None = None, connection: Any = None,
             concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
             cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """One yes/no judgement per distinct row of `predicate` (a template, e.g. "The review mentions
        a delivery problem: {text}") -> a boolean Series on the index; NA where the judgement failed
        (the reason in fm.last_run().failures) or a value is missing. Options as for prompt()."""
        return mask(self._obj, predicate, where=f"{self._who}.mask()",
                    **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def filter(self, predicate: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """The rows judged true by `predicate` (index kept). Rows whose judgement failed are left out:
        a warning line says how many, fm.last_run().failures lists them. Options as for prompt()."""
        return filter_rows(self._obj, predicate, where=f"{self._who}.filter()",
                           **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def topk(self, instruction: str, k: int = 5, system: str | None = None, model: str | None = None,
             connection: Any = None, concurrency: int | None = None, rpm: float | None = None,
             tpm: float | None = None, cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """The k best rows for `instruction` (a template), best first, with a `rank` column (1 = best).
        Every distinct row is scored once, then the best candidates are compared pairwise:
        O(n) requests plus O(k log n). Rows that could not be scored are not ranked and are listed
        in fm.last_run().failures. Options as for prompt() (estimate=True prices the scoring)."""
        return topk(self._obj, instruction, k, where=f"{self._who}.topk()",
                    **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def agg(self, instruction: str, by: Any = None, system: str | None = None, model: str | None = None,
            connection: Any = None, concurrency: int | None = None, rpm: float | None = None,
            tpm: float | None = None, cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """One answer to `instruction` over every row -> an fm.Reply; with by="col", a Series of
        str, one answer per group. Rows are packed into requests that fit the model's context and
        the answers folded until one remains (no row left out). Options as for prompt()
        (max_tokens caps each answer, default 512)."""
        return agg(self._obj, instruction, by=by, where=f"{self._who}.agg()",
                   **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)


class FoundryDataFrameAccessor(_Operators, _Base):
    """`df.foundry`: prompts over the frame's columns."""

    def prompt(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, schema: Any = None, *, images: Any = None,
               **options: Any) -> Any:
        """One request per row, `{column}` filled in: a Series on df.index, or with `schema`
        a DataFrame with a column per field. Rows with a missing value get NA and no request.

        Options (checked before anything is sent): system, model, connection, temperature,
        max_tokens, schema, api ('chat' | 'responses'), concurrency, rpm, tpm, cache, progress,
        images='column' (paths, URLs, bytes or PIL images per row), batch, wait, poll_interval,
        estimate (the fm.Estimate, nothing sent)."""
        return prompt(self._obj, template, images=images, where="df.foundry.prompt()",
                      **_common(system, model, connection, concurrency, rpm, tpm, cache, progress, schema), **options)

    def evaluate(self, gold: Any, op: str = "classify", template: str | None = None, *,
                 prompts: Mapping[str, str] | None = None, models: Any = None, labels: Any = None,
                 schema: Any = None, sample: int | None = None, metric: Any = None, **options: Any) -> Any:
        """Every (prompt, model) over the labelled rows at once, scored against the column `gold`:
        an `fm.Evaluation` (`.table`, `.best`, `.confusion(model)`, `.errors(model)`, `.plot()`).
        op: "classify" (labels=), "mask" (a yes/no condition; gold True/False), "extract" (schema=),
        "prompt" (exact match after normalising, or metric=fn(answer, gold)). Other options as
        for prompt(); concurrency is per (prompt, model), max_cost is for the whole evaluation."""
        from foundry_magics.frames.evaluate import evaluate

        return evaluate(self._obj, gold, op=op, template=template, prompts=prompts, models=models, labels=labels,
                        schema=schema, sample=sample, metric=metric, **options)

    def estimate(self, template: str, *, images: Any = None, **options: Any) -> Any:
        """What `prompt(template, ...)` with the same options would send and cost, as an
        `fm.Estimate` (rows, distinct, cached, to send, input tokens, output cap, cost; with
        batch=True at the Batch API price). Sends nothing."""
        return estimate(self._obj, template, images=images, where="df.foundry.estimate()", **options)

    def search(self, query: str, k: int = 10, column: Any = None, **options: Any) -> Any:
        """The `k` rows whose `column` is most similar to `query`, best first, with a "score"
        column (cosine similarity of embeddings; no chat request). Each text is embedded once and
        cached: searching the column again sends only the new query. Options: model (the
        embeddings deployment), dimensions, connection, cache, progress, concurrency, batch,
        wait, poll_interval, estimate."""
        return search(self._obj, query, k, column, where="df.foundry.search()", **options)

    def similarity(self, a: Any, b: Any = None, *, text: str | None = None, **options: Any) -> Any:
        """Cosine similarity of the embeddings of columns `a` and `b` row by row (or of `a` and
        one `text`): a float64 Series in [-1, 1], NaN where a value is missing. Options as for search()."""
        return similarity(self._obj, a, b, text=text, where="df.foundry.similarity()", **options)

    def join(self, other: Any, predicate: str, *, shortlist: Any = "auto", on: Any = None, **options: Any) -> Any:
        """The pairs of rows of this frame and `other` that the model judges to match `predicate`,
        which names columns as {left.col} and {right.col}: a DataFrame of the left columns then
        the right columns (a name on both sides gets _left / _right), index reset.

        shortlist=K judges each left row only against its K most similar right rows by
        embeddings of `on=(left_col, right_col)` (default: the first column each side of the
        predicate); None judges every pair; "auto" is K=10 when there are more than 10,000
        pairs, else every pair. One yes/no per distinct pair (structured output); pairs that
        could not be judged are left out and listed in fm.last_run().failures.

        Options: those of prompt() (model is the judging model), plus embed_model and
        dimensions for the shortlist's embeddings."""
        return join(self._obj, other, predicate, shortlist=shortlist, on=on, where="df.foundry.join()", **options)


class FoundrySeriesAccessor(_Operators, _Base):
    """`series.foundry`: prompts over one column; `{}` is the value."""

    _who = "s.foundry"

    def prompt(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, schema: Any = None, *, images: Any = None,
               **options: Any) -> Any:
        """One request per value, `{}` filled in: a Series (a DataFrame with `schema`). Options as
        for `df.foundry.prompt`."""
        return prompt(self._obj, template, images=images, where="s.foundry.prompt()",
                      **_common(system, model, connection, concurrency, rpm, tpm, cache, progress, schema), **options)

    def estimate(self, template: str = "{}", *, images: Any = None, **options: Any) -> Any:
        """The `fm.Estimate` of `prompt(template, ...)`; sends nothing. Every other operation
        takes estimate=True too: `s.foundry.summarize(estimate=True)`."""
        return estimate(self._obj, template, images=images, where="s.foundry.estimate()", **options)

    def classify(self, labels: Any, system: str | None = None, model: str | None = None, connection: Any = None,
                 concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                 cache: bool = True, progress: Any = True, *, template: str | None = None, **options: Any) -> Any:
        """Categorical Series with `labels` as categories; NA where the reply is none of them."""
        return classify(self._obj, labels, template=template, where="s.foundry.classify()",
                        **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def extract(self, fields: Any, system: str | None = None, model: str | None = None, connection: Any = None,
                concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                cache: bool = True, progress: Any = True, *, template: str | None = None, **options: Any) -> Any:
        """DataFrame with a column per field of `fields` ({"name": str, "age": int} or a JSON Schema)."""
        return extract(self._obj, fields, template=template, where="s.foundry.extract()",
                       **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)

    def embed(self, model: str | None = None, dimensions: int | None = None, connection: Any = None,
              cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """Series of numpy vectors (None where the value is missing), 2048 texts per request.
        Options: concurrency, batch, wait, poll_interval, estimate."""
        return embed(self._obj, where="s.foundry.embed()", model=model, dimensions=dimensions, connection=connection,
                     cache=cache, progress=progress, **options)

    def similarity(self, text: str, **options: Any) -> Any:
        """Cosine similarity of each value's embedding and `text`'s: a float64 Series in [-1, 1]
        on the Series' index, NaN where a value is missing. No chat request; embeddings cached."""
        return similarity(self._obj, None, text=text, where="s.foundry.similarity()", **options)

    def search(self, query: str, k: int = 10, **options: Any) -> Any:
        """The `k` values most similar to `query`, best first, as a DataFrame with a "score" column."""
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
        """Categorical Series: positive / negative / neutral (NA when unclassifiable)."""
        return sentiment(self._obj, where="s.foundry.sentiment()",
                         **_common(system, model, connection, concurrency, rpm, tpm, cache, progress), **options)


def batch_jobs(limit: int | None = None) -> Any:
    """`fm.batch_jobs()`: the Batch API jobs recorded in this FOUNDRY_MAGICS_HOME, newest first, as a
    DataFrame (id, status, created, rows, requests, completed, failed, connection, model, op, batches)."""
    import pandas as pd

    from foundry_magics.batch_api.table import JOB_COLUMNS, job_rows

    return pd.DataFrame(job_rows(limit), columns=list(JOB_COLUMNS))


def register() -> None:
    """Register `.foundry` on DataFrame and Series (idempotent)."""
    import pandas as pd

    for cls, acc, reg in ((pd.DataFrame, FoundryDataFrameAccessor, pd.api.extensions.register_dataframe_accessor),
                          (pd.Series, FoundrySeriesAccessor, pd.api.extensions.register_series_accessor)):
        current = cls.__dict__.get("foundry")
        if getattr(current, "_accessor", None) is acc:
            continue
        reg("foundry")(acc)
