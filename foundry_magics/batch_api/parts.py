"""One input file's way to a service batch - upload, wait until the file is processed, create -
and picking up the submissions that stopped between the upload and the batch.

A part (one input file, one service batch) is recorded with the keys it carries as soon as its
file is uploaded: from then on its requests are pending, and the same call run again
re-attaches to them. If the submission stops before the batch exists:

* Ctrl-C: the part is kept as `interrupted` (its file and keys), and picked up by the next run
  of the call, by `job.wait()` / `job.refresh()` or by `fm.BatchJob.attach(id)` (`resume`);
* an error: the part is given up (`abandoned`) and its file deleted; a re-run submits its rows;
* the kernel died: the part goes quiet, and `resume` takes it over after BATCH_SUBMIT_STALE s.

`resume` adopts the batch the service made from the file (the answer to the create call may
have been lost), else creates it now; a file the service no longer takes gives the part up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from foundry_magics.batch_api.failures import BatchFailedError
from foundry_magics.batch_api.state import STOPPED, file_poll, settle
from foundry_magics.defaults import BATCH_FILE_WAIT, BATCH_SUBMIT_STALE
from foundry_magics.errors import FoundryError, ResponseError, describe
from foundry_magics.rest.batches import FILE_FAILED, BatchState, batch_state, file_status, is_pending_file

__all__ = ["upload_part", "create_part", "resume", "GAVE_UP"]

log = logging.getLogger("foundry_magics.batch")

GAVE_UP = "the submission stopped before its batch was created"


def upload_part(client: Any, store: Any, job_id: str, part: Any) -> dict[str, Any]:
    """Upload a part's file and record the part with its keys; the service's file object."""
    uploaded = client.upload(part.path, f"foundry-magics-{job_id}-{part.no}.jsonl")
    file_id = str(uploaded.get("id") or "")
    if not file_id:
        raise ResponseError("The Files API answered the upload without a file id.")
    store.add_part(job_id, part.no, input_file_id=file_id, lines=part.lines, size=part.size, keys=part.keys)
    return uploaded


def create_part(client: Any, store: Any, job_id: str, no: int, op: str, uploaded: dict[str, Any],
                interval: float) -> BatchState:
    """Wait until the uploaded file is processed, create its batch, record it. Ctrl-C keeps the
    part for `resume`; any other failure gives it up (its rows are submitted again)."""
    file_id = str(uploaded.get("id"))
    try:
        st = _create_when_ready(client, store, job_id, no, op, uploaded, interval)
    except KeyboardInterrupt:
        store.update_part(job_id, no, status=STOPPED)
        settle(store, job_id)
        raise
    except BaseException:
        _give_up(client, store, job_id, no, file_id, GAVE_UP)
        raise
    _record(store, job_id, no, st)
    return st


def resume(store: Any, client: Any, poll_interval: float | None = None) -> None:
    """Pick up the parts of this endpoint whose submission stopped before their batch existed."""
    stopped = [p for p in store.stopped_parts(BATCH_SUBMIT_STALE) if _here(store, p, client)]
    if not stopped:
        return
    try:
        by_file = {b.get("input_file_id"): b for b in client.list(100)}
    except FoundryError:
        by_file = {}
    for p in stopped:
        jid, no, file_id = p["job"], p["part"], p["input_file_id"]
        if not store.claim_part(jid, no, p["status"], p["updated"]):
            continue  # another kernel took it first
        job = store.job(jid) or {}
        found = by_file.get(file_id)
        try:
            if found is not None:
                _record(store, jid, no, batch_state(found))
            else:
                create_part(client, store, jid, no, job.get("op") or "chat", client.file(file_id),
                            file_poll(client, poll_interval))
        except KeyboardInterrupt:
            if (store.part(jid, no) or {}).get("status") == "submitting":  # claimed, not created: keep it
                store.update_part(jid, no, status=STOPPED)
                settle(store, jid)
            raise
        except FoundryError as exc:  # given up by create_part, or the file is gone (not created yet)
            if (store.part(jid, no) or {}).get("status") != "abandoned":
                _give_up(client, store, jid, no, file_id, f"{GAVE_UP} ({describe(exc)})")
            log.info("gave up part %s of %s: %s", no, jid, describe(exc))
            continue
        log.info("picked up part %s of %s", no, jid)


def _create_when_ready(client: Any, store: Any, job_id: str, no: int, op: str, uploaded: dict[str, Any],
                       interval: float) -> BatchState:
    file_id = str(uploaded.get("id"))
    deadline = time.monotonic() + BATCH_FILE_WAIT
    status = file_status(uploaded)
    while True:
        if status in FILE_FAILED:
            details = uploaded.get("status_details") or "no details"
            raise BatchFailedError(f"The service could not process the input file {file_id}: {details}.",
                                   hint="Run the call again; if it fails the same way, send it online "
                                        "(without batch=True).")
        if status not in ("pending", "running"):  # processed (or "uploaded": try, the quirk is handled)
            try:
                return batch_state(client.create(file_id, client.routes.line_url(op),
                                                 {"foundry_magics_job": job_id, "part": str(no)}))
            except FoundryError as exc:  # "file ... in 'pending' state": wait, then create again
                if not is_pending_file(exc) or time.monotonic() > deadline:
                    raise
        elif time.monotonic() > deadline:
            raise BatchFailedError(f"The input file {file_id} was still {status!r} after {BATCH_FILE_WAIT:g} s.",
                                   hint="Run the call again later.")
        time.sleep(interval)
        store.touch_part(job_id, no)
        uploaded = client.file(file_id)
        status = file_status(uploaded)


def _record(store: Any, job_id: str, no: int, st: BatchState) -> None:
    store.update_part(job_id, no, batch_id=st.id, status=st.status, completed=st.completed, failed=st.failed)
    settle(store, job_id)


def _give_up(client: Any, store: Any, job_id: str, no: int, file_id: str | None, reason: str) -> None:
    """No batch for these requests: they are not pending any more; a re-run submits them again."""
    store.abandon_part(job_id, no, reason)
    settle(store, job_id)
    client.delete(file_id)


def _here(store: Any, part: dict[str, Any], client: Any) -> bool:
    job = store.job(part["job"])
    return bool(job) and (job["conn"] or {}).get("endpoint") == client.connection.endpoint
