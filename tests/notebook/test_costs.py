"""Costs in the notebook: `%foundry usage` (cached and reasoning tokens, a total that sums what is
priced and names what is not), costs priced when shown (an estimate made before `set_prices`),
and a prices.toml that does not parse: one warning, costs unknown, no result lost."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from foundry_magics.store.prices import set_prices
from foundry_magics.store.usage import session_usage

from magics_helpers import drop_shell, make_shell, run

SYSTEM = "You are a careful assistant. " * 200  # ~1,450 tokens: a prefix the emulator caches


@pytest.fixture
def ip(emulator_url):
    set_prices(None)
    shell = make_shell()
    ran = run(shell, f"%foundry connect {emulator_url}/openai/v1 --auth none --model gpt-4o-mini")
    assert ran.result.error_in_exec is None, ran.everything
    session_usage().reset()
    yield shell
    drop_shell(shell)
    set_prices(None)
    session_usage().reset()


def test_usage_shows_cached_and_reasoning_tokens_and_a_partial_total(ip, emulator_url):
    ip.user_ns["system"] = SYSTEM
    run(ip, "%%foundry --no-stream --system {system}\nFirst question about usage")
    run(ip, "%%foundry --system {system}\nSecond question about usage")  # streamed: the usage chunk
    run(ip, "%%foundry -m o3-mini --no-stream\nThink about usage")
    run(ip, "import foundry_magics as fm\n"
            f"c = fm.FoundryClient(fm.Connection.from_url('{emulator_url}/openai/v1', kind='emulator', auth='none'))\n"
            "r = c.chat('A direct call', model='gpt-4.1-nano')")  # a direct client call counts too
    rows = {r["model"]: r for r in session_usage().rows()}
    mini, o3, nano = rows["gpt-4o-mini"], rows["o3-mini"], rows["gpt-4.1-nano"]
    assert mini["calls"] == 2 and mini["cached_input_tokens"] >= 1024 and mini["reasoning_tokens"] == 0
    assert o3["reasoning_tokens"] >= 64 and nano["calls"] == 1

    text = run(ip, "%foundry usage").everything
    assert "cached_input_tokens" in text and "reasoning_tokens" in text
    assert f"{mini['cached_input_tokens']}" in text or f"{mini['cached_input_tokens']:,}" in text
    assert "the total leaves out gpt-4o-mini, o3-mini, gpt-4.1-nano: no price known" in text

    set_prices({"gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60}, "o3-mini": (1.1, 4.4)})
    text = run(ip, "%foundry usage").everything
    total = session_usage().rows()[-1]
    assert total["cost"] is not None and total["unpriced"] == ["gpt-4.1-nano"]
    assert "the total leaves out gpt-4.1-nano: no price known" in text  # summed what is priced, named the rest
    assert " + ?" in text and "leaves out gpt-4o-mini" not in text
    frame = run(ip, "u = fm.usage()").result
    assert frame.error_in_exec is None
    u = ip.user_ns["u"]
    assert {"cached_input_tokens", "reasoning_tokens"} <= set(u.columns)
    assert u["cost"].sum() == pytest.approx(total["cost"])


def test_a_reply_footer_shows_cached_tokens_and_the_cost(ip):
    ip.user_ns["system"] = SYSTEM
    run(ip, "%%foundry --no-stream --system {system}\nA question")
    set_prices({"gpt-4o-mini": (0.15, 0.60)})
    ran = run(ip, "%%foundry --no-stream --system {system}\nAnother question")
    cached = ran.result.result.reply.usage.cached_input_tokens  # the cell's value: a ReplyView
    assert cached >= 1024
    text = ran.everything
    assert f"({cached:,} cached)" in text and "$" in text and "cached tokens at the input price" in text


def test_an_estimate_made_before_set_prices_shows_the_cost_after(ip):
    ip.user_ns["df"] = pd.DataFrame({"t": ["a", "b", "c"]})
    run(ip, "est = df.foundry.estimate('Say {t}', max_tokens=10)")
    est = ip.user_ns["est"]
    assert est.input_cost is None and "unknown: no price for gpt-4o-mini" in str(est)
    set_prices({"gpt-4o-mini": (0.15, 0.60)})
    assert est.input_cost == pytest.approx(est.input_tokens * 0.15 / 1e6)
    assert est.max_cost == pytest.approx((est.input_tokens * 0.15 + 30 * 0.60) / 1e6)
    cost_line = next(line for line in str(est).splitlines() if line.strip().startswith("cost"))
    assert "unknown" not in cost_line and "$" in cost_line and "$" in est.summary()
    assert "$" in ip.display_formatter.format(est)[0]["text/html"]


BROKEN = 'currency = "USD"\n"gpt-4o-mini" 0.15\n'  # line 2: a missing "="


def test_a_broken_prices_toml_loses_nothing(ip, fm_home, caplog):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text(BROKEN)
    with caplog.at_level(logging.WARNING, logger="foundry_magics"):
        # a three-model comparison still stores -o cmp
        ran = run(ip, "%%foundry -m gpt-4o-mini,gpt-4.1-mini,o3-mini -o cmp\nCompare these")
        assert ran.result.error_in_exec is None, ran.everything
        cmp = ip.user_ns["cmp"]
        assert len(cmp.replies) == 3 and "Configuration problem" not in ran.everything
        assert "cost unknown: prices.toml does not parse (line 2)" in ran.everything
        # a cell works and says the cost is unknown
        ran = run(ip, "%%foundry --no-stream -o one\nA single cell")
        assert ran.result.error_in_exec is None and ip.user_ns["one"].startswith("[emulated]")
        assert "cost unknown: prices.toml does not parse (line 2)" in ran.everything
        # a DataFrame run works and says so
        ip.user_ns["df"] = pd.DataFrame({"t": ["a", "b"]})
        ran = run(ip, "s = df.foundry.prompt('Say {t}', progress=False)\nrep = fm.last_run()\nprint(rep.summary())")
        assert ran.result.error_in_exec is None, ran.everything
        assert ip.user_ns["s"].notna().all() and "cost unknown: prices.toml does not parse (line 2)" in ran.stdout
        # estimates and fm.usage() do not raise
        ran = run(ip, "est = df.foundry.estimate('Say {t}')\nprint(est)\nu = fm.usage()")
        assert ran.result.error_in_exec is None, ran.everything
        assert "prices.toml does not parse (line 2)" in ran.stdout
        ran = run(ip, "%foundry usage")
        assert ran.result.error_in_exec is None and "prices.toml does not parse (line 2)" in ran.everything
    warned = [r.getMessage() for r in caplog.records if "prices.toml" in r.getMessage()]
    assert len(warned) == 1 and "line 2" in warned[0]  # one warning, naming the line
