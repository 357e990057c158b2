"""Opening SQLite databases safely for several notebooks (processes) at once.

WAL journal, a busy timeout, and numbered migrations applied in one transaction each:
`migrations[i]` takes the schema from version i to i+1 (PRAGMA user_version).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

from foundry_magics.errors import ConfigurationError

__all__ = ["open_db", "HomeDatabase", "BUSY_TIMEOUT_MS"]

BUSY_TIMEOUT_MS = 10_000
_migrate_lock = threading.Lock()


def open_db(path: Path, migrations: Sequence[str], *, check_same_thread: bool = False) -> sqlite3.Connection:
    """Open (creating) `path`, enable WAL and a busy timeout, and apply pending migrations."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=check_same_thread)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _enable_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        with _migrate_lock:
            _migrate(db, migrations)
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(
            f"Cannot open the database {path}: {exc}.",
            hint="Move the file away (it will be recreated), or set FOUNDRY_MAGICS_HOME to another folder.",
        ) from None
    return db


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switching a new file to WAL needs a write lock, and SQLite answers SQLITE_BUSY at once
    (without its busy handler) while another process holds one: retry until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not any(word in str(exc).lower() for word in ("locked", "busy")) or time.monotonic() > deadline:
                raise
        else:
            if str(mode).lower() == "wal" or time.monotonic() > deadline:
                return
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _migrate(db: sqlite3.Connection, migrations: Sequence[str]) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this foundry-magics knows ({len(migrations)}); upgrade the package"
        )
    while version < len(migrations):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current == version:
                for statement in _statements(migrations[version]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        version = db.execute("PRAGMA user_version").fetchone()[0]


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


class HomeDatabase:
    """One SQLite file under `$FOUNDRY_MAGICS_HOME` (or at `path`), opened with `migrations` on
    first use and reopened when the home folder changes; safe from several threads and processes.
    Subclasses name their `migrations` and `default_path()`."""

    migrations: Sequence[str] = ()

    def __init__(self, path: Path | str | None = None) -> None:
        self._path = Path(path) if path is not None else None
        self._db: sqlite3.Connection | None = None
        self._opened: Path | None = None
        self._lock = threading.Lock()

    def default_path(self) -> Path:  # pragma: no cover - each store names its file
        raise NotImplementedError

    @property
    def path(self) -> Path:
        return self._path if self._path is not None else self.default_path()

    def _conn(self) -> sqlite3.Connection:
        path = self.path  # follows $FOUNDRY_MAGICS_HOME if it changes
        if self._db is not None and self._opened != path:
            self._db.close()
            self._db = None
        if self._db is None:
            self._db = open_db(path, self.migrations)
            self._opened = path
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
