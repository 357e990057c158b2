"""When to try again and how long to wait: one policy for the clients and the engine.

Pure: the callers do the sleeping (the clients between attempts of one call, the engine by
pausing its workers). What is transient is decided here, once:

* retried: 408, 409, 429 (unless it is a quota block), 5xx, connections that failed or were
  cut, timeouts, bodies that are not the JSON the API promises;
* except a connection refused by this machine (127.x, ::1, localhost): nothing listens on
  that port, and backing off for ~20 s will not start a server there (`refused_on_loopback`);
* never retried: 400, 401, 403, 404, 422, content filter, context length, bad input;
* a `retry-after(-ms)` is honoured; without one the wait is exponential with jitter;
* a retry-after of QUOTA_BLOCK_SECONDS or more is a quota block: give up at once;
* so is an API Management gateway's 403 after a success with the same key, or with a
  retry-after: its token-limit policy's quota for the period is used up (`is_gateway`,
  `GatewayMemory`; errors.py maps it to `RateLimitError(quota_block=True)`);
* a 401 for a token of the wrong audience is sent once more, at once, with the other scope
  (`AuthError.scope_retry`, set when the client switched scopes).
"""

from __future__ import annotations

import email.utils
import errno
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

from foundry_magics.defaults import (
    APIM_KEY_HEADER,
    BACKOFF_BASE,
    BACKOFF_CAP,
    GATEWAY_HOST_SUFFIXES,
    MAX_RETRIES,
    QUOTA_BLOCK_SECONDS,
    RATE_LIMIT_BACKOFF_BASE,
    RATE_LIMIT_BACKOFF_CAP,
    RETRY_STATUSES,
)
from foundry_magics.errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    FoundryError,
    FoundryTimeoutError,
    HTTPStatusError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    StreamError,
)

__all__ = ["RETRY_STATUSES", "QUOTA_BLOCK_SECONDS", "parse_retry_after", "backoff", "is_transient", "stops_everything",
           "refused_on_loopback", "RetryPolicy", "is_gateway", "GatewayMemory", "gateway_memory"]


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


def backoff(retry: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
            rng: random.Random | None = None) -> float:
    """The wait before retry number `retry` (1 = the first): min(base * 2**(retry-1), cap), less up to 25 % jitter."""
    u = (rng or random).random()
    return min(base * 2 ** (retry - 1), cap) * (1 - 0.25 * u)


def refused_on_loopback(exc: BaseException, url: str) -> bool:
    """Was `exc` (httpx's or aiohttp's, or an OSError) a connection refused by this machine?

    A refusal on loopback is a definite answer - no server on that port - unlike one from a
    remote host, where a load balancer or a restarting server may refuse for a moment."""
    host = (urlsplit(url).hostname or "").lower()
    if not (host == "localhost" or host == "::1" or host.startswith("127.")):
        return False
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:  # httpx -> httpcore -> ConnectionRefusedError
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return True
        os_error = getattr(cause, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(os_error, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def is_transient(exc: BaseException) -> bool:
    """Would the same request, sent again, plausibly succeed?"""
    if isinstance(exc, ConnectionFailed) and getattr(exc, "refused_on_loopback", False):
        return False  # set by rest.base.transport_error
    if isinstance(exc, RateLimitError):
        return not exc.quota_block
    if isinstance(exc, HTTPStatusError):
        return exc.status in RETRY_STATUSES
    return isinstance(exc, (ConnectionFailed, FoundryTimeoutError, ResponseError, StreamError))


def stops_everything(exc: BaseException) -> bool:
    """Errors that every other request would hit too: a wrong key, an unknown deployment or
    route, bad input, an exhausted quota. A run stops at the first one."""
    if isinstance(exc, RateLimitError):
        return exc.quota_block
    return isinstance(exc, (AuthError, NotFoundError, ConfigurationError))


def is_gateway(url: str, key_header: str | None = None) -> bool:
    """An API Management gateway: an `*.azure-api.net` host, or a key sent as `Ocp-Apim-Subscription-Key`."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(GATEWAY_HOST_SUFFIXES) or (key_header or "").lower() == APIM_KEY_HEADER.lower()


class GatewayMemory:
    """Which (gateway, key) pairs have had a success in this process: after one, the gateway's
    403 is its token quota, not a wrong key. Keys are kept as short hashes, never as they are."""

    def __init__(self) -> None:
        self._ok: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def fingerprint(url: str, key: str | None) -> str:
        host = (urlsplit(url).hostname or "").lower()
        return hashlib.sha256(f"{host}\0{key or ''}".encode()).hexdigest()[:24]

    def succeeded(self, fingerprint: str) -> None:
        if fingerprint not in self._ok:
            with self._lock:
                self._ok.add(fingerprint)

    def has_succeeded(self, fingerprint: str) -> bool:
        return fingerprint in self._ok

    def clear(self) -> None:
        with self._lock:
            self._ok.clear()


gateway_memory = GatewayMemory()  # one per process: every client of the same key shares what it saw


@dataclass
class RetryPolicy:
    """Bounded by `max_retries` and by a total `deadline` (seconds from `start`; None: no bound).

    With `max_rate_limited` set (the engine), 429s have a budget of their own: they are flow
    control, paced by the adaptive limit, and do not use up the retries meant for faults.
    Without it (a single call), a 429 is one more retry.
    """

    max_retries: int = MAX_RETRIES
    deadline: float | None = None
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    max_rate_limited: int | None = None
    rate_limit_base: float = RATE_LIMIT_BACKOFF_BASE  # a 429 without retry-after waits longer than a fault
    rate_limit_cap: float = RATE_LIMIT_BACKOFF_CAP
    start: float = field(default_factory=time.monotonic)
    attempts: int = 0  # retries granted for faults (and for 429s without their own budget)
    rate_limited: int = 0  # waits granted for 429s, when they have their own budget
    rng: random.Random | None = field(default=None, repr=False)  # None: the random module's (seeding one costs)
    scope_retried: bool = False  # the one immediate retry of a 401 with the other Entra scope was granted

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - (time.monotonic() - self.start)

    def next_delay(self, exc: FoundryError) -> float | None:
        """Seconds to wait before sending again, or None: give up and raise (or fail the row)."""
        if getattr(exc, "scope_retry", False) and not self.scope_retried:
            self.scope_retried = True  # the token was for the wrong audience: the other scope, now
            return 0.0
        if not is_transient(exc):
            return None
        retry_after = getattr(exc, "retry_after", None)
        own_budget = isinstance(exc, RateLimitError) and self.max_rate_limited is not None
        if own_budget:
            if self.rate_limited >= self.max_rate_limited:  # type: ignore[operator]
                return None
            n = self.rate_limited + 1
            delay = retry_after if retry_after is not None else backoff(
                n, self.rate_limit_base, self.rate_limit_cap, self.rng)
        else:
            if self.attempts >= self.max_retries:
                return None
            n = self.attempts + 1
            delay = retry_after if retry_after is not None else backoff(n, self.base, self.cap, self.rng)
        if delay >= QUOTA_BLOCK_SECONDS or delay > self.remaining():
            return None
        if own_budget:
            self.rate_limited = n
        else:
            self.attempts = n
        return delay
