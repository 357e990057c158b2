"""What the application sees and answers: plain `Request` / `Reply` objects, no HTTP here.

``App.handle(Request) -> Reply`` is synchronous, pure computation; the server adapter
(`server.py`, on aiohttp) turns aiohttp requests into `Request` and `Reply` into responses,
and does all the waiting (latency, pacing, slow bodies, cut connections).
"""

from __future__ import annotations

import ipaddress
import os
import random

_rand = random.Random(os.urandom(16)).getrandbits
_V4 = (0x4000 << 64) | (0x8000 << 48)        # version 4, RFC 4122 variant
_V4_MASK = ~((0xF000 << 64) | (0xC000 << 48))


def uuid4_hex() -> str:
    """A random (version 4) UUID as 32 hex digits, like uuid.uuid4().hex at a quarter of the cost
    (ids, not secrets: from a PRNG seeded once from os.urandom)."""
    return "%032x" % (_rand(128) & _V4_MASK | _V4)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body", "keep_alive")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str], body: bytes = b"",
                 keep_alive: bool | None = None) -> None:
        """`headers`: names lower-cased, repeated headers joined with ", "."""
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        if keep_alive is None:
            conn = headers.get("connection", "").lower()
            keep_alive = "keep-alive" in conn if version == "HTTP/1.0" else "close" not in conn
        self.keep_alive = keep_alive


class Reply:
    """What to send. `chunks` makes a chunked (streamed) body paced by `chunk_delay`;
    `cut_after` closes the connection after that many chunks (no terminator), or, on a plain
    body, after half of it; `drop` closes the connection without any response; `slow_body`
    trickles a plain body over that many seconds; `close` ends the connection after the reply."""

    __slots__ = ("status", "headers", "body", "chunks", "delay", "chunk_delay", "cut_after", "drop",
                 "slow_body", "close")

    def __init__(self, status: int = 200, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                 *, chunks: list[bytes] | None = None, delay: float = 0.0, chunk_delay: float = 0.0,
                 cut_after: int | None = None, drop: bool = False, slow_body: float = 0.0,
                 close: bool = False) -> None:
        self.status = status
        self.headers = headers or []
        self.body = body
        self.chunks = chunks
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.cut_after = cut_after
        self.drop = drop
        self.slow_body = slow_body
        self.close = close

    @property
    def simple(self) -> bool:
        return self.chunks is None and not self.drop and self.slow_body <= 0 and self.cut_after is None
