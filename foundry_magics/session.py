"""The current connection of this process, and name/URL resolution.

Order when nothing was chosen with `connect`: the registry's `default`, then connections
discovered from environment variables, then the built-in emulator (said once).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .connections import Connection
from .discovery import discover
from .errors import ConfigurationError
from .registry import Registry

__all__ = ["current_connection", "connect", "resolve", "known_connections", "emulator_connection", "pop_notice"]

log = logging.getLogger("foundry_magics")
EMULATOR_NAME = "emulator"
EMULATOR_NOTICE = (
    "No Foundry connection is configured: using the built-in emulator (replies are marked as emulated). "
    "Run `%foundry picker` or `%foundry connect URL` to use a real endpoint."
)

_lock = threading.RLock()
_current: Connection | None = None
_notice: str | None = None
_notice_given = False


def emulator_connection() -> Connection:
    """A connection to the embedded emulator, started on first use."""
    from . import emulator

    url = emulator.start()
    return Connection.from_url(url + "/openai/v1", kind="emulator", name=EMULATOR_NAME, auth="none",
                               model="gpt-4o-mini", source="emulator")


def known_connections() -> dict[str, Connection]:
    """Registry connections first, then discovered ones under names the registry does not use."""
    reg = Registry.load()
    found, problems = discover()
    for line in problems:
        log.warning(line)
    out = dict(reg.connections)
    for name, conn in found.items():
        out.setdefault(name, conn)
    return out


def _default() -> Connection:
    global _notice, _notice_given
    reg = Registry.load()
    if reg.default and reg.default in reg.connections:
        return reg.connections[reg.default]
    found, _ = discover()
    if found:
        return next(iter(found.values()))
    conn = emulator_connection()
    if not _notice_given:
        _notice, _notice_given = EMULATOR_NOTICE, True
        log.info(EMULATOR_NOTICE)
    return conn


def current_connection() -> Connection:
    """The connection now in use (chosen with `connect`, else the default; see module doc)."""
    with _lock:
        return _current if _current is not None else _default()


def resolve(name_or_url: str | Connection, **fields: Any) -> Connection:
    """A connection by registry/env name, 'emulator', or URL; `fields` override its settings."""
    if isinstance(name_or_url, Connection):
        conn = name_or_url
    elif not isinstance(name_or_url, str) or not name_or_url.strip():
        raise ConfigurationError("Give a connection name or an endpoint URL.",
                                 hint="`%foundry connections` lists the known names.")
    elif "://" in name_or_url or name_or_url.startswith(("localhost", "127.0.0.1")):
        url = name_or_url if "://" in name_or_url else "http://" + name_or_url
        return Connection.from_url(url, **fields)
    elif name_or_url == EMULATOR_NAME:
        conn = emulator_connection()
    else:
        known = known_connections()
        if name_or_url not in known:
            names = ", ".join(sorted(known) + [EMULATOR_NAME])
            raise ConfigurationError(
                f"Unknown connection {name_or_url!r}.",
                hint=f"Known connections: {names}. Add one with `%foundry connect URL --save NAME` or `%foundry picker`.",
            )
        conn = known[name_or_url]
    fields = {k: v for k, v in fields.items() if v is not None}
    return conn.replace(**fields) if fields else conn


def connect(name_or_url: str | Connection, *, save: str | None = None, **fields: Any) -> Connection:
    """Resolve, make current, and optionally save to the registry under `save`."""
    global _current
    conn = resolve(name_or_url, **fields)
    if save:
        reg = Registry.load()
        conn = reg.put(save, conn)
        reg.save()
    with _lock:
        _current = conn
    return conn


def set_current(conn: Connection | None) -> None:
    global _current
    with _lock:
        _current = conn


def pop_notice() -> str | None:
    """The one-time notice (emulator fallback) for a face to show, once."""
    global _notice
    with _lock:
        text, _notice = _notice, None
        return text


def describe_connections() -> list[dict[str, Any]]:
    """One row per known connection for display: never a key, only whether one is available."""
    import os

    rows = []
    try:
        current = current_connection()
    except ConfigurationError:
        current = None
    known = known_connections()
    if current is not None and current.is_emulator:
        known.setdefault(EMULATOR_NAME, current)
    for name, conn in known.items():
        if conn.auth == "key":
            if conn.api_key is not None:
                key = "in memory"
            elif conn.api_key_env and os.environ.get(conn.api_key_env):
                key = f"${conn.api_key_env} set"
            else:
                key = f"${conn.api_key_env} missing" if conn.api_key_env else "missing"
        else:
            key = conn.auth
        rows.append(dict(
            name=name, kind=conn.kind, endpoint=conn.endpoint, auth=conn.auth, key=key,
            model=conn.model or "", source=conn.source or "", current=current is not None and current == conn,
        ))
    return rows
