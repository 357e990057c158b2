"""Spark DataFrames: the same prompts as `df.foundry.*`, run by Spark across its executors.

    out = sdf.foundry.prompt("Summarize: {text}", output_col="summary")
    out = sdf.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float})
    out = sdf.foundry.classify("text", ["positive", "negative", "neutral"], output_col="label")
    out = sdf.foundry.extract("text", {"name": str, "age": int})          # columns name, age
    out = sdf.foundry.embed("text", output_col="vector")                   # array<float>
    out = sdf.foundry.summarize("text"); sdf.foundry.translate("text", "French", output_col="fr")
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

* Each Spark task runs the pandas engine over its partition, Arrow batch by Arrow batch
  (`mapInArrow`): identical rows make one request, rows with a missing value send nothing,
  retries and 429 handling as in pandas, `concurrency` requests in flight per task
  (default 32), and the cache: a task that Spark retries does not resend what its first
  attempt finished. On a local master the executors share this process's cache.
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

from typing import Any, Mapping, Sequence

from foundry_magics.errors import ConfigurationError
from foundry_magics.frames.spark_errors import foundry_error, readable_errors

__all__ = ["prompt", "classify", "extract", "embed", "summarize", "translate", "sentiment",
           "FoundrySparkAccessor", "register", "foundry_error", "readable_errors"]


def _build(sdf: Any, **kw: Any) -> Any:
    from foundry_magics.frames import spark_errors
    from foundry_magics.frames.spark_job import build

    spark_errors.install()  # the readable block for a job that our error stops (idempotent)
    return build(sdf, **kw)


def prompt(sdf: Any, template: str, output_col: str | None = None, *, system: str | None = None,
           model: str | None = None, connection: Any = None, schema: Any = None, max_tokens: int | None = None,
           temperature: float | None = None, concurrency: int | None = None, rpm: float | None = None,
           tpm: float | None = None, cache: bool = True, api: str | None = None,
           parallelism: int | None = None) -> Any:
    """One request per row with `{column}` filled in -> a lazy DataFrame with `output_col`
    (default "reply"), or with `schema` a column per field (named by the field; `output_col`
    prefixes them: OUT_field), typed string / long / double / boolean / array, then `foundry_error`.

    `concurrency`: requests in flight per Spark task (default 32). `rpm` / `tpm`: budgets for
    the whole job, shared out as rpm / parallelism per task (`parallelism` defaults to the
    session's defaultParallelism, the number of tasks that run at once).
    """
    return _build(sdf, label="prompt", template=template, output_col=output_col, schema=schema, system=system,
                  model=model, connection=connection, max_tokens=max_tokens, temperature=temperature,
                  concurrency=concurrency, rpm=rpm, tpm=tpm, cache=cache, api=api, parallelism=parallelism)


def classify(sdf: Any, column: str, labels: Sequence[Any], output_col: str = "label", *,
             template: str | None = None, **options: Any) -> Any:
    """One of `labels` per value of `column` (as a string); null when the reply names none of
    them, with foundry_error saying so. Options as for prompt() (system, model, connection,
    max_tokens, temperature, concurrency, rpm, tpm, cache, api, parallelism)."""
    from foundry_magics.frames import ops

    labels = [labels] if isinstance(labels, str) else list(dict.fromkeys(labels))
    if len(labels) < 2:
        raise ConfigurationError("classify() needs at least two labels.",
                                 hint="For example classify('text', ['positive', 'negative', 'neutral']).")
    if template is None:
        template = ops.CLASSIFY.replace("{labels}", ops._escape(", ".join(map(str, labels))))
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": [str(x) for x in labels]}},
              "required": ["label"], "additionalProperties": False}
    return _build(sdf, label=options.pop("_label", "classify"), template=template, column=column,
                  output_col=output_col, schema=schema, labels=labels, **_options(options))


def extract(sdf: Any, column: str, fields: Any, output_col: str | None = None, *, template: str | None = None,
            **options: Any) -> Any:
    """Structured fields from each value of `column` ({"name": str, "age": int} or a JSON Schema):
    a column per field with its Spark type (str -> string, int -> long, float -> double,
    bool -> boolean, a list of labels -> string, list[str] -> array<string>, a nested dict -> its
    JSON text). Without `output_col` the columns are named by the fields, with it OUT_field.
    Options as for prompt()."""
    from foundry_magics.frames import ops
    from foundry_magics.rest.schemas import to_json_schema

    js = to_json_schema(fields)
    if template is None:
        template = ops.EXTRACT.replace("{fields}", ops._escape(", ".join((js.get("properties") or {}).keys())))
    return _build(sdf, label="extract", template=template, column=column, output_col=output_col, schema=js,
                  **_options(options))


def embed(sdf: Any, column: str, output_col: str = "vector", *, model: str | None = None,
          dimensions: int | None = None, connection: Any = None, cache: bool = True,
          concurrency: int | None = None, parallelism: int | None = None) -> Any:
    """A vector per value of `column` -> array<float> (null where the value is missing),
    up to 2,048 texts per request."""
    return _build(sdf, label="embed", template="{}", column=column, output_col=output_col, embed=True,
                  model=model, dimensions=dimensions, connection=connection, cache=cache,
                  concurrency=concurrency, parallelism=parallelism)


def summarize(sdf: Any, column: str, output_col: str = "summary", **options: Any) -> Any:
    """A one- or two-sentence summary of each value of `column`. Options as for prompt()."""
    from foundry_magics.frames import ops

    return _build(sdf, label="summarize", template=ops.SUMMARIZE, column=column, output_col=output_col,
                  **_options(options))


def translate(sdf: Any, column: str, lang: str, output_col: str = "translation", **options: Any) -> Any:
    """Each value of `column` translated into `lang`. Options as for prompt()."""
    from foundry_magics.frames import ops

    if not isinstance(lang, str) or not lang.strip():
        raise ConfigurationError("translate() needs a language, e.g. translate('text', 'French').")
    return _build(sdf, label="translate", template=ops.TRANSLATE.replace("{lang}", ops._escape(lang.strip())),
                  column=column, output_col=output_col, **_options(options))


def sentiment(sdf: Any, column: str, output_col: str = "sentiment", **options: Any) -> Any:
    """positive / negative / neutral per value of `column` (null when unclassifiable). Options as for prompt()."""
    from foundry_magics.frames import ops

    return classify(sdf, column, list(ops.SENTIMENT_LABELS), output_col=output_col, template=ops.SENTIMENT,
                    _label="sentiment", **options)


_OPTIONS = ("system", "model", "connection", "max_tokens", "temperature", "concurrency", "rpm", "tpm", "cache",
            "api", "parallelism")


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(f"Unknown option(s): {', '.join(unknown)}.",
                                 hint=f"Options: {', '.join(_OPTIONS)}.")
    return dict(options)


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

    def __repr__(self) -> str:
        return "<sdf.foundry: prompt, classify, extract, embed, summarize, translate, sentiment>"


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
