"""The `.foundry` accessors on pandas DataFrames and Series (the work is in `frames.ops`).

    s   = df.foundry.prompt("Summarize: {text}")                    # Series on df.index
    est = df.foundry.estimate("Summarize: {text}")                  # fm.Estimate: nothing sent
    df.foundry.prompt("Describe: {name}", images="photo")           # a column of paths / URLs / bytes
    out = df.foundry.prompt("...", schema={"label": str, "score": float})   # DataFrame
    df["text"].foundry.prompt("Translate to French: {}")
    df["text"].foundry.classify(["positive", "negative", "neutral"])   # categorical, NA if none
    df["text"].foundry.extract({"name": str, "age": int})             # DataFrame
    df["text"].foundry.embed()                                        # Series of numpy vectors
    df["text"].foundry.summarize(), .translate("French"), .sentiment()

Every call shows progress (`progress=False` to hide it), keeps finished replies in the cache
(`cache=False` to opt out) and leaves its report in `fm.last_run()`. `estimate=True` on any of
them returns the `fm.Estimate` of the run instead, sending nothing. classify, sentiment and
extract send a small output cap, summarize and translate one in proportion to the input
(defaults.py); `max_tokens=N` sets another, `max_tokens=None` sends none.

`batch=True` on any of them (embed included) goes through the Batch API - half the price,
results within 24 h - and waits with progress; `wait=False` returns the `fm.BatchJob` at
once (`job.result()` later gives the same Series / DataFrame), `poll_interval=` sets how
often it is polled (default 60 s). `fm.batch_jobs()` lists the recorded jobs.
"""

from __future__ import annotations

from typing import Any, Mapping

from foundry_magics.frames import ops as frames
from foundry_magics.engine import RunReport, last_run

__all__ = ["FoundryDataFrameAccessor", "FoundrySeriesAccessor", "register", "run_frame", "last_run", "batch_jobs"]


def run_frame(df: Any, template: str, *, out: str, schema: Any = None, system: str | None = None,
              model: str | None = None, connection: Any = None, concurrency: int | None = None,
              rpm: float | None = None, tpm: float | None = None, cache: bool = True, progress: Any = True,
              namespace: Mapping[str, Any] | None = None, **options: Any) -> RunReport:
    """`%%foundry --df DF --out COL`: fill COL (or COL_field per schema field) in place; the report."""
    return frames.run_frame(df, template, out=out, schema=schema, system=system, model=model,
                            connection=connection, concurrency=concurrency, rpm=rpm, tpm=tpm, cache=cache,
                            progress=progress, namespace=namespace, **options)


class _Base:
    def __init__(self, obj: Any) -> None:
        self._obj = obj

    @staticmethod
    def _opts(system: Any, model: Any, connection: Any, concurrency: Any, rpm: Any, tpm: Any, cache: Any,
              progress: Any, extra: dict[str, Any]) -> dict[str, Any]:
        return dict(system=system, model=model, connection=connection, concurrency=concurrency, rpm=rpm, tpm=tpm,
                    cache=cache, progress=progress, **extra)


class FoundryDataFrameAccessor(_Base):
    """`df.foundry`: prompts over the frame's columns."""

    def prompt(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, schema: Any = None, **options: Any) -> Any:
        """One request per row, `{column}` filled in: a Series on df.index, or with `schema`
        a DataFrame with a column per field. Rows with a missing value get NA and no request.
        Options: temperature=, max_tokens=, api='chat'|'responses', images='column' (paths,
        URLs, bytes or PIL images per row), estimate=True (the fm.Estimate, nothing sent)."""
        return frames.prompt(self._obj, template, schema=schema,
                             **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def estimate(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
                 cache: bool = True, schema: Any = None, **options: Any) -> Any:
        """What `prompt(template, ...)` with the same options would send and cost, as an
        `fm.Estimate` (rows, distinct, cached, to send, input tokens, output cap, cost; with
        batch=True at the Batch API price). Sends nothing."""
        return frames.prompt(self._obj, template, schema=schema, estimate=True, system=system, model=model,
                             connection=connection, cache=cache, **options)

    def last_run(self) -> RunReport | None:
        return last_run()


class FoundrySeriesAccessor(_Base):
    """`series.foundry`: prompts over one column; `{}` is the value."""

    def prompt(self, template: str, system: str | None = None, model: str | None = None, connection: Any = None,
               concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
               cache: bool = True, progress: Any = True, schema: Any = None, **options: Any) -> Any:
        return frames.prompt(self._obj, template, schema=schema,
                             **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def estimate(self, template: str = "{}", system: str | None = None, model: str | None = None,
                 connection: Any = None, cache: bool = True, schema: Any = None, **options: Any) -> Any:
        """The `fm.Estimate` of `prompt(template, ...)`; sends nothing. Every other operation
        takes estimate=True too: `s.foundry.summarize(estimate=True)`."""
        return frames.prompt(self._obj, template, schema=schema, estimate=True, system=system, model=model,
                             connection=connection, cache=cache, **options)

    def classify(self, labels: Any, system: str | None = None, model: str | None = None, connection: Any = None,
                 concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                 cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """Categorical Series with `labels` as categories; NA where the reply is none of them."""
        return frames.classify(self._obj, labels,
                               **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def extract(self, fields: Any, system: str | None = None, model: str | None = None, connection: Any = None,
                concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """DataFrame with a column per field of `fields` ({"name": str, "age": int} or a JSON Schema)."""
        return frames.extract(self._obj, fields,
                              **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def embed(self, model: str | None = None, dimensions: int | None = None, connection: Any = None,
              cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """Series of numpy vectors (None where the value is missing), 2048 texts per request."""
        return frames.embed(self._obj, model=model, dimensions=dimensions, connection=connection, cache=cache,
                            progress=progress, **options)

    def summarize(self, system: str | None = None, model: str | None = None, connection: Any = None,
                  concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                  cache: bool = True, progress: Any = True, **options: Any) -> Any:
        return frames.summarize(self._obj,
                                **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def translate(self, lang: str, system: str | None = None, model: str | None = None, connection: Any = None,
                  concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                  cache: bool = True, progress: Any = True, **options: Any) -> Any:
        return frames.translate(self._obj, lang,
                                **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def sentiment(self, system: str | None = None, model: str | None = None, connection: Any = None,
                  concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
                  cache: bool = True, progress: Any = True, **options: Any) -> Any:
        """Categorical Series: positive / negative / neutral (NA when unclassifiable)."""
        return frames.sentiment(self._obj,
                                **self._opts(system, model, connection, concurrency, rpm, tpm, cache, progress, options))

    def last_run(self) -> RunReport | None:
        return last_run()


def batch_jobs(limit: int | None = None) -> Any:
    """`fm.batch_jobs()`: the Batch API jobs recorded in this FOUNDRY_MAGICS_HOME, newest first, as a
    DataFrame (id, status, created, rows, requests, completed, failed, connection, model, op, batches)."""
    import pandas as pd

    from foundry_magics.engine.batch import JOB_COLUMNS, job_rows

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
