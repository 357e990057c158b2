"""Two notebooks (processes) writing the same history and cache databases at once.

Each worker process opens `history.sqlite` and `cache.sqlite` in the same
FOUNDRY_MAGICS_HOME at the same instant (so the migrations race too), then writes hundreds
of rows, many in one-row transactions for maximum lock contention, while reading back.
Afterwards: no "database is locked" (or any other) error in any process, every row of
every writer is present exactly once, WAL is on, and `PRAGMA integrity_check` says ok.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(r"""
    import json, os, sys, time, traceback
    from types import SimpleNamespace
    home, tag, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.environ["FOUNDRY_MAGICS_HOME"] = home
    from foundry_magics.rest.models import Reply, Usage
    from foundry_magics.store.history import History
    from foundry_magics.store.cache import CachedReply, ResponseCache, request_key
    errors = []
    deadline = time.time() + 30
    while not os.path.exists(go):           # start together: the first open (migrations) races too
        if time.time() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    try:
        hist = History()
        cache = ResponseCache()
        keys = []
        for i in range(n):
            try:
                reply = Reply(text=f"{tag} reply {i}", model="m", usage=Usage(3, 4))
                rec = SimpleNamespace(op="chat", connection=f"conn-{tag}", model="m", latency=0.01, error=None,
                                      interrupted=False, started=time.time(), reply=reply,
                                      request={"model": "m", "messages": [{"role": "user", "content": f"{tag} prompt {i}"}]})
                hist.record(rec)
                key = request_key("emulator:/openai/v1/chat/completions", "chat", {"i": i, "tag": tag})
                keys.append(key)
                cache.put(key, "chat", CachedReply(f"{tag} cached {i}", "stop", 3, 4, "m"))
                if i % 3 == 0 or i == n - 1:
                    cache.flush()                     # many small write transactions: maximum contention
                if i % 25 == 0:
                    got = cache.get_many(keys[-25:])  # reads interleaved with the other process's writes
                    assert len(got) == len(keys[-25:]), (len(got), len(keys[-25:]))
                    hist.recent(5)
            except Exception as exc:
                errors.append(f"{i}: {type(exc).__name__}: {exc}")
        cache.close()
        hist.close()
    except Exception:
        errors.append(traceback.format_exc())
    print(json.dumps({"tag": tag, "errors": errors}))
""")


def _create(home: Path) -> None:
    """Create both files (migrated, WAL) from this process first."""
    from foundry_magics.store.cache import ResponseCache
    from foundry_magics.store.history import History

    h, c = History(), ResponseCache()
    h.count(), c.count()
    h.close(), c.close()


def _run_workers(home: Path, tags: list[str], n: int, tmp_path: Path) -> list[dict]:
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), tag, str(n), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True) for tag in tags]
    time.sleep(0.5)  # let both interpreters import and start polling
    go.write_text("go")
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"worker hung: {err[-2000:]}")
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _check_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return db


@pytest.mark.slow
def test_two_processes_write_history_and_cache_at_once(fm_home, tmp_path):
    n = 300  # brand-new files: the first open (WAL switch, migrations) races too
    results = _run_workers(fm_home, ["A", "B"], n, tmp_path)
    for r in results:
        assert r["errors"] == [], f"worker {r['tag']}: {r['errors'][:5]}"

    hist = _check_db(fm_home / "history.sqlite")
    from foundry_magics.store.history import MIGRATIONS

    assert hist.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)  # migrated once, fully
    for tag in "AB":
        rows = hist.execute("SELECT prompt, reply, status FROM calls WHERE connection = ? ORDER BY id",
                            (f"conn-{tag}",)).fetchall()
        assert [r[0] for r in rows] == [f"{tag} prompt {i}" for i in range(n)]  # all, once, in order
        assert all(r[1] == f"{tag} reply {i}" and r[2] == "ok" for i, r in enumerate(rows))
    assert hist.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 2 * n

    cache = _check_db(fm_home / "cache.sqlite")
    from foundry_magics.store.cache import MIGRATIONS as CACHE_MIGRATIONS

    assert cache.execute("PRAGMA user_version").fetchone()[0] == len(CACHE_MIGRATIONS)
    texts = {t for (t,) in cache.execute("SELECT text FROM replies")}
    assert texts == {f"{tag} cached {i}" for tag in "AB" for i in range(n)}


@pytest.mark.slow
def test_a_reader_and_two_writers_with_the_file_already_in_use(fm_home, tmp_path):
    """A process that opens while others hold write transactions waits (busy timeout) instead of failing."""
    from foundry_magics.store.history import History

    _create(fm_home)
    reader = History()
    reader.count()  # this process keeps the file open throughout
    n = 200
    results = _run_workers(fm_home, ["C", "D", "E"], n, tmp_path)
    for r in results:
        assert r["errors"] == [], f"worker {r['tag']}: {r['errors'][:5]}"
    assert reader.count() == 3 * n
    reader.close()
    _check_db(fm_home / "history.sqlite")
    _check_db(fm_home / "cache.sqlite")


def test_a_database_from_a_newer_version_is_a_readable_error_and_is_left_alone(fm_home):
    from foundry_magics.errors import ConfigurationError
    from foundry_magics.store.history import History

    path = fm_home / "history.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE future (x)")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError) as info:
        History().count()
    assert "newer" in str(info.value) and "FOUNDRY_MAGICS_HOME" in info.value.hint
    db = sqlite3.connect(path)  # nothing migrated or dropped (only the journal mode may have changed)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["future"]
    db.close()


def test_a_corrupt_database_file_is_a_readable_error_and_is_left_alone(fm_home):
    from foundry_magics.errors import ConfigurationError
    from foundry_magics.store.cache import ResponseCache

    path = fm_home / "cache.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database, it is a text file that happens to sit here\n" * 100)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as info:
        ResponseCache().count()
    assert str(path) in str(info.value) and "Move the file away" in info.value.hint
    assert path.read_bytes() == before


@pytest.mark.parametrize("which", ["history", "cache"])
def test_opening_a_new_file_while_another_notebook_is_writing_it_waits(fm_home, which):
    """Switching a brand-new file to WAL needs a write lock; SQLite answers SQLITE_BUSY at once (no busy
    handler) while another connection holds one, so open_db must retry rather than fail."""
    import threading

    from foundry_magics.store.cache import ResponseCache
    from foundry_magics.store.history import History

    path = fm_home / f"{which}.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other notebook, mid-way through creating the file
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        t0 = time.perf_counter()
        store = History() if which == "history" else ResponseCache()
        store.count()  # must wait for the other writer (busy timeout 10 s), not fail
        assert time.perf_counter() - t0 >= 0.4
        store.close()
    finally:
        release.join()
        other.close()
