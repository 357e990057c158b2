"""Batch API jobs: DataFrame calls at half the price, within 24 hours, resumable across restarts.

    job = submit(batch, spec, connection=conn)          # what `df.foundry.prompt(..., batch=True, wait=False)` calls
    job.id, job.status, job.counts                     # counts: total / completed / failed (requests)
    job.refresh(); job.wait(poll_interval=60); job.result(); job.cancel()
    BatchJob.attach("fmb-..."), batch_jobs()           # after a restart, from the jobs table

How a call goes:
1. **Scan** the call's distinct requests in chunks, built and keyed exactly as online
   (`batch_input`): cached ones are answered at once, ones an earlier job (of this kernel or
   another) still carries are **re-attached** to it, identical ones go once, the rest are
   written to input files split at 100,000 lines / 200 MB.
2. **Submit** each file: upload (streamed from disk, then deleted), wait until the service has
   processed it (creating a batch on a "pending" file fails), create the batch. The job and
   the keys of each file are recorded in the store before the batch is created.
3. **Wait**: poll every `poll_interval` seconds (60 by default, as Azure asks), with the
   job's status and request counts on the progress display. Ctrl-C stops waiting only: the
   job keeps running, and the line that picks it up again is printed.
4. **Collect** each finished part: output lines go into the response cache by `custom_id`
   (so a later online call of the same prompts sends nothing), error-file lines and rows an
   expired / cancelled / failed batch never ran keep their reason in the store.
5. **Assemble** the call's result from the cache: every row answered, or NA with its reason
   in `fm.last_run().failures`; running the call again submits exactly the missing rows.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from foundry_magics.defaults import (
    BATCH_CHUNK,
    BATCH_EMULATOR_POLL_INTERVAL,
    BATCH_FILE_POLL,
    BATCH_FILE_WAIT,
    BATCH_MAX_BYTES,
    BATCH_MAX_LINES,
    BATCH_POLL_INTERVAL,
    BATCH_SUBMIT_STALE,
    MAX_RETRIES,
    POLL,
    TIMEOUT,
)
from foundry_magics.engine.batch_input import Part, PartWriter, Source, embed_source, prompt_source
from foundry_magics.engine.prompts import Batch, RequestSpec
from foundry_magics.engine.report import BatchResult, RunReport, Snapshot, set_last
from foundry_magics.errors import ConfigurationError, FoundryError, NotFoundError, describe

__all__ = ["BatchJob", "BatchCounts", "BatchSnapshot", "BatchFailedError", "submit", "submit_embeddings",
           "job_rows", "JOB_COLUMNS"]

log = logging.getLogger("foundry_magics.batch")

_ACTIVE_ORDER = ("submitting", "validating", "in_progress", "finalizing", "cancelling")
_END_ORDER = ("failed", "expired", "cancelled", "completed")  # a mixed job shows the worst
_LOOKUP = 5_000  # cache keys looked up at a time when assembling a result


class BatchFailedError(FoundryError):
    """A batch job answered no request: the service refused it (validation) or it never ran."""


class BatchCounts(NamedTuple):
    """Requests of a job: how many, finished, failed (as the service counts them)."""

    total: int = 0
    completed: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.completed:,}/{self.total:,} done" + (f", {self.failed:,} failed" if self.failed else "")


@dataclass
class BatchSnapshot(Snapshot):
    """A `Snapshot` with the job's own words: its status and its request counts."""

    status: str = ""
    job_id: str | None = None
    requests: BatchCounts = BatchCounts()


# ====================================================================== entry points


def submit(batch: Batch, spec: RequestSpec = RequestSpec(), *, connection: Any = None, cache: bool = True,
           progress: Any = False, label: str = "batch", poll_interval: float | None = None,
           finish: Callable[[BatchResult], Any] | None = None, timeout: float = TIMEOUT,
           max_retries: int = MAX_RETRIES, transport: Any = None, max_lines: int = BATCH_MAX_LINES,
           max_bytes: int = BATCH_MAX_BYTES) -> "BatchJob":
    """Submit the distinct requests of `batch` (chat or responses) through the Batch API; a BatchJob at once.

    Cached requests are not submitted; requests a recorded job still carries re-attach to it
    (nothing is submitted twice). `finish(BatchResult)` turns the results into what the call
    returns (`job.result()`); without it `result()` returns the BatchResult.
    """
    if spec.op not in ("chat", "responses"):
        raise ConfigurationError(f"Unknown API {spec.op!r}.", hint="Use 'chat' or 'responses'.")
    from foundry_magics.engine.runner import ensure_model

    io = _io(connection, timeout, max_retries, transport)
    ensure_model(io.base, spec)  # a server serving exactly one model: that one (as online)
    src = prompt_source(io.base, batch, spec)
    return _start(io, src, cache=cache, progress=progress, label=label, poll_interval=poll_interval, finish=finish,
                  max_lines=max_lines, max_bytes=max_bytes)


