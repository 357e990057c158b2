"""What runs on a Spark executor: one Spark task's partition through the same engine as pandas.

`PartitionTask` is the function given to `mapInArrow`. It is built on the driver
(`frames.spark_job`) and pickled by Spark, so everything it holds is in `TaskSpec`: the
connection as `Connection.to_dict()` (which never holds a key), the request, the template and
the output columns. Nothing else of the driver travels: no Secret, no client, no session.

On the executor, for each Arrow batch of the partition:

1. the template's columns are read from the batch (as Python values, so an integer stays
   `3` and never becomes `3.0`) and planned by `frames.ops` exactly as a pandas frame is:
   missing values send nothing, identical rows make one request;
2. `engine.run_batch` (or `embed_texts`) sends the distinct requests: retries, 429 handling,
   the adaptive limit, this task's share of rpm/tpm, and the cache, so a task that Spark
   retries does not resend what its first attempt finished;
3. the batch comes back with every input column untouched (Arrow in, Arrow out), then the
   result columns, then `foundry_error`: null on success, else the reason. No row is dropped.

A fatal error (wrong key, unknown deployment, quota block, the first requests all failing)
fails the task with the engine's own `FoundryError`, whose message the driver turns back into
that error (`frames.spark_errors`). A retry of that task in the same worker process fails at
once without sending anything.

pyspark is not imported here except `TaskContext`, inside a function; pandas and pyarrow are
imported on first use.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from foundry_magics.defaults import ENV_HOME

__all__ = ["Output", "TaskSpec", "PartitionTask", "ERROR_COL", "arrow_type", "coerce"]

ERROR_COL = "foundry_error"

# Kinds of result column. Scalars, "array<scalar>", "vector" (array<float>) and "json"
# (a nested object, kept as its JSON text in a string column).
SCALARS = ("string", "long", "double", "boolean")


@dataclass(frozen=True)
class Output:
    """One result column: its name, its kind, and the schema field it holds (None: the reply)."""

    name: str
    kind: str
    field: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """Everything an executor needs, and nothing secret (see the module docstring)."""

    job: str  # identifies this transformation (the fatal-error memo of a worker)
    label: str  # prompt, classify, extract, embed, ...: names the function in the Spark plan
    connection: dict  # Connection.to_dict(): no key, ever
    connection_name: str | None
    template: str
    column: str | None  # the Series form: the column `{}` stands for
    columns: tuple[str, ...]  # the columns the template reads, in order
    outputs: tuple[Output, ...]
    request: Any = None  # engine.RequestSpec (None for embeddings)
    labels: tuple[str, ...] | None = None  # classify
    embed_model: str | None = None
    dimensions: int | None = None
    concurrency: int = 32
    rpm: float | None = None  # this task's share
    tpm: float | None = None
    cache: bool = True
    home: str | None = None  # FOUNDRY_MAGICS_HOME for the cache (local masters: the driver's)
    merge_error: bool = False  # the input already has foundry_error (a chained call): keep it
    error_prefix: str | None = None  # chained calls say which call failed


# ====================================================================== the task


class PartitionTask:
    """`mapInArrow`'s function: Arrow batches in, the same batches with results out."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        # Spark names the node of the plan after the function (`sdf.explain()` shows it).
        self.__name__ = f"foundry_{spec.label}"

    def __repr__(self) -> str:
        return f"<{self.__name__} over {', '.join(self.spec.columns) or 'no column'}>"

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        stage = _stage()
        for batch in batches:
            yield self.run(batch, stage)

    # -- one Arrow batch -------------------------------------------------------------------

    def run(self, batch: Any, stage: Any = None) -> Any:
        import pyarrow as pa

        spec = self.spec
        _check_memo(spec.job, stage)
        n = batch.num_rows
        values = {c: _pylist(batch, c) for c in spec.columns}
        missing = _missing_reasons(values, spec.columns, n)
        if any(m is None for m in missing):
            results, reasons = self._send(values, n, missing, stage)
        else:  # nothing to send: an empty batch, or every row misses a value
            results = {o.name: [None] * n for o in spec.outputs}
            reasons = missing
        arrays, names = [], []
        for i, name in enumerate(batch.schema.names):
            if name == ERROR_COL and spec.merge_error:
                continue
            arrays.append(batch.column(i))
            names.append(name)
        for o in spec.outputs:
            arrays.append(_to_arrow(results[o.name], o.kind))
            names.append(o.name)
        arrays.append(pa.array(self._error_texts(batch, reasons), type=pa.string()))
        names.append(ERROR_COL)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _error_texts(self, batch: Any, reasons: list[Any]) -> list[Any]:
        spec = self.spec
        if spec.error_prefix:
            reasons = [None if r is None else f"{spec.error_prefix}: {r}" for r in reasons]
        if not spec.merge_error:
            return reasons
        before = batch.column(batch.schema.get_field_index(ERROR_COL)).to_pylist()
        return [a if b is None else (b if a is None else f"{a}; {b}") for a, b in zip(before, reasons)]

    def _send(self, values: dict[str, list], n: int, missing: list[Any],
              stage: Any) -> tuple[dict[str, list], list[Any]]:
        """Plan, send, post-process: per-row results by output column, and per-row reasons."""
        import pandas as pd

        from foundry_magics.frames import ops

        spec = self.spec
        if spec.home:
            os.environ[ENV_HOME] = spec.home  # a Python worker runs one task at a time
        if spec.column is not None:
            obj = pd.Series(values[spec.column], dtype=object, name=spec.column)
        else:
            obj = pd.DataFrame({c: pd.Series(values[c], dtype=object) for c in spec.columns},
                               index=pd.RangeIndex(n))
        plan = ops._plan(obj, spec.template, None)
        result = self._engine(plan)
        if result.error is not None:
            _remember(spec.job, stage, result.error)
            raise result.error
        per_unique, bad = self._outputs(plan, result)
        errors: list[Any] = [None] * plan.size
        for i in range(plan.size):
            reason = result.errors.get(i)
            if reason is None and result.texts[i] is None:  # defensive: neither a reply nor a reason
                reason = "no result (the request was not sent)"
            if i in bad:
                reason = bad[i] if reason is None else f"{reason}; {bad[i]}"
            errors[i] = reason
        rows = {name: plan.spread(vals).tolist() for name, vals in per_unique.items()}
        row_errors = plan.spread(errors).tolist()
        reasons = [(missing[r] or "missing value (nothing was sent)") if code < 0 else row_errors[r]
                   for r, code in enumerate(plan.codes.tolist())]
        return rows, reasons

    def _engine(self, plan: Any) -> Any:
        from foundry_magics import engine
        from foundry_magics.defaults import EMBED_CONCURRENCY

        spec = self.spec
        conn = self._connection()
        try:
            if spec.request is None:
                texts = plan.render(range(0, plan.size))
                return engine.embed_texts(texts, connection=conn, model=spec.embed_model,
                                          dimensions=spec.dimensions, cache=spec.cache, progress=False,
                                          concurrency=min(spec.concurrency or EMBED_CONCURRENCY, 4),  # as pandas
                                          weights=plan.weights, rows=plan.n, na_rows=plan.na_rows,
                                          label=spec.label)
            return engine.run_batch(plan.batch(), spec.request, connection=conn, concurrency=spec.concurrency,
                                    rpm=spec.rpm, tpm=spec.tpm, cache=spec.cache, progress=False, label=spec.label)
        except Exception as exc:
            _executor_key_error(exc, conn)
            raise

    def _connection(self) -> Any:
        from foundry_magics.connections.connection import Connection

        return Connection(**self.spec.connection, name=self.spec.connection_name, source="spark")

    def _outputs(self, plan: Any, result: Any) -> tuple[dict[str, list], dict[int, str]]:
        """Per-distinct values for each output column, and reasons for replies that did not fit."""
        from foundry_magics.frames import ops

        spec = self.spec
        texts = result.texts
        bad: dict[int, str] = {}
        if spec.labels is not None:  # classify: the label the reply names
            out = spec.outputs[0]
            chosen: list[Any] = [None] * plan.size
            for i, text in enumerate(texts):
                if text is None:
                    continue
                lab = ops._match_label(text, list(spec.labels))
                if lab is ops._MISSING:
                    bad[i] = f"the reply is none of the labels: {text[:80]!r}"
                else:
                    chosen[i] = str(lab)
            return {out.name: chosen}, bad
        fields = [o for o in spec.outputs if o.field is not None]
        if not fields:  # the reply itself (text, or a vector)
            return {spec.outputs[0].name: list(texts)}, bad
        cols, bad = ops._json_fields(plan, result, spec.request.schema)
        per_unique: dict[str, list] = {}
        for o in fields:
            raw = cols.get(o.field) or [None] * plan.size
            vals: list[Any] = []
            for i, v in enumerate(raw):
                if i in bad or v is None:
                    vals.append(None)
                    continue
                value, problem = coerce(v, o.kind)
                if problem:
                    note = f"field {o.field!r}: {problem}"
                    bad[i] = f"{bad[i]}; {note}" if i in bad else note
                vals.append(value)
            per_unique[o.name] = vals
        return per_unique, bad


