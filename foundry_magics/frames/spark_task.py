"""What runs on a Spark executor: one Spark task's partition through the operation core.

`PartitionTask` is the function given to `mapInArrow`. It is built on the driver
(`frames.spark_job`) and pickled by Spark, so everything it holds is in `TaskSpec`: the core
`Operation` the driver built from the user's arguments (options checked there, once), with
its connection replaced by `Connection.to_dict()` (which never holds a key), and the output
columns. Nothing else of the driver travels: no Secret, no client, no session.

On the executor, for each Arrow batch of the partition:

1. the batch's columns become the operation's `Rows` as they are (Arrow arrays: no pandas
   on the way) and `Operation.plan` plans them exactly as a pandas frame is planned: missing
   values send nothing, identical rows make one request;
2. `Operation.run` sends the distinct requests online through the engine: retries, 429
   handling, the adaptive limit, this task's share of rpm/tpm, and the cache, so a task that
   Spark retries does not resend what its first attempt finished; the operation reads the
   replies (`Operation.outcome`: labels, JSON fields);
3. the batch comes back with every input column untouched (Arrow in, Arrow out), then the
   result columns (typed: `coerce`), then `foundry_error`: null on success, else the reason.
   No row is dropped. The run's usage goes back to the driver (`frames.spark_usage`).

A fatal error (wrong key, unknown deployment, quota block, the first requests all failing)
fails the task with the engine's own `FoundryError`, whose message the driver turns back into
that error (`frames.spark_errors`). A retry of that task in the same worker process fails at
once without sending anything.

pyspark is not imported here except `TaskContext`, inside a function; pyarrow and numpy are
imported on first use.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from foundry_magics.defaults import ENV_HOME

__all__ = ["Output", "TaskSpec", "PartitionTask", "ERROR_COL", "arrow_type", "coerce", "batch_rows",
           "missing_reasons", "connection_of"]

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
    op: Any  # the core Operation (ops.operations), online, without its connection or a display
    column: str | None  # the Series form: the column `{}` stands for
    columns: tuple[str, ...]  # the columns the template reads, in order
    outputs: tuple[Output, ...] = ()
    images: str | None = None  # the column holding each row's images (paths, URLs, bytes)
    home: str | None = None  # FOUNDRY_MAGICS_HOME for the cache (local masters: the driver's)
    merge_error: bool = False  # the input already has foundry_error (a chained call): keep it
    error_prefix: str | None = None  # chained calls say which call failed
    usage: Any = None  # a Spark accumulator: each run's usage, for the driver's fm.usage()
    budget: Any = None  # max_cost: (this task's share, the model's Price, the model), priced on the driver


def connection_of(spec: TaskSpec) -> Any:
    """The connection, rebuilt on the executor from its dict form (the key, if any, is read
    there from the variable it names, or Entra ID is used there)."""
    from foundry_magics.connections.connection import Connection

    return Connection(**spec.connection, name=spec.connection_name, source="spark")


def batch_rows(spec: TaskSpec, batch: Any) -> Any:
    """An Arrow record batch as the operation's input (`ops.Rows`): its columns as they are."""
    from foundry_magics.ops.operations import VALUE, Rows

    def column(key: Any) -> Any:
        name = spec.column if key == VALUE else key
        return batch.column(batch.schema.get_field_index(name))

    images = None
    if spec.images is not None:
        images = batch.column(batch.schema.get_field_index(spec.images)).to_pylist()
    if spec.column is not None:
        return Rows(names=[spec.column], n=batch.num_rows, column=column, series=True, series_name=spec.column,
                    images=images)
    return Rows(names=list(batch.schema.names), n=batch.num_rows, column=column, images=images)


# ====================================================================== the task


