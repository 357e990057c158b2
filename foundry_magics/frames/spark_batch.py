"""`batch=True` on Spark: the Batch API at half the price, its input written by the executors.

    out = sdf.foundry.prompt("Summarize: {text}", batch=True)               # waits; a Spark DataFrame
    job = sdf.foundry.prompt("Summarize: {text}", batch=True, wait=False)   # fm.BatchJob at once
    out = job.result()                                                       # the same Spark DataFrame

Unlike the online mode this call is **eager**: submitting is a Spark action (the executors
build and upload the input files), and with wait=True the call also waits for the job. What
it returns is again a lazy DataFrame: all input columns, the result column(s), foundry_error.

1. **Keys** (`KeyTask`, on the executors): each Arrow batch is planned by the core operation
   exactly as the online run plans it, and each distinct request becomes one row: its cache
   key (the online key, which is also the line's `custom_id`), its JSONL input line, whether
   the cache already answers it, and the rows it stands for; plus one row of counts per batch.
2. **Dedup and re-attach** (Spark): the rows are repartitioned by key, so identical requests
   of different partitions meet in one upload task, which writes each once; a left join with
   the keys that recorded, still running jobs carry (the jobs table, `store.batches`) marks
   those to re-attach.
3. **Upload** (`UploadTask`, on the executors): each task writes its lines into input files
   split at 100,000 lines / 200 MB (`batch_api.inputs.PartWriter`), uploads each one and waits
   until the service has processed it; it returns one row per file (its id and the keys it
   carries) and one row of counts. Only these rows reach the driver, never a request body.
4. **Create and record** (the driver): the job and the keys of each file go into the jobs
   table (so the same call run again - also after a restart - re-attaches instead of
   submitting twice), then each file's batch is created (`batch_api.parts.create_part`).
5. **Wait and collect** (the driver, `batch_api.jobs.BatchJob.wait`): polling every
   `poll_interval` (60 s; the emulator's fast clock), finished output lines go into the
   response cache by `custom_id`, failed ones keep their reason in the jobs table. Ctrl-C
   stops waiting only (`BatchInterrupted`, one line).
6. **Result** (lazy, joined back by `custom_id`): the driver looks the call's distinct keys
   (those its files carry, those re-attached, those the cache answered: the upload rows bring
   them back) up in its cache and makes a small Spark DataFrame of them (`REPLIES_SCHEMA`: key,
   reply text or vector, or the reason the job failed it; one row per request, not per row);
   `RowKeyTask` gives every row its key on the executors (keyed as `KeyTask` keys the upload);
   the two are joined on the key (broadcast when the replies are small) and `JoinedTask`, the
   online task of `frames.spark_task` with its sending replaced by reading those columns, makes
   the typed result columns and foundry_error, and drops the joined columns. A request the
   batch failed is null with its reason. A re-run submits exactly those rows.

The replies reach the executors as data, not through a cache, so this runs on a cluster as on a
local master. Where the executors do not share the driver's cache (a cluster: `cache_home` is
None), they look up no cache of their own; the driver collects the distinct keys (32 bytes
each) before the upload and marks those its cache answers (`_driver_hits`), so a re-run submits
only what the driver does not hold. Nothing secret travels: tasks carry `Connection.to_dict()`,
the replies frame holds keys (hashes), replies and reasons.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from foundry_magics.defaults import BATCH_CHUNK, BATCH_MAX_BYTES, BATCH_MAX_LINES, ENV_HOME
from foundry_magics.frames.spark_task import PartitionTask
from foundry_magics.store.cache import CacheOnUse

if TYPE_CHECKING:
    # SparkBatchJob is made on first use (_job_class, via the module's __getattr__) so that importing this
    # module does not import batch_api; to a type checker it is the BatchJob it subclasses.
    from foundry_magics.batch_api.jobs import BatchJob as SparkBatchJob

__all__ = ["run", "KeyTask", "UploadTask", "CachedTask", "RowKeyTask", "JoinedTask", "SparkBatchJob", "KEYS_SCHEMA",
           "PARTS_SCHEMA", "REPLIES_SCHEMA"]

log = logging.getLogger("foundry_magics.batch")

KEYS_SCHEMA = "key binary, line binary, cached boolean, weight long, rows long, na long"
PARTS_SCHEMA = ("file_id string, status string, lines long, bytes long, keys binary, job string, rows long, na long, "
                "distinct long, cached long, cached_rows long, pending_rows long")
_LOOKUP = 5_000  # cache keys looked up at a time


@dataclass(frozen=True)
class _Spec:
    """What the key and upload tasks need; nothing secret (`Connection.to_dict()`)."""

    op: Any  # the shipped operation (frames.spark_job.shipped), its model fixed by the driver
    connection: dict
    connection_name: str | None
    column: str | None
    columns: tuple[str, ...]
    images: str | None
    cache: bool
    home: str | None
    job: str  # the job id the files are named after
    url: str  # the `url` of every input line
    max_lines: int = BATCH_MAX_LINES
    max_bytes: int = BATCH_MAX_BYTES
    poll_interval: float | None = None


def _view(spec: _Spec) -> Any:
    from foundry_magics.frames.spark_task import TaskSpec

    return TaskSpec(job=spec.job, label="batch", connection=spec.connection, connection_name=spec.connection_name,
                    op=spec.op, column=spec.column, columns=spec.columns, images=spec.images)


def _enter(spec: _Spec) -> None:
    if spec.home:
        os.environ[ENV_HOME] = spec.home  # a Python worker runs one task at a time


def keyed(op: Any, plan: Any, conn: Any) -> Iterator[tuple[list[int], list[bytes], list[Any]]]:
    """The distinct requests of `plan` in chunks: (indices, cache keys, line bodies), keyed and
    built exactly as the online run keys and builds them (the key is the line's custom_id)."""
    from foundry_magics.rest.base import BaseClient
    from foundry_magics.rest.batches import line_body

    probe = BaseClient(conn.replace(auth="none", api_key=None))  # keys and bodies need no key
    if not plan.size:
        return
    if op.kind == "embed":
        from foundry_magics.engine.embeddings import embed_keys
        from foundry_magics.rest.base import embed_body

        o = op.options
        texts = plan.texts()
        model, keys = embed_keys(probe, conn, texts, o.get("model"), o.get("dimensions"))
        route, model = probe.build_embed(texts[:1], model, o.get("dimensions"))
        for start in range(0, len(texts), BATCH_CHUNK):
            idx = list(range(start, min(len(texts), start + BATCH_CHUNK)))
            yield idx, keys[start:idx[-1] + 1], [
                line_body(embed_body(route, model, [texts[i]], o.get("dimensions")), model) for i in idx]
        return
    from foundry_magics.engine.prompts import RequestKeys

    rk = RequestKeys(probe, op.request_spec(conn), conn)
    batch = plan.requests()
    for start in range(0, batch.size, BATCH_CHUNK):
        idx = list(range(start, min(batch.size, start + BATCH_CHUNK)))
        keys, bodies = [], []
        for prompt in batch.render(range(idx[0], idx[-1] + 1)):
            key, body = rk.keyed(prompt)
            keys.append(key)
            bodies.append(line_body(body, rk.model))
        yield idx, keys, bodies


def _operation(spec: Any, op: Any) -> tuple[Any, Any]:
    import copy

    from foundry_magics.frames.spark_task import connection_of

    conn = connection_of(spec)
    out = copy.copy(op)
    out.options = {**op.options, "connection": conn, "progress": False}
    return out, conn


def _cache(use: bool) -> Any:
    from foundry_magics.store.cache import MemoryCache, ResponseCache

    return ResponseCache() if use else MemoryCache()


# ====================================================================== 1. keys (executors)


class KeyTask:
    """Arrow batches in; per distinct request (key, input line, cached, rows) out, and one row of counts per batch."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.__name__ = f"foundry_batch_keys_{spec.op.kind}"

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from foundry_magics.frames.spark_task import batch_rows
        from foundry_magics.rest.batches import input_line

        spec = self.spec
        _enter(spec)
        view = _view(spec)
        op, conn = _operation(view, spec.op)
        vectors = op.kind == "embed"
        store = _cache(spec.cache)
        try:
            for batch in batches:
                plan = op.plan(batch_rows(view, batch))
                op.apply_cap(plan, conn)
                keys: list[bytes] = []
                lines: list[Any] = []
                cached: list[bool] = []
                weights: list[int] = []
                seen: set[bytes] = set()
                for idx, ks, bodies in keyed(op, plan, conn):
                    hits = (store.get_vectors if vectors else store.get_many)(ks) if spec.cache else {}
                    for i, key, body in zip(idx, ks, bodies):
                        w = int(plan.weights[i])
                        if key in seen:  # two prompts, one request: count its rows once more
                            weights[keys.index(key)] += w
                            continue
                        seen.add(key)
                        hit = key in hits
                        keys.append(key)
                        cached.append(hit)
                        lines.append(None if hit else input_line(key.hex(), spec.url, body))
                        weights.append(w)
                n = len(keys)
                na = plan.n - int((plan.codes >= 0).sum())
                yield pa.RecordBatch.from_pydict({
                    "key": pa.array([*keys, None], type=pa.binary()),
                    "line": pa.array([*lines, None], type=pa.binary()),
                    "cached": pa.array([*cached, False], type=pa.bool_()),
                    "weight": pa.array([*weights, 0], type=pa.int64()),
                    "rows": pa.array([0] * n + [plan.n], type=pa.int64()),
                    "na": pa.array([0] * n + [na], type=pa.int64()),
                })
        finally:
            store.close()


# ====================================================================== 3. upload (executors)


class UploadTask:
    """Keys (partitioned by key) in; the input files of this task written, uploaded and processed;
    one row per file out."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.__name__ = f"foundry_batch_upload_{spec.op.kind}"

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from foundry_magics.batch_api.inputs import PartWriter
        from foundry_magics.frames.spark_task import connection_of
        from foundry_magics.rest.batches import BatchClient

        spec = self.spec
        _enter(spec)
        counts = dict(rows=0, na=0, distinct=0, cached=0, cached_rows=0, pending_rows=0)
        seen: set[bytes] = set()  # every copy of a key comes to this task (repartitioned by key): the first counts
        attached: dict[str, list[bytes]] = {}  # job -> the keys re-attached to it
        hits: list[bytes] = []  # the keys the cache answered: the driver ships their replies with the job's
        files: list[tuple[str, str, int, int, bytes]] = []
        tag = secrets.token_hex(3)
        client: Any = None
        writer: Any = None

        def upload(part: Any) -> None:
            uploaded = client.upload(part.path, f"foundry-magics-{spec.job}-{tag}-{part.no}.jsonl")
            status = _processed(client, uploaded, spec.poll_interval)
            files.append((str(uploaded["id"]), status, part.lines, part.size, b"".join(part.keys)))

        try:
            for batch in batches:
                d = batch.to_pydict()
                for key, line, cached, weight, n_rows, na, job in zip(d["key"], d["line"], d["cached"], d["weight"],
                                                                      d["rows"], d["na"], d["job"]):
                    if key is None:
                        counts["rows"] += n_rows or 0
                        counts["na"] += na or 0
                        continue
                    if key in seen:  # the same request from another partition: its rows, once more
                        counts["cached_rows" if cached else "pending_rows"] += weight or 0
                        continue
                    seen.add(key)
                    counts["distinct"] += 1
                    if cached:
                        counts["cached"] += 1
                        counts["cached_rows"] += weight or 0
                        hits.append(key)
                        continue
                    counts["pending_rows"] += weight or 0
                    if job is not None:
                        attached.setdefault(job, []).append(key)
                        continue
                    if writer is None:
                        client = BatchClient(connection_of(_view(spec)))
                        writer = PartWriter(spec.url, max_lines=spec.max_lines, max_bytes=spec.max_bytes,
                                            on_full=upload)
                    writer.add_line(key, line)
            if writer is not None:
                writer.close()
                writer = None
        finally:
            if writer is not None:
                writer.discard()
            if client is not None:
                client.close()
        rows: dict[str, list[Any]] = {name: [] for name in
                                      ("file_id", "status", "lines", "bytes", "keys", "job", *counts)}

        def add(**values: Any) -> None:
            for name, col in rows.items():
                col.append(values.get(name))

        for file_id, status, lines_, size, keys in files:
            add(file_id=file_id, status=status, lines=lines_, bytes=size, keys=keys)
        for job, keys_ in attached.items():
            add(job=job, distinct=len(keys_), keys=b"".join(keys_))
        add(keys=b"".join(hits), **counts)
        yield pa.RecordBatch.from_pydict(rows, schema=_parts_schema())


def _parts_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("file_id", pa.string()), ("status", pa.string()), ("lines", pa.int64()),
                      ("bytes", pa.int64()), ("keys", pa.binary()), ("job", pa.string()), ("rows", pa.int64()),
                      ("na", pa.int64()), ("distinct", pa.int64()), ("cached", pa.int64()),
                      ("cached_rows", pa.int64()), ("pending_rows", pa.int64())])


