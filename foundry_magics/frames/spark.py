"""Spark DataFrames: the same prompts as `df.foundry.*`, run by Spark across its executors.

    out = sdf.foundry.prompt("Summarize: {text}", output_col="summary")
    out = sdf.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float})
    out = sdf.foundry.classify("text", ["positive", "negative", "neutral"], output_col="label")
    out = sdf.foundry.extract("text", {"name": str, "age": int})          # columns name, age
    out = sdf.foundry.embed("text", output_col="vector")                   # array<float>
    out = sdf.foundry.summarize("text"); sdf.foundry.translate("text", "French", output_col="fr")
    out = sdf.foundry.similarity("text", "title")                          # double: cosine of embeddings
    out = sdf.foundry.similarity("text", "delivery was late")              # a column against one text
    out = sdf.foundry.mask("Asks for a 'refund': {text}")                  # boolean column "mask"
    kept = sdf.foundry.filter("Asks for a 'refund': {text}")               # the rows judged true
    fm.spark.prompt(sdf, "...", output_col=...)                            # the same, as functions
    out.write.parquet(path)                                                # ordinary Spark from here

`sdf.foundry` appears once `foundry_magics` and pyspark are both imported, in any order
(`frames.hook`); pyspark is never imported by `import foundry_magics`. The property is
attached to `pyspark.sql.dataframe.DataFrame`, the base class of classic and Spark Connect
DataFrames alike (PySpark has no accessor API).

Every call is a lazy transformation returning a new DataFrame: all input columns, then the
result column(s), then `foundry_error` (null on success, else the reason; no row is ever
dropped). Calling on a result again (`.foundry.classify(...)` after `.foundry.prompt(...)`)
keeps one `foundry_error` holding both calls' reasons.

* The driver builds the same core operation as pandas (`ops.operations`) from the arguments,
  so an option means the same and a bad one is the same `ConfigurationError`, before any job.
  Spark's own options: `output_col`, `parallelism`.
* Each Spark task plans each Arrow batch of its partition with that operation (`mapInArrow`,
  no pandas on the way) and runs it online through the engine: identical rows make one
  request, rows with a missing value send nothing, retries and 429 handling as in pandas,
  `concurrency` requests in flight per task (default 32), and the cache: a task that Spark
  retries does not resend what its first attempt finished. On a local master the executors
  share this process's cache. Their usage reaches `fm.usage()` (`frames.spark_usage`).
* `estimate=True` / `sdf.foundry.estimate(...)`: the `fm.Estimate`, counted by Spark
  (`frames.spark_estimate`).
* `batch=True`: the Batch API (`frames.spark_batch`). Unlike the online mode the call is
  eager - the executors build and upload the input files (an action), the driver creates and
  records the job and, with wait=True (default), waits for it - and returns the same lazy
  DataFrame, its replies read from the cache; wait=False returns the `fm.BatchJob`, whose
  `result()` is that DataFrame. Re-running re-attaches to a pending job; cached rows are not
  submitted. Needs a local[...] master (the executors share the driver's cache).
* `rpm` / `tpm` are budgets for the whole job: each task gets `rpm / parallelism`, where
  `parallelism` is how many tasks run at once (default: the session's defaultParallelism).
* The connection reaches executors as `Connection.to_dict()`: never a key. Executors read
  the key from the variable the connection names, or use Entra ID there. A key that exists
  only in this process (pasted into the picker) is refused before the job, with the fix.
* A failed row is a `foundry_error`. A fatal error (wrong key, unknown deployment, quota
  block) fails the job with our message: in a notebook it shows as one readable block;
  elsewhere `readable_errors()` / `foundry_error(exc)` turn Spark's exception back into ours.
"""

from __future__ import annotations

from typing import Any, Sequence

from foundry_magics.frames.spark_errors import foundry_error, readable_errors

__all__ = ["prompt", "classify", "extract", "embed", "summarize", "translate", "sentiment", "estimate", "similarity",
           "mask", "filter", "FoundrySparkAccessor", "register", "foundry_error", "readable_errors"]


