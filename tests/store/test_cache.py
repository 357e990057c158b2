"""The response cache: keys, bulk look-ups, batched writes, two processes, no secrets."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from foundry_magics.store.cache import (
    MIGRATIONS,
    CachedReply,
    MemoryCache,
    ResponseCache,
    cache_path,
    request_key,
    route_identity,
)

pytestmark = pytest.mark.timeout(120)


def test_key_is_canonical_and_ignores_stream_flags():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    same = {"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"}
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    k = request_key("u", "chat", body)
    assert len(k) == 32
    assert k == request_key("u", "chat", same) == request_key("u", "chat", streamed)
    assert k != request_key("u", "chat", {**body, "model": "other"})
    assert k != request_key("u", "responses", body)
    assert k != request_key("v", "chat", body)
    assert k != request_key("u", "chat", {**body, "messages": [{"role": "user", "content": "hi!"}]})


def test_route_identity():
    a = route_identity("http://127.0.0.1:5001/openai/v1/chat/completions", {}, emulator=True)
    b = route_identity("http://127.0.0.1:6002/openai/v1/chat/completions", {}, emulator=True)
    assert a == b  # the emulator's port changes between runs; its answers do not
    x = route_identity("https://r.openai.azure.com/openai/deployments/d1/chat/completions", {"api-version": "2024-10-21"})
    y = route_identity("https://r.openai.azure.com/openai/deployments/d2/chat/completions", {"api-version": "2024-10-21"})
    assert x != y and "api-version=2024-10-21" in x
    assert "SECRET" not in route_identity("https://h/x", {"api-key": "SECRET", "api-version": "1"})


def test_roundtrip_pending_and_flushed(fm_home):
    c = ResponseCache()
    assert c.path == cache_path() and str(c.path).startswith(str(fm_home))
    keys = [request_key("u", "chat", {"i": i}) for i in range(1200)]
    for i, k in enumerate(keys[:1000]):
        c.put(k, "chat", CachedReply(f"text {i}", "stop", i, 2 * i, "m"))
    assert c.pending == 1000
    got = c.get_many(keys)  # the unflushed buffer is visible
    assert len(got) == 1000 and got[keys[7]].text == "text 7"
    assert c.flush() == 1000 and c.pending == 0
    got = c.get_many(keys)  # now from SQLite, in chunks of 500 parameters
    assert len(got) == 1000
    assert got[keys[999]] == CachedReply("text 999", "stop", 999, 1998, "m")
    c.close()
    again = ResponseCache()
    assert again.count() == 1000
    assert again.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.clear()
    assert again.count() == 0
    again.close()


def test_vectors_roundtrip():
    import numpy as np

    c = ResponseCache()
    v = np.arange(8, dtype=np.float32)
    k = request_key("u", "embeddings", {"input": "a"})
    c.put_vector(k, "e", v.tobytes())
    assert np.array_equal(np.frombuffer(c.get_vectors([k])[k], dtype=np.float32), v)
    c.close()
    c = ResponseCache()
    assert np.array_equal(np.frombuffer(c.get_vectors([k])[k], dtype=np.float32), v)
    c.close()


def test_memory_cache_has_the_same_interface():
    m = MemoryCache()
    k = request_key("u", "chat", {})
    m.put(k, "chat", CachedReply("x"))
    assert m.get_many([k, b"nope"]) == {k: CachedReply("x")}
    assert m.flush() == 0 and m.pending == 0


def test_two_processes_write_at_once(fm_home):
    code = textwrap.dedent("""
        import sys
        from foundry_magics.store.cache import ResponseCache, CachedReply, request_key
        tag = sys.argv[1]
        c = ResponseCache()
        for batch in range(20):
            for i in range(100):
                c.put(request_key("u", "chat", {"t": tag, "i": batch * 100 + i}), "chat", CachedReply(tag))
            c.flush()
        # and some keys both write
        for i in range(50):
            c.put(request_key("u", "chat", {"shared": i}), "chat", CachedReply("shared"))
        c.close()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, tag]) for tag in ("a", "b")]
    assert [p.wait(90) for p in procs] == [0, 0]
    c = ResponseCache()
    assert c.count() == 2 * 2000 + 50
    c.close()


def test_no_secret_in_the_cache_file(emulator_url, sentinel_key, fm_home):
    import pandas as pd

    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator
    from foundry_magics.frames import ops as frames

    with Emulator(api_key=sentinel_key, lifetime=60) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="key",
                                   api_key_env="FOUNDRY_TEST_KEY", model="gpt-4o-mini")
        df = pd.DataFrame({"t": ["one", "two"]})
        s = frames.prompt(df, "Echo {t}", connection=conn, progress=False)
        assert s.notna().all()
        e = frames.embed(df["t"], connection=conn, progress=False)
        assert e.notna().all()
    files = list(fm_home.rglob("*"))
    assert any(f.name == "cache.sqlite" for f in files)
    for f in files:
        if f.is_file():
            assert sentinel_key.encode() not in f.read_bytes(), f
    db = sqlite3.connect(fm_home / "cache.sqlite")
    assert db.execute("SELECT count(*) FROM replies").fetchone()[0] == 2
    dump = "\n".join(db.iterdump())
    assert sentinel_key not in dump


def test_an_old_cache_file_is_migrated_and_keeps_its_replies(tmp_path):
    """Migration 2 adds what a reply's tokens were made of; replies cached before read 0 for them."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    key = request_key("u", "chat", {"i": 1})
    db.execute("INSERT INTO replies VALUES (?, 'chat', 'm', 'old text', 'stop', 10, 5, 1.0)", (key,))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    c = ResponseCache(path)
    assert c.get_many([key])[key] == CachedReply("old text", "stop", 10, 5, "m", 0, 0)
    new = request_key("u", "chat", {"i": 2})
    c.put(new, "chat", CachedReply("new text", "stop", 2000, 300, "o3-mini", 1536, 256))
    c.flush()
    assert c.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 2
    c.close()
    again = ResponseCache(path)
    got = again.get_many([new])[new]
    assert (got.cached_input_tokens, got.reasoning_tokens) == (1536, 256)
    again.close()