def _processed(client: Any, uploaded: dict[str, Any], poll_interval: float | None) -> str:
    """Wait until the service has processed an uploaded file (its status then), as the pandas
    submission waits before creating the batch."""
    from foundry_magics.batch_api.failures import BatchFailedError
    from foundry_magics.batch_api.state import file_poll
    from foundry_magics.defaults import BATCH_FILE_WAIT
    from foundry_magics.rest.batches import FILE_FAILED, file_status

    file_id = str(uploaded.get("id"))
    deadline = time.monotonic() + BATCH_FILE_WAIT
    status = file_status(uploaded)
    while status in ("pending", "running"):
        if time.monotonic() > deadline:
            raise BatchFailedError(f"The input file {file_id} was still {status!r} after {BATCH_FILE_WAIT:g} s.",
                                   hint="Run the call again later.")
        time.sleep(file_poll(client, poll_interval))
        status = file_status(client.file(file_id))
    if status in FILE_FAILED:
        details = uploaded.get("status_details") or "no details"
        raise BatchFailedError(f"The service could not process the input file {file_id}: {details}.",
                               hint="Run the call again; if it fails the same way, send it online (without "
                                    "batch=True).")
    return status


# ====================================================================== 6. the result (executors, lazy)


class CachedTask(PartitionTask):
    """The online task of `frames.spark_task` that sends nothing: each distinct request's reply
    is read from the cache (where the Batch API job's results were collected); one the job
    failed is null with its reason (`reasons`: key -> reason), any other miss with `missing`.
    Needs executors that share the driver's cache; `run` uses its subclass `JoinedTask`, which
    reads the replies from joined columns instead and so runs anywhere."""

    def __init__(self, spec: Any, reasons: dict[bytes, str] | None = None, missing: str = "") -> None:
        super().__init__(spec)
        self.reasons = dict(reasons or {})
        self.missing = missing or "no result for this request in the cache; run the call again to submit it"
        self.__name__ = f"foundry_batch_{spec.label}"

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "reasons": self.reasons, "missing": self.missing}

    def _send(self, op: Any, plan: Any, stage: Any) -> tuple[dict[str, Any], list[Any]]:
        from foundry_magics.engine.report import RunReport, RunResult

        texts, errors = self._replies(op, plan)
        report = RunReport(rows=plan.n, done=plan.n - plan.na_rows - len(errors), na_rows=plan.na_rows,
                           unique=plan.size, failed=len(errors), operation=op.kind)
        outcome = op.outcome(plan, RunResult(texts, errors, report))
        return self._columns(plan, outcome.values, outcome.errors, outcome.result.texts)

    def _replies(self, op: Any, plan: Any) -> tuple[list[Any], dict[int, str]]:
        """Per distinct request: its reply text (an embedding: its vector), or its reason in `errors`."""
        conn = op.options["connection"]
        op.apply_cap(plan, conn)
        vectors = op.kind == "embed"
        texts: list[Any] = [None] * plan.size
        errors: dict[int, str] = {}
        store = _cache(True)
        try:
            for idx, keys, _bodies in keyed(op, plan, conn):
                for start in range(0, len(keys), _LOOKUP):
                    got = (store.get_vectors if vectors else store.get_many)(keys[start:start + _LOOKUP])
                    for i, key in zip(idx[start:start + _LOOKUP], keys[start:start + _LOOKUP]):
                        hit = got.get(key)
                        if hit is None:
                            errors[i] = self.reasons.get(key) or self.missing
                        else:
                            texts[i] = _vector(hit) if vectors else hit.text
        finally:
            store.close()
        return texts, errors