def submit_embeddings(texts: Sequence[str], *, connection: Any = None, model: str | None = None,
                      dimensions: int | None = None, weights: Sequence[int] | None = None, rows: int | None = None,
                      na_rows: int = 0, cache: bool = True, progress: Any = False, label: str = "embed",
                      poll_interval: float | None = None, finish: Callable[[BatchResult], Any] | None = None,
                      timeout: float = TIMEOUT, max_retries: int = MAX_RETRIES, transport: Any = None,
                      max_lines: int = BATCH_MAX_LINES, max_bytes: int = BATCH_MAX_BYTES) -> "BatchJob":
    """Embeddings of distinct `texts` through the Batch API, one text per line; a BatchJob at once."""
    io = _io(connection, timeout, max_retries, transport)
    src = embed_source(io.base, texts, model=model, dimensions=dimensions, weights=weights, rows=rows,
                       na_rows=na_rows)
    return _start(io, src, cache=cache, progress=progress, label=label, poll_interval=poll_interval, finish=finish,
                  max_lines=max_lines, max_bytes=max_bytes)


def _io(connection: Any, timeout: float, max_retries: int, transport: Any) -> Any:
    from foundry_magics.connections.session import connection_for
    from foundry_magics.engine.batch_io import BatchHTTP

    return BatchHTTP(connection_for(connection), timeout=timeout, max_retries=max_retries, transport=transport)


def _start(io: Any, src: Source, **options: Any) -> "BatchJob":
    from foundry_magics.store.batches import JobStore

    call = _Call(io, src, JobStore(), **options)
    try:
        call.submit()
    except KeyboardInterrupt:
        call.close()
        if not call.job_ids:
            io.close()
            raise
        job = BatchJob(call.job_ids, io=io, store=call.store)
        msg = (f"Interrupted while submitting: {job.counts.total:,} requests of batch job {job.id} were submitted "
               f"and keep running. Run the same call again: it re-attaches to them and submits the rest.")
        print(msg, file=sys.stdout, flush=True)
        job.close()
        raise KeyboardInterrupt(msg) from None
    except BaseException:
        call.close()
        io.close()
        raise
    return BatchJob(call.job_ids, io=io, store=call.store, call=call)


def _check_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"poll_interval must be a positive number of seconds, got {value!r}.",
                                 hint=f"Pass poll_interval={BATCH_POLL_INTERVAL:g} (Azure asks for no more often "
                                      "than every 60 s), or leave it out.")
    return float(value)


# ====================================================================== one call


