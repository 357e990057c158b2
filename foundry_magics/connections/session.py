"""The current connection of this process, and name/URL resolution.

Order when nothing was chosen with `connect`: the registry's `default`, then connections
discovered from environment variables, then the built-in emulator (said once).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from foundry_magics.connections.connection import Connection
from foundry_magics.connections.discovery import discover
from foundry_magics.connections.fallback import fallback
from foundry_magics.connections.registry import Registry
from foundry_magics.defaults import EMULATOR_NAME
from foundry_magics.errors import ConfigurationError

__all__ = [
    "current_connection",
    "chosen_connection",
    "connect",
    "resolve",
    "connection_for",
    "known_connections",
    "emulator_connection",
    "pop_notice",
]

log = logging.getLogger("foundry_magics")
EMULATOR_NOTICE = (
    "No Foundry connection is configured: using the built-in emulator (replies are marked as emulated). "
    "Run `%foundry picker` or `%foundry connect URL` to use a real endpoint."
)

_lock = threading.RLock()
_current: Connection | None = None
_notice: str | None = None
_notice_given = False


def emulator_connection() -> Connection:
    """The built-in emulator's connection, when a face has wired one in (see `fallback`)."""
    provider = fallback()
    if provider is None:
        raise ConfigurationError(
            "No Foundry connection is configured, and no emulator is wired in.",
            hint="Run `fm.connect(URL)` (or `%foundry connect URL`), or set AZURE_OPENAI_ENDPOINT; "
            "`import foundry_magics` makes the built-in emulator the fallback.",
        )
    return provider()


def known_connections() -> dict[str, Connection]:
    """Registry connections first, then discovered ones under names the registry does not use.

    A key pasted earlier in this process for a name (foundry_magics.keys) is attached.
    """
    from foundry_magics.connections import keys

    reg = Registry.load()
    found, problems = discover()
    for line in problems:
        log.warning(line)
    out = {name: keys.with_key(conn) for name, conn in reg.connections.items()}
    for name, conn in found.items():
        out.setdefault(name, keys.with_key(conn))
    return out


def _default() -> Connection:
    global _notice, _notice_given
    from foundry_magics.connections import keys

    reg = Registry.load()
    if reg.default and reg.default in reg.connections:
        return keys.with_key(reg.connections[reg.default])
    found, _ = discover()
    if found:
        return keys.with_key(next(iter(found.values())))
    conn = emulator_connection()
    if not _notice_given:
        _notice, _notice_given = EMULATOR_NOTICE, True
        log.info(EMULATOR_NOTICE)
    return conn


def chosen_connection() -> Connection | None:
    """The connection chosen with `connect` (or the picker's Use) in this process, if any."""
    with _lock:
        return _current


def current_connection() -> Connection:
    """The connection now in use (chosen with `connect`, else the default; see module doc)."""
    with _lock:
        return _current if _current is not None else _default()


def connection_for(conn: Connection | str | None) -> Connection:
    """What a `connection=` argument means: a Connection as given, a name or URL resolved,
    None (or "") the current connection."""
    if isinstance(conn, Connection):
        return conn
    if conn is None or conn == "":
        return current_connection()
    return resolve(conn)


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
                hint=f"Known connections: {names}. "
                "Add one with `%foundry connect URL --save NAME` or `%foundry picker`.",
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
    """One row per known connection for display: never a key, only whether one is available.

    Rows: name, kind, endpoint, auth, key (where the key comes from and whether it is there),
    model, source ("registry", "env:VARIABLE", "emulator", "session"), current (bool).
    """
    import os

    def key_state(conn: Connection, pasted_before: bool) -> str:
        if conn.auth != "key":
            return conn.auth
        if conn.api_key is not None:
            return "in memory"
        var = conn.api_key_env
        if var and os.environ.get(var, "").strip():
            return f"${var} set"
        if pasted_before:  # saved with a pasted key (`key_prompt = true`), now gone
            return "paste it again (picker)" + (f" or set ${var}" if var else "")
        return f"${var} missing" if var else "missing"

    def row(name: str, conn: Connection, is_current: bool, pasted_before: bool, source: str = "") -> dict[str, Any]:
        return dict(name=name, kind=conn.kind, endpoint=conn.endpoint, auth=conn.auth,
                    key=key_state(conn, pasted_before), model=conn.model or "",
                    source=conn.source or source, current=is_current)

    reg = Registry.load()
    try:
        current = current_connection()
    except ConfigurationError:
        current = None
    known = known_connections()
    if current is not None and current.is_emulator:
        known.setdefault(EMULATOR_NAME, current)
    rows = []
    marked = False
    for name, conn in known.items():
        is_current = not marked and current is not None and current == conn
        marked = marked or is_current
        rows.append(row(name, conn, is_current, name in reg.key_prompt))
    if current is not None and not marked:
        # Made current from a URL or the picker without saving: still show it.
        rows.append(row(current.label, current, True, False, source="session"))
    return rows
