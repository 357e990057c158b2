"""Prices: nothing built in, `set_prices` forms and checks, prices.toml, matching model names,
the Batch API at half price, and how costs are written."""

from __future__ import annotations

import pytest

from foundry_magics.errors import ConfigurationError
from foundry_magics.store import prices
from foundry_magics.store.prices import Price, cost, format_cost, get_prices, price_of, set_prices


@pytest.fixture(autouse=True)
def no_session_prices():
    set_prices(None)
    yield
    set_prices(None)


def test_nothing_is_built_in():
    assert get_prices() == {}
    assert cost("gpt-4o", 1000, 1000) is None
    assert format_cost(None) == ""


def test_set_prices_forms():
    set_prices({"gpt-4.1-mini": (0.40, 1.60)})
    set_prices({"gpt-4o": {"input": 2.5, "output": 10, "batch_input": 1.0}}, phi4=[0.1, 0.2])
    got = get_prices()
    assert got["gpt-4.1-mini"] == Price(0.40, 1.60)
    assert got["gpt-4o"] == Price(2.5, 10.0, 1.0, None)
    assert got["phi4"] == Price(0.1, 0.2)
    assert cost("gpt-4.1-mini", 1_000_000, 500_000) == pytest.approx(0.40 + 0.80)
    # batch: half, unless a batch price is given (for input here; output is halved)
    assert cost("gpt-4.1-mini", 1_000_000, 1_000_000, batch=True) == pytest.approx(1.00)
    assert cost("gpt-4o", 1_000_000, 1_000_000, batch=True) == pytest.approx(1.0 + 5.0)
    set_prices(None)
    assert get_prices() == {}


@pytest.mark.parametrize("bad, match", [
    ({"m": (1,)}, "must be \\(input, output\\)"),
    ({"m": (-1, 2)}, "0 or more"),
    ({"m": ("1", 2)}, "0 or more"),
    ({"m": {"input": 1}}, "needs 'input' and 'output'"),
    ({"m": {"input": 1, "output": 2, "cached": 0.5}}, "needs 'input' and 'output'"),
    ({"": (1, 2)}, "needs a model name"),
    (["gpt-4o", 1, 2], "dict of model"),
])
def test_bad_prices_are_readable_errors_and_change_nothing(bad, match):
    set_prices({"keep": (1, 2)})
    with pytest.raises(ConfigurationError, match=match):
        set_prices(bad)
    assert get_prices() == {"keep": Price(1.0, 2.0)}


def test_names_match_deployments_and_reply_models():
    set_prices({"gpt-4o": (2.5, 10), "gpt-4o-mini": (0.15, 0.6), "Phi-4": (0.1, 0.2)})
    assert price_of("gpt-4o") == Price(2.5, 10)
    assert price_of("gpt-4o-2024-08-06") == Price(2.5, 10)
    assert price_of("gpt-4o-mini-2024-07-18") == Price(0.15, 0.6)  # the longest name wins
    assert price_of("GPT-4O") == Price(2.5, 10)
    assert price_of("openai/gpt-4o") == Price(2.5, 10)
    assert price_of("phi-4") == Price(0.1, 0.2)
    assert price_of("gpt-4") is None and price_of("gpt-4omni") is None and price_of(None) is None


def test_prices_toml_is_read_and_session_prices_win(fm_home):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text(
        'currency = "EUR"\n"gpt-4.1-mini" = [0.40, 1.60]\n[gpt-4o]\ninput = 2.5\noutput = 10\nbatch_output = 4\n'
        '[prices]\n"phi-4" = [0.1, 0.2]\n')
    got = get_prices()
    assert got == {"gpt-4.1-mini": Price(0.4, 1.6), "gpt-4o": Price(2.5, 10, None, 4), "phi-4": Price(0.1, 0.2)}
    assert prices.currency() == "EUR" and format_cost(1.5) == "1.50 EUR"
    set_prices({"gpt-4o": (1, 1)})
    assert get_prices()["gpt-4o"] == Price(1, 1)
    (fm_home / "prices.toml").write_text('"gpt-4.1-mini" = [9, 9]\n')  # changed on disk: read again
    assert get_prices()["gpt-4.1-mini"] == Price(9, 9) and prices.currency() == "USD"


def test_a_broken_prices_toml_names_the_file(fm_home):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text('"gpt-4o" = [1, \n')
    with pytest.raises(ConfigurationError, match="prices.toml is not valid TOML"):
        get_prices()
    (fm_home / "prices.toml").write_text('"gpt-4o" = "cheap"\n')
    with pytest.raises(ConfigurationError, match="prices.toml.*gpt-4o"):
        get_prices()
    (fm_home / "prices.toml").unlink()


def test_save_writes_prices_toml_and_keeps_what_is_there(fm_home):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text('"phi-4" = [0.1, 0.2]\n')
    set_prices({"gpt-4o": {"input": 2.5, "output": 10, "batch_input": 1.25}}, save=True, currency="USD")
    set_prices(None)  # the session forgets; the file remembers
    got = get_prices()
    assert got["gpt-4o"] == Price(2.5, 10, 1.25) and got["phi-4"] == Price(0.1, 0.2)
    text = (fm_home / "prices.toml").read_text()
    assert 'currency = "USD"' in text and "[gpt-4o]" in text


@pytest.mark.parametrize("value, text", [
    (0, "$0.00"), (0.5, "$0.50"), (0.0123, "$0.012"), (0.00042, "$0.00042"), (3.14159, "$3.14"),
    (12345.6, "$12,345.60"), (1e-9, "<$0.000001"),
])
def test_costs_are_written_with_enough_digits(value, text):
    assert format_cost(value, "USD") == text
