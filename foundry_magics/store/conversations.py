"""Server-side conversations by local name (`$FOUNDRY_MAGICS_HOME/conversations.sqlite`).

`%%foundry --conversation NAME` keeps its turns in a conversation on the service (a Foundry
project's `/openai/v1/conversations`); this table remembers which conversation id a NAME
stands for on which endpoint, so the same NAME continues the same conversation in a new
kernel, another notebook or tomorrow. A conversation id is only valid on the project that
issued it, so the key is (name, endpoint). Nothing secret is stored: names, URLs, ids.

The schema grows by numbered migrations (store.db.open_db), like the history log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundry_magics.defaults import CONVERSATIONS_FILE
from foundry_magics.store.db import HomeDatabase

__all__ = ["ConversationStore", "SavedConversation", "MIGRATIONS", "conversations_path"]

MIGRATIONS: list[str] = [
    # 1: local name -> server conversation id, per endpoint
    """
    CREATE TABLE conversations (
        name            TEXT NOT NULL,
        endpoint        TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        agent           TEXT,
        created         REAL NOT NULL,
        updated         REAL NOT NULL,
        turns           INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, endpoint)
    );
    """,
]


def conversations_path() -> Path:
    from foundry_magics.defaults import home

    return home() / CONVERSATIONS_FILE


@dataclass(frozen=True)
class SavedConversation:
    name: str
    endpoint: str
    conversation_id: str
    agent: str | None
    created: float
    updated: float
    turns: int


class ConversationStore(HomeDatabase):
    """The name -> conversation id table. Opened on first use; safe from threads and processes."""

    migrations = MIGRATIONS

    def default_path(self) -> Path:
        return conversations_path()

    @staticmethod
    def _row(r: Any) -> SavedConversation:
        return SavedConversation(*r)

    _COLUMNS = "name, endpoint, conversation_id, agent, created, updated, turns"

    def get(self, name: str, endpoint: str) -> SavedConversation | None:
        with self._lock:
            r = self._conn().execute(f"SELECT {self._COLUMNS} FROM conversations WHERE name = ? AND endpoint = ?",
                                     (name, _norm(endpoint))).fetchone()
        return self._row(r) if r else None

    def put(self, name: str, endpoint: str, conversation_id: str, *, agent: str | None = None) -> SavedConversation:
        """Name `conversation_id` (a new one replaces what the name stood for: `--new`)."""
        now = time.time()
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM conversations WHERE name = ? AND endpoint = ?", (name, _norm(endpoint)))
                db.execute(f"INSERT INTO conversations ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
                           (name, _norm(endpoint), conversation_id, agent, now, now))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return SavedConversation(name, _norm(endpoint), conversation_id, agent, now, now, 0)

    def turn(self, name: str, endpoint: str, conversation_id: str, *, agent: str | None = None) -> None:
        """One more finished turn in the conversation (named now if it was not yet)."""
        now = time.time()
        with self._lock:
            cur = self._conn().execute(
                "UPDATE conversations SET turns = turns + 1, updated = ?, agent = COALESCE(?, agent) "
                "WHERE name = ? AND endpoint = ? AND conversation_id = ?",
                (now, agent, name, _norm(endpoint), conversation_id))
            if cur.rowcount:
                return
        self.put(name, endpoint, conversation_id, agent=agent)
        with self._lock:
            self._conn().execute("UPDATE conversations SET turns = 1 WHERE name = ? AND endpoint = ?",
                                 (name, _norm(endpoint)))

    def forget(self, name: str, endpoint: str | None = None) -> bool:
        """Forget what `name` stands for (on `endpoint`, or everywhere); True if it stood for something."""
        with self._lock:
            if endpoint is None:
                cur = self._conn().execute("DELETE FROM conversations WHERE name = ?", (name,))
            else:
                cur = self._conn().execute("DELETE FROM conversations WHERE name = ? AND endpoint = ?",
                                           (name, _norm(endpoint)))
            return bool(cur.rowcount)

    def all(self, endpoint: str | None = None) -> list[SavedConversation]:
        """Saved conversations (of one endpoint, or all), most recently used first."""
        with self._lock:
            if endpoint is None:
                rows = self._conn().execute(f"SELECT {self._COLUMNS} FROM conversations ORDER BY updated DESC")
            else:
                rows = self._conn().execute(
                    f"SELECT {self._COLUMNS} FROM conversations WHERE endpoint = ? ORDER BY updated DESC",
                    (_norm(endpoint),))
            return [self._row(r) for r in rows.fetchall()]


def _norm(endpoint: str) -> str:
    return endpoint.rstrip("/")
