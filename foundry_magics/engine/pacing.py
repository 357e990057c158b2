"""Pacing a run: rpm/tpm token buckets and the adaptive (AIMD) concurrency limit.

(How long to back off after a failure is `rest.retry`'s: one policy for calls and runs.)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Callable

__all__ = ["TokenBucket", "AdaptiveLimit"]


class TokenBucket:
    """A smooth budget: `rate` units per second with `burst` units of headroom.

    `reserve(n)` books `n` units and returns how long to wait before using them; bookings
    queue up in order, so concurrent callers are spaced evenly.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.clock = clock
        self.level = min(self.burst, 1.0)
        self.t = clock()

    def reserve(self, n: float = 1.0) -> float:
        now = self.clock()
        self.level = min(self.burst, self.level + (now - self.t) * self.rate)
        self.t = now
        self.level -= n
        return 0.0 if self.level >= 0 else -self.level / self.rate


class AdaptiveLimit:
    """At most `limit` holders at once; AIMD: halve on a rate-limit event, +1/limit per success."""

    def __init__(self, maximum: int, cooldown: float = 1.0) -> None:
        self.maximum = max(1, int(maximum))
        self.limit = float(self.maximum)
        self.active = 0
        self.cooldown = cooldown
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_cut = -1e9
        self.cuts = 0

    @property
    def current(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> None:
        if self.active < self.current and not self._waiters:
            self.active += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # the releaser counted us in
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        self.active -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.active < self.current:
            w = self._waiters.popleft()
            if not w.done():
                self.active += 1
                w.set_result(None)

    def success(self) -> None:
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._wake()

    def decrease(self, now: float) -> None:
        if now - self._last_cut >= self.cooldown:
            self._last_cut = now
            self.limit = max(1.0, self.limit / 2)
            self.cuts += 1
