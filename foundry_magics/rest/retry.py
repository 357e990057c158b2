"""When to retry and how long to wait. Pure functions: the clients do the sleeping."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["RETRY_STATUSES", "parse_retry_after", "RetryPolicy", "QUOTA_BLOCK_SECONDS"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# A retry-after at least this long is a quota block, not a rate limit: fail at once.
QUOTA_BLOCK_SECONDS = 300.0


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        value = float(ra)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass
class RetryPolicy:
    """Bounded by `max_retries` and by a total `deadline` in seconds from `start`."""

    max_retries: int = 6
    deadline: float = 600.0
    base: float = 0.5
    cap: float = 8.0
    start: float = field(default_factory=time.monotonic)
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def remaining(self) -> float:
        return self.deadline - (time.monotonic() - self.start)

    def backoff(self) -> float:
        """Exponential with jitter: min(base * 2**n, cap) * (1 - 0.25 * U(0,1))."""
        return min(self.base * 2 ** self.attempts, self.cap) * (1 - 0.25 * self.rng.random())

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """The wait before the next attempt, or None when no attempt is left (count or time)."""
        if self.attempts >= self.max_retries:
            return None
        delay = retry_after if retry_after is not None else self.backoff()
        if delay >= QUOTA_BLOCK_SECONDS or delay > self.remaining():
            return None
        self.attempts += 1
        return delay
