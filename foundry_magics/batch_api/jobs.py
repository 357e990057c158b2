"""A Batch API job: what `df.foundry.prompt(..., batch=True, wait=False)` returns.

    job.id, job.status, job.counts                     # counts: total / completed / failed (requests)
    job.refresh(); job.wait(poll_interval=60); job.result(); job.cancel()
    BatchJob.attach("fmb-..."), fm.batch_jobs()        # after a restart, from the jobs table

**Wait**: poll every `poll_interval` seconds (60 by default, as Azure asks; the emulator's
fast clock once a reply says it is emulated), with the job's status and request counts on the
progress display. Ctrl-C stops waiting only: the job keeps running, and one line says how to
pick it up again. **Collect** each finished part (`results.collect`): output lines go into the
response cache by `custom_id`, the reasons of the others into the store. **Assemble** the
call's result from the cache (`results.assemble`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from foundry_magics.batch_api.failures import BatchFailedError, BatchInterrupted
from foundry_magics.batch_api.state import STOPPED, BatchCounts, aggregate, check_interval, default_interval, settle
from foundry_magics.defaults import MAX_RETRIES, POLL, TIMEOUT
from foundry_magics.engine.report import BatchResult, RunReport, Snapshot
from foundry_magics.errors import ConfigurationError, FoundryError, NotFoundError, describe

if TYPE_CHECKING:  # pragma: no cover
    from foundry_magics.batch_api.submit import Call

__all__ = ["BatchJob", "BatchSnapshot"]

log = logging.getLogger("foundry_magics.batch")


@dataclass
class BatchSnapshot(Snapshot):
    """A `Snapshot` with the job's own words: its status and its request counts."""

    status: str = ""
    job_id: str | None = None
    requests: BatchCounts = BatchCounts()


