"""`--max-cost` in cells and `%config FoundryMagics.max_cost`: a `--df` run stops within it, a
single request that could cost more is not sent, no price refuses."""

from __future__ import annotations

import pandas as pd
import pytest

from foundry_magics.notebook.magic_args import parse_cell
from foundry_magics.store.prices import set_prices

from magics_helpers import connect, emu, ip, run  # noqa: F401 - emu and ip are fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def conn(ip, emu):
    connect(ip, emu.url)
    set_prices({"gpt-4o-mini": (1.5, 6.0)})
    yield
    set_prices(None)


def sent(emu) -> int:
    return emu.stats()["requests"]


def test_the_option_parses_and_is_checked_like_max_cost_in_python():
    assert parse_cell("--max-cost 0.05", "Hi").max_cost == 0.05
    assert parse_cell("--max-cost=2", "Hi").max_cost == 2.0
    from IPython.core.error import UsageError

    from foundry_magics.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_cost must be a positive number"):
        parse_cell("--max-cost 0", "Hi")
    with pytest.raises(UsageError, match="--max-cost needs a number"):
        parse_cell("--max-cost lots", "Hi")


def test_a_df_cell_stops_within_max_cost_and_keeps_the_finished_rows(ip, emu, conn):
    ip.user_ns["df"] = pd.DataFrame({"text": [f"cell budget {i}: fine product, on time" for i in range(600)]})
    before = sent(emu)
    ran = run(ip, "%%foundry --df df --out s --max-tokens 100 --max-cost 0.02\nSummarize: {text}")
    assert ran.result.error_in_exec is None, ran.everything
    import foundry_magics as fm

    report = fm.last_run()
    df = ip.user_ns["df"]
    assert report.cost <= 0.02 and report.stopped.startswith("max_cost=0.02 reached")
    assert sent(emu) - before == report.done == int(df["s"].notna().sum()) < 600
    assert "max_cost=0.02 reached" in ran.everything  # the report shown says why it stopped


def test_config_max_cost_applies_when_a_cell_gives_none(ip, emu, conn):
    magics = ip.magics_manager.registry["FoundryMagics"]
    run(ip, "%config FoundryMagics.max_cost = -1")
    assert magics.max_cost is None  # refused
    run(ip, "%config FoundryMagics.max_cost = 0.01")
    assert magics.max_cost == 0.01
    ip.user_ns["df"] = pd.DataFrame({"text": [f"config budget {i}: fine product, on time" for i in range(400)]})
    run(ip, "%%foundry --df df --out s --max-tokens 100\nSummarize: {text}")
    import foundry_magics as fm

    assert fm.last_run().stopped.startswith("max_cost=0.01 reached") and fm.last_run().cost <= 0.01
    # a cell's --max-cost wins over the configured one
    run(ip, "%%foundry --df df --out s --max-tokens 100 --max-cost 5\nSummarize: {text}")
    assert fm.last_run().ok and ip.user_ns["df"]["s"].notna().all()
    # single cells too: this one could cost more than 0.01 (10,000 output tokens at 6 per 1M = 0.06)
    before = sent(emu)
    ran = run(ip, "%%foundry --max-tokens 10000\nHello")
    assert sent(emu) == before and "could cost up to 0.060" in ran.everything and "nothing was sent" in ran.everything
    run(ip, "%config FoundryMagics.max_cost = None")
    assert run(ip, "%%foundry --max-tokens 10000\nHello").value is not None and sent(emu) == before + 1


def test_a_single_cell_over_its_budget_is_not_sent_one_within_it_is(ip, emu, conn):
    before = sent(emu)
    ran = run(ip, "%%foundry --max-cost 0.001\nTell me a long story")  # no max_tokens: 32,768 tokens counted
    assert sent(emu) == before
    assert "counted at 32,768 output tokens" in ran.everything and "--max-tokens" in ran.everything
    ran = run(ip, "%%foundry --max-cost 0.001 --max-tokens 50\nTell me a short story")
    assert ran.value is not None and sent(emu) == before + 1
    # comparisons: every model's request is checked before any is sent
    ran = run(ip, "%%foundry -m gpt-4o-mini,gpt-4.1 --max-cost 0.01 --max-tokens 50\nHi")
    assert sent(emu) == before + 1 and "price of 'gpt-4.1'" in ran.everything
    # a dry run sends nothing: no budget to check
    assert run(ip, "%%foundry --max-cost 0.000001 --dry-run\nHi").value is not None


def test_without_a_price_a_budgeted_cell_refuses(ip, emu, conn):
    set_prices(None)
    ip.user_ns["df"] = pd.DataFrame({"text": ["a", "b"]})
    before = sent(emu)
    ran = run(ip, "%%foundry --df df --out s --max-cost 1\nSummarize: {text}")
    assert sent(emu) == before and "needs the price of 'gpt-4o-mini'" in ran.everything
    assert "fm.set_prices" in ran.everything
    ran = run(ip, "%%foundry --max-cost 1 --max-tokens 5\nHi")
    assert sent(emu) == before and "needs the price of 'gpt-4o-mini'" in ran.everything
