"""Collecting a finished batch: its output lines into the response cache, every other request's reason into the
store; and assembling a call's result from the cache.

Output lines are matched by `custom_id` (the request key; the service returns them in any
order) and parsed by the online path's own reply parsing, so a batch reply is cached exactly
as an online one would be (and a content-filtered completion fails its row the same way).
Lines of the error file, requests an expired / cancelled batch never ran, and every request
of a batch that failed validation keep their reason in the jobs table, for `fm.last_run()`
and for the re-run, which submits exactly those. Files are streamed line by line.

`assemble` answers the call from the cache: every row answered, or NA with its reason in
`fm.last_run().failures`; running the call again submits exactly the missing rows.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from foundry_magics.defaults import FLUSH_AT
from foundry_magics.engine.report import BatchResult, RunReport, set_last
from foundry_magics.errors import FoundryError, describe

if TYPE_CHECKING:  # pragma: no cover
    from foundry_magics.batch_api.jobs import BatchJob
    from foundry_magics.batch_api.submit import Call

__all__ = ["collect", "assemble", "vector"]

log = logging.getLogger("foundry_magics.batch")

_FLUSH = FLUSH_AT * 10  # cached replies buffered before a write
_LOOKUP = 5_000  # cache keys looked up at a time when assembling a result


def collect(client: Any, store: Any, cache: Any, job_id: str, op: str, model: str | None,
            part: dict[str, Any]) -> tuple[int, int, int, int]:
    """Collect one ended part; returns the (input, output, cached input, reasoning) tokens its
    replies used (the last two are parts of the first two, as the service counts them)."""
    import httpx

    from foundry_magics.rest.batches import output_line
    from foundry_magics.store.cache import CachedReply

    status = part["status"]
    seen: set[bytes] = set()
    reasons: dict[bytes, str] = {}
    tokens = [0, 0, 0, 0]
    packs, packing = _packs(store, job_id, part["part"]) if op != "embeddings" else ({}, None)
    stub = httpx.Response(200)  # the online parser reads headers for request ids: a batch line has none
    for file_id in (part.get("output_file_id"), part.get("error_file_id")):  # both hold either kind of line
        if not file_id:
            continue
        try:
            for raw in client.lines(file_id):
                line = output_line(raw)
                key = _key(line.custom_id)
                if key is None:
                    continue
                rows = packs.get(key)
                if rows is not None:  # a packed line: its rows' answers by id, each under its row's key
                    seen.update(rows)
                    _packed(client, op, line, rows, packing, cache, reasons, tokens, stub)
                    if cache.pending >= _FLUSH:
                        cache.flush()
                    continue
                seen.add(key)
                if line.error is not None:
                    reasons[key] = line.error
                    continue
                try:
                    value = _parse(client, op, line.body, stub)
                except FoundryError as exc:
                    reasons[key] = describe(exc)
                    continue
                if op == "embeddings":
                    cache.put_vector(key, model, value)
                else:
                    if value.finish_reason == "content_filter":
                        cats = ", ".join(value.filtered) if value.filtered else "unspecified"
                        reasons[key] = f"ContentFilter: the completion was filtered ({cats})"
                        continue
                    usage = value.usage
                    tokens[0] += usage.input_tokens
                    tokens[1] += usage.output_tokens
                    tokens[2] += usage.cached_input_tokens
                    tokens[3] += usage.reasoning_tokens
                    cache.put(key, op, CachedReply(value.text, value.finish_reason, usage.input_tokens,
                                                   usage.output_tokens, value.model, usage.cached_input_tokens,
                                                   usage.reasoning_tokens))
                    reasons.pop(key, None)
                if cache.pending >= _FLUSH:
                    cache.flush()
        except FoundryError:
            fresh = store.parts(job_id)
            if any(p["part"] == part["part"] and p["collected"] for p in fresh):
                return (0, 0, 0, 0)  # another kernel collected it (and deleted the files) meanwhile
            raise
    cache.flush()
    missing = _missing_reason(status, part, op)
    for key in store.part_keys(job_id, part["part"]):
        if key not in seen:
            reasons[key] = missing
    if store.finish_part(job_id, part["part"], reasons):
        for file_id in (part.get("input_file_id"), part.get("output_file_id"), part.get("error_file_id")):
            client.delete(file_id)
    log.info("collected part %s of %s (%s): %d lines, %d failed", part["part"], job_id, status, len(seen),
             len(reasons))
    return tokens[0], tokens[1], tokens[2], tokens[3]


def _packs(store: Any, job_id: str, part: int) -> tuple[dict[bytes, list[bytes]], Any]:
    """A part's packed lines (line key -> its rows' keys) and the rows' answer checker."""
    import json

    from foundry_magics.engine.packing import Packing

    packs, schema = store.pack_lines(job_id, part)
    if not packs:
        return {}, None
    return packs, Packing(size=2, task="", items=lambda idx: [], answer_schema=json.loads(schema) if schema else None)


_AGAIN = "; run the call again to send it"