# ====================================================================== values


def _pylist(batch: Any, column: str) -> list[Any]:
    return batch.column(batch.schema.get_field_index(column)).to_pylist()


def _missing_reasons(values: dict[str, list], columns: Sequence[str], n: int) -> list[Any]:
    """Per row: "missing value in column 'x'" for the first used column that is null, else None."""
    out: list[Any] = [None] * n
    for c in reversed(columns):  # the first column in template order wins
        reason = f"missing value in column {c!r} (nothing was sent)"
        for r, v in enumerate(values[c]):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out[r] = reason
    return out


def arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind.startswith("array<"):
        return pa.list_(arrow_type(kind[6:-1]))
    return {"string": pa.string(), "long": pa.int64(), "double": pa.float64(), "boolean": pa.bool_(),
            "json": pa.string(), "vector": pa.list_(pa.float32()), "float": pa.float32()}[kind]


def _to_arrow(values: list[Any], kind: str) -> Any:
    import pyarrow as pa

    if kind == "vector":
        return _vectors(values)
    return pa.array(values, type=arrow_type(kind))


def _vectors(values: list[Any]) -> Any:
    """numpy float32 vectors (None where missing) -> list<float32>, without a Python loop per number."""
    import numpy as np
    import pyarrow as pa

    lengths = np.array([0 if v is None else len(v) for v in values], dtype=np.int32)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.asarray(v, dtype=np.float32) for v in values if v is not None]
    flat = np.concatenate(present) if present else np.zeros(0, dtype=np.float32)
    mask = pa.array([v is None for v in values], type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pa.array(flat, type=pa.float32()),
                                    mask=mask)


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def coerce(value: Any, kind: str) -> tuple[Any, str | None]:
    """A parsed JSON value as the column's type: (value, None), or (None, what was wrong)."""
    if value is None:
        return None, None
    if kind == "string":
        return (value, None) if isinstance(value, str) else (json.dumps(value, ensure_ascii=False), None)
    if kind == "json":
        return json.dumps(value, ensure_ascii=False), None
    if kind == "long":
        if isinstance(value, bool):
            return None, f"expected an integer, got {value!r}"
        if isinstance(value, int):
            return (value, None) if -2**63 <= value < 2**63 else (None, f"{value} does not fit a long")
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        if isinstance(value, str):
            try:
                f = float(value.strip())
            except ValueError:
                return None, f"expected an integer, got {value[:40]!r}"
            if f.is_integer():
                return int(f), None
        return None, f"expected an integer, got {str(value)[:40]!r}"
    if kind == "double":
        if isinstance(value, bool):
            return None, f"expected a number, got {value!r}"
        if isinstance(value, (int, float)):
            return float(value), None
        if isinstance(value, str):
            try:
                return float(value.strip()), None
            except ValueError:
                pass
        return None, f"expected a number, got {str(value)[:40]!r}"
    if kind == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, f"expected true or false, got {str(value)[:40]!r}"
    if kind.startswith("array<"):
        if not isinstance(value, list):
            return None, f"expected a list, got {str(value)[:40]!r}"
        item_kind = kind[6:-1]
        items = []
        for v in value:
            item, problem = coerce(v, item_kind)
            if problem:
                return None, f"list item: {problem}"
            items.append(item)
        return items, None
    raise ValueError(f"unknown column kind {kind!r}")  # pragma: no cover - the driver builds the kinds