class JoinedTask(CachedTask):
    """`CachedTask` with each reply taken from the row's own columns instead of a cache: the
    driver's replies (key, text or vector, reason: `REPLIES_SCHEMA`) joined to every row by the
    key `RowKeyTask` gave it. Works on any cluster: the executors need no cache. The joined
    columns are read, then dropped; the rest is the online task's (outcome, typed columns)."""

    def __init__(self, spec: Any, missing: str = "") -> None:
        super().__init__(spec, None, missing)
        self._joined: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_joined": {}}

    def run(self, batch: Any, stage: Any = None) -> Any:
        names = [n for n in _JOINED if n in batch.schema.names]
        self._joined = {n: batch.column(batch.schema.get_field_index(n)) for n in names}
        try:
            return super().run(batch.drop_columns(names), stage)
        finally:
            self._joined = {}

    def _replies(self, op: Any, plan: Any) -> tuple[list[Any], dict[int, str]]:
        import numpy as np
        import pyarrow as pa

        codes = np.asarray(plan.codes)
        rows = np.nonzero(codes >= 0)[0]
        first = np.zeros(plan.size, dtype=np.int64)  # per distinct request: a row of it (all share its key)
        distinct, at = np.unique(codes[rows], return_index=True)
        first[distinct] = rows[at]
        take = pa.array(first)
        got = {n: col.take(take).to_pylist() for n, col in self._joined.items()}
        keys, texts_, vectors = got.get(KEY_COL), got.get(TEXT_COL), got.get(VECTOR_COL)
        reasons = got.get(REASON_COL)
        texts: list[Any] = [None] * plan.size
        errors: dict[int, str] = {}
        for i in range(plan.size):
            if op.kind == "embed":
                blob = vectors[i] if vectors else None
                if blob is not None:
                    texts[i] = _vector(blob)
                    continue
            elif texts_ and texts_[i] is not None:
                texts[i] = texts_[i]
                continue
            reason = reasons[i] if reasons else None
            if reason is None and keys and keys[i] is None:
                reason = "no key for this request"  # pragma: no cover - RowKeyTask keys every planned row
            errors[i] = reason or self.missing
        return texts, errors