def _packed(client: Any, op: str, line: Any, rows: list[bytes], packing: Any, cache: Any,
            reasons: dict[bytes, str], tokens: list[int], stub: Any) -> None:
    """One packed line's result: each row's answer matched by its id only (`engine.packing.match`),
    cached as its unpacked request's reply; every other row keeps its reason (a re-run sends it)."""
    from foundry_magics.engine.packing import item_id, match
    from foundry_magics.store.cache import CachedReply

    def fail(why: str) -> None:
        for k in rows:
            reasons[k] = f"{why} (packed with {len(rows) - 1} other rows){_AGAIN}"

    if line.error is not None:
        return fail(line.error)
    try:
        value = _parse(client, op, line.body, stub)
    except FoundryError as exc:
        return fail(describe(exc))
    usage = value.usage
    tokens[0] += usage.input_tokens
    tokens[1] += usage.output_tokens
    tokens[2] += usage.cached_input_tokens
    tokens[3] += usage.reasoning_tokens
    if value.finish_reason == "content_filter":
        return fail("ContentFilter: the packed completion was filtered")
    if value.finish_reason == "length":
        return fail("the packed reply was cut off at its output cap")
    taken: set[str] = set()
    ids = [item_id(k, taken) for k in rows]
    answers, why = match(value.text, ids, packing.problem)
    n = len(rows)
    for rid, k in zip(ids, rows):
        if rid in answers:
            cache.put(k, op, CachedReply(packing.to_text(answers[rid]), "stop", usage.input_tokens // n,
                                         usage.output_tokens // n, value.model))
            reasons.pop(k, None)
        else:
            reasons[k] = f"packed reply: {why.get(rid, 'no usable answer')}{_AGAIN}"


def _key(custom_id: Any) -> bytes | None:
    try:
        key = bytes.fromhex(custom_id) if isinstance(custom_id, str) else None
    except ValueError:
        return None
    return key if key is not None and len(key) == 32 else None


def _parse(client: Any, op: str, body: Any, stub: Any) -> Any:
    """A reply body as the online path reads it: a Reply, or (embeddings) float32 bytes."""
    if op == "embeddings":
        import numpy as np

        return np.asarray(client._embeddings(body, 1)[0], dtype=np.float32).tobytes()
    return client._reply(op, body, stub, time.perf_counter())


def _missing_reason(status: str, part: dict[str, Any], op: str) -> str:
    """Why a request of this part has neither a result nor an error line."""
    errors = part.get("errors") or []
    if status == "expired":
        return "the batch expired (its 24 h window ended) before this request ran; run the call again to submit it"
    if status == "cancelled":
        return "the batch was cancelled before this request ran; run the call again to submit it"
    if status == "failed":
        why = "; ".join(errors[:3]) if errors else "no reason given"
        tip = (" (Azure's Batch API may not take embeddings: send them online)" if op == "embeddings" else "")
        return f"the batch failed: {why}{tip}"
    return "the batch ended without a result for this request; run the call again to submit it"


def assemble(call: "Call", job: "BatchJob") -> BatchResult:
    """The call's result from the cache (and the reasons of the requests that failed), its run
    report set as `fm.last_run()` and counted in `fm.usage()`."""
    from foundry_magics.store.usage import record_run

    src = call.src
    vectors = src.op == "embeddings"
    reasons = call.store.reasons(job.ids)
    errors: dict[int, str] = {}
    done = failed = 0
    get = call.cache.get_vectors if vectors else call.cache.get_many
    for start in range(0, src.size, _LOOKUP):
        stop = min(src.size, start + _LOOKUP)
        want = [i for i in range(start, stop) if call.values[i] is None]
        if want:
            keys = [bytes(call.keys[32 * i:32 * i + 32]) for i in want]
            got = get(keys)
            for i, key in zip(want, keys):
                hit = got.get(key)
                if hit is not None:
                    call.values[i] = vector(hit) if vectors else hit.text
                else:
                    errors[i] = reasons.get(key) or job.missing_reason()
        for i in range(start, stop):
            if i in errors:
                failed += src.weight(i)
            elif call.values[i] is not None:
                done += src.weight(i)
    counts = job.counts
    stopped = None
    error = None
    if failed and job.status in ("failed", "expired", "cancelled"):
        stopped = f"the batch job {job.status}" + (f": {job.errors[0]}" if job.errors else "")
    if job.status == "failed" and failed and not (counts.completed or done - call.cached_rows > 0):
        error = job.failure_error(src.op)
    report = RunReport(
        rows=src.total_rows, done=done, na_rows=src.na_rows, unique=src.size,
        dedup_saved=max(0, src.total_rows - src.na_rows - src.size) + call.dedup,
        cache_hits=call.cache_hits, requests=call.submitted, input_tokens=call.in_tokens,
        output_tokens=call.out_tokens, cached_input_tokens=getattr(call, "cached_tokens", 0),
        reasoning_tokens=getattr(call, "reasoning_tokens", 0), seconds=time.monotonic() - call.started, failed=failed,
        not_sent=max(0, src.total_rows - src.na_rows - done - failed), stopped=stopped, model=src.model,
        connection=call.client.connection.label, operation=src.op,
    )
    report.batch = True  # priced at the Batch API's rate (RunReport.cost)
    report.batch_jobs = list(job.ids)
    set_last(report)
    record_run(report, batch=True)  # %foundry usage / fm.usage() count batches too
    return BatchResult(list(call.values), errors, report, error=error)


def vector(blob: Any) -> Any:
    """A cached embedding (float32 bytes) as a numpy array."""
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32)