class PartitionTask:
    """`mapInArrow`'s function: Arrow batches in, the same batches with results out."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        # Spark names the node of the plan after the function (`sdf.explain()` shows it).
        self.__name__ = f"foundry_{spec.label}"
        self._op: Any = None

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "__name__": self.__name__, "_op": None}

    def __repr__(self) -> str:
        return f"<{self.__name__} over {', '.join(self.spec.columns) or 'no column'}>"

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        stage = _stage()
        for batch in batches:
            yield self.run(batch, stage)

    def operation(self) -> Any:
        """This task's copy of the operation, with the connection rebuilt here, progress off."""
        if self._op is None:
            spec = self.spec
            if spec.home:
                os.environ[ENV_HOME] = spec.home  # a Python worker runs one task at a time
            op = copy.copy(spec.op)
            op.options = {**spec.op.options, "connection": connection_of(spec), "progress": False}
            if spec.budget is not None:  # one budget for every Arrow batch of this task: its share of max_cost
                from foundry_magics.engine.budget import Budget

                share, price, model = spec.budget
                op.spend = Budget(share, price, model=model)
            self._op = op
        return self._op

    # -- one Arrow batch -------------------------------------------------------------------

    def run(self, batch: Any, stage: Any = None) -> Any:
        import pyarrow as pa

        spec = self.spec
        _check_memo(spec.job, stage)
        op = self.operation()
        plan = op.plan(batch_rows(spec, batch))
        if plan.size:
            results, reasons = self._send(op, plan, stage)
        else:  # nothing to send: an empty batch, or every row misses a value
            results, reasons = self._columns(plan, {}, {})
        arrays, names = [], []
        for i, name in enumerate(batch.schema.names):
            if name == ERROR_COL and spec.merge_error:
                continue
            arrays.append(batch.column(i))
            names.append(name)
        for o in spec.outputs:
            arrays.append(results[o.name])
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

    def _send(self, op: Any, plan: Any, stage: Any) -> tuple[dict[str, Any], list[Any]]:
        """Run the plan online through the operation; per output column an Arrow array, and per-row reasons."""
        spec = self.spec
        got: dict[str, Any] = {}

        def convert(outcome: Any) -> Any:
            from foundry_magics.frames.spark_usage import report_usage

            report_usage(spec.usage, outcome.report)
            error = outcome.result.error
            if error is not None:
                _remember(spec.job, stage, error)
                raise error
            got["columns"] = self._columns(plan, outcome.values, outcome.errors, outcome.result.texts)
            return None

        try:
            op.run(plan, convert, label=spec.label)
        except Exception as exc:
            _executor_key_error(exc, op.options.get("connection"))
            raise
        return got["columns"]

    def _columns(self, plan: Any, values: dict, errors: dict[int, str],
                 texts: Sequence[Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
        """Per-distinct values -> a typed Arrow array per output column; per-row reasons."""
        import pyarrow as pa

        spec = self.spec
        errors = dict(errors)
        if texts is not None:
            for i, text in enumerate(texts):
                if text is None and i not in errors:  # defensive: neither a reply nor a reason
                    errors[i] = "no result (the request was not sent)"
        out: dict[str, Any] = {}
        for o in spec.outputs:
            raw = list(values.get(o.field if o.field is not None else None) or [None] * plan.size)
            if o.kind == "vector":
                out[o.name] = _vectors(plan.spread(raw).tolist())
                continue
            if o.field is not None:
                typed = []
                for i, v in enumerate(raw):
                    value, problem = coerce(v, o.kind)
                    if problem:
                        note = f"field {o.field!r}: {problem}"
                        errors[i] = f"{errors[i]}; {note}" if i in errors else note
                    typed.append(value)
                raw = typed
            elif o.kind == "string":
                raw = [None if v is None else str(v) for v in raw]  # labels as given (numbers too)
            out[o.name] = plan.spread_arrow(pa.array(raw, type=arrow_type(o.kind)))
        per_row = plan.spread([errors.get(i) for i in range(plan.size)])
        missing = None
        reasons: list[Any] = per_row.tolist()
        for r in (plan.codes < 0).nonzero()[0].tolist():
            reason = plan.skipped.get(r)
            if reason is None:
                if missing is None:
                    missing = missing_reasons(plan, spec.columns)
                reason = missing[r] or "missing value (nothing was sent)"
            reasons[r] = reason
        return out, reasons


# ====================================================================== values


def missing_reasons(plan: Any, columns: Sequence[str]) -> list[Any]:
    """Per row: "missing value in column 'x'" for the first column the template reads that is
    null (or NaN) there, else None."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from foundry_magics.ops.operations import VALUE

    first = np.full(plan.n, -1, dtype=np.int64)
    keys = {c: (VALUE if plan.series_col is not None or VALUE in plan.columns else c) for c in columns}
    for i in range(len(columns) - 1, -1, -1):  # the first column in template order wins
        arr = plan.columns.get(keys[columns[i]], plan.columns.get(columns[i]))
        if arr is None:
            continue
        mask = pc.is_null(arr, nan_is_null=True) if pa.types.is_floating(arr.type) else pc.is_null(arr)
        first[mask.to_numpy(zero_copy_only=False)] = i
    texts = [f"missing value in column {c!r} (nothing was sent)" for c in columns]
    return [None if k < 0 else texts[k] for k in first.tolist()]


def arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind.startswith("array<"):
        return pa.list_(arrow_type(kind[6:-1]))
    return {"string": pa.string(), "long": pa.int64(), "double": pa.float64(), "boolean": pa.bool_(),
            "json": pa.string(), "vector": pa.list_(pa.float32()), "float": pa.float32()}[kind]


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
    from foundry_magics.frames.spark_errors import rebuild

    cls = getattr(errors, str(data.get("class")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.FoundryError)):
        cls = errors.FoundryError
    raise rebuild(cls, str(data.get("text", "")))


def _executor_key_error(exc: BaseException, conn: Any) -> None:
    """A key variable missing on the executor: say so in Spark's terms (and raise that)."""
    from foundry_magics.errors import MissingKeyError

    if not isinstance(exc, MissingKeyError) or conn is None or not getattr(conn, "api_key_env", None):
        return
    var = conn.api_key_env
    raise MissingKeyError(
        f"No API key on the Spark executor: the environment variable {var} is not set there.",
        hint=(f"Give the executors the variable: spark.executorEnv.{var} when the Spark session starts, or "
              f"the cluster's environment variables (Databricks: {var}={{{{secrets/SCOPE/NAME}}}}); "
              "or connect with auth='entra' (each executor uses its own identity)."),
    ) from None
