"""Session usage counts everything sent - cells, comparisons, DataFrame runs, embeddings,
batch jobs - by connection and model, with cost where prices are known."""

from __future__ import annotations

import pandas as pd
import pytest

from foundry_magics.engine.report import RunReport
from foundry_magics.rest.base import CallRecord
from foundry_magics.rest.models import Reply, Usage
from foundry_magics.store.prices import set_prices
from foundry_magics.store.usage import COLUMNS, SessionUsage, session_usage


@pytest.fixture(autouse=True)
def clean():
    set_prices(None)
    session_usage().reset()
    yield
    set_prices(None)
    session_usage().reset()


def _rec(model="gpt-4o-mini", inp=3, out=4, error=None, interrupted=False):
    reply = None if error or interrupted else Reply(text="x", model=model, usage=Usage(inp, out))
    return CallRecord("chat", "emu", model, {}, reply, 0.5, error=error, interrupted=interrupted)


def _report(model="gpt-4o-mini", **kw):
    base = dict(rows=100, requests=20, cache_hits=5, input_tokens=1000, output_tokens=500, seconds=2.0, failed=1,
                model=model, connection="emu")
    base.update(kw)
    return RunReport(**base)


def test_calls_and_runs_by_connection_and_model_with_cost():
    u = SessionUsage()
    u.add(_rec())
    u.add(_rec(error="boom"))
    u.add_run(_report())
    u.add_run(_report(model="gpt-4o"), batch=True)
    rows = {(r["connection"], r["model"]): r for r in u.rows()}
    mini, total = rows[("emu", "gpt-4o-mini")], rows[("total", "")]
    assert (mini["calls"], mini["runs"], mini["rows"], mini["requests"], mini["cache_hits"], mini["errors"]) == \
        (2, 1, 100, 22, 5, 2)
    assert (mini["input_tokens"], mini["output_tokens"]) == (1003, 504)
    assert (total["calls"], total["runs"], total["rows"], total["requests"]) == (2, 2, 200, 42)
    assert mini["cost"] is None and total["cost"] is None  # nothing is built in
    assert set(COLUMNS) <= set(mini)

    set_prices({"gpt-4o-mini": (1.0, 2.0), "gpt-4o": (10.0, 20.0)})  # priced afterwards: still priced
    rows = {(r["connection"], r["model"]): r for r in u.rows()}
    assert rows[("emu", "gpt-4o-mini")]["cost"] == pytest.approx((1003 * 1 + 504 * 2) / 1e6)
    assert rows[("emu", "gpt-4o")]["cost"] == pytest.approx((1000 * 10 + 500 * 20) / 1e6 / 2)  # batch: half
    assert rows[("total", "")]["cost"] == pytest.approx(rows[("emu", "gpt-4o-mini")]["cost"]
                                                        + rows[("emu", "gpt-4o")]["cost"])
    u.reset()
    assert u.rows()[-1]["calls"] == 0 and len(u.rows()) == 1


def test_the_old_import_path_still_works():
    from foundry_magics.store.history import SessionUsage as Old

    assert Old is SessionUsage


def test_every_run_counts_and_usage_shows_it(emulator_url):
    from foundry_magics.notebook import prompting

    from magics_helpers import drop_shell, make_shell, run

    ip = make_shell()
    try:
        ran = run(ip, f"%foundry connect {emulator_url}/openai/v1 --auth none --model gpt-4o-mini")
        assert ran.result.error_in_exec is None, ran.everything
        run(ip, "%%foundry\nOne cell")
        run(ip, "%%foundry --no-stream\nTwo cells")
        ip.user_ns["df"] = pd.DataFrame({"t": [f"row {i % 7}" for i in range(12)]})
        ran = run(ip, "%%foundry --df df --out s\nSay {t}")
        assert ran.result.error_in_exec is None, ran.everything
        run(ip, "s = df['t'].foundry.prompt('Say {}', progress=False)")  # all cached now
        run(ip, "v = df['t'].foundry.embed(progress=False)")
        rows = {r["model"]: r for r in prompting.prompter().usage.rows()}
        chat, emb, total = rows["gpt-4o-mini"], rows["text-embedding-3-small"], rows[""]
        assert (chat["calls"], chat["runs"], chat["rows"]) == (2, 2, 24)
        assert chat["requests"] == 2 + 7 and chat["cache_hits"] == 7
        assert (emb["runs"], emb["rows"], emb["requests"]) == (1, 12, 1)
        assert total["requests"] == 2 + 7 + 1

        shown = run(ip, "%foundry usage")
        text = shown.everything
        assert "runs" in text and "cache_hits" in text and "the total leaves out gpt-4o-mini: no price known" in text
        run(ip, "import foundry_magics.store.prices as P; P.set_prices({'gpt-4o-mini': (0.15, 0.6)})")
        text = run(ip, "%foundry usage").everything
        assert "$" in text

        frame = prompting.usage()
        assert list(frame.columns) == list(COLUMNS) and len(frame) == 2
        assert frame["cost"].dtype == "float64"
        chat_row = frame[frame.model == "gpt-4o-mini"].iloc[0]
        assert chat_row["rows"] == 24 and chat_row["cost"] > 0
        assert pd.isna(frame[frame.model == "text-embedding-3-small"].iloc[0]["cost"])
    finally:
        drop_shell(ip)
