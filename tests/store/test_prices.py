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
    assert price_of("gpt-4o-mini-2024-07-18") == Price(0.15, 0.6)
    assert price_of("GPT-4O") == Price(2.5, 10)
    assert price_of("openai/gpt-4o") == Price(2.5, 10)
    assert price_of("phi-4") == Price(0.1, 0.2)
    assert price_of("gpt-4") is None and price_of("gpt-4omni") is None and price_of(None) is None


FAMILY = {"gpt-4o": (2.5, 10), "gpt-4.1": (2.0, 8.0), "o3": (2.0, 8.0)}


@pytest.mark.parametrize("priced, model, expected", [
    # never by family: a longer name is another model with its own price
    (FAMILY, "gpt-4o-mini", None),
    (FAMILY, "gpt-4.1-mini", None),
    (FAMILY, "gpt-4.1-nano", None),
    (FAMILY, "o3-mini", None),
    (FAMILY, "o3-pro", None),
    (FAMILY, "gpt-4o-realtime-preview", None),
    (FAMILY, "gpt-4o-mini-2024-07-18", None),  # the dated name of gpt-4o-mini, which has no price
    # a reply's dated model name takes its model's price
    (FAMILY, "gpt-4o-2024-08-06", "gpt-4o"),
    (FAMILY, "o3-2025-04-16", "o3"),
    (FAMILY, "openai/gpt-4o-2024-08-06", "gpt-4o"),
    ({**FAMILY, "gpt-4o-mini": (0.15, 0.6)}, "gpt-4o-mini", "gpt-4o-mini"),
    ({**FAMILY, "gpt-4o-mini": (0.15, 0.6)}, "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ({**FAMILY, "o3-mini": (1.1, 4.4)}, "o3-mini-2025-01-31", "o3-mini"),
    # exact names: case and a publisher prefix do not matter; a deployment name is a name
    (FAMILY, "GPT-4.1", "gpt-4.1"),
    ({"openai/gpt-4o": (2.5, 10)}, "gpt-4o", "openai/gpt-4o"),
    ({"my-prod-deployment": (1, 2)}, "my-prod-deployment", "my-prod-deployment"),
    ({"my-prod-deployment": (1, 2)}, "my-prod", None),
    # only a date makes a dated name
    (FAMILY, "gpt-4o-0806", None),
    (FAMILY, "gpt-4o-2024-08", None),
])
def test_price_matching_table(priced, model, expected):
    set_prices(priced)
    got = price_of(model)
    if expected is None:
        assert got is None, f"{model} must not be priced, got {got}"
    else:
        want = priced[expected]
        assert got == Price(float(want[0]), float(want[1])), f"{model} should take {expected}'s price"
    assert (cost(model, 1000, 1000) is None) == (expected is None)


def test_gpt_4o_mini_is_never_priced_as_gpt_4o(fm_home):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text('"gpt-4o" = [2.50, 10.00]\n')  # the README's file, mini not in it
    assert cost("gpt-4o-mini", 1_000_000, 0) is None
    assert cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) is None
    assert cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)


def test_cached_input_price_and_its_default():
    set_prices({"gpt-4.1-mini": {"input": 0.40, "cached_input": 0.10, "output": 1.60}, "gpt-4o": (2.5, 10)})
    assert get_prices()["gpt-4.1-mini"] == Price(0.40, 1.60, cached_input=0.10)
    # 1M input of which 600k cached, 100k output
    assert cost("gpt-4.1-mini", 1_000_000, 100_000, cached_input_tokens=600_000) == \
        pytest.approx(0.4 * 0.4 + 0.6 * 0.1 + 0.1 * 1.6)
    assert cost("gpt-4.1-mini", 1_000_000, 100_000) == pytest.approx(0.4 + 0.16)  # the old call still works
    # no cached_input price: cached tokens cost the input price, and the note says so
    assert cost("gpt-4o", 1_000_000, 0, cached_input_tokens=600_000) == pytest.approx(2.5)
    assert "input price" in prices.cached_note("gpt-4o", 600_000)
    assert prices.cached_note("gpt-4.1-mini", 600_000) == "" and prices.cached_note("gpt-4o", 0) == ""
    # cached tokens are a part of the input: never more than it
    assert cost("gpt-4.1-mini", 100, 0, cached_input_tokens=10**9) == pytest.approx(100 * 0.10 / 1e6)
    # the Batch API: half of each, a cached token never dearer than an uncached one
    assert cost("gpt-4.1-mini", 1_000_000, 0, batch=True, cached_input_tokens=1_000_000) == pytest.approx(0.05)
    set_prices({"x": {"input": 1.0, "cached_input": 0.5, "output": 1.0, "batch_input": 0.1}})
    assert cost("x", 1_000_000, 0, batch=True, cached_input_tokens=1_000_000) == pytest.approx(0.1)


def test_cached_input_is_saved_to_prices_toml(fm_home):
    fm_home.mkdir(parents=True, exist_ok=True)
    set_prices({"gpt-4.1-mini": {"input": 0.40, "cached_input": 0.10, "output": 1.60}}, save=True)
    set_prices(None)
    assert get_prices()["gpt-4.1-mini"] == Price(0.40, 1.60, cached_input=0.10)
    assert "cached_input = 0.1" in (fm_home / "prices.toml").read_text()


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


def test_a_broken_prices_toml_is_one_warning_naming_its_line_and_costs_unknown(fm_home, caplog):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text('currency = "EUR"\n"gpt-4o" 2.5\n"phi-4" = [0.1, 0.2]\n')
    set_prices({"session-model": (1, 2)})
    with caplog.at_level("WARNING", logger="foundry_magics"):
        for _ in range(3):
            got = get_prices()  # never raises
            assert got == {"session-model": Price(1, 2)}  # the session's prices still apply
            assert cost("gpt-4o", 1000, 1000) is None and prices.currency() == "USD"
    warnings = [r for r in caplog.records if "prices.toml" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per version of the file
    assert "line 2" in warnings[0].getMessage() and "unknown" in warnings[0].getMessage()
    assert "line 2" in prices.problem() and prices.problem(short=True) == "prices.toml does not parse (line 2)"

    caplog.clear()
    (fm_home / "prices.toml").write_text('"phi-4" = [0.1, 0.2]\n\n"gpt-4o" = "cheap"\n')  # changed: read again
    with caplog.at_level("WARNING", logger="foundry_magics"):
        assert get_prices()["phi-4"] == Price(0.1, 0.2)  # the good lines still count
        assert price_of("gpt-4o") is None
        get_prices()
    messages = [r.getMessage() for r in caplog.records if "prices.toml" in r.getMessage()]
    assert len(messages) == 1 and "line 3" in messages[0] and "gpt-4o" in messages[0]
    assert prices.problem(short=True) == "prices.toml line 3: the price of 'gpt-4o' is malformed"

    (fm_home / "prices.toml").unlink()
    assert prices.problem() is None and "session-model" in get_prices()


def test_saving_into_a_broken_prices_toml_refuses_rather_than_overwrite_it(fm_home):
    fm_home.mkdir(parents=True, exist_ok=True)
    (fm_home / "prices.toml").write_text('"gpt-4o" = [1, \n')
    with pytest.raises(ConfigurationError, match="prices.toml is not valid TOML"):
        set_prices({"x": (1, 2)}, save=True)
    assert (fm_home / "prices.toml").read_text() == '"gpt-4o" = [1, \n'


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
