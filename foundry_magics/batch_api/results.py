"""Collecting a finished batch: its output lines into the response cache, every other request's reason into the store.

Output lines are matched by `custom_id` (the request key; the service returns them in any
order) and parsed by the online path's own reply parsing, so a batch reply is cached exactly
as an online one would be (and a content-filtered completion fails its row the same way).
Lines of the error file, requests an expired / cancelled batch never ran, and every request
of a batch that failed validation keep their reason in the jobs table, for `fm.last_run()`
and for the re-run, which submits exactly those. Files are streamed line by line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from foundry_magics.defaults import FLUSH_AT
from foundry_magics.errors import FoundryError, describe

__all__ = ["collect"]

log = logging.getLogger("foundry_magics.batch")

_FLUSH = FLUSH_AT * 10  # cached replies buffered before a write


def collect(io: Any, store: Any, cache: Any, job_id: str, op: str, model: str | None,
            part: dict[str, Any]) -> tuple[int, int]:
    """Collect one ended part; returns the (input, output) tokens its replies used."""
    import httpx

    from foundry_magics.rest.batches import output_line
    from foundry_magics.store.cache import CachedReply

    status = part["status"]
    seen: set[bytes] = set()
    reasons: dict[bytes, str] = {}
    tokens = [0, 0]
    stub = httpx.Response(200)  # the online parser reads headers for request ids: a batch line has none
    for file_id in (part.get("output_file_id"), part.get("error_file_id")):  # both hold either kind of line
        if not file_id:
            continue
        try:
            for raw in io.lines(file_id):
                line = output_line(raw)
                key = _key(line.custom_id)
                if key is None:
                    continue
                seen.add(key)
                if line.error is not None:
                    reasons[key] = line.error
                    continue
                try:
                    value = _parse(io.base, op, line.body, stub)
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
                    cache.put(key, op, CachedReply(value.text, value.finish_reason, usage.input_tokens,
                                                   usage.output_tokens, value.model))
                    reasons.pop(key, None)
                if cache.pending >= _FLUSH:
                    cache.flush()
        except FoundryError:
            fresh = store.parts(job_id)
            if any(p["part"] == part["part"] and p["collected"] for p in fresh):
                return (0, 0)  # another kernel collected it (and deleted the files) meanwhile
            raise
    cache.flush()
    missing = _missing_reason(status, part, op)
    for key in store.part_keys(job_id, part["part"]):
        if key not in seen:
            reasons[key] = missing
    if store.finish_part(job_id, part["part"], reasons):
        for file_id in (part.get("input_file_id"), part.get("output_file_id"), part.get("error_file_id")):
            io.delete(file_id)
    log.info("collected part %s of %s (%s): %d lines, %d failed", part["part"], job_id, status, len(seen),
             len(reasons))
    return tokens[0], tokens[1]


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
