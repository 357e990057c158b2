"""Small things a newcomer met on the emulator (issue 18, item 9), each as a user sees it in a cell:
a model named twice, a guess for an unknown option, the waiting line of a discovered model, and a
dry run of a very long prompt."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from foundry_magics.emulator import Emulator
from foundry_magics.notebook import render
from foundry_magics.notebook.magic_args import parse_cell
from foundry_magics.rest.base import forget_models

from magics_helpers import bodies, connect, emu, ip, run  # noqa: F401 - emu and ip are fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def conn(ip, emu):
    connect(ip, emu.url)
    return emu


# ---------------------------------------------------------------------- a. a model named twice


def test_the_same_model_named_twice_is_said_plainly_and_nothing_is_sent(ip, conn):
    before = len(conn.requests)
    ran = run(ip, "%%foundry -m gpt-4o-mini,gpt-4o-mini\nHi")
    text = ran.everything
    assert "the same model, gpt-4o-mini, is named twice" in text, text
    assert "two or more" not in text and "Traceback" not in text
    assert "-m gpt-4o-mini,OTHER" in text  # the fix, in the cell's syntax
    assert len(conn.requests) == before
    with pytest.raises(UsageError, match="named 3 times"):
        parse_cell("-m a,a,a", "x")
    # a repeat among different models is simply dropped: the comparison runs once per model
    assert parse_cell("-m a,b,a", "x").models == ["a", "b"]


def test_compare_with_the_same_model_twice_says_so_in_python_terms():
    import foundry_magics as fm

    with pytest.raises(fm.ConfigurationError) as info:
        fm.compare("Hi", models=["gpt-4o", "gpt-4o"])
    assert "the same model, gpt-4o, is named twice" in info.value.message
    assert "models=['gpt-4o', 'OTHER']" in info.value.message and "-m" not in info.value.message


# ---------------------------------------------------------------------- b. unknown options


@pytest.mark.parametrize("line, guess", [
    ("--bogus", None),          # once "Did you mean --out?": the shared "--" made them look alike
    ("--timeout 5", None),      # a %config setting, not an option: no guess at --out
    ("--version", None),        # not --conversation
    ("--cache", None),          # not --batch
    ("--formt json", "--format"),
    ("--temprature 1", "--temperature"),
    ("--temp 1", "--temperature"),  # the start of exactly one option
    ("--sys terse", "--system"),
    ("--con x", None),          # the start of three options: no guess
    ("--interpolate", "--no-interpolate"),
])
def test_did_you_mean_only_for_a_close_option(line, guess):
    with pytest.raises(UsageError) as info:
        parse_cell(line, "x")
    message = str(info.value)
    assert message.startswith(f"Unknown option {line.split()[0]} for %%foundry.")
    if guess is None:
        assert "Did you mean" not in message
    else:
        assert message.endswith(f"Did you mean {guess}?")


def test_an_unknown_option_without_a_guess_points_to_help(ip):
    ran = run(ip, "%%foundry --bogus\nHi")
    assert "Unknown option --bogus for %%foundry." in ran.everything
    assert "Did you mean" not in ran.everything and "`%foundry help` lists the options" in ran.everything


# ---------------------------------------------------------------------- c. articles


def test_an_image_variable_of_the_wrong_type_is_named_with_its_article(ip, conn):
    ip.user_ns["n"] = 42
    ran = run(ip, "%%foundry --image n\nWhat is it?")
    assert "the variable holds an int, not an image" in ran.everything
    ip.user_ns["s"] = {"a": 1}
    assert "the variable holds a dict, not an image" in run(ip, "%%foundry --image s\nWhat?").everything


# ---------------------------------------------------------------------- e. the waiting line


def test_the_waiting_line_names_a_model_the_server_told_us(ip):
    """A connection without a model, on a server that lists exactly one: the placeholder shown
    until the first token names that model, from the first cell on."""
    forget_models()
    local = Emulator(lifetime=60, deployments=["phi-4-mini"], latency=0.2)
    url = local.start()
    try:
        run(ip, f"%foundry connect {url}/v1")
        for prompt in ("Hello", "Again"):
            ran = run(ip, f"%%foundry\n{prompt}")
            assert ran.result.error_in_exec is None, ran.everything
            waiting = [t for t in ran.texts if t.startswith("waiting for")]
            assert waiting == ["waiting for phi-4-mini…"], ran.texts
    finally:
        local.stop()
        forget_models()


# ---------------------------------------------------------------------- f. dry runs of long prompts


def test_a_dry_run_shows_a_long_prompt_cut_and_says_how_much(ip, conn):
    before = len(conn.requests)
    ip.user_ns["big"] = "word " * 300_000  # 1.5 MB
    ran = run(ip, "%%foundry --dry-run\nSummarize: {big}")
    assert len(conn.requests) == before  # nothing sent
    shown = ran.everything
    assert len(shown) < 30_000, len(shown)
    cut = len("Summarize: " + "word " * 300_000) - render.SHOWN_TEXT
    assert f"… [{cut:,} more characters not shown]" in shown
    assert "-o VAR keeps the whole request" in shown
    view = ran.value
    assert isinstance(view, dict)  # the cell's value (Out/_) is still the whole request
    assert view["json"]["messages"][-1]["content"].endswith("word ")
    assert len(view["json"]["messages"][-1]["content"]) > 1_500_000


def test_a_short_dry_run_is_shown_whole_without_a_note(ip, conn):
    ran = run(ip, "%%foundry --dry-run\nSay hi")
    assert '"content": "Say hi"' in ran.everything and "not shown" not in ran.everything
    assert "keeps the whole request" not in ran.everything


def test_request_view_names_the_variable_that_holds_the_whole_request():
    req = {"method": "POST", "url": "http://h/v1/chat/completions", "headers": {"api-key": "***redacted***"},
           "json": {"messages": [{"role": "user", "content": "x" * 5000}]}}
    view = render.RequestView(req, out="req")
    assert "the whole request is in `req`" in view.plain() and "3,000 more characters not shown" in view.markdown()
    assert dict(view) == req  # the dict itself is never cut


def test_a_dry_run_stores_the_whole_request_in_out(ip, conn):
    ip.user_ns["big"] = "word " * 300_000
    ran = run(ip, "%%foundry --dry-run -o req\nSummarize: {big}")
    assert ran.result.error_in_exec is None, ran.everything
    req = ip.user_ns.get("req")
    assert isinstance(req, dict) and set(req) == {"method", "url", "headers", "json"}
    assert len(req["json"]["messages"][-1]["content"]) > 1_500_000
    assert "the whole request is in `req`" in ran.everything
    assert not bodies(conn, "Summarize")


# ---------------------------------------------------------------------- i. a dead local port


def test_a_cell_on_a_dead_local_port_says_so_at_once(ip):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    connect(ip, f"http://127.0.0.1:{port}", "--auth none --model x")
    t0 = time.monotonic()
    ran = run(ip, "%%foundry\nHello")
    took = time.monotonic() - t0
    assert "Cannot reach the endpoint" in ran.everything and "Traceback" not in ran.everything
    assert took < 2.0, took  # was ~19 s: six retries with backoff on a refusal that cannot change
