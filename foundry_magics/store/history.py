"""The history log (`$FOUNDRY_MAGICS_HOME/history.sqlite`) and this session's usage counters.

One row per call: when, connection name, model, prompt, system prompt, reply (or the text
received before an interruption), tokens, latency, status. Never a key: request bodies
carry none, and anything header-like (or equal to a secret the caller names) is redacted
before it is written anyway. The schema grows by numbered migrations (store.db.open_db).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Sequence

from foundry_magics.defaults import REDACTED
from foundry_magics.rest.agents import agent_label, conversation_id_of
from foundry_magics.store.db import HomeDatabase
from foundry_magics.store.usage import SessionUsage

__all__ = ["History", "SessionUsage", "MIGRATIONS", "history_path", "redact", "prompt_of"]


MIGRATIONS: list[str] = [
    # 1: the call log
    """
    CREATE TABLE calls (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        ts            REAL NOT NULL,
        op            TEXT NOT NULL,
        connection    TEXT,
        model         TEXT,
        prompt        TEXT,
        system        TEXT,
        reply         TEXT,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        latency       REAL,
        status        TEXT NOT NULL,
        error         TEXT
    );
    """,
    # 2: conversations, finish reason, the (redacted) request body; time index
    """
    ALTER TABLE calls ADD COLUMN conversation TEXT;
    ALTER TABLE calls ADD COLUMN finish_reason TEXT;
    ALTER TABLE calls ADD COLUMN request TEXT;
    CREATE INDEX calls_ts ON calls(ts);
    """,
    # 3: the agent that answered (NAME[:VERSION]) and the server-side conversation id of the turn
    """
    ALTER TABLE calls ADD COLUMN agent TEXT;
    ALTER TABLE calls ADD COLUMN conversation_id TEXT;
    """,
]

_SECRET_KEY = re.compile(r"(^|[-_])(api[-_]?key|authorization|secret|password|token|credential|subscription[-_]key)$",
                         re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def history_path() -> Path:
    from foundry_magics.defaults import home

    return home() / "history.sqlite"


def redact(value: Any, secrets: Sequence[str] = ()) -> Any:
    """A copy of `value` with header-like fields and the given secret strings replaced."""
    secrets = [s for s in secrets if s]

    def scrub(text: str) -> str:
        for s in secrets:
            text = text.replace(s, REDACTED)
        return _BEARER.sub(r"\1" + REDACTED, text)

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for k, item in v.items():
                if isinstance(k, str) and _SECRET_KEY.search(k) and not k.lower().endswith("_tokens"):
                    out[k] = REDACTED
                elif isinstance(k, str) and k.lower() == "headers":
                    out[k] = REDACTED
                else:
                    out[k] = walk(item)
            return out
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        if isinstance(v, str):
            return scrub(v)
        return v

    return walk(value)


def _short_images(value: Any) -> Any:
    """Inline images (base64 `data:` URLs, megabytes each) are logged as a short description."""
    if isinstance(value, dict):
        return {k: _short_images(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_short_images(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > 200:
        from foundry_magics.rest.images import describe_image

        return f"{value[:value.find(',') + 1]}... ({describe_image(value)})"
    return value


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def prompt_of(request: dict[str, Any] | None) -> tuple[str, str | None]:
    """(the new user prompt, the system prompt) of a chat or Responses request body."""
    if not isinstance(request, dict):
        return "", None
    if "messages" in request:
        msgs = [m for m in request.get("messages") or [] if isinstance(m, dict)]
        system = next((_content_text(m.get("content")) for m in msgs if m.get("role") in ("system", "developer")), None)
        user = next((_content_text(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
        return user, system
    payload = request.get("input")
    if isinstance(payload, list):
        items = [m for m in payload if isinstance(m, dict)]
        payload = next((_content_text(m.get("content")) for m in reversed(items) if m.get("role") == "user"), "")
    return _content_text(payload), request.get("instructions")


class History(HomeDatabase):
    """The SQLite call log. Opened on first use; safe from several threads and processes."""

    migrations = MIGRATIONS

    def default_path(self) -> Path:
        return history_path()

    def record(self, rec: Any, *, conversation: str | None = None, partial: str | None = None,
               secrets: Sequence[str] = ()) -> int:
        """Log a finished, failed or interrupted call (a client.CallRecord). Returns the row id."""
        reply = getattr(rec, "reply", None)
        request = _short_images(redact(getattr(rec, "request", None) or {}, secrets))
        prompt, system = prompt_of(request)
        if reply is not None:
            status, text = "ok", reply.text
        elif getattr(rec, "interrupted", False):
            status, text = "interrupted", partial
        else:
            status, text = "error", partial
        usage = getattr(reply, "usage", None)
        row = dict(
            ts=getattr(rec, "started", None) or time.time(),
            op=rec.op,
            connection=rec.connection,
            model=(getattr(reply, "model", None) or rec.model),
            prompt=prompt,
            system=system,
            reply=redact(text, secrets) if text is not None else None,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            latency=rec.latency,
            status=status,
            error=redact(rec.error, secrets) if rec.error else None,
            conversation=conversation,
            finish_reason=getattr(reply, "finish_reason", None),
            request=json.dumps(request, ensure_ascii=False, default=str),
            agent=getattr(reply, "agent", None) or agent_label(request),
            conversation_id=conversation_id_of(request.get("conversation")) if isinstance(request, dict) else None,
        )
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._lock:
            cur = self._conn().execute(f"INSERT INTO calls ({cols}) VALUES ({marks})", list(row.values()))
            rowid = cur.lastrowid
            assert rowid is not None  # an INSERT sets it
            return rowid

    def recent(self, n: int = 10) -> list[dict[str, Any]]:
        """The last `n` calls, newest first."""
        with self._lock:
            db = self._conn()
            cur = db.execute(
                "SELECT id, ts, op, connection, model, prompt, reply, input_tokens, output_tokens, latency, "
                "status, error, conversation, finish_reason, agent, conversation_id FROM calls "
                "ORDER BY id DESC LIMIT ?", (int(n),))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM calls").fetchone()[0])


# SessionUsage lives in store/usage.py (it counts runs and batches too); imported here for old callers.
