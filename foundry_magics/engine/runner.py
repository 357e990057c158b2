"""The concurrent batch runner behind the DataFrame accessors and `%%foundry --df`.

Jupyter already runs an event loop on the main thread, so the engine runs its async work on
a loop of its own in one background thread (started on first use, then reused). The caller's
thread waits by polling, so Ctrl-C ("interrupt kernel") reaches it within ~0.1 s: the run is
stopped, the replies already finished are flushed to the cache, and the next run sends only
what is missing.

Per run:
* requests are fed in chunks: each chunk is rendered, keyed (store.cache.request_key), looked
  up in the cache in bulk, and de-duplicated against requests in flight, so memory stays
  bounded on millions of rows and identical requests are sent once;
* `concurrency` workers share an adaptive limit (AIMD): a 429 halves it (once per
  rate-limit event) and pauses every worker until `retry-after(-ms)`; each success raises it
  by 1/limit, back up to `concurrency`;
* `rpm` / `tpm` budgets are smooth token buckets (a second's worth of burst), which fits both
  the 1 s and the 10 s windows the service enforces; the token estimate is the prompt's
  characters / 4 plus `max_tokens`;
* 5xx, cut connections, timeouts and unparseable bodies are retried per request (bounded,
  exponential backoff with jitter); a quota block (retry-after of minutes to hours) stops the
  run at once; a wrong key or deployment stops it after the first answer;
* HTTP goes through `transport.LeanTransport` (see there for why and the numbers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from foundry_magics.errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    FoundryError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
    StreamError,
    TimeoutError,
)

from foundry_magics.engine.looper import _engine_loop, submit  # noqa: F401 - re-exported
from foundry_magics.engine.pacing import AdaptiveLimit, TokenBucket, backoff, estimate_tokens  # noqa: F401 - re-exported
from foundry_magics.engine.report import BatchResult, RunReport, Snapshot, _set_last, last_run  # noqa: F401 - re-exported

__all__ = ["RunReport", "RequestSpec", "Batch", "BatchResult", "Snapshot", "run_batch", "embed_texts",
           "last_run", "set_progress_factory", "submit", "DEFAULT_CONCURRENCY"]

DEFAULT_CONCURRENCY = 32
MAX_RETRIES = 6  # per request, for 5xx / cuts / timeouts / bad bodies
MAX_RATE_LIMITED = 100  # per request: 429s are flow control, bounded only to never spin forever
FEED_CHUNK = 256  # requests rendered, keyed and looked up in the cache at a time
FEED_AHEAD = 1024  # rendered requests kept queued ahead of the workers
FLUSH_EVERY = 0.5  # seconds
FLUSH_AT = 500  # buffered replies
POLL = 0.1  # seconds: how often the caller's thread looks at the run
FAIL_FAST = 10  # this many failed requests and no success: stop and raise the error
_RETRYABLE = (ServerError, ConnectionFailed, TimeoutError, ResponseError, StreamError)
_FATAL = (AuthError, NotFoundError, ConfigurationError)


# ====================================================================== what a run is


@dataclass(frozen=True)
class RequestSpec:
    """What is the same for every request of a run; only the prompt varies."""

    op: str = "chat"  # "chat" or "responses"
    system: str | None = None
    model: str | None = None
    schema: Any = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass
class Batch:
    """`size` distinct requests. `render(indices)` gives their prompts (called chunk by chunk);
    `weights[i]` is how many rows request i answers (dedup), for progress and the report."""

    size: int
    render: Callable[[Sequence[int]], list[str]]
    weights: Sequence[int] | None = None
    rows: int | None = None  # rows in the frame, NA rows included
    na_rows: int = 0


# ---------------------------------------------------------------------- progress hook
# The engine is core and does not import faces: a display registers its factory here
# (foundry_magics.progress does on import). factory(total_rows, label) -> object with
# update(Snapshot) and close(RunReport).

_progress_factory: Callable[[int, str], Any] | None = None


def set_progress_factory(factory: Callable[[int, str], Any] | None) -> None:
    global _progress_factory
    _progress_factory = factory


def _make_progress(progress: Any, total: int, label: str) -> Any:
    if progress is False or progress is None:
        return None
    if progress is True:
        return _progress_factory(total, label) if _progress_factory is not None else None
    if callable(progress) and not hasattr(progress, "update"):
        return progress(total, label)
    return progress


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ====================================================================== one run, on the loop


class _Run:
    def __init__(self, batch: Batch, spec: RequestSpec, conn: Any, *, concurrency: int, rpm: float | None,
                 tpm: float | None, cache: bool, timeout: float, max_retries: int,
                 transport: Any = None) -> None:
        self.batch = batch
        self.spec = spec
        self.conn = conn
        self.concurrency = concurrency
        self.rpm = rpm
        self.tpm = tpm
        self.use_cache = cache
        self.timeout = timeout
        self.max_retries = max_retries
        self.transport = transport
        n = batch.size
        self.texts: list[Any] = [None] * n
        self.errors: dict[int, str] = {}
        self.weights = batch.weights
        self.total_rows = batch.rows if batch.rows is not None else (
            int(sum(batch.weights)) + batch.na_rows if batch.weights is not None else n + batch.na_rows)
        # counters (read by the caller's thread for progress)
        self.done_rows = 0
        self.failed_rows = 0
        self.cached_rows = 0
        self.not_sent_rows = 0
        self.cache_hits = 0
        self.sent = 0
        self.retries = 0
        self.rate_limited = 0
        self.in_tokens = 0
        self.out_tokens = 0
        self.successes = 0
        self.failures = 0
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.stopped: str | None = None
        self.fatal: BaseException | None = None
        self.interrupted = False
        self.limit = AdaptiveLimit(concurrency)
        self.pause_until = 0.0
        self.rpm_bucket = TokenBucket(rpm / 60.0, max(1.0, rpm / 60.0)) if rpm else None
        self.tpm_bucket = TokenBucket(tpm / 60.0, max(1.0, tpm / 60.0)) if tpm else None
        self.inflight: dict[bytes, list[int]] = {}
        self.tasks: list[asyncio.Task] = []
        self.model: str | None = None
        self._cache: Any = None
        self._client: Any = None

    def weight(self, i: int) -> int:
        return int(self.weights[i]) if self.weights is not None else 1

    # -- lifecycle -----------------------------------------------------------------------

    async def main(self) -> None:
        from foundry_magics.rest.client import AsyncFoundryClient
        from foundry_magics.store.cache import MemoryCache, ResponseCache
        from foundry_magics.rest.transport import LeanTransport

        transport = self.transport if self.transport is not None else LeanTransport(
            max_connections=max(8, self.concurrency))
        self.started = time.monotonic()
        try:
            self._client = AsyncFoundryClient(self.conn, timeout=self.timeout, max_retries=0, transport=transport)
            self._cache = ResponseCache() if self.use_cache else MemoryCache()
            queue: asyncio.Queue = asyncio.Queue()  # bounded by the feeder (FEED_AHEAD + a chunk)
            flusher = asyncio.ensure_future(self._flusher())
            feeder = asyncio.ensure_future(self._feed(queue))
            workers = [asyncio.ensure_future(self._worker(queue)) for _ in range(self.concurrency)]
            self.tasks = [feeder, *workers]
            if self.stopped is not None:  # stopped (Ctrl-C) before the tasks existed
                for t in self.tasks:
                    t.cancel()
            try:
                await asyncio.gather(*self.tasks, return_exceptions=True)
            finally:
                flusher.cancel()
        finally:
            self.finished_at = time.monotonic()
            try:
                if self._cache is not None:
                    self._cache.close()
            finally:
                if self._client is not None:
                    await self._client.aclose()
                if self.transport is None:
                    await transport.aclose()

    def stop(self, reason: str, *, interrupted: bool = False, fatal: BaseException | None = None) -> None:
        """Stop the run (on the loop thread): cancel the feeder and the workers."""
        if self.stopped is None:
            self.stopped = reason
            self.interrupted = interrupted
            self.fatal = fatal
        for t in self.tasks:
            if not t.done():
                t.cancel()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            if self._cache.pending:
                self._flush()

    def _flush(self) -> None:
        try:
            self._cache.flush()
        except Exception as exc:  # a full disk must not lose the run's replies in memory
            import logging

            logging.getLogger("foundry_magics.engine").warning("cache write failed: %s", exc)

    # -- feeding -------------------------------------------------------------------------

    async def _feed(self, queue: asyncio.Queue) -> None:
        try:
            await self._feed_all(queue)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # rendering or keying failed: stop rather than wait forever
            self.stop(f"could not prepare the requests: {_reason(exc)}", fatal=exc)

    async def _feed_all(self, queue: asyncio.Queue) -> None:
        from foundry_magics.store.cache import CachedReply, request_key, route_identity

        client = self._client
        spec = self.spec
        build = client.build_respond if spec.op == "responses" else client.build_chat
        kwargs = dict(system=spec.system, model=spec.model, schema=spec.schema,
                      temperature=spec.temperature, max_tokens=spec.max_tokens)
        route_id = None
        n = self.batch.size
        start = 0
        # A small first chunk gets the workers going at once; later chunks are rendered while
        # the queue still holds a chunk's worth, so rendering overlaps with requests in flight.
        size = min(FEED_CHUNK, max(16, self.concurrency))
        first = True
        while start < n and self.stopped is None:
            if queue.qsize() >= FEED_AHEAD:
                await self._queue_below(queue, FEED_AHEAD)
            idx = range(start, min(n, start + size))
            start += size
            size = FEED_CHUNK
            prompts = self.batch.render(idx)
            keyed: dict[bytes, list[int]] = {}
            order: list[tuple[bytes, int, str, dict]] = []
            for i, prompt in zip(idx, prompts):
                route, body = build(prompt, **kwargs)
                if route_id is None:
                    route_id = route_identity(route.url, route.params, emulator=self.conn.is_emulator)
                    self.model = body.get("model") or spec.model or self.conn.model
                key = request_key(route_id, spec.op, body)
                waiting = self.inflight.get(key)
                if waiting is not None:  # identical to one queued or in flight
                    waiting.append(i)
                    continue
                same = keyed.get(key)
                if same is not None:
                    same.append(i)
                    continue
                keyed[key] = [i]
                order.append((key, i, prompt, body))
            hits = self._cache.get_many([k for k, _, _, _ in order]) if order else {}
            for key, i, prompt, body in order:
                hit: CachedReply | None = hits.get(key)
                if hit is not None:
                    self.cache_hits += 1
                    for j in keyed[key]:
                        self.texts[j] = hit.text
                        w = self.weight(j)
                        self.done_rows += w
                        self.cached_rows += w
                    continue
                self.inflight[key] = keyed[key]
                await queue.put((key, prompt, estimate_tokens(prompt, spec)))
            if first and queue.qsize():
                # Let the first requests go out (connections open) before rendering more.
                first = False
                while queue.qsize():
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(0)  # replies that arrived meanwhile go first
        for _ in range(self.concurrency):
            await queue.put(None)

    async def _queue_below(self, queue: asyncio.Queue, level: int) -> None:
        while queue.qsize() >= level and self.stopped is None:
            await asyncio.sleep(0.05)

    # -- sending -------------------------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            item = await queue.get()
            if item is None or self.stopped is not None:
                return
            try:
                await self._process(*item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not a service error: fail this request, keep the run going
                self._finish_failed(item[0], f"unexpected error: {_reason(exc)}")

    async def _gate(self, est: int) -> None:
        await self.limit.acquire()
        try:
            delay = 0.0
            if self.rpm_bucket is not None:
                delay = self.rpm_bucket.reserve(1)
            if self.tpm_bucket is not None:
                delay = max(delay, self.tpm_bucket.reserve(est))
            if delay > 0:
                await asyncio.sleep(delay)
            while True:
                wait = self.pause_until - time.monotonic()
                if wait <= 0:
                    return
                await asyncio.sleep(wait)
        except BaseException:
            self.limit.release()
            raise

    async def _call(self, prompt: str) -> Any:
        spec = self.spec
        kwargs = dict(system=spec.system, model=spec.model, schema=spec.schema,
                      temperature=spec.temperature, max_tokens=spec.max_tokens)
        if spec.op == "responses":
            return await self._client.respond(prompt, **kwargs)
        return await self._client.chat(prompt, **kwargs)

    async def _process(self, key: bytes, prompt: str, est: int) -> None:
        attempts = 0
        limited = 0
        while True:
            await self._gate(est)
            if self.stopped is not None:  # stopped while this one waited for its turn
                self.limit.release()
                return
            self.sent += 1
            delay = 0.0
            try:
                reply = await self._call(prompt)
            except RateLimitError as exc:
                self.rate_limited += 1
                if exc.quota_block:
                    self._finish_failed(key, _reason(exc))
                    self.stop(f"quota exhausted: {str(exc).splitlines()[0]}", fatal=exc)
                    return
                now = time.monotonic()
                wait = exc.retry_after if exc.retry_after is not None else backoff(limited + 1, 1.0, 30.0)
                self.pause_until = max(self.pause_until, now + wait)
                self.limit.decrease(now)
                limited += 1
                if limited > MAX_RATE_LIMITED:
                    self._finish_failed(key, _reason(exc))
                    return
            except _RETRYABLE as exc:
                attempts += 1
                if attempts > self.max_retries:
                    self._finish_failed(key, f"{_reason(exc)} (after {attempts} attempts)")
                    return
                delay = backoff(attempts)
            except _FATAL as exc:
                self._finish_failed(key, _reason(exc))
                self.stop(_reason(exc), fatal=exc)
                return
            except FoundryError as exc:  # content filter, context length, other 4xx: this row only
                self._finish_failed(key, _reason(exc))
                if self.successes == 0 and self.failures >= FAIL_FAST:
                    self.stop(f"the first {self.failures} requests all failed: {_reason(exc)}", fatal=exc)
                return
            else:
                self.limit.success()
                self._finish_ok(key, reply)
                return
            finally:
                self.limit.release()
            self.retries += 1
            if delay:
                await asyncio.sleep(delay)

    def _finish_ok(self, key: bytes, reply: Any) -> None:
        from foundry_magics.store.cache import CachedReply

        usage = reply.usage
        self.in_tokens += usage.input_tokens
        self.out_tokens += usage.output_tokens
        if reply.finish_reason == "content_filter":
            cats = ", ".join(reply.filtered) if reply.filtered else "unspecified"
            self._finish_failed(key, f"ContentFilter: the completion was filtered ({cats})")
            return
        self.successes += 1
        self._cache.put(key, self.spec.op, CachedReply(reply.text, reply.finish_reason, usage.input_tokens,
                                                       usage.output_tokens, reply.model))
        if self._cache.pending >= FLUSH_AT:
            self._flush()
        for j in self.inflight.pop(key, ()):
            self.texts[j] = reply.text
            self.done_rows += self.weight(j)

    def _finish_failed(self, key: bytes, reason: str) -> None:
        self.failures += 1
        for j in self.inflight.pop(key, ()):
            self.errors[j] = reason
            self.failed_rows += self.weight(j)

    # -- reporting -----------------------------------------------------------------------

    def snapshot(self, rates: deque) -> Snapshot:
        now = time.monotonic()
        elapsed = (self.finished_at or now) - self.started
        done = self.done_rows + self.failed_rows
        rates.append((now, done))
        while len(rates) > 2 and now - rates[0][0] > 5.0:
            rates.popleft()
        t0, d0 = rates[0]
        rate = (done - d0) / (now - t0) if now - t0 > 0.2 else (done / elapsed if elapsed > 0 else 0.0)
        todo = self.total_rows - self.batch.na_rows - done
        eta = todo / rate if rate > 0 else None
        return Snapshot(rows=self.total_rows, done=self.done_rows, failed=self.failed_rows,
                        cached=self.cached_rows, elapsed=elapsed, rate=rate, eta=eta,
                        rate_limited=self.rate_limited, retries=self.retries, concurrency=self.limit.current,
                        finished=self.finished_at is not None)

    def report(self) -> RunReport:
        elapsed = (self.finished_at or time.monotonic()) - self.started
        rows_needing = self.total_rows - self.batch.na_rows
        not_sent = max(0, rows_needing - self.done_rows - self.failed_rows)
        return RunReport(
            rows=self.total_rows, done=self.done_rows, na_rows=self.batch.na_rows, unique=self.batch.size,
            dedup_saved=max(0, rows_needing - self.batch.size), cache_hits=self.cache_hits, requests=self.sent,
            retries=self.retries, rate_limited=self.rate_limited, input_tokens=self.in_tokens,
            output_tokens=self.out_tokens, seconds=elapsed, failed=self.failed_rows, not_sent=not_sent,
            interrupted=self.interrupted, stopped=self.stopped, concurrency=self.limit.current,
            model=self.model or self.spec.model or getattr(self.conn, "model", None),
            connection=getattr(self.conn, "label", None), operation=self.spec.op,
        )


# ====================================================================== the caller's side


def _resolve(connection: Any) -> Any:
    from foundry_magics.connections import session
    from foundry_magics.connections.connection import Connection

    if isinstance(connection, Connection):
        return connection
    if connection is None or connection == "":
        return session.current_connection()
    return session.resolve(connection)


def _check_positive(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}.",
                                 hint=f"Pass {name}=N with N > 0, or leave it out.")


def wait_for(run: Any, fut: concurrent.futures.Future, progress: Any, label: str) -> None:
    """Wait in the caller's thread, showing progress; Ctrl-C stops the run and keeps what finished."""
    display = None
    rates: deque = deque()
    shown_after = 0.5  # seconds: a run quicker than this shows no progress at all
    try:
        while True:
            try:
                fut.result(timeout=POLL)
                break
            except concurrent.futures.TimeoutError:
                pass
            if progress is not False and display is None and time.monotonic() - run.started >= shown_after:
                display = _quietly(_make_progress, progress, run.total_rows, label)
            if display is not None:
                _quietly(display.update, run.snapshot(rates))
    except KeyboardInterrupt:
        loop = _engine_loop.get()
        loop.call_soon_threadsafe(lambda: run.stop("interrupted (Ctrl-C)", interrupted=True))
        try:
            fut.result(timeout=5.0)  # cancellation and the cache flush take well under a second
        except BaseException:  # noqa: BLE001 - we are already handling the interrupt
            pass
        if display is not None:
            _quietly(display.update, run.snapshot(rates))
            _quietly(display.close, run.report())
        raise
    if display is not None:
        _quietly(display.update, run.snapshot(rates))
        _quietly(display.close, run.report())


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
    """A progress display must never break (or abandon) a run."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        import logging

        logging.getLogger("foundry_magics.engine").debug("progress display failed", exc_info=True)
        return None


def run_batch(batch: Batch, spec: RequestSpec = RequestSpec(), *, connection: Any = None,
              concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
              cache: bool = True, progress: Any = True, timeout: float = 60.0, max_retries: int = MAX_RETRIES,
              transport: Any = None, label: str = "foundry") -> BatchResult:
    """Send `batch` (blocking the caller's thread, not its event loop) and return the replies.

    Ctrl-C stops the run; so does a fatal error (wrong key, unknown deployment, quota block,
    the first requests all failing alike). Either way what finished is cached and returned,
    `report.interrupted` / `result.error` say why it stopped, and `result.raise_if_stopped()`
    re-raises. `fm.last_run()` is the same report.
    """
    concurrency = DEFAULT_CONCURRENCY if concurrency is None else concurrency
    _check_positive("concurrency", concurrency, allow_none=False)
    _check_positive("rpm", rpm)
    _check_positive("tpm", tpm)
    if spec.op not in ("chat", "responses"):
        raise ConfigurationError(f"Unknown API {spec.op!r}.", hint="Use 'chat' or 'responses'.")
    conn = _resolve(connection)
    from foundry_magics.rest.client import _BaseClient

    probe = _BaseClient(conn)  # a missing key or model fails here, before anything starts
    if batch.size:  # and so does a bad schema or option: build the first request now
        build = probe.build_respond if spec.op == "responses" else probe.build_chat
        build(batch.render(range(0, 1))[0], system=spec.system, model=spec.model, schema=spec.schema,
              temperature=spec.temperature, max_tokens=spec.max_tokens)
    run = _Run(batch, spec, conn, concurrency=int(concurrency), rpm=rpm, tpm=tpm, cache=cache,
               timeout=timeout, max_retries=max_retries, transport=transport)
    return _finish(run, submit(run.main()), progress, label)


def _finish(run: Any, fut: concurrent.futures.Future, progress: Any, label: str) -> "BatchResult":
    interrupted = False
    try:
        wait_for(run, fut, progress, label)
    except KeyboardInterrupt:
        interrupted = True
    report = run.report()
    report.interrupted = report.interrupted or interrupted
    _set_last(report)
    exc = fut.exception() if fut.done() and not fut.cancelled() else None
    if exc is not None:  # a bug in the engine itself: never swallow it
        raise exc
    values = run.vectors if isinstance(run, _EmbedRun) else run.texts
    return BatchResult(values, run.errors, report, error=run.fatal)


# ====================================================================== embeddings


class _EmbedRun:
    """Distinct texts -> vectors: cached ones from the cache, the rest in batches of 2048."""

    def __init__(self, texts: Sequence[str], conn: Any, *, model: str | None, dimensions: int | None,
                 cache: bool, timeout: float, max_retries: int, concurrency: int, weights: Sequence[int] | None,
                 rows: int, na_rows: int) -> None:
        self.texts = texts
        self.conn = conn
        self.model = model
        self.dimensions = dimensions
        self.use_cache = cache
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.weights = weights
        self.vectors: list[Any] = [None] * len(texts)
        self.errors: dict[int, str] = {}
        self.total_rows = rows
        self.na_rows = na_rows
        self.done_rows = self.failed_rows = self.cached_rows = 0
        self.cache_hits = self.sent = 0
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.stopped: str | None = None
        self.interrupted = False
        self.fatal: BaseException | None = None
        self.tasks: list[asyncio.Task] = []

    def weight(self, i: int) -> int:
        return int(self.weights[i]) if self.weights is not None else 1

    def stop(self, reason: str, *, interrupted: bool = False, fatal: BaseException | None = None) -> None:
        if self.stopped is None:
            self.stopped, self.interrupted, self.fatal = reason, interrupted, fatal
        for t in self.tasks:
            if not t.done():
                t.cancel()

    async def main(self) -> None:
        import numpy as np

        from foundry_magics.rest.client import EMBED_BATCH, AsyncFoundryClient
        from foundry_magics.store.cache import MemoryCache, ResponseCache, request_key, route_identity
        from foundry_magics.rest.transport import LeanTransport

        transport = LeanTransport(max_connections=max(2, self.concurrency))
        client = cache = None
        self.started = time.monotonic()
        try:
            client = AsyncFoundryClient(self.conn, timeout=self.timeout, max_retries=self.max_retries,
                                        transport=transport)
            cache = ResponseCache() if self.use_cache else MemoryCache()
            route, model = client.build_embed(self.texts, self.model, self.dimensions)
            self.model = model
            rid = route_identity(route.url, route.params, emulator=self.conn.is_emulator)
            keys = [request_key(rid, "embeddings", {"model": model, "input": t, "dimensions": self.dimensions})
                    for t in self.texts]
            missing: list[int] = []
            for start in range(0, len(keys), 5000):
                part = keys[start:start + 5000]
                found = cache.get_vectors(part)
                for off, k in enumerate(part):
                    i = start + off
                    blob = found.get(k)
                    if blob is None:
                        missing.append(i)
                    else:
                        self.vectors[i] = np.frombuffer(blob, dtype=np.float32)
                        self.cache_hits += 1
                        self.cached_rows += self.weight(i)
                        self.done_rows += self.weight(i)
            batches = [missing[s:s + EMBED_BATCH] for s in range(0, len(missing), EMBED_BATCH)]
            sem = asyncio.Semaphore(self.concurrency)

            async def one(batch: list[int]) -> None:
                async with sem:
                    self.sent += 1
                    try:
                        vecs = await client.embed([self.texts[i] for i in batch], model=model,
                                                  dimensions=self.dimensions)
                    except _FATAL as exc:
                        for i in batch:
                            self.errors[i] = _reason(exc)
                            self.failed_rows += self.weight(i)
                        self.stop(_reason(exc), fatal=exc)
                        return
                    except FoundryError as exc:
                        for i in batch:
                            self.errors[i] = _reason(exc)
                            self.failed_rows += self.weight(i)
                        return
                    for i, v in zip(batch, vecs):
                        arr = np.asarray(v, dtype=np.float32)
                        self.vectors[i] = arr
                        cache.put_vector(keys[i], model, arr.tobytes())
                        self.done_rows += self.weight(i)
                    del vecs
                    cache.flush()

            self.tasks = [asyncio.ensure_future(one(b)) for b in batches]
            if self.stopped is not None:
                for t in self.tasks:
                    t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        finally:
            self.finished_at = time.monotonic()
            try:
                if cache is not None:
                    cache.close()
            finally:
                if client is not None:
                    await client.aclose()
                await transport.aclose()

    def snapshot(self, rates: deque) -> Snapshot:
        now = time.monotonic()
        elapsed = (self.finished_at or now) - self.started
        done = self.done_rows + self.failed_rows
        rate = done / elapsed if elapsed > 0 else 0.0
        todo = self.total_rows - self.na_rows - done
        return Snapshot(rows=self.total_rows, done=self.done_rows, failed=self.failed_rows, cached=self.cached_rows,
                        elapsed=elapsed, rate=rate, eta=todo / rate if rate > 0 else None, rate_limited=0,
                        retries=0, concurrency=self.concurrency, finished=self.finished_at is not None)

    def report(self) -> RunReport:
        elapsed = (self.finished_at or time.monotonic()) - self.started
        needing = self.total_rows - self.na_rows
        return RunReport(
            rows=self.total_rows, done=self.done_rows, na_rows=self.na_rows, unique=len(self.texts),
            dedup_saved=max(0, needing - len(self.texts)), cache_hits=self.cache_hits, requests=self.sent,
            seconds=elapsed, failed=self.failed_rows,
            not_sent=max(0, needing - self.done_rows - self.failed_rows), interrupted=self.interrupted,
            stopped=self.stopped, concurrency=self.concurrency, model=self.model,
            connection=getattr(self.conn, "label", None), operation="embeddings",
        )


def embed_texts(texts: Sequence[str], *, connection: Any = None, model: str | None = None,
                dimensions: int | None = None, cache: bool = True, progress: Any = True,
                timeout: float = 120.0, max_retries: int = MAX_RETRIES, concurrency: int = 2,
                weights: Sequence[int] | None = None, rows: int | None = None, na_rows: int = 0,
                label: str = "embed") -> BatchResult:
    """Vectors (numpy float32) for distinct `texts`, batched 2048 per request; cached per text."""
    conn = _resolve(connection)
    from foundry_magics.rest.client import _BaseClient

    _BaseClient(conn)
    total = rows if rows is not None else (int(sum(weights)) if weights is not None else len(texts)) + na_rows
    run = _EmbedRun(texts, conn, model=model, dimensions=dimensions, cache=cache, timeout=timeout,
                    max_retries=max_retries, concurrency=max(1, int(concurrency)), weights=weights,
                    rows=total, na_rows=na_rows)
    return _finish(run, submit(run.main()), progress, label)
