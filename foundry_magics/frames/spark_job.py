"""Building a Spark enrichment on the driver: every check before the job, the output schema,
and the task that Spark ships to the executors (`frames.spark_task`).

Nothing here starts a job: `build()` returns `sdf.mapInArrow(task, schema)`, a lazy
DataFrame. What is checked first, so that a mistake is one readable error on the driver and
never a failed job:

* the options: checked when the core operation (`ops.operations`) was made from the user's
  arguments, as on every front-end;
* the template's columns against the Spark schema (the operation plans no rows: the same
  rules and messages as pandas);
* the request itself (model, schema, options), built once without a key;
* the key: executors read it from the variable the connection names (or use Entra ID there);
  a key that exists only in this process's memory is refused, with the fix;
* the output columns (no clash with an input column).

Why `mapInArrow` and not `mapInPandas`: the task plans the Arrow columns the template reads
as they are; every other column goes back to Spark as the very Arrow buffers it came in, so
no type (decimals, timestamps with time zones, structs, maps, binary) is converted on the
way, and pandas is not on the path at all.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from foundry_magics.errors import ConfigurationError
from foundry_magics.frames.spark_task import ERROR_COL, SCALARS, Output, PartitionTask, TaskSpec

__all__ = ["build", "output_columns", "prepare", "shipped", "spark_type", "field_kind", "Cluster"]

log = logging.getLogger("foundry_magics")


# ====================================================================== the cluster, as the driver sees it


@dataclass
class Cluster:
    """What the driver can know about where tasks run (less with Spark Connect)."""

    local: bool | None  # a local[...] master: executors are this machine (None: unknown)
    parallelism: int | None  # tasks that can run at once (sc.defaultParallelism)
    executor_env: set[str] = field(default_factory=set)  # names of variables given by spark.executorEnv.*
    redaction: str | None = None  # spark.redaction.regex, when set
    jvm: Any = None  # local masters: the driver JVM, whose environment the Python workers inherit

    @classmethod
    def of(cls, spark: Any) -> "Cluster":
        try:
            sc = spark.sparkContext  # Spark Connect has none
        except Exception:  # noqa: BLE001 - pyspark raises its own "not supported" error types
            sc = None
        # Only names and settings are kept: spark.executorEnv.* values may be keys.
        if sc is None:
            conf = _connect_conf(spark)
            par = conf.get("spark.default.parallelism")
            return cls(None, int(par) if par and par.isdigit() else None, _env_names(conf),
                       conf.get("spark.redaction.regex"))
        conf = dict(sc.getConf().getAll())
        local = str(sc.master).startswith("local")
        return cls(local, int(sc.defaultParallelism), set(sc.environment or {}) | _env_names(conf),
                   conf.get("spark.redaction.regex"), sc._jvm if local else None)

    def has_variable(self, var: str) -> bool | None:
        """Will executors see `var`? True / False, or None when the driver cannot tell."""
        if var in self.executor_env:
            return True
        if self.jvm is not None:  # local: workers get the JVM's environment (fixed when it started)
            try:
                return bool(self.jvm.System.getenv().containsKey(var))
            except Exception:  # noqa: BLE001 - py4j trouble: fall back to not knowing
                return None
        return True if os.environ.get(var, "").strip() else None


def _env_names(conf: dict[str, str]) -> set[str]:
    return {k[len("spark.executorEnv."):] for k in conf if k.startswith("spark.executorEnv.")}


def _connect_conf(spark: Any) -> dict[str, str]:
    try:
        got = spark.conf.getAll
        return dict(got() if callable(got) else got)
    except Exception:  # noqa: BLE001
        return {}


# ====================================================================== types


def field_kind(prop: Any) -> str:
    """The column kind for one JSON Schema property (see spark_task.SCALARS)."""
    if not isinstance(prop, dict):
        return "json"
    t = prop.get("type")
    if isinstance(t, list):  # ["integer", "null"]
        t = next((x for x in t if x != "null"), None)
    if t in ("string", "integer", "number", "boolean"):
        return {"string": "string", "integer": "long", "number": "double", "boolean": "boolean"}[t]
    if t == "array":
        item = field_kind(prop.get("items") or {"type": "string"})
        return f"array<{item}>" if item in SCALARS else "json"
    if "enum" in prop and all(isinstance(x, str) for x in prop["enum"]):
        return "string"
    return "json"


def spark_type(kind: str) -> Any:
    from pyspark.sql import types as T

    if kind.startswith("array<"):
        return T.ArrayType(spark_type(kind[6:-1]), True)
    if kind == "vector":
        return T.ArrayType(T.FloatType(), True)
    return {"string": T.StringType(), "json": T.StringType(), "long": T.LongType(), "double": T.DoubleType(),
            "boolean": T.BooleanType()}[kind]


# ====================================================================== building the job


def build(sdf: Any, op: Any, *, column: str | None = None, output_col: str | None = None,
          parallelism: int | None = None, images: str | None = None, task: Any = None, source: Any = None) -> Any:
    """The lazy DataFrame of `op` (an `ops.operations.Operation`, its options checked when it was
    made): input columns, result column(s), foundry_error (see frames.spark). `task`: what
    makes the executors' function from the `TaskSpec` (default `PartitionTask`: online;
    `frames.spark_batch` reads a finished Batch API job's replies from columns instead); `source`:
    the frame the task maps (default `sdf`: `spark_batch` gives `sdf` with those columns joined)."""
    from pyspark.sql.types import StructType

    max_cost = op.options.get("max_cost") if task is None else None  # a Batch API job's replies cost nothing here
    if max_cost is not None and not _has_partitions(sdf):  # Spark Connect: refuse, send nothing
        raise ConfigurationError(
            "max_cost does not run on Spark Connect DataFrames yet: the job's partitions cannot be counted to give "
            "each task its share of the budget; nothing was sent.",
            hint="Price the job first with sdf.foundry.estimate(...) (its upper bound is what it could cost), "
                 "or run a pandas / Polars frame with max_cost.")
    _checked = prepare(sdf, op, column=column, parallelism=parallelism, images=images)
    conn, cluster, used = _checked
    outputs, merge = output_columns(sdf, op, output_col)
    op_out = shipped(op, online=True, slots=_slots(op, cluster, parallelism))
    budget = None
    if max_cost is not None:
        budget = _budget_share(sdf, op, conn, max_cost)
        op_out.options["max_cost"] = budget[0]
    spec = TaskSpec(
        job=uuid.uuid4().hex, label=op.kind, connection=conn.to_dict(), connection_name=conn.name,
        op=op_out, column=column, columns=tuple(used),
        outputs=tuple(outputs), images=images, home=cache_home(cluster), merge_error=merge,
        error_prefix=(outputs[0].name if len(outputs) == 1 else op.kind) if merge else None,
        usage=_usage_accumulator(sdf, op, conn), budget=budget,
    )
    schema: StructType = _output_schema(sdf, outputs, merge)
    with warnings.catch_warnings():
        # PySpark warns about pandas >= 3 when any pandas/Arrow UDF is made; this one converts
        # nothing with PySpark's pandas code (Arrow in, Arrow out), so the warning is not ours to show.
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        return (sdf if source is None else source).mapInArrow((task or PartitionTask)(spec), schema)


def _has_partitions(sdf: Any) -> bool:
    """Classic Spark (its RDD counts the partitions); Spark Connect DataFrames have no `rdd`."""
    return not type(sdf).__module__.startswith("pyspark.sql.connect")


def _budget_share(sdf: Any, op: Any, conn: Any, max_cost: float) -> tuple[float, Any, str | None]:
    """max_cost on Spark: each task (one per partition of `sdf`) gets `max_cost / partitions`, so
    the job's total can never pass the amount (a task whose partition needs more stops at its
    share while others may leave theirs unspent). Priced here, on the driver: no price, no job."""
    from foundry_magics.engine.budget import require_price

    model = _probe(conn, op)
    price = require_price(model, max_cost)
    partitions = max(1, int(sdf.rdd.getNumPartitions()))
    return max_cost / partitions, price, model


def output_columns(sdf: Any, op: Any, output_col: str | None) -> tuple[list[Output], bool]:
    """The result columns of `op` over `sdf`, checked (no clash with an input column), and
    whether the input already has foundry_error (a chained call: its reasons are kept)."""
    outputs = _outputs(output_col, op)
    return outputs, _check_output_names(outputs, sdf)


def prepare(sdf: Any, op: Any, *, column: str | None, parallelism: int | None = None,
            images: str | None = None) -> tuple[Any, Cluster, list[str]]:
    """Every check of a Spark run before its job: the frame, the template's columns (the same
    rules and messages as pandas: `Operation.plan` over no rows), one request built without a
    key, the key, the endpoint. Returns (connection, cluster, the columns the template reads)."""
    from foundry_magics.ops.options import check_value

    _check_frame(sdf)
    check_value("parallelism", parallelism)
    columns = list(sdf.columns)
    used = _check_template(op, column, columns)
    if images is not None and (not isinstance(images, str) or images not in columns):
        shown = ", ".join(repr(c) for c in columns[:20])
        raise ConfigurationError(f"images={images!r} is not a column of the Spark DataFrame.",
                                 hint=f"Columns: {shown}. Pass images='column' holding paths, URLs or bytes.")
    conn = op.connection()
    _probe(conn, op)
    cluster = Cluster.of(sdf.sparkSession)
    _check_key(conn, cluster)
    _check_reachable(conn, cluster)
    return conn, cluster, used


def _slots(op: Any, cluster: Cluster, parallelism: int | None) -> int | None:
    slots = parallelism or cluster.parallelism
    if (op.options.get("rpm") or op.options.get("tpm")) and not slots:
        raise ConfigurationError(
            "rpm/tpm are for the whole job, but this Spark session does not say how many tasks run at once.",
            hint="Pass parallelism=N (the number of tasks that run at the same time, e.g. the executors' cores).")
    return slots


_NOT_SHIPPED = ("connection", "progress", "batch", "wait", "poll_interval", "estimate")


def shipped(op: Any, *, online: bool, slots: int | None = None) -> Any:
    """A copy of `op` to pickle for the executors: no connection object (the task carries
    `Connection.to_dict()`), no display, no mode (executors run online or count);
    rpm / tpm as each task's share of the job's budget."""
    import copy

    out = copy.copy(op)
    o = {k: v for k, v in op.options.items() if k not in _NOT_SHIPPED}
    for name in ("rpm", "tpm"):
        if o.get(name) and slots:
            o[name] = o[name] / slots
    if online and getattr(op, "output", None) in ("vector", "score") and o.get("concurrency") is None:
        from foundry_magics.defaults import EMBED_CONCURRENCY

        o["concurrency"] = EMBED_CONCURRENCY
    out.options = o
    return out


def _usage_accumulator(sdf: Any, op: Any, conn: Any) -> Any:
    from foundry_magics.frames.spark_usage import accumulator

    return accumulator(sdf.sparkSession)


def _check_frame(sdf: Any) -> None:
    cls = type(sdf)
    if not (cls.__module__.startswith("pyspark.sql") and hasattr(sdf, "mapInArrow")):
        raise ConfigurationError(f"Expected a Spark DataFrame, got {cls.__name__}.",
                                 hint="For pandas use df.foundry.*; for Spark, sdf.foundry.*.")


def _check_template(op: Any, column: str | None, columns: list[str]) -> list[str]:
    """The columns the template reads; a missing one is the same error as with pandas
    (`Operation.plan` over no rows)."""
    import pyarrow as pa

    from foundry_magics.ops.operations import Rows

    empty = pa.array([], type=pa.string())
    if column is not None:
        if not isinstance(column, str) or column not in columns:
            shown = ", ".join(repr(c) for c in columns[:20]) + (" ..." if len(columns) > 20 else "")
            raise ConfigurationError(f"There is no column {column!r} in the Spark DataFrame.",
                                     hint=f"Columns: {shown}.")
        op.plan(Rows(names=[column], n=0, column=lambda _k: empty, series=True, series_name=column))
        return [column]
    plan = op.plan(Rows(names=columns, n=0, column=lambda _k: empty))
    return list(dict.fromkeys(plan.fields.values()))


def _probe(conn: Any, op: Any) -> str | None:
    """Build one request, without a key (the key is the executors'): model, schema, options.
    Returns the model the requests name (as the engine finds it)."""
    from foundry_magics.rest.base import BaseClient

    keyless = BaseClient(conn.replace(auth="none", api_key=None))
    o = op.options
    if op.output in ("vector", "score"):  # embeddings (embed, similarity)
        _, model = keyless.build_embed(["probe"], o.get("model"), o.get("dimensions"))
        return model
    request = op.request_spec(conn)
    _, body = keyless.build(request.op, "probe", **request.options())
    return body.get("model") or request.model or conn.model or keyless.model_for(request.model)


def _outputs(output_col: str | None, op: Any) -> list[Output]:
    """The result columns of `op`: one (text, label, vector), or one per schema field."""
    from foundry_magics.rest.schemas import to_json_schema

    if output_col is not None and (not isinstance(output_col, str) or not output_col.strip()):
        raise ConfigurationError(f"output_col must be a column name, got {output_col!r}.",
                                 hint='For example output_col="summary".')
    if op.output == "vector":
        return [Output(output_col or "vector", "vector")]
    if op.output == "score":  # similarity: a double per row
        return [Output(output_col or "similarity", "double")]
    if op.output in ("text", "label"):
        return [Output(output_col or _DEFAULT_OUT.get(op.kind, "reply"), "string")]
    props = to_json_schema(op.schema).get("properties") or {}
    if not props:
        raise ConfigurationError("The schema has no fields.", hint='Give at least one field, e.g. {"label": str}.')
    out = []
    for name, prop in props.items():
        col = name if output_col is None else (output_col if len(props) == 1 else f"{output_col}_{name}")
        out.append(Output(col, field_kind(prop), field=name))
    return out


_DEFAULT_OUT = {"prompt": "reply", "summarize": "summary", "translate": "translation", "classify": "label",
                "sentiment": "sentiment", "extract": "reply"}


def _check_output_names(outputs: list[Output], sdf: Any) -> bool:
    """No clash with an input column; True when the input has foundry_error (a chained call)."""
    names = [o.name for o in outputs]
    columns = list(sdf.columns)
    clash = [n for n in names if n in columns or n == ERROR_COL]
    if clash:
        raise ConfigurationError(
            f"The result column {clash[0]!r} already exists in the Spark DataFrame." if clash[0] != ERROR_COL
            else f"{ERROR_COL!r} is the error column and cannot hold a result.",
            hint="Choose another name with output_col=..., or drop the column first (sdf.drop(...)).")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"Two result columns would have the same name: {names}.",
                                 hint="Choose another output_col.")
    if ERROR_COL not in columns:
        return False
    from pyspark.sql.types import StringType

    if not isinstance(sdf.schema[ERROR_COL].dataType, StringType):
        raise ConfigurationError(f"The input's {ERROR_COL!r} column is not a string column.",
                                 hint=f"Rename or drop it: {ERROR_COL!r} is where failures are recorded.")
    return True


def _output_schema(sdf: Any, outputs: list[Output], merge: bool) -> Any:
    from pyspark.sql.types import StringType, StructField, StructType

    fields = [f for f in sdf.schema.fields if not (merge and f.name == ERROR_COL)]
    fields += [StructField(o.name, spark_type(o.kind), True) for o in outputs]
    fields.append(StructField(ERROR_COL, StringType(), True))
    return StructType(fields)


def cache_home(cluster: Cluster) -> str | None:
    """On a local master the executors share this machine, so they share the driver's cache
    (FOUNDRY_MAGICS_HOME as this process sees it now). On a cluster each executor keeps its own."""
    if not cluster.local:
        return None
    from foundry_magics.defaults import home

    return str(home())


# ====================================================================== the key


def _check_key(conn: Any, cluster: Cluster) -> None:
    """Executors read the key from the variable the connection names; refuse what they cannot do."""
    if conn.auth != "key":
        return  # Entra ID: each executor uses its own credential; none: nothing to send
    var = conn.api_key_env
    pasted = conn.api_key is not None
    if not var:
        usual = conn.replace(api_key=None).with_key_env().api_key_env or "VAR"
        raise ConfigurationError(
            f"The key for {conn.label} exists only in this notebook's memory (pasted), and Spark executors cannot "
            "see it." if pasted else f"The connection {conn.label} names no variable for its key.",
            hint=f"Executors read the key from an environment variable: connect with api_key_env={usual!r}. "
                 + _key_fix(usual))
    fix = _key_fix(var)
    seen = cluster.has_variable(var)
    if seen is False or (seen is None and pasted):
        if pasted:
            cause = (f"The key for {conn.label} exists only in this notebook's memory (pasted), and Spark executors "
                     f"cannot see it: they read ${var}, which they do not have.")
        elif cluster.local and os.environ.get(var, "").strip():
            cause = (f"${var} is set in this process, but only after the Spark session started: its executors "
                     f"(Python workers of the JVM) do not see it.")
        else:
            cause = f"The Spark executors have no ${var}, so they have no key for {conn.label}."
        raise ConfigurationError(cause, hint=fix)
    driver_value = os.environ.get(var, "").strip()
    if pasted and driver_value and driver_value != conn.api_key.get():
        raise ConfigurationError(
            f"The key pasted for {conn.label} is not the one in ${var}, and Spark executors use ${var}.",
            hint=f"Set ${var} to the key you mean (or paste the same one), then run it again.")
    if var in cluster.executor_env and not _redacted(cluster, f"spark.executorEnv.{var}") and var not in _WARNED:
        _WARNED.add(var)  # once per variable and process: every Spark call checks, one warning is enough
        log.warning(
            "spark.executorEnv.%s is shown in clear in the Spark UI (Environment tab): add it to "
            "spark.redaction.regex when the session starts, e.g. "
            "'(?i)secret|password|token|access[.]?key|api[_.]?key|credential', or use the cluster's secret "
            "store instead.", var)


def _key_fix(var: str | None) -> str:
    v = var or "VAR"
    return (f"Give the executors ${v}: the cluster's environment variables (Databricks: {v}="
            f"{{{{secrets/SCOPE/NAME}}}}; Fabric/Synapse: the environment's Spark properties), or "
            f".config('spark.executorEnv.{v}', ...) when the Spark session starts (also set spark.redaction.regex "
            "so the Spark UI hides it); on a local master, set it before the session starts. Or use auth='entra', "
            "which each executor gets from its own identity. The key is never shipped with the job.")


_DEFAULT_REDACTION = r"(?i)secret|password|token|access[.]?key"
_WARNED: set[str] = set()  # variables whose spark.executorEnv.* was said to show in the Spark UI


def _redacted(cluster: Cluster, key: str) -> bool:
    pattern = cluster.redaction or _DEFAULT_REDACTION
    try:
        return re.search(pattern, key) is not None
    except re.error:  # a Java-only regex: assume the user knows what it hides
        return True


def _check_reachable(conn: Any, cluster: Cluster) -> None:
    """An endpoint on this machine's loopback (the built-in emulator) is not on a cluster's executors."""
    from urllib.parse import urlsplit

    host = (urlsplit(conn.endpoint).hostname or "").lower()
    if cluster.local is False and (host in ("localhost", "::1") or host.startswith("127.")):
        raise ConfigurationError(
            f"{conn.label} is at {host}, this machine's loopback, which Spark executors on other machines cannot "
            "reach.",
            hint="Connect to an endpoint the executors can reach (fm.connect(URL)); the built-in emulator works "
                 "with a local[...] master only.")