class _Call:
    """The context of one DataFrame call: its requests, what the scan found, how to finish."""

    def __init__(self, io: Any, src: Source, store: Any, *, cache: bool, progress: Any, label: str,
                 poll_interval: float | None, finish: Callable[[BatchResult], Any] | None,
                 max_lines: int, max_bytes: int) -> None:
        self.io = io
        self.src = src
        self.store = store
        self.use_cache = cache
        self.progress = progress
        self.label = label
        self.poll_interval = None if poll_interval is None else _check_interval(poll_interval)
        self.finish = finish
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.job_id = "fmb-" + secrets.token_hex(6)
        self.job_ids: list[str] = []  # re-attached jobs, then the new one
        self.keys = bytearray()
        self.values: list[Any] = []
        self.cache_hits = self.cached_rows = self.pending_rows = self.submitted = self.dedup = 0
        self.attached: dict[str, int] = {}
        self.recorded = False  # the job's row is in the store
        self.started = time.monotonic()
        self.in_tokens = self.out_tokens = 0
        self._cache: Any = None

    # -- the response cache (results always land there: that is how a job survives a restart)

    @property
    def cache(self) -> Any:
        if self._cache is None:
            from foundry_magics.store.cache import ResponseCache

            self._cache = ResponseCache()
        return self._cache

    def close(self) -> None:
        if self._cache is not None:
            try:
                self._cache.close()
            finally:
                self._cache = None

    # -- scan and submit ------------------------------------------------------------------

    def submit(self) -> None:
        src, store = self.src, self.store
        n = src.size
        self.keys = bytearray(32 * n)
        self.values = [None] * n
        vectors = src.op == "embeddings"
        reap_stale(store, self.io)
        live = store.has_live_jobs()
        seen: set[bytes] = set()
        writer: PartWriter | None = None
        try:
            for start in range(0, n, BATCH_CHUNK):
                idx = range(start, min(n, start + BATCH_CHUNK))
                built = src.build(idx)
                if writer is None:
                    writer = PartWriter(self.io.routes.line_url(src.op), max_lines=self.max_lines,
                                        max_bytes=self.max_bytes, on_full=self._submit_part)
                self.keys[start * 32:(start + len(built)) * 32] = b"".join(k for k, _ in built)
                fresh: list[tuple[int, bytes, Any]] = []
                for i, (key, body) in zip(idx, built):
                    if key in seen:
                        self.dedup += src.weight(i)
                        continue
                    seen.add(key)
                    fresh.append((i, key, body))
                if self.use_cache and fresh:
                    got = (self.cache.get_vectors if vectors else self.cache.get_many)([k for _, k, _ in fresh])
                    if got:
                        rest = []
                        for item in fresh:
                            hit = got.get(item[1])
                            if hit is None:
                                rest.append(item)
                            else:
                                self.values[item[0]] = _vector(hit) if vectors else hit.text
                                self.cache_hits += 1
                                self.cached_rows += src.weight(item[0])
                        fresh = rest
                pending = store.pending([k for _, k, _ in fresh]) if live and fresh else {}
                for i, key, body in fresh:
                    self.pending_rows += src.weight(i)
                    job = pending.get(key)
                    if job is not None:
                        self.attached[job] = self.attached.get(job, 0) + 1
                    else:
                        writer.add(key, body)
            if writer is not None:
                writer.close()
                writer = None
        finally:
            if writer is not None:  # interrupted or failed mid-file: nothing left on disk
                writer.discard()
            self.job_ids = [*self.attached, *([self.job_id] if self.submitted else [])]
        if self.attached:
            log.info("re-attached %s request(s) to %s", sum(self.attached.values()), ", ".join(self.attached))

    def _submit_part(self, part: Part) -> None:
        from foundry_magics.rest.batches import file_status, is_pending_file

        io, store = self.io, self.store
        if not self.recorded:
            conn = io.connection
            store.add_job(self.job_id, connection=conn.label, conn={"name": conn.name, **conn.to_dict()},
                          model=self.src.model, op=self.src.op, label=self.label, rows=self.src.total_rows)
            self.recorded = True
        uploaded = io.upload(part.path, f"foundry-magics-{self.job_id}-{part.no}.jsonl")
        file_id = str(uploaded.get("id") or "")
        if not file_id:
            from foundry_magics.errors import ResponseError

            raise ResponseError("The Files API answered the upload without a file id.")
        store.add_part(self.job_id, part.no, input_file_id=file_id, lines=part.lines, size=part.size, keys=part.keys)
        self.submitted += part.lines
        try:
            interval = min(BATCH_FILE_POLL, self.interval())
            deadline = time.monotonic() + BATCH_FILE_WAIT
            status = file_status(uploaded)
            while True:
                if status in ("error", "deleted", "deleting"):
                    details = uploaded.get("status_details") or "no details"
                    raise BatchFailedError(f"The service could not process the input file {file_id}: {details}.",
                                           hint="Run the call again; if it fails the same way, send it online "
                                                "(without batch=True).")
                if status not in ("pending", "running"):  # processed (or "uploaded": try, the quirk is handled)
                    try:
                        created = io.create(file_id, io.routes.line_url(self.src.op),
                                            {"foundry_magics_job": self.job_id, "part": str(part.no)})
                        break
                    except FoundryError as exc:  # "file ... in 'pending' state": wait, then create again
                        if not is_pending_file(exc) or time.monotonic() > deadline:
                            raise
                elif time.monotonic() > deadline:
                    raise BatchFailedError(f"The input file {file_id} was still {status!r} after "
                                           f"{BATCH_FILE_WAIT:g} s.", hint="Run the call again later.")
                time.sleep(interval)
                store.touch_part(self.job_id, part.no)
                uploaded = io.file(file_id)
                status = file_status(uploaded)
        except BaseException:
            # No batch for these requests: they are not pending; a re-run submits them again.
            store.abandon_part(self.job_id, part.no, "the submission stopped before its batch was created")
            store.update_job(self.job_id, status=aggregate([p["status"] for p in store.parts(self.job_id)]))
            self.submitted -= part.lines
            io.delete(file_id)
            raise
        from foundry_magics.rest.batches import batch_state

        st = batch_state(created)
        store.update_part(self.job_id, part.no, batch_id=st.id, status=st.status, completed=st.completed,
                          failed=st.failed)
        store.update_job(self.job_id, status=aggregate([p["status"] for p in store.parts(self.job_id)]))

    def interval(self) -> float:
        if self.poll_interval is not None:
            return self.poll_interval
        return default_interval(self.io)

    # -- collecting and assembling ------------------------------------------------------

    def assemble(self, job: "BatchJob") -> BatchResult:
        src = self.src
        vectors = src.op == "embeddings"
        reasons = self.store.reasons(job.ids)
        errors: dict[int, str] = {}
        done = failed = 0
        get = self.cache.get_vectors if vectors else self.cache.get_many
        for start in range(0, src.size, _LOOKUP):
            stop = min(src.size, start + _LOOKUP)
            want = [i for i in range(start, stop) if self.values[i] is None]
            if want:
                keys = [bytes(self.keys[32 * i:32 * i + 32]) for i in want]
                got = get(keys)
                for i, key in zip(want, keys):
                    hit = got.get(key)
                    if hit is not None:
                        self.values[i] = _vector(hit) if vectors else hit.text
                    else:
                        errors[i] = reasons.get(key) or job.missing_reason()
            for i in range(start, stop):
                if i in errors:
                    failed += src.weight(i)
                elif self.values[i] is not None:
                    done += src.weight(i)
        counts = job.counts
        stopped = None
        error = None
        if failed and job.status in ("failed", "expired", "cancelled"):
            stopped = f"the batch job {job.status}" + (f": {job.errors[0]}" if job.errors else "")
        if job.status == "failed" and failed and not (counts.completed or done - self.cached_rows > 0):
            error = job.failure_error(src.op)
        report = RunReport(
            rows=src.total_rows, done=done, na_rows=src.na_rows, unique=src.size,
            dedup_saved=max(0, src.total_rows - src.na_rows - src.size) + self.dedup,
            cache_hits=self.cache_hits, requests=self.submitted, input_tokens=self.in_tokens,
            output_tokens=self.out_tokens, seconds=time.monotonic() - self.started, failed=failed,
            not_sent=max(0, src.total_rows - src.na_rows - done - failed), stopped=stopped, model=src.model,
            connection=self.io.connection.label, operation=src.op,
        )
        report.batch = True  # priced at the Batch API's rate (RunReport.cost)
        report.batch_jobs = list(job.ids)
        set_last(report)
        from foundry_magics.store.usage import record_run

        record_run(report, batch=True)  # %foundry usage / fm.usage() count batches too
        return BatchResult(list(self.values), errors, report, error=error)