KEY_COL, TEXT_COL, VECTOR_COL, REASON_COL = ("__foundry_key", "__foundry_reply", "__foundry_vector",
                                             "__foundry_reason")
_JOINED = (KEY_COL, TEXT_COL, VECTOR_COL, REASON_COL)
REPLIES_SCHEMA = f"{KEY_COL} binary, {TEXT_COL} string, {VECTOR_COL} binary, {REASON_COL} string"
_BROADCAST = 64 << 20  # a replies frame up to this size goes to every executor whole (a broadcast join)


class RowKeyTask:
    """Arrow batches in, the same batches with `KEY_COL` out: each row's request key (null for a
    row that sends nothing), planned and keyed exactly as `KeyTask` keys the upload."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.__name__ = f"foundry_batch_rowkeys_{spec.op.kind}"

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from foundry_magics.frames.spark_task import batch_rows

        spec = self.spec
        view = _view(spec)
        op, conn = _operation(view, spec.op)
        for batch in batches:
            plan = op.plan(batch_rows(view, batch))
            op.apply_cap(plan, conn)
            keys: list[Any] = [None] * plan.size
            for idx, ks, _bodies in keyed(op, plan, conn):
                for i, key in zip(idx, ks):
                    keys[i] = key
            per_row = [keys[c] if c >= 0 else None for c in plan.codes.tolist()] if plan.n else []
            yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(per_row, type=pa.binary())],
                                             names=[*batch.schema.names, KEY_COL])


def _vector(blob: Any) -> Any:
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32)


# ====================================================================== the driver


@dataclass
class _Source:
    """What `BatchJob`'s progress reads of a call (`batch_api.submit.Call.src`)."""

    op: str
    model: str | None
    total_rows: int = 0
    na_rows: int = 0
    size: int = 0


