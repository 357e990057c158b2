"""One engine run: the state every kind of run shares, and the way each request is sent.

A run answers `size` distinct requests for `rows` rows (`weights[i]` rows per request after
dedup; `na_rows` were never sent). Every run - prompts, embeddings - has the same shape:
`values` / `errors` per distinct request, the same counters, the same stop switch (Ctrl-C,
a fatal error), the same progress snapshot and the same report. Every request goes through
`send()`: the adaptive limit, the rpm/tpm budgets and the shared 429 pause, then one call,
then the retry policy of `rest.retry` (the same rules a single call follows) with 429s on a
budget of their own. With `max_cost`, each attempt first books its upper bound in the run's
`engine.budget.Budget` and settles it with what the reply cost; a request that does not fit
once nothing is in flight stops the run (not an error: finished rows are kept, the rest get
the reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Awaitable, Callable, Iterator, Protocol, Sequence

from foundry_magics.defaults import CONCURRENCY, FAIL_FAST, FLUSH_EVERY, MAX_RATE_LIMITED, MAX_RETRIES, TIMEOUT
from foundry_magics.engine.pacing import AdaptiveLimit, TokenBucket
from foundry_magics.engine.report import RunReport, Snapshot
from foundry_magics.errors import FoundryError, RateLimitError, describe, first_line
from foundry_magics.rest.retry import RetryPolicy, is_transient, stops_everything

__all__ = ["Run", "Weights", "percentile"]


class Weights(Protocol):
    """How many rows each request answers: a list of ints, or the numpy integer array ops/plan.py builds."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

log = logging.getLogger("foundry_magics.engine")

_STOPPED = object()  # an attempt that never went out: the run stopped while it waited


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return float(ordered[int(rank) - 1])


