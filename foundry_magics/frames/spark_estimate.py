"""`sdf.foundry.estimate(...)` and `estimate=True` on Spark: the same `fm.Estimate` as pandas,
counted by Spark. Nothing is sent and no row comes back to the driver.

    est = sdf.foundry.estimate("Summarize: {text}", model="gpt-4.1-mini")
    est = sdf.foundry.classify("text", ["a", "b"], estimate=True)

How: a `mapInArrow` task plans each Arrow batch with the core operation (exactly as a run
would: same template, same dedup, same output caps) and emits one small row per distinct
request of the batch: its cache key (the run's key: `engine.prompts.RequestKeys` /
`engine.embeddings.embed_keys`), its estimated input tokens and images, its output cap and
whether the executor's cache already holds it; plus one row per batch with its row and NA
counts. Spark then groups by key (identical requests in different partitions count once) and
sums: a single job whose only result on the driver is one row of totals. The driver prices it
(`store.prices`) and fills an `engine.estimate.Estimate`.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from foundry_magics.defaults import EMBED_BATCH, ENV_HOME, FEED_CHUNK

__all__ = ["estimate", "EstimateTask", "SCHEMA", "model_of"]

SCHEMA = "key binary, tokens long, images long, cap long, cached boolean, rows long, na long"


@dataclass(frozen=True)
class _Spec:
    op: Any  # the shipped operation (frames.spark_job.shipped): no connection object, no mode
    connection: dict  # Connection.to_dict(): no key
    connection_name: str | None
    column: str | None
    columns: tuple[str, ...]
    images: str | None
    cache: bool
    home: str | None
    job: str


class EstimateTask:
    """On the executors: Arrow batches in, one row per distinct request (and per batch) out."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.__name__ = f"foundry_estimate_{spec.op.kind}"

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        from foundry_magics.frames.spark_task import TaskSpec, batch_rows, connection_of

        spec = self.spec
        if spec.home:
            os.environ[ENV_HOME] = spec.home
        view = TaskSpec(job=spec.job, label="estimate", connection=spec.connection,
                        connection_name=spec.connection_name, op=spec.op, column=spec.column, columns=spec.columns,
                        images=spec.images)
        conn = connection_of(view)
        keyless = conn.replace(auth="none", api_key=None)  # keys and bodies need no key: nothing is sent
        store = _open_cache(spec.cache)
        try:
            for batch in batches:
                op = _copy(spec.op)
                plan = op.plan(batch_rows(view, batch))
                op.apply_cap(plan, conn)
                yield self._rows(op, plan, keyless, store)
        finally:
            store.close()

    def _rows(self, op: Any, plan: Any, conn: Any, store: Any) -> Any:
        import pyarrow as pa

        from foundry_magics.engine.estimate import body_tokens, tokenizer
        from foundry_magics.rest.base import BaseClient

        _, count = tokenizer()
        probe = BaseClient(conn)
        keys: list[bytes] = []
        tokens: list[int] = []
        images: list[int] = []
        caps: list[Any] = []
        cached: list[bool] = []
        if plan.size and op.kind == "embed":
            from foundry_magics.engine.embeddings import embed_keys

            texts = plan.texts()
            _, keys = embed_keys(probe, conn, texts, op.options.get("model"), op.options.get("dimensions"))
            tokens = [count(t) for t in texts]
            images = [0] * len(keys)
            caps = [None] * len(keys)
            found = set()
            for start in range(0, len(keys), 5000):
                found.update(store.get_vectors(keys[start:start + 5000]))
            cached = [k in found for k in keys]
        elif plan.size:
            from foundry_magics.engine.prompts import RequestKeys

            rk = RequestKeys(probe, op.request_spec(conn), conn)
            batch = plan.requests()
            seen: set[bytes] = set()
            for start in range(0, batch.size, FEED_CHUNK):
                order = []
                for prompt in batch.render(range(start, min(batch.size, start + FEED_CHUNK))):
                    key, body = rk.keyed(prompt)
                    if key not in seen:
                        seen.add(key)
                        order.append((key, body))
                hits = store.get_many([k for k, _ in order]) if order else {}
                for key, body in order:
                    t, im = body_tokens(body, count)
                    keys.append(key)
                    tokens.append(t)
                    images.append(im)
                    caps.append(_cap_of(body))
                    cached.append(key in hits)
        n = len(keys)
        return pa.RecordBatch.from_pydict({
            "key": pa.array([*keys, None], type=pa.binary()),
            "tokens": pa.array([*tokens, 0], type=pa.int64()),
            "images": pa.array([*images, 0], type=pa.int64()),
            "cap": pa.array([*caps, None], type=pa.int64()),
            "cached": pa.array([*cached, False], type=pa.bool_()),
            "rows": pa.array([0] * n + [plan.n], type=pa.int64()),
            "na": pa.array([0] * n + [plan.n - len(plan.codes[plan.codes >= 0])], type=pa.int64()),
        })


