"""The response cache: finished replies in SQLite, so a re-run pays only for what is missing.

One file, `$FOUNDRY_MAGICS_HOME/cache.sqlite`, shared by every notebook and process (WAL and a
busy timeout, from `store.db.open_db`). The key is the SHA-256 of a canonical JSON of what
decides the answer: the route (endpoint URL, deployment and api-version), the operation and
the request body without its streaming flags. Bodies never carry a key or a token (those
travel in headers), so neither does the cache.

Writes are buffered and committed in one transaction per `flush()` (the engine flushes every
few hundred replies or half a second, and at the end or on interrupt); `get_many` looks keys
up in bulk and sees the unflushed buffer too.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

__all__ = ["CachedReply", "ResponseCache", "MemoryCache", "CacheOnUse", "request_key", "cache_path"]

MIGRATIONS = [
    """
    CREATE TABLE replies (
        key BLOB PRIMARY KEY,
        op TEXT NOT NULL,
        model TEXT,
        text TEXT NOT NULL,
        finish_reason TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE vectors (
        key BLOB PRIMARY KEY,
        model TEXT,
        vector BLOB NOT NULL,
        created REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: what a reply's tokens were made of (parts of input_tokens / output_tokens)
    """
    ALTER TABLE replies ADD COLUMN cached_input_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE replies ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    """,
]

_LOOKUP_CHUNK = 500  # well under SQLite's default limit of host parameters
_STREAM_FIELDS = ("stream", "stream_options")
# Query parameters that authenticate rather than select (some gateways accept a key there).
_SECRET_PARAMS = frozenset({"api-key", "api_key", "key", "code", "subscription-key", "sig", "token", "access_token"})


class CachedReply(NamedTuple):
    text: str
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    cached_input_tokens: int = 0  # a part of input_tokens
    reasoning_tokens: int = 0  # a part of output_tokens


def cache_path() -> Path:
    from foundry_magics.defaults import home

    return home() / "cache.sqlite"


def request_key(route_id: str, op: str, body: dict[str, Any]) -> bytes:
    """SHA-256 (32 bytes) of the canonical JSON of (route, operation, body minus stream flags)."""
    if any(f in body for f in _STREAM_FIELDS):
        body = {k: v for k, v in body.items() if k not in _STREAM_FIELDS}
    canon = json.dumps([route_id, op, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode("utf-8")).digest()


def route_identity(url: str, params: dict[str, Any] | None, *, emulator: bool = False) -> str:
    """The part of a route that decides the answer: URL (host, deployment, path) and api-version.

    The emulator is deterministic and its port changes from run to run, so its host is left out.
    """
    if emulator:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        url = "emulator:" + parts.path
    kept = sorted((k, str(v)) for k, v in (params or {}).items() if k.lower() not in _SECRET_PARAMS)
    return url + ("?" + "&".join(f"{k}={v}" for k, v in kept) if kept else "")


class MemoryCache:
    """The same interface, in memory for one run (cache=False: still each request only once)."""

    persistent = False

    def __init__(self) -> None:
        self._replies: dict[bytes, CachedReply] = {}
        self._vectors: dict[bytes, Any] = {}

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, CachedReply]:
        r = self._replies
        return {k: r[k] for k in keys if k in r}

    def put(self, key: bytes, op: str, reply: CachedReply) -> None:
        self._replies[key] = reply

    def get_vectors(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        v = self._vectors
        return {k: v[k] for k in keys if k in v}

    def put_vector(self, key: bytes, model: str | None, vector: bytes) -> None:
        self._vectors[key] = vector

    @property
    def pending(self) -> int:
        return 0

    def flush(self) -> int:
        return 0

    def close(self) -> None:
        self._replies.clear()
        self._vectors.clear()


class ResponseCache(MemoryCache):
    """SQLite-backed cache. Use it from one thread (the engine's loop thread)."""

    persistent = True

    def __init__(self, path: Path | str | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else cache_path()
        self._db: sqlite3.Connection | None = None
        self._pending: dict[bytes, tuple[str, CachedReply]] = {}
        self._pending_vectors: dict[bytes, tuple[str | None, bytes]] = {}

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            from foundry_magics.store.db import open_db

            self._db = open_db(self.path, MIGRATIONS)
        return self._db

    # -- replies ------------------------------------------------------------------------

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, CachedReply]:
        return self._lookup(keys, self._pending, "SELECT key, text, finish_reason, input_tokens, output_tokens, model,"
                            " cached_input_tokens, reasoning_tokens FROM replies WHERE key IN ({marks})",
                            lambda row: CachedReply(*row[1:8]))

    def _lookup(self, keys: Sequence[bytes], pending: dict, query: str, make: Any) -> dict:
        """Values by key: unflushed ones from `pending`, the rest from SQLite in chunks."""
        found = {}
        rest = []
        for k in keys:
            p = pending.get(k)
            if p is not None:
                found[k] = p[1]
            else:
                rest.append(k)
        for i in range(0, len(rest), _LOOKUP_CHUNK):
            chunk = rest[i : i + _LOOKUP_CHUNK]
            for row in self.db.execute(query.format(marks=",".join("?" * len(chunk))), chunk):
                found[row[0]] = make(row)
        return found

    def put(self, key: bytes, op: str, reply: CachedReply) -> None:
        self._pending[key] = (op, reply)

    # -- embeddings ---------------------------------------------------------------------

    def get_vectors(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Packed vectors (the bytes given to put_vector, e.g. float32) by key."""
        return self._lookup(keys, self._pending_vectors, "SELECT key, vector FROM vectors WHERE key IN ({marks})",
                            lambda row: bytes(row[1]))

    def put_vector(self, key: bytes, model: str | None, vector: bytes) -> None:
        self._pending_vectors[key] = (model, bytes(vector))

    # -- writing ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._pending_vectors)

    def flush(self) -> int:
        """Commit buffered entries in one transaction; returns how many were written."""
        if not self._pending and not self._pending_vectors:
            return 0
        now = time.time()
        replies = [(k, op, r.model, r.text, r.finish_reason, r.input_tokens, r.output_tokens, now,
                    r.cached_input_tokens, r.reasoning_tokens) for k, (op, r) in self._pending.items()]
        vectors = [(k, model, blob, now) for k, (model, blob) in self._pending_vectors.items()]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if replies:
                db.executemany("INSERT OR REPLACE INTO replies (key, op, model, text, finish_reason, input_tokens,"
                               " output_tokens, created, cached_input_tokens, reasoning_tokens)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", replies)
            if vectors:
                db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", vectors)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._pending.clear()
        self._pending_vectors.clear()
        return len(replies) + len(vectors)

    def put_many(self, items: Iterable[tuple[bytes, str, CachedReply]]) -> None:
        """Bulk insert (benchmarks and imports): buffered, call flush()."""
        for key, op, reply in items:
            self._pending[key] = (op, reply)

    def count(self) -> int:
        return self.db.execute("SELECT (SELECT count(*) FROM replies) + (SELECT count(*) FROM vectors)").fetchone()[0]

    def clear(self) -> None:
        self._pending.clear()
        self._pending_vectors.clear()
        db = self.db
        db.execute("DELETE FROM replies")
        db.execute("DELETE FROM vectors")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None


class CacheOnUse:
    """A `ResponseCache` opened on first use (`self.cache`) and closed by `close()`: for a Batch
    API call, whose results always land in the cache (that is how a job survives a restart)."""

    _cache: Any = None

    @property
    def cache(self) -> Any:
        if self._cache is None:
            self._cache = ResponseCache()
        return self._cache

    def close(self) -> None:
        if self._cache is not None:
            try:
                self._cache.close()
            finally:
                self._cache = None
