"""%foundry subcommands, DataFrame mode, and the sentinel key never leaking anywhere."""

from __future__ import annotations

import importlib.util

import pytest

from magics_helpers import bodies, connect, emu, ip, run  # noqa: F401 - emu and ip are fixtures

pytestmark = pytest.mark.timeout(120)


def test_help_lists_every_option_and_subcommand(ip):
    text = run(ip, "%foundry help").everything
    for flag in ("--connection", "--model", "--system", "--api", "--temperature", "--max-tokens", "--format",
                 "--out", "--chat", "--new", "--no-stream", "--no-interpolate", "--schema", "--dry-run", "--df",
                 "--concurrency", "--rpm", "--tpm"):
        assert flag in text, flag
    for sub in ("connect", "connections", "picker", "models", "use", "history", "usage", "chat", "emulator"):
        assert f"%foundry {sub}" in text, sub
    assert run(ip, "%foundry").everything == text  # no argument: the help


def test_connect_and_connections_table(ip, emu, fm_home):
    ran = connect(ip, emu.url, "--auth none --model gpt-4o-mini --save local")
    assert "Connected to local" in ran.everything and "saved as local" in ran.everything
    assert "local" in (fm_home / "connections.toml").read_text()
    table = run(ip, "%foundry connections").everything
    assert "local" in table and "●" in table and "gpt-4o-mini" in table
    bad = run(ip, "%foundry connect ftp://nowhere")
    assert "Unsupported URL scheme" in bad.everything and "Traceback" not in bad.everything
    warn = run(ip, f"%foundry connect {emu.url}/openai/v1 --key-env SURELY_UNSET_VAR_123")
    assert "SURELY_UNSET_VAR_123 is not set" in warn.everything


def test_models_and_use(ip, emu):
    connect(ip, emu.url)
    listed = run(ip, "%foundry models").everything
    assert "gpt-4o-mini" in listed
    run(ip, "%foundry use my-deployment")
    run(ip, "%%foundry\nHi")
    assert bodies(emu, "/chat/completions")[-1]["model"] == "my-deployment"
    run(ip, "%%foundry -m explicit\nHi")  # -m still wins
    assert bodies(emu, "/chat/completions")[-1]["model"] == "explicit"
    connect(ip, emu.url)  # a new connect forgets `use`
    run(ip, "%%foundry\nHi")
    assert bodies(emu, "/chat/completions")[-1]["model"] == "gpt-4o-mini"
    assert "needs a model name" in run(ip, "%foundry use").everything


def test_emulator_subcommands(ip):
    from foundry_magics import emulator

    try:
        assert "running at http://127.0.0.1:" in run(ip, "%foundry emulator start").everything
        assert "requests served" in run(ip, "%foundry emulator status").everything
        assert "stopped" in run(ip, "%foundry emulator stop").everything
        assert "not running" in run(ip, "%foundry emulator status").everything
    finally:
        emulator.stop()


def test_picker_subcommand_returns_the_widget(ip):
    if importlib.util.find_spec("foundry_magics.notebook.widgets") is None:
        pytest.skip("widgets.py not there yet")
    ran = run(ip, "%foundry picker")
    assert ran.result.error_in_exec is None
    assert type(ran.value).__name__ == "ConnectionPicker"


def test_history_subcommand_limits_rows(ip, emu):
    connect(ip, emu.url)
    for i in range(4):
        run(ip, f"%%foundry --no-stream\nprompt number {i}")
    text = run(ip, "%foundry history -n 2").everything
    assert "prompt number 3" in text and "prompt number 2" in text and "prompt number 1" not in text
    assert "must be at least 1" in run(ip, "%foundry history -n 0").everything


def test_dataframe_mode_dispatch(ip, emu):
    if importlib.util.find_spec("foundry_magics.frames.accessor") is None:
        pytest.skip("foundry_magics/dataframe.py (run_frame) is not written yet")
    import pandas as pd

    connect(ip, emu.url)
    ip.user_ns["reviews"] = pd.DataFrame({"text": ["I love it", "I hate it"]})
    ip.user_ns["tone"] = "short"
    ran = run(ip, "%%foundry --df reviews --out summary --concurrency 2\nSummarize in a {tone} way: {text}")
    assert ran.result.error_in_exec is None, ran.everything
    df = ip.user_ns["reviews"]
    assert "summary" in df.columns and df["summary"].notna().all()
    sent = [b["messages"][-1]["content"] for b in bodies(emu, "/chat/completions")[-2:]]
    assert sorted(sent) == ["Summarize in a short way: I hate it", "Summarize in a short way: I love it"]


