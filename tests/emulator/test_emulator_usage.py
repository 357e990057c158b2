"""The emulator reports usage as Azure does: cached tokens for a prompt prefix of 1,024 tokens
or more it saw before (rounded down to 128), reasoning tokens for reasoning models - in chat
and Responses replies, streamed or not, in Batch API result lines - and the client, the
engine's run reports and `fm.usage()` carry them."""

from __future__ import annotations

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator, brain
from foundry_magics.store.prices import set_prices
from foundry_magics.store.usage import session_usage

SYSTEM = "You are a careful assistant. " * 200  # 5,800 characters: ~1,450 tokens


@pytest.fixture
def emu():
    e = Emulator(lifetime=300, batch_seconds=0.1)  # a private one: its prompt cache starts empty
    e.start()
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def clean():
    set_prices(None)
    session_usage().reset()
    yield
    set_prices(None)
    session_usage().reset()


def client(emu, model="gpt-4o-mini"):
    conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model=model)
    return fm.FoundryClient(conn)


def expected_cached(first: str, second: str) -> int:
    shared = 0
    for a, b in zip(first, second):
        if a != b:
            break
        shared += 1
    blocks = min(shared, len(second)) // 512  # 128 tokens of 4 characters
    return blocks * 128 if blocks * 128 >= 1024 else 0


@pytest.mark.parametrize("api, stream", [("chat", False), ("chat", True), ("respond", False), ("respond", True)])
def test_a_repeated_long_prefix_is_reported_cached(emu, api, stream):
    with client(emu) as c:
        def ask(question):
            out = getattr(c, api)(question, system=SYSTEM, stream=stream)
            if stream:
                list(out)
                return out.reply
            return out

        first = ask("What is the capital of France?")
        assert first.usage.cached_input_tokens == 0  # never seen before
        second = ask("What is the capital of Spain?")
        prompt_1 = SYSTEM + "\nWhat is the capital of France?"
        prompt_2 = SYSTEM + "\nWhat is the capital of Spain?"
        want = expected_cached(prompt_1, prompt_2)
        assert want >= 1024 and want % 128 == 0
        assert second.usage.cached_input_tokens == want <= second.usage.input_tokens
        assert first.usage.reasoning_tokens == second.usage.reasoning_tokens == 0  # not a reasoning model
        short = ask("Hi")  # a short prompt never is: below 1,024 tokens only as a whole
        assert short.usage.cached_input_tokens == expected_cached(prompt_1, SYSTEM + "\nHi")
        assert getattr(c, api)("Hi there", stream=False).usage.cached_input_tokens == 0  # no system: < 1,024


def test_the_cache_is_per_model_and_needs_the_same_start(emu):
    with client(emu) as c:
        c.chat("Q1", system=SYSTEM)
        assert c.chat("Q2", system=SYSTEM, model="gpt-4.1-mini").usage.cached_input_tokens == 0
        assert c.chat("Q2", system="Be brief. " + SYSTEM).usage.cached_input_tokens == 0  # differs at the start
        assert c.chat("Q2", system=SYSTEM).usage.cached_input_tokens > 0
    assert emu.stats()["tokens"]["cached"] > 0


@pytest.mark.parametrize("model, reasoning", [("o3-mini", True), ("o4-mini", True), ("o1", True), ("gpt-5", True),
                                              ("gpt-5-mini", True), ("gpt-5-chat", False), ("gpt-4o", False),
                                              ("gpt-4.1-mini", False)])
def test_reasoning_models_report_reasoning_tokens(emu, model, reasoning):
    assert brain.is_reasoning_model(model) is reasoning
    with client(emu, model) as c:
        a = c.chat("Explain why the sky is blue.")
        b = c.respond("Explain why the sky is blue.", stream=True)
        list(b)
        b = b.reply
        again = c.chat("Explain why the sky is blue.")
    r = a.usage.reasoning_tokens
    if reasoning:
        assert 64 <= r <= 512 and r % 64 == 0
        assert again.usage.reasoning_tokens == r  # deterministic: the same prompt, the same count
        assert b.usage.reasoning_tokens == r
    else:
        assert r == 0 and b.usage.reasoning_tokens == 0
    visible = len(brain.tokens(a.text))
    assert a.usage.output_tokens == visible + r  # reasoning is a part of the output tokens
    assert again.text == a.text


def test_reasoning_comes_first_within_the_cap(emu):
    with client(emu, "o3-mini") as c:
        full = c.chat("Explain why the sky is blue.")
        r = full.usage.reasoning_tokens
        capped = c.chat("Explain why the sky is blue.", max_tokens=r + 2)
    assert capped.finish_reason == "length"
    assert capped.usage.output_tokens <= r + 2 and capped.usage.reasoning_tokens == r
    assert len(brain.tokens(capped.text)) == 2


def test_a_dataframe_run_reports_them_and_usage_counts_them(emu):
    conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="o3-mini")
    df = pd.DataFrame({"t": [f"item {i}" for i in range(6)]})
    long = "Read this policy carefully. " * 200
    df.foundry.prompt(long + "Then answer about {t}.", connection=conn, concurrency=1, progress=False, cache=False)
    report = fm.last_run()
    assert report.reasoning_tokens > 0 and report.cached_input_tokens >= 5 * 1024  # 5 of 6 share the prefix
    assert "cached" in report.summary() and "reasoning" in report.summary()
    assert report.cost is None
    set_prices({"o3-mini": {"input": 1.10, "cached_input": 0.55, "output": 4.40}})  # priced after the run
    want = ((report.input_tokens - report.cached_input_tokens) * 1.10 + report.cached_input_tokens * 0.55
            + report.output_tokens * 4.40) / 1e6
    assert report.cost == pytest.approx(want) and "$" in report.summary()
    row = next(r for r in session_usage().rows() if r["model"] == "o3-mini")
    assert (row["runs"], row["calls"]) == (1, 0)  # the run, counted once (not its requests as calls too)
    assert row["cached_input_tokens"] == report.cached_input_tokens
    assert row["reasoning_tokens"] == report.reasoning_tokens and row["cost"] == pytest.approx(want)
    set_prices({"o3-mini": (1.10, 4.40)})  # no cached_input price: the input price, and the report says so
    assert "cached input tokens at the input price" in report.summary()


def test_batch_lines_report_them(emu):
    conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="o4-mini")
    s = pd.Series([f"Question {i}" for i in range(4)])
    out = s.foundry.prompt("Answer: {}", batch=True, connection=conn, poll_interval=0.02, progress=False)
    assert out.notna().all()
    report = fm.last_run()
    assert report.reasoning_tokens >= 4 * 64 and report.output_tokens > report.reasoning_tokens
    set_prices({"o4-mini": (1.0, 4.0)})
    assert report.cost == pytest.approx((report.input_tokens * 1.0 + report.output_tokens * 4.0) / 1e6 / 2)