def default_interval(io: Any) -> float:
    """60 s (as Azure asks), or the emulator's fast clock (its replies say they are emulated)."""
    return BATCH_EMULATOR_POLL_INTERVAL if getattr(io, "emulated", False) else BATCH_POLL_INTERVAL


def _vector(blob: Any) -> Any:
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32)


def aggregate(statuses: Sequence[str]) -> str:
    """One status for a job of several parts: the least advanced active one, else the worst end."""
    live = [s for s in statuses if s != "abandoned"]
    if not live:
        return "failed" if statuses else "completed"
    for s in _ACTIVE_ORDER:
        if s in live:
            return s
    for s in _END_ORDER:
        if s in live:
            return s
    return live[0]


def reap_stale(store: Any, io: Any) -> None:
    """Parts whose kernel died between upload and batch creation: adopt the batch the service
    made (found by its input file), else give the part up so its rows are submitted again."""
    stale = store.stale_parts(BATCH_SUBMIT_STALE)
    if not stale:
        return
    mine = []
    for p in stale:
        job = store.job(p["job"])
        if job and (job["conn"] or {}).get("endpoint") == io.connection.endpoint:
            mine.append(p)
    if not mine:
        return
    try:
        by_file = {b.get("input_file_id"): b for b in io.list(100)}
    except FoundryError:
        by_file = {}
    from foundry_magics.rest.batches import batch_state

    for p in mine:
        found = by_file.get(p["input_file_id"])
        if found is not None:
            st = batch_state(found)
            store.update_part(p["job"], p["part"], batch_id=st.id, status=st.status)
        else:
            store.abandon_part(p["job"], p["part"], "the submission stopped before its batch was created")
            io.delete(p["input_file_id"])