def _run(sdf: Any, op: Any, *, column: str | None = None, output_col: str | None = None,
         parallelism: int | None = None, images: str | None = None) -> Any:
    """`op` over `sdf` in the mode its options ask for: the lazy DataFrame (online), the
    `fm.Estimate` (estimate=True), the Spark DataFrame or `fm.BatchJob` (batch=True)."""
    from foundry_magics.frames import spark_errors

    spark_errors.install()  # the readable block for a job that our error stops (idempotent)
    if op.estimate:
        from foundry_magics.frames.spark_estimate import estimate as spark_estimate

        return spark_estimate(sdf, op, column=column, images=images)
    if op.batch:
        from foundry_magics.frames.spark_batch import run as spark_batch

        if op.options.get("max_cost") is not None:  # the executors write the lines: no upper bound before submitting
            from foundry_magics.errors import ConfigurationError

            raise ConfigurationError(f"{op.where}: max_cost does not run with batch=True on Spark yet; nothing was "
                                     "submitted.",
                                     hint="Price the job first with sdf.foundry.estimate(...), or drop batch=True: "
                                          "online, each task gets its share of max_cost.")

        if op.options.get("pack") not in (None, 1):  # Spark writes its lines on the executors, one row each
            from foundry_magics.errors import ConfigurationError

            raise ConfigurationError(f"{op.where} cannot pack rows into Batch API lines on Spark yet "
                                     f"(pack={op.options['pack']!r} with batch=True).",
                                     hint="Leave pack= out with batch=True on Spark, or drop batch=True to pack "
                                          "the rows online.")

        return spark_batch(sdf, op, column=column, output_col=output_col, parallelism=parallelism, images=images)
    from foundry_magics.frames.spark_job import build

    return build(sdf, op, column=column, output_col=output_col, parallelism=parallelism, images=images)


def _where(name: str) -> str:
    return f"sdf.foundry.{name}()"


def prompt(sdf: Any, template: str, output_col: str | None = None, *, parallelism: int | None = None,
           images: str | None = None, **options: Any) -> Any:
    """One request per row with `{column}` filled in -> a lazy DataFrame with `output_col`
    (default "reply"), or with `schema` a column per field (named by the field; `output_col`
    prefixes them: OUT_field), typed string / long / double / boolean / array, then `foundry_error`.

    Options, checked as everywhere (`ops.options`): system, model, connection, temperature,
    max_tokens, schema, api, concurrency (requests in flight per Spark task, default 32),
    rpm / tpm (budgets for the whole job, shared out as rpm / parallelism per task;
    `parallelism` defaults to the session's defaultParallelism), cache, progress (accepted;
    Spark shows its own), images='column', batch (the Batch API: eager, see frames.spark_batch), wait, poll_interval,
    estimate (the `fm.Estimate`, counted by Spark, nothing sent).
    """
    from foundry_magics.ops.operations import Prompt

    op = Prompt(template, where=_where("prompt"), **options)
    return _run(sdf, op, output_col=output_col, parallelism=parallelism, images=images)


def estimate(sdf: Any, template: str, *, column: str | None = None, images: str | None = None,
             **options: Any) -> Any:
    """The `fm.Estimate` of `prompt(sdf, template, **options)` (with `column`, of the Series
    form over that column): computed by Spark on the executors (distinct requests, cache hits,
    input tokens), only the totals come back; nothing is sent."""
    from foundry_magics.ops.operations import Prompt

    op = Prompt(template, where=_where("estimate"), estimate=True, **options)
    return _run(sdf, op, column=column, images=images)


def classify(sdf: Any, column: str, labels: Sequence[Any], output_col: str = "label", *,
             template: str | None = None, parallelism: int | None = None, images: str | None = None,
             **options: Any) -> Any:
    """One of `labels` per value of `column` (as a string); null when the reply names none of
    them, with foundry_error saying so. Options as for prompt()."""
    from foundry_magics.ops.operations import Classify

    op = Classify(labels, template=template, where=_where("classify"), **options)
    return _run(sdf, op, column=column, output_col=output_col, parallelism=parallelism, images=images)