class Run:
    operation = "chat"

    def __init__(self, conn: Any, *, size: int, weights: Weights | None = None, rows: int | None = None,
                 na_rows: int = 0, concurrency: int = CONCURRENCY, rpm: float | None = None,
                 tpm: float | None = None, cache: bool = True, timeout: float = TIMEOUT,
                 max_retries: int = MAX_RETRIES, transport: Any = None, model: str | None = None,
                 budget: Any = None) -> None:
        self.conn = conn
        self.size = size
        self.weights = weights
        self.na_rows = na_rows
        self.total_rows = rows if rows is not None else (
            int(sum(weights)) if weights is not None else size) + na_rows
        self.concurrency = concurrency
        self.use_cache = cache
        self.timeout = timeout
        self.max_retries = max_retries
        self.transport = transport
        self.model = model
        self.values: list[Any] = [None] * size  # reply text (or vector) per distinct request
        self.errors: dict[int, str] = {}
        # counters, read by the caller's thread for progress
        self.done_rows = self.failed_rows = self.cached_rows = 0
        self.cache_hits = self.sent = self.retries = self.rate_limited = 0
        self.in_tokens = self.out_tokens = 0
        self.cached_tokens = self.reasoning_tokens = 0  # parts of in_tokens / out_tokens
        self.successes = self.failures = 0
        self.replayed_in = self.replayed_out = 0  # tokens of the replies taken from the cache (not spent now)
        self.latencies: list[float] = []  # seconds per answered request (p50 / p95 in the report)
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.stopped: str | None = None
        self.fatal: BaseException | None = None
        self.interrupted = False
        self.tasks: list[asyncio.Task] = []
        self.limit = AdaptiveLimit(concurrency)
        self.pause_until = 0.0
        self.rpm_bucket = TokenBucket(rpm / 60.0, max(1.0, rpm / 60.0)) if rpm else None
        self.tpm_bucket = TokenBucket(tpm / 60.0, max(1.0, tpm / 60.0)) if tpm else None
        self.client: Any = None
        self.cache: Any = None
        self.budget = budget  # engine.budget.Budget under max_cost, else None

    def weight(self, i: int) -> int:
        return int(self.weights[i]) if self.weights is not None else 1

    # -- lifecycle (on the engine's loop) ------------------------------------------------

    async def main(self) -> None:
        """Open the client and the cache, run `work()`, and always close both."""
        from foundry_magics.rest.client import AsyncFoundryClient
        from foundry_magics.store.cache import MemoryCache, ResponseCache

        self.started = time.monotonic()
        flusher = None
        try:
            self.client = AsyncFoundryClient(self.conn, timeout=self.timeout, max_retries=0, transport=self.transport,
                                             max_connections=max(8, self.concurrency))
            self.client.count_usage = False  # the run is counted once, as its report (runner.py)
            self.cache = ResponseCache() if self.use_cache else MemoryCache()
            flusher = asyncio.ensure_future(self._flusher())
            await self.work()
            self._mark_not_sent()
        finally:
            self.finished_at = time.monotonic()
            if flusher is not None:
                flusher.cancel()
            try:
                if self.cache is not None:
                    self.cache.close()  # flushes what is buffered
            finally:
                if self.client is not None:
                    await self.client.aclose()

    async def work(self) -> None:  # pragma: no cover - each kind of run has its own
        raise NotImplementedError

    async def gather(self, coros: Sequence[Awaitable[Any]]) -> None:
        """Run the tasks of this run; `stop()` cancels them."""
        self.tasks = [asyncio.ensure_future(c) for c in coros]
        if self.stopped is not None:  # stopped (Ctrl-C) before the tasks existed
            for t in self.tasks:
                t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def stop(self, reason: str, *, interrupted: bool = False, fatal: BaseException | None = None) -> None:
        """Stop the run (on the loop thread): cancel its tasks. The first reason wins."""
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
            if self.cache.pending:
                self.flush()

    def flush(self) -> None:
        try:
            self.cache.flush()
        except Exception as exc:  # a full disk must not lose the run's replies in memory
            log.warning("cache write failed: %s", exc)

    # -- sending one request -------------------------------------------------------------

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

    async def send(self, call: Callable[[], Awaitable[Any]], est: int, indices: Sequence[int],
                   bound: float | None = None) -> Any:
        """`call()` through the limit and the budgets, retried by the policy. The result, or
        None when the request failed: then `indices` are failed with the reason, and an error
        every other request would hit too (wrong key, unknown deployment, quota) stops the run.
        `bound`: what one attempt can cost at most (under max_cost); None when it does not fit
        the run's budget (the run stops; `indices` are left as not sent)."""
        policy = RetryPolicy(self.max_retries, max_rate_limited=MAX_RATE_LIMITED)
        budget = self.budget if bound is not None else None
        while True:
            if budget is not None:  # booked before taking a slot: waiting here never holds one
                if not await budget.reserve(bound):
                    self.stop(budget.reason())
                    return None
            try:
                result = await self._attempt(call, est, budget, bound)
            except FoundryError as exc:
                delay = policy.next_delay(exc)
                if isinstance(exc, RateLimitError):
                    self.rate_limited += 1
                    if delay is not None:  # flow control: everyone pauses, the limit halves
                        now = time.monotonic()
                        self.pause_until = max(self.pause_until, now + delay)
                        self.limit.decrease(now)
                        delay = 0.0
                if delay is None:
                    self._give_up(exc, policy, indices)
                    return None
                self.retries += 1
                if delay:
                    await asyncio.sleep(delay)
                continue
            if result is _STOPPED:
                return None
            return result

    async def _attempt(self, call: Callable[[], Awaitable[Any]], est: int, budget: Any, bound: Any) -> Any:
        """One attempt through the limit (and the budget booked for it, settled here)."""
        charged = 0.0  # nothing went out yet
        try:
            await self._gate(est)
            if self.stopped is not None:  # stopped while this one waited for its turn
                self.limit.release()
                return _STOPPED
            self.sent += 1
            charged = bound  # gone out: an attempt that ends unexpectedly (Ctrl-C, a bug) counts its bound
            sent_at = time.monotonic()
            try:
                result = await call()
            except FoundryError as exc:
                self.limit.release()
                if budget is not None:
                    from foundry_magics.engine.budget import may_be_billed

                    charged = bound if may_be_billed(exc) else 0.0
                raise
            except BaseException:
                self.limit.release()
                raise
            self.latencies.append(time.monotonic() - sent_at)
            self.limit.success()
            self.limit.release()
            if budget is not None:
                charged = self.cost_of(result, budget, bound)
            return result
        finally:
            if budget is not None:
                budget.settle(bound, charged)

    def cost_of(self, result: Any, budget: Any, bound: float) -> float:
        """What a finished attempt cost: its usage at the run's price (a run whose replies carry no
        usage counts its bound)."""
        usage = getattr(result, "usage", None)
        if usage is None:
            return bound
        return budget.cost(usage.input_tokens, usage.output_tokens)

    def _mark_not_sent(self) -> None:
        """After a budget stop: every request without a reply or an error gets the reason."""
        if self.budget is None or not self.budget.exhausted:
            return
        reason = "not sent: " + self.budget.reason()
        for i, value in enumerate(self.values):
            if value is None and i not in self.errors:
                self.errors[i] = reason

    def _give_up(self, exc: FoundryError, policy: RetryPolicy, indices: Sequence[int]) -> None:
        reason = describe(exc)
        if is_transient(exc) and not isinstance(exc, RateLimitError):  # the retries ran out
            reason += f" (after {policy.attempts + 1} attempts)"
        self.fail(indices, reason)
        if stops_everything(exc):
            why = f"quota exhausted: {first_line(exc)}" if isinstance(exc, RateLimitError) else describe(exc)
            self.stop(why, fatal=exc)
        elif self.successes == 0 and self.failures >= FAIL_FAST:
            self.stop(f"the first {self.failures} requests all failed: {reason}", fatal=exc)

    # -- outcomes ------------------------------------------------------------------------

    def succeed(self, indices: Sequence[int], value: Any, *, cached: bool = False) -> None:
        if not cached:
            self.successes += 1
        for j in indices:
            self.values[j] = value
            w = self.weight(j)
            self.done_rows += w
            if cached:
                self.cached_rows += w

    def fail(self, indices: Sequence[int], reason: str) -> None:
        self.failures += 1
        for j in indices:
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
        todo = self.total_rows - self.na_rows - done
        return Snapshot(rows=self.total_rows, done=self.done_rows, failed=self.failed_rows, cached=self.cached_rows,
                        elapsed=elapsed, rate=rate, eta=todo / rate if rate > 0 else None,
                        rate_limited=self.rate_limited, retries=self.retries, concurrency=self.limit.current,
                        finished=self.finished_at is not None)

    def report(self) -> RunReport:
        elapsed = (self.finished_at or time.monotonic()) - self.started
        needing = self.total_rows - self.na_rows
        return RunReport(
            rows=self.total_rows, done=self.done_rows, na_rows=self.na_rows, unique=self.size,
            dedup_saved=max(0, needing - self.size), cache_hits=self.cache_hits, requests=self.sent,
            retries=self.retries, rate_limited=self.rate_limited, input_tokens=self.in_tokens,
            output_tokens=self.out_tokens, cached_input_tokens=self.cached_tokens,
            reasoning_tokens=self.reasoning_tokens, seconds=elapsed, failed=self.failed_rows,
            not_sent=max(0, needing - self.done_rows - self.failed_rows), interrupted=self.interrupted,
            stopped=self.stopped, concurrency=self.limit.current,
            model=self.model or getattr(self.conn, "model", None), connection=getattr(self.conn, "label", None),
            operation=self.operation, p50_s=percentile(self.latencies, 50), p95_s=percentile(self.latencies, 95),
            replayed_input_tokens=self.replayed_in, replayed_output_tokens=self.replayed_out,
        )
