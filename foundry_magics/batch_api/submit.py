"""Submitting a DataFrame call through the Batch API: `submit` (chat / responses) and
`submit_embeddings` return a `BatchJob` as soon as every input file has its batch.

1. **Scan** the call's distinct requests in chunks, built and keyed exactly as online
   (`inputs`): cached ones are answered at once, ones an earlier job (of this kernel or
   another) still carries are **re-attached** to it, identical ones go once, the rest are
   written to input files split at 100,000 lines / 200 MB.
2. **Submit** each file (`parts`): upload (streamed from disk, then deleted), wait until the
   service has processed it, create the batch. The job and the keys of each file are recorded
   in the store before the batch is created, so Ctrl-C at any point keeps what was submitted
   and the same call run again picks it up.

With `max_cost`, the call's estimate (`engine.estimate`, the same scan: cached requests not
counted) comes first: a job whose upper bound (input tokens plus every output cap, at the
Batch API price) passes the amount is refused before anything is uploaded.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Callable, Sequence

from foundry_magics.batch_api.failures import BatchInterrupted
from foundry_magics.batch_api.inputs import LinePacker, Part, PartWriter, Source, embed_source, prompt_source
from foundry_magics.batch_api.jobs import BatchJob
from foundry_magics.batch_api.parts import create_part, resume, upload_part
from foundry_magics.batch_api.state import check_interval, default_interval, file_poll
from foundry_magics.defaults import BATCH_CHUNK, BATCH_MAX_BYTES, BATCH_MAX_LINES, MAX_RETRIES, TIMEOUT
from foundry_magics.engine.prompts import Batch, RequestSpec
from foundry_magics.engine.report import BatchResult
from foundry_magics.engine.run import Weights
from foundry_magics.errors import ConfigurationError
from foundry_magics.store.cache import CacheOnUse

__all__ = ["submit", "submit_embeddings", "check_budget", "Call"]

log = logging.getLogger("foundry_magics.batch")


def submit(batch: Batch, spec: RequestSpec = RequestSpec(), *, connection: Any = None, cache: bool = True,
           progress: Any = False, label: str = "batch", poll_interval: float | None = None,
           finish: Callable[[BatchResult], Any] | None = None, timeout: float = TIMEOUT,
           max_retries: int = MAX_RETRIES, transport: Any = None, max_lines: int = BATCH_MAX_LINES,
           max_bytes: int = BATCH_MAX_BYTES, max_cost: float | None = None, pack: Any = None) -> BatchJob:
    """Submit the distinct requests of `batch` (chat or responses) through the Batch API; a BatchJob at once.

    `pack` (an `engine.packing.Packing`): the rows to submit go N to a line, each line the
    packed request the online run sends; results are matched by id into each row's cache entry.

    Cached requests are not submitted; requests a recorded job still carries re-attach to it
    (nothing is submitted twice). `finish(BatchResult)` turns the results into what the call
    returns (`job.result()`); without it `result()` returns the BatchResult.
    """
    if spec.op not in ("chat", "responses"):
        raise ConfigurationError(f"Unknown API {spec.op!r}.", hint="Use 'chat' or 'responses'.")
    client = _client(connection, timeout, max_retries, transport)
    try:
        client.ensure_model(spec.model, spec.op)  # a server serving exactly one model: that one (as online)
        if max_cost is not None:
            from foundry_magics.engine.estimate import estimate_batch

            check_budget(estimate_batch(batch, spec, connection=client.connection, cache=cache, batch_api=True,
                                        **({"pack": pack} if pack is not None else {})), max_cost)
        src = prompt_source(client, batch, spec)
        src.packing = pack
    except BaseException:
        client.close()
        raise
    return _start(client, src, cache=cache, progress=progress, label=label, poll_interval=poll_interval,
                  finish=finish, max_lines=max_lines, max_bytes=max_bytes)


def submit_embeddings(texts: Sequence[str], *, connection: Any = None, model: str | None = None,
                      dimensions: int | None = None, weights: Weights | None = None, rows: int | None = None,
                      na_rows: int = 0, cache: bool = True, progress: Any = False, label: str = "embed",
                      poll_interval: float | None = None, finish: Callable[[BatchResult], Any] | None = None,
                      timeout: float = TIMEOUT, max_retries: int = MAX_RETRIES, transport: Any = None,
                      max_lines: int = BATCH_MAX_LINES, max_bytes: int = BATCH_MAX_BYTES,
                      max_cost: float | None = None) -> BatchJob:
    """Embeddings of distinct `texts` through the Batch API, one text per line; a BatchJob at once."""
    client = _client(connection, timeout, max_retries, transport)
    try:
        if max_cost is not None:
            from foundry_magics.engine.estimate import estimate_embeddings

            check_budget(estimate_embeddings(texts, connection=client.connection, model=model, dimensions=dimensions,
                                             cache=cache, rows=rows, na_rows=na_rows, batch_api=True), max_cost)
        src = embed_source(client, texts, model=model, dimensions=dimensions, weights=weights, rows=rows,
                           na_rows=na_rows)
    except BaseException:
        client.close()
        raise
    return _start(client, src, cache=cache, progress=progress, label=label, poll_interval=poll_interval,
                  finish=finish, max_lines=max_lines, max_bytes=max_bytes)


def check_budget(est: Any, max_cost: float) -> float:
    """The upper bound of a Batch API job from its estimate; a ConfigurationError (nothing
    submitted) when it passes `max_cost` or the model has no price."""
    from foundry_magics.engine.budget import money, require_price, uncapped_output

    price = require_price(est.model, max_cost)
    out, note = est.max_output_tokens or 0, ""
    if est.operation != "embeddings" and est.max_output_tokens is None and est.to_send:
        per = uncapped_output(est.model)
        out = est.to_send * per
        note = f"; without max_tokens each request counted at {per:,} output tokens"
    upper = price.cost(est.input_tokens, out, batch=True)
    if upper > max_cost + 1e-12:
        what = (f"{est.to_send:,} requests, ~{est.input_tokens:,} input tokens"
                + (f" + up to {out:,} output tokens" if est.operation != "embeddings" else "") + note)
        raise ConfigurationError(
            f"max_cost={max_cost:g}: this Batch API job could cost up to {money(upper, up=True)} ({what}), "
            f"more than the budget; nothing was submitted.",
            hint="Raise max_cost, set a smaller max_tokens, or submit fewer rows (df.head(n)); "
                 "estimate=True shows the numbers.")
    return upper


def _client(connection: Any, timeout: float, max_retries: int, transport: Any) -> Any:
    from foundry_magics.connections.session import connection_for
    from foundry_magics.rest.batches import BatchClient

    return BatchClient(connection_for(connection), timeout=timeout, max_retries=max_retries, transport=transport)


def _start(client: Any, src: Source, **options: Any) -> BatchJob:
    from foundry_magics.store.batches import JobStore

    try:
        call = Call(client, src, JobStore(), **options)
    except BaseException:
        client.close()
        raise
    try:
        call.submit()
    except KeyboardInterrupt:
        call.close()
        call.forget_if_empty()
        if not call.job_ids:
            client.close()
            raise BatchInterrupted("Interrupted before anything was submitted: nothing runs on the service; "
                                   "run the call again to submit it.") from None
        job = BatchJob(call.job_ids, client=client, store=call.store)
        msg = (f"Interrupted while submitting: {job.counts.total:,} requests of batch job {job.id} are on the "
               f"service and kept ({job.status}); run the same call again to pick them up and submit the rest "
               f"(fm.batch_jobs() lists the jobs).")
        job.close()
        raise BatchInterrupted(msg) from None
    except BaseException:
        call.close()
        call.forget_if_empty()
        client.close()
        raise
    return BatchJob(call.job_ids, client=client, store=call.store, call=call)


class Call(CacheOnUse):
    """The context of one DataFrame call: its requests, what the scan found, how to finish."""

    def __init__(self, client: Any, src: Source, store: Any, *, cache: bool, progress: Any, label: str,
                 poll_interval: float | None, finish: Callable[[BatchResult], Any] | None,
                 max_lines: int, max_bytes: int) -> None:
        self.client = client
        self.src = src
        self.store = store
        self.use_cache = cache
        self.progress = progress
        self.label = label
        self.poll_interval = None if poll_interval is None else check_interval(poll_interval)
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
        self.cached_tokens = self.reasoning_tokens = 0  # parts of in_tokens / out_tokens

    def forget_if_empty(self) -> None:
        """A job recorded whose first upload never finished has nothing on the service: no row."""
        if self.recorded and not self.store.parts(self.job_id):
            self.store.delete_job(self.job_id)
            self.recorded = False

    def interval(self) -> float:
        return self.poll_interval if self.poll_interval is not None else default_interval(self.client)

    # -- scan and submit ------------------------------------------------------------------

    def submit(self) -> None:
        from foundry_magics.batch_api.results import vector

        src, store = self.src, self.store
        n = src.size
        self.keys = bytearray(32 * n)
        self.values = [None] * n
        vectors = src.op == "embeddings"
        resume(store, self.client, self.poll_interval)  # stopped submissions first: their keys may be ours
        live = store.has_live_jobs()
        seen: set[bytes] = set()
        writer: PartWriter | None = None
        packer: LinePacker | None = None
        try:
            for start in range(0, n, BATCH_CHUNK):
                idx = range(start, min(n, start + BATCH_CHUNK))
                built = src.build(idx)
                if writer is None:
                    writer = PartWriter(self.client.routes.line_url(src.op), max_lines=self.max_lines,
                                        max_bytes=self.max_bytes, on_full=self._submit_part)
                    if src.packing is not None:
                        packer = LinePacker(src.client, src.spec, src.packing, writer, lambda: self.src.model)
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
                                self.values[item[0]] = vector(hit) if vectors else hit.text
                                self.cache_hits += 1
                                self.cached_rows += src.weight(item[0])
                        fresh = rest
                pending = store.pending([k for _, k, _ in fresh]) if live and fresh else {}
                for i, key, body in fresh:
                    self.pending_rows += src.weight(i)
                    job = pending.get(key)
                    if job is not None:
                        self.attached[job] = self.attached.get(job, 0) + 1
                    elif packer is not None:
                        packer.add(i, key, body)
                    else:
                        writer.add(key, body)
            if packer is not None:
                packer.flush(final=True)
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
        client, store = self.client, self.store
        if not self.recorded:
            conn = client.connection
            store.add_job(self.job_id, connection=conn.label, conn={"name": conn.name, **conn.to_dict()},
                          model=self.src.model, op=self.src.op, label=self.label, rows=self.src.total_rows)
            self.recorded = True
        if part.packs:  # which rows each packed line carries, before the service can answer them
            import json

            schema = self.src.packing.answer_schema
            store.add_pack_lines(self.job_id, part.no, part.packs,
                                 json.dumps(schema, sort_keys=True) if schema is not None else None)
        uploaded = upload_part(client, store, self.job_id, part)
        self.submitted += part.lines
        try:
            create_part(client, store, self.job_id, part.no, self.src.op, uploaded,
                        file_poll(client, self.poll_interval))
        except KeyboardInterrupt:
            raise  # the part is kept: its requests count as submitted
        except BaseException:
            self.submitted -= part.lines  # given up: a re-run submits them
            raise
