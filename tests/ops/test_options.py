"""One meaning everywhere: the same bad option gives the same ConfigurationError from every
front-end (pandas, the %%foundry cell, fm.compare, client.dry_run), before anything is sent."""

from __future__ import annotations

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import options

from magics_helpers import connect, emu, ip, run  # noqa: F401  (fixtures)


def _conn(emu):
    return fm.Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")


@pytest.mark.parametrize("name, value, expected", [
    ("temperature", 0.5, 0.5), ("temperature", 2, 2), ("temperature", None, None),
    ("max_tokens", 64, 64), ("max_tokens", 64.0, 64), ("max_tokens", None, None),
    ("concurrency", 8, 8), ("rpm", 0.5, 0.5), ("cache", False, False), ("api", "responses", "responses"),
])
def test_good_values_pass_unchanged(name, value, expected):
    got = options.check_value(name, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name, value, message", [
    ("temperature", "hot", "temperature must be a number from 0 to 2 or None, got 'hot'"),
    ("temperature", 9, "temperature must be a number from 0 to 2 or None, got 9 (an int)"),
    ("temperature", True, "temperature must be a number"),
    ("max_tokens", "lots", "max_tokens must be a positive whole number or None, got 'lots'"),
    ("max_tokens", 0, "max_tokens must be a positive whole number"),
    ("max_tokens", 1.5, "max_tokens must be a positive whole number"),
    ("concurrency", -3, "concurrency must be a positive whole number"),
    ("rpm", "fast", "rpm must be a positive number"),
    ("tpm", float("nan"), "tpm must be a positive number"),
    ("cache", "yes", "cache must be True or False, got 'yes'"),
    ("progress", "no", "progress must be True or False"),
    ("api", "completions", "api must be 'chat' or 'responses'"),
    ("model", 42, "model must be a deployment or model name"),
    ("schema", 42, "must be a mapping"),
])
def test_bad_values_name_the_option_and_what_it_got(name, value, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        options.check_value(name, value)
    assert info.value.hint or name == "schema"


def test_unknown_keywords_suggest_the_close_one():
    with pytest.raises(ConfigurationError) as info:
        options.check({"progres": False}, options.ROW_OPTIONS, "df.foundry.prompt()")
    assert "df.foundry.prompt() got an unknown option progres=" in info.value.message
    assert info.value.hint == "Did you mean progress=?"
    with pytest.raises(ConfigurationError) as info:  # a real option, in the wrong place
        options.check({"concurrency": 3}, options.REQUEST, "fm.compare()")
    assert "does not take concurrency=" in info.value.hint
    with pytest.raises(ConfigurationError) as info:  # nothing close: no wild guess
        options.check({"zzz": 1}, options.ROW_OPTIONS, "x()")
    assert "Did you mean" not in info.value.hint and "temperature" in info.value.hint


def test_wait_and_poll_interval_need_batch():
    with pytest.raises(ConfigurationError, match="apply to Batch API jobs only"):
        options.check({"wait": False}, options.ROW_OPTIONS, "x()")
    assert options.check({"wait": False, "batch": True}, options.ROW_OPTIONS, "x()")["wait"] is False


BAD = [({"temperature": "hot"}, "temperature must be a number from 0 to 2"),
       ({"max_tokens": "lots"}, "max_tokens must be a positive whole number"),
       ({"progres": False}, "unknown option progres=")]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_every_front_end_refuses_the_same_way_and_sends_nothing(emu, ip, kwargs, message):
    conn = _conn(emu)
    df = pd.DataFrame({"text": ["a", "b"]})
    before = emu.stats()["requests"]
    calls = [
        lambda: df.foundry.prompt("Say {text}", connection=conn, **kwargs),
        lambda: df.foundry.estimate("Say {text}", connection=conn, **kwargs),
        lambda: df["text"].foundry.prompt("{}", connection=conn, **kwargs),
        lambda: df["text"].foundry.classify(["a", "b"], connection=conn, **kwargs),
        lambda: df["text"].foundry.summarize(connection=conn, **kwargs),
        lambda: fm.compare("hi", models=["a", "b"], connection=conn, **kwargs),
    ]
    if "progres" not in kwargs:
        calls.append(lambda: fm.FoundryClient(conn).dry_run("chat", "hi", **kwargs))
    for call in calls:
        with pytest.raises(ConfigurationError, match=message):
            call()
    assert emu.stats()["requests"] == before


def test_a_cell_refuses_what_the_api_refuses(emu, ip):
    connect(ip, emu.url)
    ip.user_ns["df"] = pd.DataFrame({"text": ["a", "b"]})
    before = emu.stats()["requests"]
    ran = run(ip, "%%foundry --df df --out o -t 5\nSay {text}")
    assert "temperature" in ran.everything and "0 to 2" in ran.everything
    assert "o" not in ip.user_ns["df"].columns
    assert emu.stats()["requests"] == before


def test_out_onto_a_column_the_template_reads_is_refused(emu, ip):
    connect(ip, emu.url)
    df = pd.DataFrame({"text": ["a", "b"]})
    ip.user_ns["df"] = df
    before = emu.stats()["requests"]
    ran = run(ip, "%%foundry --df df --out text\nSay {text}")
    assert "would overwrite the column 'text'" in ran.everything and "--out text_result" in ran.everything
    assert list(ip.user_ns["df"]["text"]) == ["a", "b"]
    assert emu.stats()["requests"] == before


def test_single_calls_refuse_run_options_and_misspellings_the_same_way(emu):
    import asyncio

    conn = _conn(emu)
    before = emu.stats()["requests"]
    with fm.FoundryClient(conn) as client:
        with pytest.raises(ConfigurationError, match="client.chat\\(\\) got an unknown option concurrency=") as info:
            client.chat("hi", concurrency=4)
        assert "does not take concurrency=" in info.value.hint
        with pytest.raises(ConfigurationError, match="Did you mean temperature="):
            client.respond("hi", temprature=1)
        with pytest.raises(ConfigurationError, match="temperature must be a number from 0 to 2"):
            client.chat("hi", temperature="hot")

    async def go():
        async with fm.AsyncFoundryClient(conn) as client:
            with pytest.raises(ConfigurationError, match="Did you mean max_tokens="):
                await client.chat("hi", max_token=5)

    asyncio.run(go())
    assert emu.stats()["requests"] == before


def test_sample_is_a_positive_whole_number_that_goes_with_estimate_only():
    from foundry_magics.ops.options import REQUEST, ROW_OPTIONS, check

    assert check({"estimate": True, "sample": 20}, ROW_OPTIONS, "prompt()") == {"estimate": True, "sample": 20}
    assert check({"estimate": True, "sample": 20.0}, ROW_OPTIONS, "prompt()")["sample"] == 20
    assert check({"estimate": True, "sample": None}, ROW_OPTIONS, "prompt()")["sample"] is None
    for bad in (0, -1, 2.5, "20", True, float("nan")):
        with pytest.raises(ConfigurationError, match="sample must be a positive whole number") as info:
            check({"estimate": True, "sample": bad}, ROW_OPTIONS, "prompt()")
        assert "sample=20" in info.value.hint
    with pytest.raises(ConfigurationError, match="sample= applies to estimates only"):
        check({"sample": 20}, ROW_OPTIONS, "prompt()")
    with pytest.raises(ConfigurationError, match="sample= applies to estimates only"):
        check({"sample": 20, "estimate": False}, ROW_OPTIONS, "prompt()")
    with pytest.raises(ConfigurationError, match="unknown option sample="):  # single calls send one request
        check({"sample": 20}, REQUEST, "FoundryClient.chat()")