# ====================================================================== the job


class BatchJob:
    """A Batch API job: one submission of a DataFrame call, made of one service batch per input file.

    `id`, `status` (validating, in_progress, finalizing, completed, failed, expired,
    cancelling, cancelled; "submitting" while its files upload), `counts` (total /
    completed / failed requests), `refresh()`, `wait(poll_interval=)`, `result()`, `cancel()`.
    `BatchJob.attach(id)` picks a recorded job up again (also a service batch id).
    """

    def __init__(self, ids: Sequence[str], *, io: Any = None, store: Any = None, call: _Call | None = None) -> None:
        self.ids = list(ids)
        self._io = io
        self._store = store
        self._call = call
        self._parts: dict[str, list[dict[str, Any]]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._result: Any = None
        self._have_result = False
        self._load()

    def set_finish(self, finish: Callable[[BatchResult], Any] | None) -> None:
        """How `result()` turns the job's results into what the call returns (the faces set it)."""
        if self._call is not None:
            self._call.finish = finish

    # -- picking a job up again ---------------------------------------------------------

    @classmethod
    def attach(cls, job_id: str, *, connection: Any = None, timeout: float = TIMEOUT,
               max_retries: int = MAX_RETRIES, transport: Any = None) -> "BatchJob":
        """A recorded job by its id (`fmb-...`) or by the id of one of its service batches (`batch_...`).

        `connection`: where to poll it (default: the connection it was submitted on, by name,
        else as recorded - never a key: that comes from the variable it names)."""
        from foundry_magics.engine.batch_io import BatchHTTP
        from foundry_magics.store.batches import JobStore

        if not isinstance(job_id, str) or not job_id.strip():
            raise ConfigurationError("Give a batch job id.", hint="fm.batch_jobs() lists the recorded jobs.")
        store = JobStore()
        jid = job_id.strip()
        row = store.job(jid)
        if row is None:
            parent = store.job_of_batch(jid)
            row = store.job(parent) if parent else None
        if row is None:
            store.close()
            raise ConfigurationError(f"No batch job {job_id!r} is recorded in this FOUNDRY_MAGICS_HOME.",
                                     hint="fm.batch_jobs() (or %foundry batches) lists the recorded jobs.")
        conn = connection if connection is not None else _recorded_connection(row)
        io = BatchHTTP(_resolve(conn), timeout=timeout, max_retries=max_retries, transport=transport)
        return cls([row["id"]], io=io, store=store)

    # -- state ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self._store is None:
            return
        for jid in self.ids:
            row = self._store.job(jid)
            if row is not None:
                self._jobs[jid] = row
            self._parts[jid] = self._store.parts(jid)

    def _all_parts(self) -> list[dict[str, Any]]:
        return [p for jid in self.ids for p in self._parts.get(jid, [])]

    @property
    def id(self) -> str | None:
        """The job's id (the newest, when a call re-attached to earlier jobs too); None: nothing was submitted."""
        return self.ids[-1] if self.ids else None

    @property
    def batch_ids(self) -> list[str]:
        """The service's batch ids (one per input file), as the Foundry portal shows them."""
        return [p["batch_id"] for p in self._all_parts() if p.get("batch_id")]

    @property
    def status(self) -> str:
        parts = self._all_parts()
        if not parts:
            return "completed" if not self.ids else (self._jobs.get(self.ids[-1], {}).get("status") or "submitting")
        return aggregate([p["status"] for p in parts])

    @property
    def counts(self) -> BatchCounts:
        parts = [p for p in self._all_parts() if p["status"] != "abandoned"]
        return BatchCounts(sum(p["lines"] for p in parts), sum(p["completed"] for p in parts),
                           sum(p["failed"] for p in parts))

    @property
    def errors(self) -> list[str]:
        """Why the service refused or ended a part (validation errors), readable."""
        return [e for p in self._all_parts() for e in p.get("errors") or []]

    @property
    def done(self) -> bool:
        """Every part ended and its results are collected (in the cache)."""
        return all(p["collected"] for p in self._all_parts())

    @property
    def connection(self) -> str | None:
        return self._io.connection.label if self._io is not None else None

    @property
    def model(self) -> str | None:
        return next((j.get("model") for j in self._jobs.values() if j.get("model")), None)

    # -- I/O -----------------------------------------------------------------------------

    def refresh(self) -> "BatchJob":
        """Ask the service for the status and counts of every part still running."""
        from foundry_magics.rest.batches import TERMINAL, batch_state

        store, io = self._store, self._io
        if store is None or io is None:
            return self
        for jid in self.ids:
            for p in store.parts(jid):
                if p["collected"] or p["status"] in TERMINAL or p["status"] == "abandoned":
                    continue
                if not p["batch_id"]:  # another kernel is still submitting it, or died doing so
                    reap_stale(store, io)
                    continue
                try:
                    st = batch_state(io.batch(p["batch_id"]))
                except NotFoundError:
                    gone = (f"the service no longer knows batch {p['batch_id']} (404): it was deleted, or the "
                            "emulator that ran it has stopped")
                    store.update_part(jid, p["part"], status="failed", errors=[gone])
                    continue
                store.update_part(jid, p["part"], status=st.status, completed=st.completed, failed=st.failed,
                                  output_file_id=st.output_file_id, error_file_id=st.error_file_id,
                                  errors=st.errors or None)
            statuses = [p["status"] for p in store.parts(jid)]
            if statuses:
                store.update_job(jid, status=aggregate(statuses))
        self._load()
        return self

    def cancel(self) -> "BatchJob":
        """Cancel every part still running (results finished so far are kept and collected)."""
        from foundry_magics.rest.batches import TERMINAL

        if self._io is None:
            return self
        for p in self._all_parts():
            if p.get("batch_id") and p["status"] not in TERMINAL and p["status"] != "cancelling":
                self._io.cancel(p["batch_id"])
        return self.refresh()

    def wait(self, poll_interval: float | None = None, *, progress: Any = None) -> "BatchJob":
        """Poll until every part has ended, collecting each one's results into the cache as it ends.

        Ctrl-C stops waiting (the job keeps running) and prints how to pick it up again."""
        call = self._call
        interval = (_check_interval(poll_interval) if poll_interval is not None
                    else call.interval() if call is not None else default_interval(self._io))
        progress = progress if progress is not None else (call.progress if call is not None else False)
        label = call.label if call is not None else "batch"
        display = None
        rates: deque = deque()
        started = time.monotonic()
        try:
            while True:
                self.refresh()
                self._collect()
                if progress and display is None:
                    display = _quietly(_make_display, progress, self._rows(), label)
                if display is not None:
                    _quietly(display.update, self.snapshot(rates, started))
                if self.done:
                    break
                _sleep(interval)
        except KeyboardInterrupt:
            self._close_display(display, rates, started, interrupted=True)
            raise KeyboardInterrupt(self._notify_pickup()) from None
        except FoundryError:
            self._close_display(display, rates, started, interrupted=True)
            self._notify_pickup(stopped=True)
            raise
        self._close_display(display, rates, started)
        return self

    def result(self, poll_interval: float | None = None) -> Any:
        """What the call would return (a Series / DataFrame on the frame's index), waiting first if needed."""
        if self._have_result:
            return self._result
        if self._call is None:
            raise ConfigurationError(
                f"Job {self.id} was picked up by its id, so it does not know the DataFrame it answers.",
                hint="Run the same df.foundry... call again: it re-attaches to this job and returns the result "
                     "(job.wait() first puts every finished reply into the cache).")
        if not self.done:
            self.wait(poll_interval)
        call = self._call
        try:
            result = call.assemble(self)
        finally:
            call.close()
        out = call.finish(result) if call.finish is not None else result
        self._result, self._have_result = out, True
        return out

    # -- collecting ------------------------------------------------------------------------

    def _collect(self) -> None:
        from foundry_magics.rest.batches import TERMINAL

        for jid in self.ids:
            job = self._jobs.get(jid) or {}
            for p in self._parts.get(jid, []):
                if not p["collected"] and p["status"] in TERMINAL:
                    self._collect_part(jid, job, p)
        self._load()

    def _collect_part(self, jid: str, job: dict[str, Any], part: dict[str, Any]) -> None:
        """Output lines into the cache; error lines and never-run requests keep their reason."""
        from foundry_magics.engine.batch_results import collect

        own_cache = self._call is None
        if own_cache:
            from foundry_magics.store.cache import ResponseCache

            cache = ResponseCache()
        else:
            cache = self._call.cache
        try:
            tokens = collect(self._io, self._store, cache, jid, job.get("op") or "chat", job.get("model"), part)
        finally:
            if own_cache:
                cache.close()
        if self._call is not None:
            self._call.in_tokens += tokens[0]
            self._call.out_tokens += tokens[1]

    def missing_reason(self) -> str:
        status = self.status
        if status == "expired":
            return "the batch expired (its 24 h window ended) before this request ran; run the call again to submit it"
        if status == "cancelled":
            return "the batch was cancelled before this request ran; run the call again to submit it"
        return "no result came back for this request; run the call again to submit it"

    def failure_error(self, op: str) -> BatchFailedError:
        why = "; ".join(self.errors[:3]) or "no reason given"
        hint = "Fix the cause and run the call again, or send it online (leave batch=True out)."
        if any("no longer knows" in e for e in self.errors):
            hint = "Run the same call again: its requests are submitted anew."
        elif op == "embeddings":
            hint = ("Azure's Batch API may not take embeddings on this deployment: send them online (leave "
                    "batch=True out; 2,048 texts per request keep that cheap).")
        return BatchFailedError(f"The batch job {self.id} failed: {why}.", hint=hint)

    # -- progress and display -----------------------------------------------------------

    def _rows(self) -> int:
        call = self._call
        return call.src.total_rows if call is not None else self.counts.total

    def snapshot(self, rates: deque | None = None, started: float | None = None) -> BatchSnapshot:
        """Progress in rows: cached ones, then the job's finished requests spread over the rows they answer."""
        counts = self.counts
        call = self._call
        now = time.monotonic()
        if call is not None:
            rows, cached, pending = call.src.total_rows, call.cached_rows, call.pending_rows
        else:
            rows, cached, pending = counts.total, 0, counts.total
        share = pending / counts.total if counts.total else 0.0
        done = cached + int(counts.completed * share)
        failed = int(counts.failed * share)
        elapsed = now - (started if started is not None else now)
        rates = rates if rates is not None else deque()
        rates.append((now, done + failed))
        while len(rates) > 2 and now - rates[0][0] > 300:
            rates.popleft()
        t0, d0 = rates[0]
        rate = (done + failed - d0) / (now - t0) if now - t0 > 0 else 0.0
        todo = max(0, rows - (call.src.na_rows if call else 0) - done - failed)
        return BatchSnapshot(rows=rows, done=done, failed=failed, cached=cached, elapsed=elapsed, rate=rate,
                             eta=todo / rate if rate > 0 else None, rate_limited=0, retries=0, concurrency=0,
                             finished=self.done, status=self.status, job_id=self.id, requests=counts)

    def _close_display(self, display: Any, rates: deque, started: float, interrupted: bool = False) -> None:
        if display is None:
            return
        snap = self.snapshot(rates, started)
        _quietly(display.update, snap)
        report = RunReport(rows=snap.rows, done=snap.done, failed=snap.failed, cache_hits=snap.cached,
                           seconds=snap.elapsed, interrupted=interrupted,
                           stopped=None if self.status == "completed" or interrupted else f"batch {self.status}")
        _quietly(display.close, report)

    def pickup(self) -> str:
        """The line that picks this job up again."""
        again = "run the same call again (it re-attaches), or " if self._call is not None else ""
        return f"{again}fm.BatchJob.attach({self.id!r}).wait()"

    def _notify_pickup(self, stopped: bool = False) -> str:
        what = "Stopped waiting" if not stopped else "Could not poll"
        msg = (f"{what} for batch job {self.id} ({self.status}, {self.counts}); it keeps running on the service. "
               f"To pick it up again: {self.pickup()}")
        print(msg, file=sys.stdout, flush=True)
        return msg

    def close(self) -> None:
        if self._call is not None:
            self._call.close()
        if self._io is not None:
            self._io.close()

    def as_row(self) -> dict[str, Any]:
        return _row(self._jobs.get(self.id or "", {}), self._all_parts())

    def __repr__(self) -> str:
        if not self.ids:
            return "<BatchJob: nothing to submit (every row was cached or NA)>"
        bits = [self.status, str(self.counts)]
        if self.batch_ids:
            bits.append(", ".join(self.batch_ids[:3]) + (" …" if len(self.batch_ids) > 3 else ""))
        return f"<BatchJob {self.id} " + " · ".join(bits) + ">"

    def _repr_markdown_(self) -> str:
        if not self.ids:
            return "**Batch job**: nothing to submit (every row was cached or NA)."
        lines = [f"**Batch job `{self.id}`**: {self.status} · {self.counts}", "",
                 "| part | batch | status | requests | completed | failed |", "|---|---|---|---|---|---|"]
        for p in self._all_parts():
            lines.append(f"| {p['part']} | {p.get('batch_id') or ''} | {p['status']} | {p['lines']:,} | "
                         f"{p['completed']:,} | {p['failed']:,} |")
        for e in self.errors[:5]:
            lines.append(f"\n- {e}")
        if not self.done:
            lines.append(f"\nPick it up again: `{self.pickup()}`")
        return "\n".join(lines)


# ====================================================================== the jobs table

JOB_COLUMNS = ("id", "status", "created", "rows", "requests", "completed", "failed", "connection", "model", "op",
               "batches", "collected")


def job_rows(limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded jobs, newest first: id, status, created, rows, requests, connection, model, op, batches."""
    from foundry_magics.store.batches import JobStore

    with JobStore() as store:
        return [_row(job, store.parts(job["id"])) for job in store.jobs(limit)]


def _row(job: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    import datetime as dt

    live = [p for p in parts if p["status"] != "abandoned"]
    created = job.get("created")
    return {
        "id": job.get("id"),
        "status": aggregate([p["status"] for p in parts]) if parts else job.get("status"),
        "created": dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S") if created else None,
        "rows": job.get("rows"),
        "requests": sum(p["lines"] for p in live),
        "completed": sum(p["completed"] for p in live),
        "failed": sum(p["failed"] for p in live),
        "connection": job.get("connection"),
        "model": job.get("model"),
        "op": job.get("op"),
        "batches": ", ".join(p["batch_id"] for p in parts if p.get("batch_id")),
        "collected": bool(job.get("collected")),
    }


def _recorded_connection(row: dict[str, Any]) -> Any:
    """The connection a job was submitted on: by its name if this process knows it (a pasted key
    is found that way), else rebuilt from what was recorded (never a secret)."""
    from foundry_magics.connections.connection import Connection
    from foundry_magics.connections.session import connection_for, known_connections

    data = dict(row.get("conn") or {})
    name = data.pop("name", None)
    if data.get("kind") == "emulator":
        return connection_for("emulator")
    if name:
        try:
            known = known_connections()
        except FoundryError:
            known = {}
        if name in known:
            return known[name]
    try:
        return Connection(name=name, source="batch job", **data)
    except (TypeError, FoundryError) as exc:
        raise ConfigurationError(f"Cannot rebuild the connection of job {row.get('id')}: {describe(exc)}.",
                                 hint="Pass it: fm.BatchJob.attach(id, connection=...).") from None


def _resolve(conn: Any) -> Any:
    from foundry_magics.connections.session import connection_for

    return connection_for(conn)


# ====================================================================== helpers


def _sleep(seconds: float) -> None:
    """Sleep in short steps so that Ctrl-C is seen at once (time.sleep is interruptible, but be sure)."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, max(POLL, 0.05)))


def _make_display(progress: Any, total: int, label: str) -> Any:
    if progress is True:  # no face passed a display: the core has none
        return None
    if callable(progress) and not hasattr(progress, "update"):
        return progress(total, label)
    return progress


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # a progress display must never break a job
        log.debug("progress display failed", exc_info=True)
        return None