def _copy(op: Any) -> Any:
    import copy

    out = copy.copy(op)
    out.options = dict(op.options)
    return out


def _cap_of(body: dict[str, Any]) -> int | None:
    for k in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if isinstance(body.get(k), int):
            return body[k]
    return None


def _open_cache(cache: bool) -> Any:
    from foundry_magics.store.cache import MemoryCache, ResponseCache

    return ResponseCache() if cache else MemoryCache()


# ====================================================================== the driver


def estimate(sdf: Any, op: Any, *, column: str | None = None, images: str | None = None) -> Any:
    """The `fm.Estimate` of running `op` over `sdf` (in its mode: batch=True prices the Batch API)."""
    import warnings

    from pyspark.sql import functions as F

    from foundry_magics.engine.estimate import Estimate, tokenizer
    from foundry_magics.errors import ConfigurationError
    from foundry_magics.frames.spark_job import cache_home, prepare, shipped

    if op.options.get("sample"):
        raise ConfigurationError("sample= does not run on Spark DataFrames yet; nothing was sent.",
                                 hint="Leave sample out for the exact counts and the upper bound, or forecast on "
                                      "a pandas sample: sdf.limit(2000).toPandas().foundry.estimate(..., sample=20).")
    conn, cluster, used = prepare(sdf, op, column=column, images=images)
    ship = shipped(op, online=False)
    model = model_of(op, conn)
    if model and not ship.options.get("model"):
        ship.options["model"] = model  # what the run would find: the same request bodies and keys
    cache = bool(op.options.get("cache", True))
    spec = _Spec(op=ship, connection=conn.to_dict(), connection_name=conn.name, column=column,
                 columns=tuple(used), images=images, cache=cache, home=cache_home(cluster), job=uuid.uuid4().hex)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        per_request = sdf.mapInArrow(EstimateTask(spec), SCHEMA)
    per_key = per_request.groupBy("key").agg(
        F.max("cached").alias("cached"), F.first("tokens").alias("tokens"), F.first("images").alias("images"),
        F.first("cap").alias("cap"), F.sum("rows").alias("rows"), F.sum("na").alias("na"))
    real = F.col("key").isNotNull()
    send = real & ~F.col("cached")
    total = per_key.agg(
        F.sum("rows").alias("rows"), F.sum("na").alias("na"),
        F.count(F.when(real, 1)).alias("distinct"), F.count(F.when(real & F.col("cached"), 1)).alias("cached"),
        F.sum(F.when(send, F.col("tokens"))).alias("tokens"), F.sum(F.when(send, F.col("images"))).alias("images"),
        F.max(F.when(send, F.col("cap"))).alias("cap_max"), F.min(F.when(send, F.col("cap"))).alias("cap_min"),
        F.sum(F.when(send, F.col("cap"))).alias("cap_sum"),
        F.count(F.when(send & F.col("cap").isNull(), 1)).alias("uncapped"),
    ).collect()[0]
    embed = op.kind == "embed"
    distinct, hits = int(total["distinct"] or 0), int(total["cached"] or 0)
    missing = distinct - hits
    est = Estimate(rows=int(total["rows"] or 0), na_rows=int(total["na"] or 0), distinct=distinct, cached=hits,
                   to_send=math.ceil(missing / EMBED_BATCH) if embed else missing,
                   input_tokens=int(total["tokens"] or 0), images=int(total["images"] or 0),
                   tokenizer=tokenizer()[0], model=model, connection=conn.label,
                   operation="embeddings" if embed else op.request_spec(conn).op, batch=op.batch)
    if embed:
        est.notes.append(f"{missing:,} texts to embed, {EMBED_BATCH:,} per request")
    elif missing and not int(total["uncapped"] or 0) and total["cap_max"] is not None:
        est.output_cap, est.output_cap_min = int(total["cap_max"]), int(total["cap_min"])
        est.max_output_tokens = int(total["cap_sum"])
    elif not missing and ship.options.get("max_tokens") is not None:
        est.output_cap = est.output_cap_min = ship.options["max_tokens"]
        est.max_output_tokens = 0
    if not cache:
        est.notes.append("cache=False: cached replies are not used, so every distinct request is sent")
    est.notes.append("counted by Spark on the executors (nothing was sent, no row was collected)")
    return est  # priced when read or shown (Estimate's cost properties), from the prices known then


def model_of(op: Any, conn: Any) -> str | None:
    """The model the run would use: given, the connection's, or (a local server) the one it lists."""
    from foundry_magics.engine.runner import ensure_model
    from foundry_magics.rest.base import BaseClient

    keyless = BaseClient(conn.replace(auth="none", api_key=None))
    o = op.options
    if op.kind == "embed":
        _route, model = keyless.build_embed(["probe"], o.get("model"), o.get("dimensions"))
        return model
    spec = op.request_spec(conn)
    ensure_model(keyless, spec)
    _route, body = keyless.build(spec.op, "probe", **spec.options())
    return body.get("model") or spec.model or conn.model