class SparkCall(CacheOnUse):
    """One Spark batch call, as `BatchJob` sees a call: progress, poll interval, the cache that
    collection fills, the tokens it counts; and how the Spark DataFrame is made (`assemble`)."""

    def __init__(self, client: Any, store: Any, src: _Source, *, progress: Any, label: str,
                 poll_interval: float | None, make: Any, started: float) -> None:
        from foundry_magics.batch_api.state import check_interval

        self.client, self.store, self.src = client, store, src
        self.progress, self.label = progress, label
        self.poll_interval = None if poll_interval is None else check_interval(poll_interval)
        self.make = make  # (call, job ids, reasons, missing) -> the lazy Spark DataFrame
        self.keys: list[bytes] = []  # every distinct request of the call: its files', re-attached, cached
        self.finish = None
        self.cached_rows = self.pending_rows = self.cache_hits = self.submitted = 0
        self.in_tokens = self.out_tokens = 0
        self.started = started

    def interval(self) -> float:
        from foundry_magics.batch_api.state import default_interval

        return self.poll_interval if self.poll_interval is not None else default_interval(self.client)

    def assemble(self, job: SparkBatchJob) -> Any:
        """The call's Spark DataFrame; the run counted in `fm.last_run()` and `fm.usage()`."""
        from foundry_magics.engine.report import RunReport, set_last
        from foundry_magics.store.usage import record_run

        reasons = self.store.reasons(job.ids) if job.ids else {}
        counts = job.counts
        if job.ids and job.status == "failed" and not counts.completed:
            raise job.failure_error(self.src.op)
        src = self.src
        stopped = None
        if job.ids and job.status in ("failed", "expired", "cancelled"):
            stopped = f"the batch job {job.status}" + (f": {job.errors[0]}" if job.errors else "")
        report = RunReport(rows=src.total_rows, na_rows=src.na_rows, unique=src.size,
                           dedup_saved=max(0, src.total_rows - src.na_rows - src.size), cache_hits=self.cache_hits,
                           requests=self.submitted, input_tokens=self.in_tokens, output_tokens=self.out_tokens,
                           seconds=time.monotonic() - self.started, failed=len(reasons), stopped=stopped,
                           model=src.model, connection=self.client.connection.label, operation=src.op)
        report.done = max(0, src.total_rows - src.na_rows - report.failed)  # rows answered (failed: requests)
        report.batch = True  # priced at the Batch API's rate
        report.batch_jobs = list(job.ids)
        set_last(report)
        record_run(report, batch=True)
        return self.make(self, list(job.ids), reasons, job.missing_reason() if job.ids else "")

    def replies(self, reasons: dict[bytes, str], vectors: bool) -> Any:
        """The call's replies as a pyarrow table (`REPLIES_SCHEMA`): one row per distinct request
        of the call (`keys`: not per row), with the reply (or vector) from this driver's cache,
        where the job's results were collected, else the reason the job gave."""
        import pyarrow as pa

        order = list(dict.fromkeys(self.keys))
        texts: list[Any] = [None] * len(order)
        blobs: list[Any] = [None] * len(order)
        get = self.cache.get_vectors if vectors else self.cache.get_many
        for start in range(0, len(order), _LOOKUP):
            chunk = order[start:start + _LOOKUP]
            got = get(chunk)
            for j, key in enumerate(chunk, start):
                hit = got.get(key)
                if hit is not None:
                    if vectors:
                        blobs[j] = bytes(hit)
                    else:
                        texts[j] = hit.text
        why = [None if (t is not None or b is not None) else reasons.get(k) for k, t, b in zip(order, texts, blobs)]
        return pa.table({KEY_COL: pa.array(order, type=pa.binary()), TEXT_COL: pa.array(texts, type=pa.string()),
                         VECTOR_COL: pa.array(blobs, type=pa.binary()), REASON_COL: pa.array(why, type=pa.string())})


