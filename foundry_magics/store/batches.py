"""The Batch API jobs table (`$FOUNDRY_MAGICS_HOME/batches.sqlite`): what was submitted, where, and for which requests.

A **job** is one submission of a DataFrame call: a row in `jobs` (connection without secrets,
model, operation, rows, status) and one **part** per input file, i.e. one service batch
(`parts`: file id, batch id, status, request counts, output / error file ids). `job_keys`
holds the request keys (the online path's cache keys, sent as `custom_id`) of every part, so
that the same call run again - in this kernel or in another one, after a restart - finds its
requests pending and re-attaches instead of submitting them twice. Once a part's results are
in the response cache (`collected`), its succeeded keys are dropped and the failed ones keep
their reason: a re-run submits exactly those. A part whose submission was stopped (Ctrl-C)
after its upload and before its batch existed is kept as 'interrupted', its keys pending, until
it is picked up (batch_api/parts.py).

Shared by every notebook and process (store.db: WAL, busy timeout, numbered migrations).
Never a key: connections are stored as `Connection.to_dict()` (no secret), bodies are not stored.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from foundry_magics.store.db import open_db

__all__ = ["JobStore", "MIGRATIONS", "batches_path"]

MIGRATIONS: list[str] = [
    # 1: jobs, their parts (one service batch each), and the request keys of each part
    """
    CREATE TABLE jobs (
        id          TEXT PRIMARY KEY,
        created     REAL NOT NULL,
        updated     REAL NOT NULL,
        connection  TEXT,
        conn        TEXT,
        model       TEXT,
        op          TEXT NOT NULL,
        label       TEXT,
        rows        INTEGER NOT NULL DEFAULT 0,
        requests    INTEGER NOT NULL DEFAULT 0,
        status      TEXT NOT NULL,
        collected   INTEGER NOT NULL DEFAULT 0,
        error       TEXT
    );
    CREATE TABLE parts (
        job            TEXT NOT NULL,
        part           INTEGER NOT NULL,
        input_file_id  TEXT,
        batch_id       TEXT,
        status         TEXT NOT NULL,
        lines          INTEGER NOT NULL DEFAULT 0,
        bytes          INTEGER NOT NULL DEFAULT 0,
        completed      INTEGER NOT NULL DEFAULT 0,
        failed         INTEGER NOT NULL DEFAULT 0,
        output_file_id TEXT,
        error_file_id  TEXT,
        errors         TEXT,
        collected      INTEGER NOT NULL DEFAULT 0,
        updated        REAL NOT NULL,
        PRIMARY KEY (job, part)
    );
    CREATE INDEX parts_batch ON parts(batch_id);
    CREATE TABLE job_keys (
        job     TEXT NOT NULL,
        key     BLOB NOT NULL,
        part    INTEGER NOT NULL,
        reason  TEXT,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    CREATE INDEX job_keys_key ON job_keys(key);
    CREATE INDEX jobs_created ON jobs(created);
    """,
    # 2: packed lines (pack=N with batch=True): the row keys each line carries, in order, and
    # the answer schema of a job's rows, so that any kernel can match the packed replies
    """
    CREATE TABLE pack_lines (
        job     TEXT NOT NULL,
        part    INTEGER NOT NULL,
        line    BLOB NOT NULL,
        keys    BLOB NOT NULL,
        PRIMARY KEY (job, line)
    ) WITHOUT ROWID;
    CREATE TABLE pack_jobs (
        job     TEXT PRIMARY KEY,
        schema  TEXT
    );
    """,
]

_LOOKUP_CHUNK = 500
_JOB_COLUMNS = ("id", "created", "updated", "connection", "conn", "model", "op", "label", "rows", "requests", "status",
                "collected", "error")
_PART_COLUMNS = ("job", "part", "input_file_id", "batch_id", "status", "lines", "bytes", "completed", "failed",
                 "output_file_id", "error_file_id", "errors", "collected", "updated")


def batches_path() -> Path:
    from foundry_magics.defaults import BATCH_FILE, home

    return home() / BATCH_FILE


class JobStore:
    """Reads and writes the jobs table. Safe from several threads (one connection, a lock)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else batches_path()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_db(self.path, MIGRATIONS)
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _tx(self, fn: Any) -> Any:
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return out

    # ------------------------------------------------------------------ jobs

    def add_job(self, job_id: str, *, connection: str | None, conn: dict[str, Any], model: str | None, op: str,
                label: str | None, rows: int) -> None:
        now = time.time()
        self._tx(lambda db: db.execute(
            "INSERT INTO jobs (id, created, updated, connection, conn, model, op, label, rows, requests, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'submitting')",
            (job_id, now, now, connection, json.dumps(conn, sort_keys=True), model, op, label, rows)))

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def job_of_batch(self, batch_id: str) -> str | None:
        with self._lock:
            row = self.db.execute("SELECT job FROM parts WHERE batch_id = ?", (batch_id,)).fetchone()
        return row[0] if row else None

    def jobs(self, limit: int | None = None) -> list[dict[str, Any]]:
        q = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs ORDER BY created DESC"
        with self._lock:
            rows = self.db.execute(q + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [_job(r) for r in rows]

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._tx(lambda db: db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id)))

    def delete_job(self, job_id: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM job_keys WHERE job = ?", (job_id,))
            db.execute("DELETE FROM pack_lines WHERE job = ?", (job_id,))
            db.execute("DELETE FROM pack_jobs WHERE job = ?", (job_id,))
            db.execute("DELETE FROM parts WHERE job = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

        self._tx(run)

    # ------------------------------------------------------------------ parts

    def add_part(self, job_id: str, part: int, *, input_file_id: str, lines: int, size: int,
                 keys: Sequence[bytes]) -> None:
        """A part whose file is uploaded (its batch not created yet), with the keys it carries."""
        now = time.time()

        def run(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO parts (job, part, input_file_id, status, lines, bytes, updated)"
                       " VALUES (?, ?, ?, 'submitting', ?, ?, ?)", (job_id, part, input_file_id, lines, size, now))
            db.executemany("INSERT OR IGNORE INTO job_keys (job, key, part) VALUES (?, ?, ?)",
                           ((job_id, k, part) for k in sorted(keys)))  # in key order: twice as fast at 100k
            db.execute("UPDATE jobs SET requests = requests + ?, updated = ? WHERE id = ?", (lines, now, job_id))

        self._tx(run)

    def parts(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.db.execute(f"SELECT {', '.join(_PART_COLUMNS)} FROM parts WHERE job = ? ORDER BY part",
                                   (job_id,)).fetchall()
        return [_part(r) for r in rows]

    def update_part(self, job_id: str, part: int, **fields: Any) -> None:
        fields["updated"] = time.time()
        if "errors" in fields and not isinstance(fields["errors"], (str, type(None))):
            fields["errors"] = json.dumps(list(fields["errors"]))
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._tx(lambda db: db.execute(f"UPDATE parts SET {cols} WHERE job = ? AND part = ?",
                                       (*fields.values(), job_id, part)))

    def touch_part(self, job_id: str, part: int) -> None:
        """A heartbeat while a submission waits for its file: it is alive, not abandoned."""
        self.update_part(job_id, part)

    def abandon_part(self, job_id: str, part: int, reason: str) -> None:
        """A part whose batch was never created: its requests are no longer pending."""
        def run(db: sqlite3.Connection) -> None:
            db.execute("UPDATE parts SET status = 'abandoned', collected = 1, errors = ?, updated = ?"
                       " WHERE job = ? AND part = ?", (json.dumps([reason]), time.time(), job_id, part))
            db.execute("DELETE FROM job_keys WHERE job = ? AND part = ?", (job_id, part))
            db.execute("UPDATE jobs SET requests = max(0, requests - (SELECT lines FROM parts WHERE job = ? AND "
                       "part = ?)) WHERE id = ?", (job_id, part, job_id))

        self._tx(run)

    def part(self, job_id: str, part: int) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute(f"SELECT {', '.join(_PART_COLUMNS)} FROM parts WHERE job = ? AND part = ?",
                                  (job_id, part)).fetchone()
        return _part(row) if row else None

    def stopped_parts(self, older_than: float) -> list[dict[str, Any]]:
        """Parts uploaded whose batch was never created: 'interrupted' ones (Ctrl-C), and ones
        still 'submitting' with no heartbeat for `older_than` seconds (their kernel died)."""
        with self._lock:
            rows = self.db.execute(
                f"SELECT {', '.join(_PART_COLUMNS)} FROM parts WHERE batch_id IS NULL AND (status = 'interrupted' "
                "OR (status = 'submitting' AND updated < ?))", (time.time() - older_than,)).fetchall()
        return [_part(r) for r in rows]

    def claim_part(self, job_id: str, part: int, status: str, updated: float) -> bool:
        """Take over a stopped part (back to 'submitting', heartbeat now) if it is still as it was
        read: False when another process took it first."""
        cur = self._tx(lambda db: db.execute(
            "UPDATE parts SET status = 'submitting', updated = ? WHERE job = ? AND part = ? AND status = ? AND "
            "updated = ? AND batch_id IS NULL", (time.time(), job_id, part, status, updated)))
        return cur.rowcount == 1

    # ------------------------------------------------------------------ packed lines

    def add_pack_lines(self, job_id: str, part: int, lines: Sequence[tuple[bytes, Sequence[bytes]]],
                       schema: str | None) -> None:
        """The packed lines of a part (line key -> its rows' keys, in item order) and the job's
        answer schema (JSON text; None: free text), recorded before the part is uploaded."""
        def run(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR IGNORE INTO pack_jobs (job, schema) VALUES (?, ?)", (job_id, schema))
            db.executemany("INSERT OR REPLACE INTO pack_lines (job, part, line, keys) VALUES (?, ?, ?, ?)",
                           ((job_id, part, k, b"".join(rows)) for k, rows in lines))

        self._tx(run)

    def pack_lines(self, job_id: str, part: int) -> tuple[dict[bytes, list[bytes]], str | None]:
        """(line key -> row keys, the answer schema) of a part's packed lines ({} when it has none)."""
        with self._lock:
            rows = self.db.execute("SELECT line, keys FROM pack_lines WHERE job = ? AND part = ?",
                                   (job_id, part)).fetchall()
            schema = self.db.execute("SELECT schema FROM pack_jobs WHERE job = ?", (job_id,)).fetchone()
        out = {bytes(k): [bytes(v[i:i + 32]) for i in range(0, len(v), 32)] for k, v in rows}
        return out, (schema[0] if schema else None)

    # ------------------------------------------------------------------ keys

    def has_live_jobs(self) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM parts WHERE collected = 0 LIMIT 1").fetchone() is not None

    def pending(self, keys: Sequence[bytes]) -> dict[bytes, str]:
        """key -> job id, for the keys that a part not yet collected carries."""
        found: dict[bytes, str] = {}
        with self._lock:
            db = self.db
            for i in range(0, len(keys), _LOOKUP_CHUNK):
                chunk = keys[i:i + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, job in db.execute(
                        f"SELECT k.key, k.job FROM job_keys k JOIN parts p ON p.job = k.job AND p.part = k.part "
                        f"WHERE k.key IN ({marks}) AND p.collected = 0", chunk):
                    found[key] = job
        return found

    def live_keys(self) -> list[tuple[bytes, str]]:
        """(key, job id) of every request that a part not yet collected carries (what `pending`
        answers key by key), for a caller that matches keys elsewhere (Spark joins them)."""
        with self._lock:
            return [(bytes(k), j) for k, j in self.db.execute(
                "SELECT k.key, k.job FROM job_keys k JOIN parts p ON p.job = k.job AND p.part = k.part "
                "WHERE p.collected = 0")]

    def part_keys(self, job_id: str, part: int) -> list[bytes]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT key FROM job_keys WHERE job = ? AND part = ?",
                                                  (job_id, part))]

    def reasons(self, job_ids: Iterable[str]) -> dict[bytes, str]:
        """key -> why it has no result, for the failed requests of these jobs."""
        ids = list(job_ids)
        if not ids:
            return {}
        with self._lock:
            rows = self.db.execute(f"SELECT key, reason FROM job_keys WHERE job IN ({','.join('?' * len(ids))})"
                                   " AND reason IS NOT NULL", ids).fetchall()
        return {bytes(k): r for k, r in rows}

    def finish_part(self, job_id: str, part: int, reasons: dict[bytes, str]) -> bool:
        """Results of a part are in the cache: keep the reasons of the failed requests, drop the
        others' keys, mark it collected. False when another process collected it first."""
        def run(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE parts SET collected = 1, updated = ? WHERE job = ? AND part = ? AND collected = 0",
                             (time.time(), job_id, part))
            if cur.rowcount != 1:
                return False
            db.executemany("UPDATE job_keys SET reason = ? WHERE job = ? AND key = ?",
                           ((r, job_id, k) for k, r in reasons.items()))
            db.execute("DELETE FROM job_keys WHERE job = ? AND part = ? AND reason IS NULL", (job_id, part))
            left = db.execute("SELECT count(*) FROM parts WHERE job = ? AND collected = 0", (job_id,)).fetchone()[0]
            if not left:
                db.execute("UPDATE jobs SET collected = 1, updated = ? WHERE id = ?", (time.time(), job_id))
            return True

        return bool(self._tx(run))


def _job(row: Sequence[Any]) -> dict[str, Any]:
    d = dict(zip(_JOB_COLUMNS, row))
    try:
        d["conn"] = json.loads(d["conn"]) if d["conn"] else {}
    except ValueError:
        d["conn"] = {}
    d["collected"] = bool(d["collected"])
    return d


def _part(row: Sequence[Any]) -> dict[str, Any]:
    d = dict(zip(_PART_COLUMNS, row))
    try:
        d["errors"] = json.loads(d["errors"]) if d["errors"] else []
    except ValueError:
        d["errors"] = [str(d["errors"])]
    d["collected"] = bool(d["collected"])
    return d
