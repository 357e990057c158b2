"""Rate-limit windows (RPM / TPM, Azure-style fixed windows) and seeded fault injection."""

from __future__ import annotations

import math
import random
import time


class RateLimiter:
    """Fixed windows of `window` seconds; allowance per window = per-minute limit * window / 60.

    A request rejected with 429 does not consume allowance. A single request larger than a
    whole window's token allowance is let through when the window is still empty (so it
    cannot be blocked forever).
    """

    def __init__(self, rpm: float | None, tpm: float | None, window: float = 10.0, clock=time.monotonic):
        self.clock = clock
        self.configure(rpm, tpm, window)

    def configure(self, rpm: float | None, tpm: float | None, window: float = 10.0) -> None:
        self.rpm = rpm if rpm else None
        self.tpm = tpm if tpm else None
        self.window = float(window) if window and window > 0 else 10.0
        self.req_allow = max(1, int(self.rpm * self.window / 60.0)) if self.rpm else None
        self.tok_allow = max(1, int(self.tpm * self.window / 60.0)) if self.tpm else None
        self.t0 = self.clock()
        self.index = 0
        self.used_req = 0
        self.used_tok = 0

    @property
    def active(self) -> bool:
        return self.req_allow is not None or self.tok_allow is not None

    def _roll(self, now: float) -> None:
        idx = int((now - self.t0) // self.window)
        if idx != self.index:
            self.index = idx
            self.used_req = 0
            self.used_tok = 0

    def until_reset(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        return max(0.0, self.t0 + (self.index + 1) * self.window - now)

    def acquire(self, tokens: int) -> tuple[str | None, float]:
        """Returns (None, 0) when admitted, else ("requests"|"tokens", seconds until reset)."""
        now = self.clock()
        self._roll(now)
        if self.req_allow is not None and self.used_req >= self.req_allow:
            return "requests", self.until_reset(now)
        if self.tok_allow is not None and self.used_tok + tokens > self.tok_allow and self.used_tok > 0:
            return "tokens", self.until_reset(now)
        self.used_req += 1
        self.used_tok += tokens
        return None, 0.0

    def remaining(self) -> tuple[int | None, int | None]:
        self._roll(self.clock())
        r = max(0, self.req_allow - self.used_req) if self.req_allow is not None else None
        t = max(0, self.tok_allow - self.used_tok) if self.tok_allow is not None else None
        return r, t


def retry_headers(seconds: float) -> list[tuple[str, str]]:
    ms = max(1, int(math.ceil(seconds * 1000)))
    return [("retry-after-ms", str(ms)), ("retry-after", str(max(1, int(math.ceil(seconds)))))]


class Faults:
    """Seeded random faults, reproducible for a given seed and request order."""

    def __init__(self, seed: int = 0) -> None:
        self.seed(seed)
        self.attempts: dict[int, int] = {}

    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def hit(self, rate: float) -> bool:
        return rate > 0 and (rate >= 1 or self.rng.random() < rate)

    def first_attempts(self, key: int, n: int) -> bool:
        """True while this request body has been seen at most n times (including now)."""
        if n <= 0:
            return False
        seen = self.attempts.get(key, 0) + 1
        if len(self.attempts) > 500_000:
            self.attempts.clear()
        self.attempts[key] = seen
        return seen <= n

    def reset(self) -> None:
        self.attempts.clear()
