"""The SQLite history log: rows, numbered migrations, redaction; session usage counters."""

from __future__ import annotations

import sqlite3

from foundry_magics.rest.client import CallRecord
from foundry_magics.rest.models import Reply, Usage
from foundry_magics.store.history import MIGRATIONS, History, SessionUsage, history_path, prompt_of, redact

KEY = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"


def _rec(prompt="Hello", text="[emulated] hi", error=None, interrupted=False, op="chat"):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "be terse"},
                                                 {"role": "user", "content": prompt}]}
    reply = None if (error or interrupted) else Reply(text=text, model="gpt-4o-mini", finish_reason="stop",
                                                      usage=Usage(5, 7), latency=0.25)
    return CallRecord(op, "emu", "gpt-4o-mini", body, reply, 0.25, error=error, interrupted=interrupted)


def test_default_path_is_under_home(fm_home):
    assert history_path() == fm_home / "history.sqlite"


def test_record_and_recent(fm_home):
    h = History()
    h.record(_rec("first"))
    h.record(_rec("second"), conversation="default")
    h.record(_rec("third", error="AuthError: HTTP 401"))
    h.record(_rec("fourth", interrupted=True), partial="[emulated] par")
    rows = h.recent(10)
    assert [r["prompt"] for r in rows] == ["fourth", "third", "second", "first"]
    assert rows[0]["status"] == "interrupted" and rows[0]["reply"] == "[emulated] par"
    assert rows[1]["status"] == "error" and rows[1]["error"].startswith("AuthError")
    assert rows[2]["conversation"] == "default"
    assert rows[3]["status"] == "ok" and (rows[3]["input_tokens"], rows[3]["output_tokens"]) == (5, 7)
    assert rows[3]["model"] == "gpt-4o-mini" and rows[3]["connection"] == "emu" and rows[3]["latency"] == 0.25
    assert h.count() == 4 and len(h.recent(2)) == 2
    assert (fm_home / "history.sqlite").exists()
    h.close()


def test_migrations_upgrade_an_old_file_and_keep_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO calls (ts, op, connection, model, prompt, status) VALUES (1.0, 'chat', 'c', 'm', 'p', 'ok')")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()

    h = History(path)
    assert h.count() == 1
    h.record(_rec("new"), conversation="x")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    cols = {r[1] for r in db.execute("PRAGMA table_info(calls)")}
    assert {"conversation", "finish_reason", "request"} <= cols
    assert db.execute("SELECT conversation FROM calls WHERE prompt='new'").fetchone()[0] == "x"
    db.close()
    h.close()


def test_history_follows_home_changes(tmp_path, monkeypatch):
    h = History()
    monkeypatch.setenv("FOUNDRY_MAGICS_HOME", str(tmp_path / "a"))
    h.record(_rec())
    monkeypatch.setenv("FOUNDRY_MAGICS_HOME", str(tmp_path / "b"))
    h.record(_rec())
    assert (tmp_path / "a" / "history.sqlite").exists() and (tmp_path / "b" / "history.sqlite").exists()
    assert h.count() == 1
    h.close()


def test_redaction_of_header_like_fields_and_named_secrets():
    value = {"headers": {"api-key": KEY}, "api_key": KEY, "Authorization": "Bearer x", "max_tokens": 5,
             "max_output_tokens": 6, "text": f"my key is {KEY}", "auth": "Bearer abcdefghijklmnop",
             "nested": [{"Ocp-Apim-Subscription-Key": KEY}]}
    out = redact(value, [KEY])
    assert KEY not in repr(out)
    assert out["max_tokens"] == 5 and out["max_output_tokens"] == 6
    assert "abcdefghijklmnop" not in out["auth"]


def test_secret_in_a_prompt_never_reaches_the_file(fm_home):
    h = History()
    h.record(_rec(f"oops {KEY}", text=f"echo {KEY}"), secrets=[KEY])
    h.close()
    for f in fm_home.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f


def test_prompt_of_chat_and_responses():
    assert prompt_of({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"},
                                   {"role": "assistant", "content": "a"}, {"role": "user", "content": "u2"}]}) == ("u2", "s")
    assert prompt_of({"input": "hi", "instructions": "be brief"}) == ("hi", "be brief")
    assert prompt_of({"input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}) == ("b", None)


def test_session_usage_counts_calls_tokens_time():
    u = SessionUsage()
    u.add(_rec())
    u.add(_rec())
    u.add(_rec(error="X"))
    u.add(_rec(interrupted=True))
    total = u.rows()[-1]
    assert total["connection"] == "total"
    assert (total["calls"], total["errors"], total["interrupted"]) == (4, 1, 1)
    assert (total["input_tokens"], total["output_tokens"]) == (10, 14)
    assert abs(total["seconds"] - 1.0) < 1e-9
    assert u.rows()[0]["model"] == "gpt-4o-mini"