@functools.lru_cache(maxsize=None)
def _job_class() -> Any:
    from foundry_magics.batch_api.jobs import BatchJob

    class SparkBatchJob(BatchJob):
        """A Batch API job of a Spark call: `result()` is the Spark DataFrame the call returns."""

        def result(self, poll_interval: float | None = None) -> Any:
            if self._have_result:
                return self._result
            if not self.done:
                self.wait(poll_interval)
            call: Any = self._call  # this module's SparkCall (assemble, close), not batch_api's Call
            try:
                out = call.assemble(self)
            finally:
                call.close()
            self._result, self._have_result = out, True
            return out

    return SparkBatchJob


def __getattr__(name: str) -> Any:  # SparkBatchJob without importing batch_api at import time
    if name == "SparkBatchJob":
        return _job_class()
    raise AttributeError(name)


def run(sdf: Any, op: Any, *, column: str | None = None, output_col: str | None = None,
        parallelism: int | None = None, images: str | None = None) -> Any:
    """Submit `op` over `sdf` through the Batch API (see the module docstring): the Spark
    DataFrame once the job finished (wait=True), or the `fm.BatchJob` (wait=False)."""
    import warnings

    from pyspark.sql import functions as F

    from foundry_magics.batch_api.parts import resume
    from foundry_magics.defaults import home as driver_home
    from foundry_magics.frames.spark_job import build, cache_home, output_columns, prepare, shipped
    from foundry_magics.ops.display import resolve
    from foundry_magics.rest.batches import BatchClient
    from foundry_magics.store.batches import JobStore

    started = time.monotonic()
    conn, cluster, used = prepare(sdf, op, column=column, parallelism=parallelism, images=images)
    output_columns(sdf, op, output_col)  # a clash is refused before anything is sent
    o = op.options
    poll_interval = o.get("poll_interval")
    client = BatchClient(conn)  # a connection without the Batch API is refused here, nothing sent
    store = JobStore()
    try:
        model = _fix_model(op, client, conn)
        kind = "embeddings" if op.kind == "embed" else op.request_spec(conn).op
        resume(store, client, poll_interval)  # stopped submissions first: their keys may be ours
        ship = shipped(op, online=False)
        home = cache_home(cluster)
        shared = home is not None and os.path.abspath(home) == os.path.abspath(str(driver_home()))
        use_cache = bool(o.get("cache", True))
        job_id = "fmb-" + secrets.token_hex(6)
        slots = parallelism or cluster.parallelism or 2
        spec = _Spec(op=ship, connection=conn.to_dict(), connection_name=conn.name, column=column,
                     columns=tuple(used), images=images, cache=use_cache and shared, home=home, job=job_id,
                     url=client.routes.line_url(kind), poll_interval=poll_interval,
                     max_lines=BATCH_MAX_LINES, max_bytes=BATCH_MAX_BYTES)
        spark = sdf.sparkSession
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                                    category=FutureWarning)
            per_request = sdf.mapInArrow(KeyTask(spec), KEYS_SCHEMA)
            kept = None
            if use_cache and not shared:  # executors with a cache of their own: this driver's answers
                per_request, kept = _driver_hits(per_request, spark, op.kind == "embed")
            live = store.live_keys() if store.has_live_jobs() else []
            if live:
                pending = spark.createDataFrame(live, "key binary, job string")
                per_request = per_request.join(F.broadcast(pending), "key", "left")
            else:
                per_request = per_request.withColumn("job", F.lit(None).cast("string"))
            # identical keys meet in one upload task, which writes each once (no aggregation: a plain exchange)
            per_key = per_request.select("key", "line", "cached", "weight", "rows", "na", "job").repartition(
                slots, "key")
            try:
                collected = per_key.mapInArrow(UploadTask(spec), PARTS_SCHEMA).collect()
            except KeyboardInterrupt:
                from foundry_magics.batch_api.failures import BatchInterrupted

                raise BatchInterrupted("Interrupted while the executors uploaded the input: no batch was created and "
                                       "nothing runs on the service; run the call again to submit it.") from None
            finally:
                if kept is not None:
                    kept.unpersist()

        def make(call: SparkCall, ids: list[str], reasons: dict[bytes, str], missing: str) -> Any:
            from pyspark.sql.types import BinaryType, StructField, StructType

            table = call.replies(reasons, op.kind == "embed")
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                                        category=FutureWarning)
                replies = spark.createDataFrame(table) if table.num_rows else spark.createDataFrame([], REPLIES_SCHEMA)
                keyed_rows = sdf.mapInArrow(RowKeyTask(spec),
                                            StructType([*sdf.schema.fields, StructField(KEY_COL, BinaryType(), True)]))
            small = table.nbytes <= _BROADCAST
            joined = keyed_rows.join(F.broadcast(replies) if small else replies, KEY_COL, "left")
            return build(sdf, op, column=column, output_col=output_col, parallelism=parallelism, images=images,
                         task=lambda ts: JoinedTask(ts, missing), source=joined)
        src = _Source(kind, model)
        call = SparkCall(client, store, src, progress=resolve(o.get("progress", True), batch=True),
                         label=op.kind, poll_interval=poll_interval, started=started, make=make)
        files: list[Any] = []
        attached: dict[str, int] = {}
        for r in collected:
            blob = r["keys"] or b""  # the keys of a file, of a re-attached job, or those the cache answered
            call.keys.extend(bytes(blob[i:i + 32]) for i in range(0, len(blob), 32))
            if r["file_id"] is not None:
                files.append(r)
            elif r["job"] is not None:
                attached[r["job"]] = attached.get(r["job"], 0) + int(r["distinct"] or 0)
            else:
                src.total_rows += int(r["rows"] or 0)
                src.na_rows += int(r["na"] or 0)
                src.size += int(r["distinct"] or 0)
                call.cache_hits += int(r["cached"] or 0)
                call.cached_rows += int(r["cached_rows"] or 0)
                call.pending_rows += int(r["pending_rows"] or 0)
        if attached:
            log.info("re-attached %s request(s) to %s", sum(attached.values()), ", ".join(attached))
        ids = list(attached)
        if files:
            _create(client, store, call, job_id, kind, model, op.kind, files, poll_interval)
            ids.append(job_id)
    except BaseException:
        client.close()
        store.close()
        raise
    job = _job_class()(ids, client=client, store=store, call=call)
    return job.result() if o.get("wait", True) else job


