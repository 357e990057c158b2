"""The connection to the embedded emulator: what the faces fall back to when nothing is configured."""

from __future__ import annotations

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import EMULATOR_MODEL, EMULATOR_NAME

__all__ = ["emulator_connection"]


def emulator_connection() -> Connection:
    """A connection to the embedded emulator, started on first use."""
    from foundry_magics import emulator

    url = emulator.start()
    return Connection.from_url(url + "/openai/v1", kind="emulator", name=EMULATOR_NAME, auth="none",
                               model=EMULATOR_MODEL, source="emulator")