def extract(sdf: Any, column: str, fields: Any, output_col: str | None = None, *, template: str | None = None,
            parallelism: int | None = None, images: str | None = None, **options: Any) -> Any:
    """Structured fields from each value of `column` ({"name": str, "age": int} or a JSON Schema):
    a column per field with its Spark type (str -> string, int -> long, float -> double,
    bool -> boolean, a list of labels -> string, list[str] -> array<string>, a nested dict -> its
    JSON text). Without `output_col` the columns are named by the fields, with it OUT_field.
    Options as for prompt()."""
    from foundry_magics.ops.operations import Extract

    op = Extract(fields, template=template, where=_where("extract"), **options)
    return _run(sdf, op, column=column, output_col=output_col, parallelism=parallelism, images=images)


def embed(sdf: Any, column: str, output_col: str = "vector", *, parallelism: int | None = None,
          **options: Any) -> Any:
    """A vector per value of `column` -> array<float> (null where the value is missing),
    up to 2,048 texts per request. Options: model, dimensions, connection, cache, concurrency,
    progress, batch, wait, poll_interval, estimate."""
    from foundry_magics.ops.operations import Embed

    op = Embed(where=_where("embed"), **options)
    return _run(sdf, op, column=column, output_col=output_col, parallelism=parallelism)


def summarize(sdf: Any, column: str, output_col: str = "summary", *, parallelism: int | None = None,
              **options: Any) -> Any:
    """A one- or two-sentence summary of each value of `column`. Options as for prompt()."""
    from foundry_magics.ops.operations import Summarize

    op = Summarize(where=_where("summarize"), **options)
    return _run(sdf, op, column=column, output_col=output_col, parallelism=parallelism)


def translate(sdf: Any, column: str, lang: str, output_col: str = "translation", *, parallelism: int | None = None,
              **options: Any) -> Any:
    """Each value of `column` translated into `lang`. Options as for prompt()."""
    from foundry_magics.ops.operations import Translate

    op = Translate(lang, where=_where("translate"), **options)
    return _run(sdf, op, column=column, output_col=output_col, parallelism=parallelism)


def sentiment(sdf: Any, column: str, output_col: str = "sentiment", *, parallelism: int | None = None,
              **options: Any) -> Any:
    """positive / negative / neutral per value of `column` (null when unclassifiable). Options as for prompt()."""
    from foundry_magics.ops.operations import Sentiment

    op = Sentiment(where=_where("sentiment"), **options)
    return _run(sdf, op, column=column, output_col=output_col, parallelism=parallelism)


def similarity(sdf: Any, column: str, other: str | None = None, output_col: str = "similarity", *,
               text: str | None = None, parallelism: int | None = None, **options: Any) -> Any:
    """Cosine similarity of the embeddings of `column` and `other` row by row -> a lazy
    DataFrame with `output_col` (double in [-1, 1], null where a value is missing) and
    foundry_error. `other` is a column of `sdf`, or else one text every row is compared with
    (`text=` says it is a text even when a column has that name). No chat request: each task
    embeds the distinct texts of its batches (cached per text) and compares them in numpy.
    Options: model (the embeddings deployment), dimensions, connection, cache, concurrency, progress."""
    from foundry_magics.errors import ConfigurationError
    from foundry_magics.ops.search import Similarity

    if text is None and other is not None and other not in sdf.columns:
        other, text = None, other
    if text is None and other is None:
        raise ConfigurationError("similarity() compares a column with another column or with one text.",
                                 hint='For example sdf.foundry.similarity("text", "title") or '
                                      'sdf.foundry.similarity("text", "delivery was late").')
    op = Similarity(column, other, text=text, where=_where("similarity"), **options)
    if op.estimate:
        raise ConfigurationError("estimate=True is not available for sdf.foundry.similarity() yet; nothing was sent.",
                                 hint="Embeddings are cheap: about one request per 2,048 distinct texts.")
    return _run(sdf, op, output_col=output_col, parallelism=parallelism)


def mask(sdf: Any, predicate: str, output_col: str = "mask", *, parallelism: int | None = None,
         **options: Any) -> Any:
    """One yes/no judgement per distinct row of `predicate` (a template over the columns) -> a lazy
    DataFrame with a boolean `output_col` (null where the judgement failed or a value is missing,
    the reason in foundry_error). Options as for prompt()."""
    from foundry_magics.ops.judge import Judge

    op = Judge(predicate, kind="mask", where=_where("mask"), **options)
    return _run(sdf, op, output_col=output_col, parallelism=parallelism)