def _driver_hits(per_request: Any, spark: Any, vectors: bool) -> tuple[Any, Any]:
    """Executors that do not share this driver's cache (a cluster) looked up none: the distinct
    keys come to the driver (32 bytes each), which marks those its cache answers, so they are not
    submitted again; `assemble` ships their replies with the job's. The keyed frame is kept
    (persisted) for the upload that follows: (the marked frame, the persisted one to release)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from foundry_magics.store.cache import ResponseCache

    kept = per_request.persist(StorageLevel.MEMORY_AND_DISK)
    keys = [bytes(r[0]) for r in kept.where(F.col("key").isNotNull()).select("key").distinct().collect()]
    hits: list[bytes] = []
    cache = ResponseCache()
    try:
        get = cache.get_vectors if vectors else cache.get_many
        for start in range(0, len(keys), _LOOKUP):
            chunk = keys[start:start + _LOOKUP]
            got = get(chunk)
            hits.extend(k for k in chunk if k in got)
    finally:
        cache.close()
    if not hits:
        return kept, kept
    marks = spark.createDataFrame([(k,) for k in hits], "key binary").withColumn("hit", F.lit(True))
    marked = kept.join(F.broadcast(marks), "key", "left").withColumn(
        "cached", F.coalesce(F.col("hit"), F.col("cached"))).drop("hit")
    return marked, kept


def _fix_model(op: Any, client: Any, conn: Any) -> str | None:
    """The model every line names, found once on the driver (a server serving exactly one: that
    one) and given to the executors, so keys and bodies are the same everywhere."""
    o = op.options
    if op.kind == "embed":
        _route, model = client.build_embed(["probe"], o.get("model"), o.get("dimensions"))
        return model
    spec = op.request_spec(conn)
    client.ensure_model(spec.model, spec.op)
    _route, body = client.build(spec.op, "probe", **spec.options())
    model = body.get("model") or spec.model or conn.model
    if model and not o.get("model") and not conn.model:
        o["model"] = model  # discovered: the executors use it as given
    return model


def _create(client: Any, store: Any, call: SparkCall, job_id: str, kind: str, model: str | None, label: str,
            files: list[Any], poll_interval: float | None) -> None:
    """Record the job and its files (with their keys), then create a batch per file. Ctrl-C or
    an error keeps the files not created yet as 'interrupted': the next run picks them up."""
    from foundry_magics.batch_api.failures import BatchInterrupted
    from foundry_magics.batch_api.parts import create_part
    from foundry_magics.batch_api.state import STOPPED, file_poll, settle

    conn = client.connection
    store.add_job(job_id, connection=conn.label, conn={"name": conn.name, **conn.to_dict()}, model=model, op=kind,
                  label=label, rows=call.src.total_rows)
    for no, r in enumerate(files):
        blob = r["keys"]
        keys = [bytes(blob[i:i + 32]) for i in range(0, len(blob), 32)]
        store.add_part(job_id, no, input_file_id=r["file_id"], lines=int(r["lines"]), size=int(r["bytes"]),
                       keys=keys)
    done = 0
    try:
        for no, r in enumerate(files):
            create_part(client, store, job_id, no, kind, {"id": r["file_id"], "status": r["status"]},
                        file_poll(client, poll_interval))
            call.submitted += int(r["lines"])
            done += 1
    except BaseException as exc:
        for no in range(done + 1, len(files)):
            store.update_part(job_id, no, status=STOPPED)
        settle(store, job_id)
        if isinstance(exc, KeyboardInterrupt):
            raise BatchInterrupted(
                f"Interrupted while creating the batches of job {job_id}: its input files are uploaded and kept; "
                "run the same call again to pick them up (fm.batch_jobs() lists the jobs).") from None
        raise
