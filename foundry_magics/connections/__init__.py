"""Connections: the model and URL inference, the registry file, environment discovery,
pasted keys held in memory, and the connection in use (`session`).

    from foundry_magics.connections import Connection
    conn = Connection.from_url("https://R.openai.azure.com/openai/v1", model="gpt-4.1-mini")
"""

from __future__ import annotations

from foundry_magics.connections.connection import AUTHS, KINDS, Connection, Secret

__all__ = ["Connection", "Secret", "KINDS", "AUTHS"]