def filter(sdf: Any, predicate: str, *, parallelism: int | None = None, **options: Any) -> Any:  # noqa: A001
    """The rows judged true by `predicate`, lazily: the input columns, then `foundry_error` (null on
    these rows unless an earlier call put a reason there). A row whose judgement failed is left
    out, as are rows with a missing value; Spark is lazy, so nothing is counted here:
    `sdf.foundry.mask(...).where("foundry_error IS NOT NULL")` lists them with the reason.
    Options as for prompt(); estimate=True gives the `fm.Estimate`."""
    from foundry_magics.frames.spark_task import ERROR_COL

    column = "foundry_mask"
    while column in sdf.columns:
        column = "_" + column
    out = mask(sdf, predicate, output_col=column, parallelism=parallelism, **options)
    if not hasattr(out, "where"):  # the fm.Estimate
        return out
    from pyspark.sql import functions as F

    kept = out.where(F.col(column)).drop(column)
    return kept.select(*[c for c in kept.columns if c != ERROR_COL], ERROR_COL)


# ====================================================================== sdf.foundry


def _method(fn: Any) -> Any:
    """`fn(sdf, ...)` as a method of the accessor, with fn's name, docstring and signature."""
    import inspect

    def method(self: "FoundrySparkAccessor", *args: Any, **kwargs: Any) -> Any:
        return fn(self._sdf, *args, **kwargs)

    sig = inspect.signature(fn)
    me = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    method.__signature__ = sig.replace(parameters=[me, *list(sig.parameters.values())[1:]])  # type: ignore[attr-defined]
    method.__name__ = method.__qualname__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


class FoundrySparkAccessor:
    """`sdf.foundry`: the functions of `fm.spark` (`foundry_magics.frames.spark`) with `sdf` filled in."""

    def __init__(self, sdf: Any) -> None:
        self._sdf = sdf

    prompt = _method(prompt)
    classify = _method(classify)
    extract = _method(extract)
    embed = _method(embed)
    summarize = _method(summarize)
    translate = _method(translate)
    sentiment = _method(sentiment)
    estimate = _method(estimate)
    similarity = _method(similarity)
    mask = _method(mask)
    filter = _method(filter)

    def __repr__(self) -> str:
        return ("<sdf.foundry: prompt, classify, extract, embed, summarize, translate, sentiment, estimate, "
                "similarity, mask, filter>")


class _AccessorProperty:
    """`DataFrame.foundry`: a fresh accessor per access (a DataFrame is immutable anyway)."""

    _accessor = FoundrySparkAccessor

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return FoundrySparkAccessor
        return FoundrySparkAccessor(obj)


def register() -> None:
    """Attach `.foundry` to PySpark DataFrames (idempotent); pyspark must already be imported.

    Patched: `pyspark.sql.dataframe.DataFrame`, the common base of the classic and the Spark
    Connect DataFrame in PySpark 4, and - should an older layout define it apart - the Spark
    Connect class when it is loaded. An unrelated `foundry` attribute is left alone.
    """
    import logging
    import sys

    from foundry_magics.frames import spark_errors

    for modname in ("pyspark.sql.dataframe", "pyspark.sql.classic.dataframe", "pyspark.sql.connect.dataframe"):
        mod = sys.modules.get(modname)
        cls = getattr(mod, "DataFrame", None) if mod is not None else None
        if cls is None:
            continue
        current = _raw(cls)
        if isinstance(current, _AccessorProperty):
            continue
        if current is not None:
            logging.getLogger("foundry_magics").warning("%s.%s already has a 'foundry' attribute: not replaced",
                                                        cls.__module__, cls.__name__)
            continue
        cls.foundry = _AccessorProperty()
    spark_errors.install()


def _raw(cls: type) -> Any:
    for klass in cls.__mro__:
        if "foundry" in klass.__dict__:
            return klass.__dict__["foundry"]
    return None
