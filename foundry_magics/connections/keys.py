"""Keys pasted during this process, by connection name. Process memory only.

A key typed into the picker (or given as `api_key=`) for a named connection is kept here so
that `connect("name")` later in the same kernel finds it. Nothing here is ever written to a
file, a log or widget state; a kernel restart forgets every key, which is the point: the
registry records only that the key must be supplied again (`key_prompt = true`).
"""

from __future__ import annotations

import threading

from foundry_magics.connections.connection import Connection, Secret

__all__ = ["remember", "lookup", "forget", "clear", "names", "with_key"]

_lock = threading.Lock()
_keys: dict[str, Secret] = {}


def remember(name: str, key: Secret | str) -> None:
    """Hold `key` in memory for the connection `name` (replacing any earlier one)."""
    secret = key if isinstance(key, Secret) else Secret(key)
    with _lock:
        _keys[name] = secret


def lookup(name: str | None) -> Secret | None:
    if not name:
        return None
    with _lock:
        return _keys.get(name)


def forget(name: str) -> bool:
    """Drop the key held for `name`; True if there was one."""
    with _lock:
        return _keys.pop(name, None) is not None


def clear() -> None:
    with _lock:
        _keys.clear()


def names() -> list[str]:
    """Names of connections that have a key in memory (never the keys)."""
    with _lock:
        return sorted(_keys)


def with_key(conn: Connection) -> Connection:
    """`conn` with the key remembered for its name attached, when it uses a key and has none."""
    if conn.auth != "key" or conn.api_key is not None:
        return conn
    secret = lookup(conn.name)
    return conn.replace(api_key=secret) if secret is not None else conn