# ====================================================================== faults


def _stage() -> Any:
    """The stage id of the running Spark task; None outside Spark."""
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - executors always have pyspark
        return None
    ctx = TaskContext.get()
    return None if ctx is None else ctx.stageId()


def _memo_path(job: str, stage: Any) -> Any:
    import tempfile
    from pathlib import Path

    return Path(tempfile.gettempdir()) / "foundry-magics-spark" / f"{job}-{stage}.stop"


def _remember(job: str, stage: Any, exc: BaseException) -> None:
    """Note on this machine that a task of (job, stage) stopped on `exc`. A file, because PySpark
    ends the worker process that raised: the retry runs in a new one. Our errors hold no secret."""
    if stage is None:
        return
    path = _memo_path(job, stage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _forget_old(path.parent)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"class": type(exc).__name__, "text": str(exc)}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # best effort: without it a retry meets the same error after one request
        pass


def _forget_old(folder: Any, age: float = 86_400.0) -> None:
    import time

    now = time.time()
    for old in folder.glob("*.stop"):
        try:
            if now - old.stat().st_mtime > age:
                old.unlink()
        except OSError:
            pass


def _check_memo(job: str, stage: Any) -> None:
    """A task of a stage that already met a fatal error on this machine fails at once, sending
    nothing: a retry by Spark (spark.task.maxFailures) would only meet the same wrong key or
    exhausted quota."""
    if stage is None:
        return
    try:
        data = json.loads(_memo_path(job, stage).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    from foundry_magics import errors
    from foundry_magics.frames.spark_errors import _rebuild

    cls = getattr(errors, str(data.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.FoundryError)):
        cls = errors.FoundryError
    raise _rebuild(cls, str(data.get("text", "")))


def _executor_key_error(exc: BaseException, conn: Any) -> None:
    """A key variable missing on the executor: say so in Spark's terms (and raise that)."""
    from foundry_magics.errors import MissingKeyError

    if not isinstance(exc, MissingKeyError) or not conn.api_key_env:
        return
    var = conn.api_key_env
    raise MissingKeyError(
        f"No API key on the Spark executor: the environment variable {var} is not set there.",
        hint=(f"Give the executors the variable: spark.executorEnv.{var} when the Spark session starts, or "
              f"the cluster's environment variables (Databricks: {var}={{{{secrets/SCOPE/NAME}}}}); "
              "or connect with auth='entra' (each executor uses its own identity)."),
    ) from None