class BatchJob:
    """A Batch API job: one submission of a DataFrame call, made of one service batch per input file.

    `id`, `status` (validating, in_progress, finalizing, completed, failed, expired,
    cancelling, cancelled; "submitting" while its files upload, "interrupted" when Ctrl-C
    stopped that: the next run of the call picks it up), `counts` (total / completed / failed
    requests), `refresh()`, `wait(poll_interval=)`, `result()`, `cancel()`.
    `BatchJob.attach(id)` picks a recorded job up again (also a service batch id).
    """

    def __init__(self, ids: Sequence[str], *, client: Any = None, store: Any = None, call: "Call | None" = None,
                 io: Any = None) -> None:
        self.ids = list(ids)
        self._client = client if client is not None else io  # io: its name before BatchClient
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
        from foundry_magics.connections.session import connection_for
        from foundry_magics.rest.batches import BatchClient
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
        conn = connection if connection is not None else recorded_connection(row)
        client = BatchClient(connection_for(conn), timeout=timeout, max_retries=max_retries, transport=transport)
        return cls([row["id"]], client=client, store=store)

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
        return self._client.connection.label if self._client is not None else None

    @property
    def model(self) -> str | None:
        return next((j.get("model") for j in self._jobs.values() if j.get("model")), None)

    # -- I/O -----------------------------------------------------------------------------

    def refresh(self) -> "BatchJob":
        """Ask the service for the status and counts of every part still running; pick up the
        parts whose submission stopped before their batch was created."""
        from foundry_magics.batch_api.parts import resume
        from foundry_magics.rest.batches import TERMINAL, batch_state

        store, client = self._store, self._client
        if store is None or client is None:
            return self
        if any(not p["batch_id"] and p["status"] in ("submitting", STOPPED)
               for jid in self.ids for p in store.parts(jid)):
            resume(store, client, self._call.poll_interval if self._call is not None else None)
        for jid in self.ids:
            for p in store.parts(jid):
                if p["collected"] or p["status"] in TERMINAL or p["status"] == "abandoned" or not p["batch_id"]:
                    continue  # no batch yet: another kernel is still submitting it
                try:
                    st = batch_state(client.batch(p["batch_id"]))
                except NotFoundError:
                    gone = (f"the service no longer knows batch {p['batch_id']} (404): it was deleted, or the "
                            "emulator that ran it has stopped")
                    store.update_part(jid, p["part"], status="failed", errors=[gone])
                    continue
                store.update_part(jid, p["part"], status=st.status, completed=st.completed, failed=st.failed,
                                  output_file_id=st.output_file_id, error_file_id=st.error_file_id,
                                  errors=st.errors or None)
            if store.parts(jid):
                settle(store, jid)
        self._load()
        return self

    def cancel(self) -> "BatchJob":
        """Cancel every part still running (results finished so far are kept and collected); a
        part whose submission was interrupted is given up."""
        from foundry_magics.batch_api.parts import GAVE_UP
        from foundry_magics.rest.batches import TERMINAL

        if self._client is None:
            return self
        for p in self._all_parts():
            if p.get("batch_id") and p["status"] not in TERMINAL and p["status"] != "cancelling":
                self._client.cancel(p["batch_id"])
            elif p["status"] == STOPPED and self._store.claim_part(p["job"], p["part"], STOPPED, p["updated"]):
                self._store.abandon_part(p["job"], p["part"], f"{GAVE_UP} (cancelled)")
                self._client.delete(p["input_file_id"])
        return self.refresh()

    def wait(self, poll_interval: float | None = None, *, progress: Any = None) -> "BatchJob":
        """Poll until every part has ended, collecting each one's results into the cache as it ends.

        Ctrl-C stops waiting (the job keeps running): `BatchInterrupted`, whose one line says how
        to pick it up again."""
        call = self._call
        explicit = check_interval(poll_interval) if poll_interval is not None else None
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
                _sleep(explicit if explicit is not None else self._interval())  # known after a reply
        except KeyboardInterrupt:
            self._close_display(display, rates, started, interrupted=True)
            raise BatchInterrupted(self.stopped_line()) from None
        except FoundryError as exc:
            self._close_display(display, rates, started, interrupted=True)
            exc.hint = "\n".join(filter(None, [exc.hint, self.stopped_line(polling=True)]))
            raise
        self._close_display(display, rates, started)
        return self

    def _interval(self) -> float:
        return self._call.interval() if self._call is not None else default_interval(self._client)

    def result(self, poll_interval: float | None = None) -> Any:
        """What the call would return (a Series / DataFrame on the frame's index), waiting first if needed."""
        from foundry_magics.batch_api.results import assemble

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
            result = assemble(call, self)
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
        from foundry_magics.batch_api.results import collect

        own_cache = self._call is None
        if self._call is None:
            from foundry_magics.store.cache import ResponseCache

            cache = ResponseCache()
        else:
            cache = self._call.cache
        try:
            tokens = collect(self._client, self._store, cache, jid, job.get("op") or "chat", job.get("model"), part)
        finally:
            if own_cache:
                cache.close()
        if self._call is not None:
            self._call.in_tokens += tokens[0]
            self._call.out_tokens += tokens[1]
            self._call.cached_tokens = getattr(self._call, "cached_tokens", 0) + tokens[2]
            self._call.reasoning_tokens = getattr(self._call, "reasoning_tokens", 0) + tokens[3]

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

    def stopped_line(self, polling: bool = False) -> str:
        """One line: the job keeps running, and how to pick it up (what Ctrl-C while waiting shows)."""
        what = "Could not poll" if polling else "Stopped waiting for"
        return (f"{what} batch job {self.id} ({self.status}, {self.counts}): it keeps running on the service. "
                f"To pick it up: {self.pickup()}; fm.batch_jobs() lists the jobs.")

    def close(self) -> None:
        if self._call is not None:
            self._call.close()
        if self._client is not None:
            self._client.close()

    def as_row(self) -> dict[str, Any]:
        from foundry_magics.batch_api.table import row

        return row(self._jobs.get(self.id or "", {}), self._all_parts())

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


def recorded_connection(row: dict[str, Any]) -> Any:
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
