"""%%foundry / %foundry run in-process on an InteractiveShell against the emulator."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from foundry_magics.notebook.render import ReplyView

from magics_helpers import bodies, connect, emu, ip, run  # noqa: F401 - emu and ip are fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def conn(ip, emu):
    connect(ip, emu.url)
    return emu


def last_body(emu, part="/chat/completions"):
    found = bodies(emu, part)
    assert found, f"no request to {part}"
    return found[-1]


# ----------------------------------------------------------------------------- loading


def test_load_ext_imports_nothing_heavy_and_unloads():
    code = textwrap.dedent("""
        import sys, time
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        t0 = time.perf_counter()
        ip.run_line_magic("load_ext", "foundry_magics")
        took = time.perf_counter() - t0
        heavy = [m for m in ("httpx", "pandas", "ipywidgets", "azure", "azure.identity", "numpy", "openai")
                 if m in sys.modules]
        assert "foundry" in ip.magics_manager.magics["cell"] and "foundry" in ip.magics_manager.magics["line"]
        ip.run_line_magic("unload_ext", "foundry_magics")
        gone = "foundry" not in ip.magics_manager.magics["cell"] and "foundry" not in ip.magics_manager.magics["line"]
        ip.run_line_magic("load_ext", "foundry_magics")
        back = "foundry" in ip.magics_manager.magics["cell"]
        print(repr((heavy, gone, back, took)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    heavy, gone, back, _took = eval(out.stdout.strip().splitlines()[-1])
    assert heavy == [] and gone and back


# ----------------------------------------------------------------------------- prompts


def test_cell_streams_one_display_and_result_lands_in_out(ip, conn):
    ran = run(ip, "%%foundry\nSay hello to the notebook")
    assert ran.result.error_in_exec is None, ran.everything
    view = ran.value
    assert isinstance(view, ReplyView) and view.text.startswith("[emulated] ")
    assert ip.user_ns["_"] is view and ip.user_ns["Out"][ran.result.execution_count] is view
    assert view.model and view.usage.output_tokens > 0 and view.latency is not None and view.emulated
    # one display (the waiting line), then updates of that same display; the last one is complete
    assert len(ran.outputs) >= 2 and ran.texts[0].startswith("waiting for")
    assert ran.final.startswith(view.text) and "emulated" in ran.final and "▌" not in ran.final
    assert ran.stdout.strip() in ("", f"Out[{ran.result.execution_count}]:")  # never printed twice
    body = last_body(conn)
    assert body["stream"] is True and body["messages"] == [{"role": "user", "content": "Say hello to the notebook"}]


def test_no_stream_displays_once(ip, conn):
    ran = run(ip, "%%foundry --no-stream\nHello")
    assert len(ran.outputs) == 1 and ran.value.text.startswith("[emulated]")
    assert "stream" not in last_body(conn)


def test_one_line_prompt_and_line_options(ip, conn):
    ran = run(ip, "%foundry What is a notebook?")
    assert ran.value.text.startswith("[emulated]")
    assert last_body(conn)["messages"][-1]["content"] == "What is a notebook?"
    run(ip, "%foundry -m gpt-4.1 -t 0 --no-stream Tell me # not a comment")
    body = last_body(conn)
    assert body["model"] == "gpt-4.1" and body["temperature"] == 0
    assert body["messages"][-1]["content"] == "Tell me # not a comment"
    run(ip, "%foundry -- help me write a haiku")  # `--`: a prompt, even one that starts with a command word
    assert last_body(conn)["messages"][-1]["content"] == "help me write a haiku"


def test_every_request_option_reaches_the_body(ip, conn):
    run(ip, '%%foundry -m my-model -s "You are terse" -t 0.3 --max-tokens 50\nHi')
    body = last_body(conn)
    assert body["model"] == "my-model" and body["temperature"] == 0.3 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "You are terse"}

    ran = run(ip, '%%foundry --api responses -s "Be brief" --max-tokens 20\nHi there')
    rbody = last_body(conn, "/responses")
    assert rbody["input"] == "Hi there" and rbody["instructions"] == "Be brief" and rbody["max_output_tokens"] == 20
    assert ran.value.id  # Responses API replies carry an id


def test_connection_option_per_cell(ip, emu):
    from foundry_magics.connections import session

    connect(ip, emu.url, "--auth none --model gpt-4o-mini --save local")
    session.set_current(None)
    ran = run(ip, "%%foundry -c local\nHello from a saved connection")
    assert ran.result.error_in_exec is None and ran.value.connection == "local"
    assert last_body(emu)["messages"][-1]["content"] == "Hello from a saved connection"
    # a URL works too: a loopback host needs no key by default
    ran = run(ip, f"%%foundry -c {emu.url}/openai/v1 -m gpt-4o-mini\nHello from a URL")
    assert ran.value.connection == f"{emu.url}/openai/v1" and ran.value.text.startswith("[emulated]")
    assert last_body(emu)["messages"][-1]["content"] == "Hello from a URL"
    # a remote URL keeps the usual inference (key auth) and names the missing variable
    ran = run(ip, "%%foundry -c https://r.openai.azure.com/openai/v1 -m gpt-4o\nHello")
    assert "AZURE_OPENAI_API_KEY" in ran.everything


def test_out_variable_and_formats(ip, conn):
    run(ip, "%%foundry -o answer\nWhat is 2+2?")
    assert isinstance(ip.user_ns["answer"], str) and ip.user_ns["answer"].startswith("[emulated]")

    ran = run(ip, "%%foundry -f text --no-stream\nHello")
    assert list(ran.outputs[-1].data) == ["text/plain"]

    ran = run(ip, "%%foundry -f html --no-stream\nHello")
    assert "text/html" in ran.outputs[-1].data

    ran = run(ip, "%%foundry -f json -o obj\nList two colours")
    assert isinstance(ip.user_ns["obj"], (dict, list))
    assert "application/json" in ran.outputs[-1].data
    body = last_body(conn)
    assert body["response_format"] == {"type": "json_object"}
    assert "JSON" in body["messages"][0]["content"]  # JSON mode needs the word in the messages


def test_format_code_puts_code_in_a_new_cell(ip, conn):
    ip.rl_next_input = None
    ran = run(ip, "%%foundry -f code\nWrite a python function that adds two numbers")
    assert ran.result.error_in_exec is None
    assert ip.rl_next_input and "new cell" in ran.final


def test_schema_from_variable_and_inline(ip, conn):
    ip.user_ns["schema"] = {"label": ("positive", "negative"), "score": float}
    run(ip, "%%foundry --schema schema -o res\nI love this product")
    res = ip.user_ns["res"]
    assert res["label"] == "positive" and isinstance(res["score"], float)
    fmt = last_body(conn)["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == ["label", "score"]

    run(ip, """%%foundry --schema '{"city": "string"}' -o res2 --api responses\nWhere is the Eiffel tower?""")
    assert isinstance(ip.user_ns["res2"]["city"], str)
    assert last_body(conn, "/responses")["text"]["format"]["type"] == "json_schema"


# ----------------------------------------------------------------------------- interpolation


def test_interpolation_names_attributes_indexes_and_escapes(ip, conn):
    import pandas as pd

    ip.user_ns.update(topic="tides", items=["moon", "sun"], df=pd.DataFrame({"a": [1, 2, 3]}))
    run(ip, "%%foundry --no-stream\nAbout {topic}: {items[0]} {df.shape} {{topic}} {unknown} $topic")
    assert last_body(conn)["messages"][-1]["content"] == "About tides: moon (3, 1) {topic} {unknown} $topic"
    run(ip, "%foundry --no-stream About {topic} and {{topic}} and $topic")  # the line form too
    assert last_body(conn)["messages"][-1]["content"] == "About tides and {topic} and $topic"
    run(ip, "%%foundry --no-interpolate --no-stream\nAbout {topic} {{x}}")
    assert last_body(conn)["messages"][-1]["content"] == "About {topic} {{x}}"
    run(ip, '%%foundry -s "You explain {topic}" --no-stream\nGo')
    assert last_body(conn)["messages"][0]["content"] == "You explain tides"


def test_code_with_braces_reaches_the_model_unchanged(ip, conn):
    ip.user_ns.update(pairs=[(1, 2)], d=1, value=3, k=0)  # names that occur in the code, not as placeholders
    code = textwrap.dedent('''\
        Explain this code:
        def f(d):
            return {"a": {"b": d}}
        x = {k: v for k, v in pairs}
        s = f"{value!r:>10}"  + "{{literal}}"
        const g = () => { return {a: 1}; };''')
    # `{value!r:>10}` and `{{literal}}` are placeholders / escapes by design: keep the check on the rest
    code = code.replace(' s = f"{value!r:>10}"  + "{{literal}}"\n', "")
    code = "\n".join(line for line in code.splitlines() if "literal" not in line)
    ran = run(ip, "%%foundry --no-stream\n" + code)
    assert ran.result.error_in_exec is None
    assert last_body(conn)["messages"][-1]["content"] == code
    run(ip, "%%foundry --dry-run\n" + code)  # the dry run shows the same body
    # and the one-line form is not expanded by IPython either
    run(ip, '%foundry --no-stream return {"a": {"b": d}}')
    assert last_body(conn)["messages"][-1]["content"] == 'return {"a": {"b": d}}'


# ----------------------------------------------------------------------------- conversations


def test_chat_history_with_chat_completions(ip, conn):
    run(ip, "%%foundry --chat\nMy name is Ada.")
    run(ip, "%%foundry --chat\nWhat is my name?")
    msgs = last_body(conn)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"] == "My name is Ada." and msgs[1]["content"].startswith("[emulated]")
    # a plain cell carries no history
    run(ip, "%%foundry\nAnd now?")
    assert last_body(conn)["messages"] == [{"role": "user", "content": "And now?"}]
    # named conversations are separate; --new starts afresh
    run(ip, "%%foundry --chat other\nHi other")
    assert len(last_body(conn)["messages"]) == 1
    run(ip, "%%foundry --chat --new\nFresh start")
    assert last_body(conn)["messages"] == [{"role": "user", "content": "Fresh start"}]

    shown = run(ip, "%foundry chat show")
    assert "Fresh start" in shown.everything and "My name is Ada" not in shown.everything
    run(ip, "%foundry chat reset")
    run(ip, "%%foundry --chat\nAfter reset")
    assert last_body(conn)["messages"] == [{"role": "user", "content": "After reset"}]
    listed = run(ip, "%foundry chat list")
    assert "other" in listed.everything


def test_chat_history_with_responses_api(ip, conn):
    first = run(ip, '%%foundry --api responses --chat r -s "Be kind"\nRemember 7.')
    rid = first.value.id
    assert rid
    run(ip, "%%foundry --api responses --chat r\nWhat number?")
    body = last_body(conn, "/responses")
    assert body["previous_response_id"] == rid and body["input"] == "What number?"
    assert body["instructions"] == "Be kind"  # instructions do not carry over: resent
    # switching the same conversation to chat completions resends the transcript
    run(ip, "%%foundry --chat r\nAnd in chat?")
    msgs = last_body(conn)["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]


# ----------------------------------------------------------------------------- dry run


def test_dry_run_sends_nothing(ip, conn):
    before = conn.stats()["requests"]
    ip.user_ns["who"] = "world"
    ran = run(ip, '%%foundry --dry-run -s "sys" -t 0.5\nHello {who} {"k": 1}')
    assert conn.stats()["requests"] == before
    text = ran.everything
    assert "nothing was sent" in text and f"{conn.url}/openai/v1/chat/completions" in text
    assert '"content": "Hello world {\\"k\\": 1}"' in text and '"temperature": 0.5' in text
    assert ran.value["json"]["temperature"] == 0.5 and ran.value["url"].endswith("/chat/completions")
    hist = run(ip, "%foundry history")
    assert "Hello world" not in hist.everything


def test_dry_run_with_new_keeps_the_conversation(ip, conn):
    run(ip, "%%foundry --chat\nKeep this turn")
    before = conn.stats()["requests"]
    ran = run(ip, "%%foundry --chat --new --dry-run\nWould start afresh")
    assert conn.stats()["requests"] == before
    assert "Keep this turn" not in ran.everything  # the request would not carry the old turns...
    assert "Keep this turn" in run(ip, "%foundry chat show").everything  # ...but they are still there
    run(ip, "%%foundry --chat --new\nNow really afresh")
    assert last_body(conn)["messages"] == [{"role": "user", "content": "Now really afresh"}]
    assert "Keep this turn" not in run(ip, "%foundry chat show").everything


# ----------------------------------------------------------------------------- errors


def _assert_one_block(ran, *needles):
    assert ran.result.error_in_exec is None
    text = ran.everything
    assert "Traceback" not in text and "File \"" not in text, text
    for n in needles:
        assert n in text, (n, text)


def test_unknown_connection_renders_one_block(ip):
    ran = run(ip, "%%foundry -c nope\nHi")
    _assert_one_block(ran, "Unknown connection 'nope'", "Fix:", "%foundry connect")
    assert len(ran.outputs) == 1


def test_bad_options_render_one_block(ip):
    _assert_one_block(run(ip, "%%foundry --formt json\nHi"), "Unknown option --formt", "Did you mean --format?")
    _assert_one_block(run(ip, "%%foundry -t hot\nHi"), "-t needs a number")
    _assert_one_block(run(ip, "%%foundry -f yaml\nHi"), "-f must be one of")
    _assert_one_block(run(ip, '%%foundry -s "unclosed\nHi'), "Check the quotes")
    _assert_one_block(run(ip, "%%foundry --schema nothere\nHi"), "no variable named 'nothere'")
    _assert_one_block(run(ip, "%%foundry\n   "), "The prompt is empty")


def test_missing_key_renders_one_block(ip, emu, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    connect(ip, emu.url, "--auth key --key-env NO_SUCH_KEY_VAR --model gpt-4o-mini")
    ran = run(ip, "%%foundry\nHi")
    _assert_one_block(ran, "Missing API key", "NO_SUCH_KEY_VAR is not set", "Fix:")


def test_content_filter_renders_one_block(ip, conn):
    ran = run(ip, "%%foundry\nSomething #emulator:content_filter")
    _assert_one_block(ran, "content filter")
    ran = run(ip, "%%foundry --no-stream\nSomething #emulator:content_filter")
    _assert_one_block(ran, "content filter")


def test_context_length_and_server_status(ip, conn):
    _assert_one_block(run(ip, "%%foundry\nx #emulator:context_length"), "Prompt too long", "Fix:")
    _assert_one_block(run(ip, "%%foundry\nx #emulator:status=401"), "Not authorized")


def test_stream_cut_keeps_partial_text_marked_incomplete(ip, conn):
    ran = run(ip, "%%foundry\nTell me a long story about the sea #emulator:stream_cut")
    assert ran.result.error_in_exec is None
    assert "stream stopped early" in ran.final.lower() or "stream" in ran.final.lower()
    view = ran.value
    assert view is not None and not view.complete and view.error is not None


# ----------------------------------------------------------------------------- emulator fallback


def test_nothing_configured_uses_the_emulator_with_one_notice(ip, monkeypatch):
    from foundry_magics import emulator
    from foundry_magics.connections import session

    monkeypatch.setattr(session, "_notice_given", False)  # the notice is once per process

    try:
        first = run(ip, "%%foundry\nHello")
        second = run(ip, "%%foundry\nHello again")
    finally:
        emulator.stop()
    notice = "using the built-in emulator"
    assert sum(notice in t for t in first.texts) == 1
    assert not any(notice in t for t in second.texts)
    assert first.value.emulated and "emulated" in first.final


# ----------------------------------------------------------------------------- %config


def test_config_traits_and_validation(ip, conn, caplog):
    magics = ip.magics_manager.registry["FoundryMagics"]
    run(ip, "%config FoundryMagics.format = 'text'")
    run(ip, "%config FoundryMagics.stream = False")
    ran = run(ip, "%%foundry\nHello")
    assert len(ran.outputs) == 1 and list(ran.outputs[0].data) == ["text/plain"]
    run(ip, "%config FoundryMagics.timeout = -1")
    assert magics.timeout == 60.0 and "must be a positive number of seconds" in caplog.text
    run(ip, "%config FoundryMagics.format = 'yaml'")
    assert magics.format == "text"
    run(ip, "%config FoundryMagics.max_retries = -2")
    assert magics.max_retries == 6
    run(ip, "%config FoundryMagics.concurrency = 0")
    assert magics.concurrency is None
    run(ip, "%config FoundryMagics.timeout = 5")
    assert magics.timeout == 5.0
    # a reload with the bad value still in the shell's config drops it, with a warning
    run(ip, "%reload_ext foundry_magics")
    magics = ip.magics_manager.registry["FoundryMagics"]
    assert magics.timeout == 5.0 or magics.timeout == 60.0
    assert run(ip, "%%foundry\nStill works").value is not None
    listed = run(ip, "%config FoundryMagics")
    for name in ("default_connection", "format", "stream", "concurrency", "cache", "history", "timeout", "max_retries"):
        assert name in listed.everything


def test_default_connection_trait(ip, emu):
    run(ip, f"%foundry connect {emu.url}/openai/v1 --auth none --model gpt-4o-mini --save emu")
    from foundry_magics.connections import session

    session.set_current(None)
    run(ip, "%config FoundryMagics.default_connection = 'emu'")
    ran = run(ip, "%%foundry\nVia the default connection")
    assert ran.value.connection == "emu"


# ----------------------------------------------------------------------------- history & usage


def test_history_rows_and_switch_off(ip, conn, fm_home):
    import sqlite3

    run(ip, "%%foundry\nFirst logged prompt")
    run(ip, "%%foundry --chat\nSecond logged prompt")
    hist = run(ip, "%foundry history -n 5")
    assert "First logged prompt" in hist.everything and "Second logged prompt" in hist.everything
    db = sqlite3.connect(fm_home / "history.sqlite")
    rows = db.execute("SELECT prompt, reply, model, connection, status, input_tokens, output_tokens, latency, "
                      "conversation FROM calls ORDER BY id").fetchall()
    db.close()
    assert [r[0] for r in rows] == ["First logged prompt", "Second logged prompt"]
    assert all(r[1].startswith("[emulated]") and r[2] and r[3] and r[4] == "ok" and r[6] > 0 and r[7] is not None
               for r in rows)
    assert rows[1][8] == "default"

    run(ip, "%config FoundryMagics.history = False")
    run(ip, "%%foundry\nNot logged")
    db = sqlite3.connect(fm_home / "history.sqlite")
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 2
    db.close()
    usage = run(ip, "%foundry usage")
    assert "total" in usage.everything and "3" in usage.everything  # usage still counts the call


def test_usage_counts(ip, conn):
    run(ip, "%%foundry\nOne")
    run(ip, "%%foundry --no-stream\nTwo")
    from foundry_magics.notebook import prompting

    total = prompting.prompter().usage.rows()[-1]
    assert total["calls"] == 2 and total["output_tokens"] > 0 and total["seconds"] > 0


def test_a_connect_in_the_session_wins_over_the_default_connection_trait(ip, emu):
    from foundry_magics.connections import session

    connect(ip, emu.url, "--auth none --model gpt-4o-mini --save saved")
    session.set_current(None)
    run(ip, "%config FoundryMagics.default_connection = 'saved'")
    assert run(ip, "%%foundry\nx").value.connection == "saved"
    run(ip, "%foundry connect emulator")
    try:
        assert run(ip, "%%foundry\nx").value.connection == "emulator"
    finally:
        from foundry_magics import emulator

        emulator.stop()