def test_misspelt_or_malformed_line_commands_send_nothing(ip, emu):
    from foundry_magics import emulator

    connect(ip, emu.url)
    sent = emu.stats()["requests"]
    for line, said in [
        ("histroy", "Did you mean `%foundry history`?"),
        ("conect emulator", "Did you mean `%foundry connect`?"),
        ("emulator restart", "Did you mean `%foundry emulator start`?"),
        ("emulator start --latency 0.5", "fm.emulator.start(latency=0.5)"),
        ("batches extra", "`%foundry batches` takes nothing after it"),
        ("help me write a haiku", "`%foundry help` takes nothing after it"),
        ("us gpt-4o", "Did you mean `%foundry use`?"),
    ]:
        ran = run(ip, f"%foundry {line}")
        text = ran.everything
        assert said in text and "Nothing was sent" in text, (line, text)
        assert f"%foundry -- {line}" in text and "Traceback" not in text, (line, text)
        assert emu.stats()["requests"] == sent, f"%foundry {line} sent something"
    assert not emulator.status().get("running"), "`emulator restart` / `start --latency` started the emulator"
    # `--` sends the line as it is; a prompt far from any command is sent as before
    for line, prompt in [("-- histroy", "histroy"), ("-- help me write a haiku", "help me write a haiku"),
                         ("hello there", "hello there"), ("explain the history of Rome", "explain the history of Rome"),
                         ("what is X", "what is X")]:
        ran = run(ip, f"%foundry {line}")
        assert ran.result.error_in_exec is None, ran.everything
        assert bodies(emu, "/chat/completions")[-1]["messages"][-1]["content"] == prompt
    assert emu.stats()["requests"] == sent + 5


def test_help_says_how_line_commands_and_prompts_are_told_apart(ip):
    text = run(ip, "%foundry help").everything
    assert "%foundry -- <text>" in text and "did you mean" in text and "never sent" in text
    assert "--sample N" in text and "--estimate" in text


def test_dataframe_estimate_with_a_sample(ip, emu):
    import pandas as pd

    from foundry_magics.engine.estimate import Estimate

    connect(ip, emu.url)
    ip.user_ns["reviews"] = pd.DataFrame({"text": [f"review {i}: " + "good " * (i % 17) for i in range(40)]})
    sent = emu.stats()["requests"]
    for cell, said in [("--df reviews --out s --sample 3", "--sample N goes with --estimate"),
                       ("--df reviews --estimate --sample 0", "sample must be a positive whole number"),
                       ("--df reviews --estimate --sample x", "--sample needs a whole number"),
                       ("--sample 3", "only applies in DataFrame mode")]:
        assert said in run(ip, f"%%foundry {cell}\nSummarize: {{text}}").everything, cell
    assert emu.stats()["requests"] == sent
    ran = run(ip, "%%foundry --df reviews --estimate --sample 5\nSummarize: {text}")
    assert ran.result.error_in_exec is None, ran.everything
    est = ran.value
    assert isinstance(est, Estimate) and est.sent == 5 == emu.stats()["requests"] - sent
    assert est.to_send == 35 and est.forecast.answered == 5
    assert "sent 5 requests" in ran.everything and "output tokens (forecast)" in ran.everything
    assert list(ip.user_ns["reviews"].columns) == ["text"]  # an estimate writes no column


def test_dataframe_mode_errors(ip):
    ran = run(ip, "%%foundry --df missing --out col\n{text}")
    assert "no variable named 'missing'" in ran.everything
    ip.user_ns["notdf"] = [1, 2]
    assert "not a pandas DataFrame" in run(ip, "%%foundry --df notdf --out col\n{text}").everything
    assert "needs --out COL" in run(ip, "%%foundry --df notdf\n{text}").everything
    assert "only applies in DataFrame mode" in run(ip, "%%foundry --rpm 10\nhi").everything


def test_sentinel_key_never_leaks(ip, fm_home, sentinel_key):
    from foundry_magics.emulator import Emulator

    with Emulator(api_key=sentinel_key, lifetime=120) as secure:
        captured = []
        captured.append(connect(ip, secure.url, "--auth key --key-env FOUNDRY_TEST_KEY --model gpt-4o-mini "
                                                "--save secure"))
        for code in [
            "%%foundry\nHello securely",
            "%%foundry --no-stream -o ans\nHello again",
            "%%foundry --dry-run\nWhat would be sent?",
            "%%foundry --dry-run --api responses\nAnd for responses?",
            "%%foundry --chat\nRemember me",
            "%%foundry --chat\nDo you?",
            "%%foundry -f json\nA JSON object please",
            "%%foundry\nblocked #emulator:content_filter",
            "%%foundry\nunauthorized #emulator:status=401",
            "%foundry history -n 20",
            "%foundry usage",
            "%foundry connections",
            "%foundry chat show",
            "%foundry models",
        ]:
            ran = run(ip, code)
            assert ran.result.error_in_exec is None, (code, ran.everything)
            captured.append(ran)
        # the calls really went through with the key (the emulator demands it)
        assert secure.stats()["by_status"].get("200", secure.stats()["by_status"].get(200, 0)) >= 4
        assert "***redacted***" in captured[3].everything

    for ran in captured:
        assert sentinel_key not in ran.everything
        assert sentinel_key not in repr(ran.value)
    for name, value in ip.user_ns.items():
        if not name.startswith("_") and isinstance(value, str):
            assert sentinel_key not in value
    files = [f for f in fm_home.rglob("*") if f.is_file()]
    assert any(f.name == "history.sqlite" for f in files)
    for f in files:
        assert sentinel_key.encode() not in f.read_bytes(), f
