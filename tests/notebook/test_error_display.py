"""One readable error everywhere: in IPython, a FoundryError raised by the Python API shows as
the block the magics show (cause, then fix), not a traceback; `%config FoundryMagics.tracebacks
= True` brings the traceback back; Ctrl-C in a DataFrame run shows one line saying what was kept."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.notebook import render

from magics_helpers import connect, ip, run  # noqa: F401 - ip is a fixture

pytestmark = pytest.mark.timeout(120)

SETUP = 'import pandas as pd\nimport foundry_magics as fm\ndf = pd.DataFrame({"text": ["a", "b"]})'


@pytest.fixture(scope="module")
def slow_emu():
    from foundry_magics.emulator import Emulator

    e = Emulator(latency=0.1, lifetime=300)
    e.start()
    yield e
    e.stop()


def _shown(ran) -> list[str]:
    """What IPython printed for the cell's exception (showtraceback writes to stdout)."""
    return [ln for ln in ran.stdout.splitlines() if ln.strip()]


def test_api_error_in_a_cell_is_one_block_with_cause_and_fix(ip):
    run(ip, SETUP)
    ran = run(ip, 'df.foundry.prompt("Say {nope}")')
    exc = ran.result.error_in_exec
    assert isinstance(exc, fm.ConfigurationError), ran.everything
    lines = _shown(ran)
    assert "Traceback" not in ran.stdout and ".py" not in ran.stdout, ran.stdout
    assert 2 <= len(lines) <= 4, lines
    assert lines[0].startswith("Configuration problem: ") and "nope" in lines[0]
    assert lines[-1].startswith("Fix: ")
    # the same lines the magics show for that error
    assert "\n".join(lines) == render.ErrorView(exc).plain()


def test_the_block_is_the_one_the_magics_show(ip):
    magic = run(ip, "%%foundry --df missing_frame --out o\nSay {text}")
    shown = magic.outputs[-1].data["text/plain"]  # the magic displays an ErrorView, no exception
    assert magic.result.error_in_exec is None and shown.startswith("Configuration problem: --df missing_frame")
    raised = run(ip, "from foundry_magics.errors import ConfigurationError\n"
                     "raise ConfigurationError('--df missing_frame: no variable named \\'missing_frame\\'.', "
                     "hint='Create the DataFrame first, e.g. df = pd.read_csv(...).')")
    assert "\n".join(_shown(raised)) == shown


def test_an_http_error_from_the_client_is_one_block(ip, slow_emu):
    run(ip, "import foundry_magics as fm\n"
            f"c = fm.FoundryClient(fm.Connection.from_url({slow_emu.url + '/openai/v1'!r}, auth='none', "
            "model='gpt-4o-mini'), max_retries=0)")
    ran = run(ip, 'c.chat("hi #emulator:status=404")')
    assert isinstance(ran.result.error_in_exec, fm.NotFoundError), ran.everything
    lines = _shown(ran)
    assert "Traceback" not in ran.stdout and len(lines) == 2, ran.stdout
    assert lines[0].startswith("Not found: HTTP 404") and lines[1].startswith("Fix: Check the deployment")


def test_config_tracebacks_true_shows_the_full_traceback(ip):
    run(ip, SETUP)
    ran = run(ip, "%config FoundryMagics.tracebacks = True")
    assert ran.result.error_in_exec is None and errors.show_tracebacks() is True
    full = run(ip, 'df.foundry.prompt("Say {nope}")')
    assert isinstance(full.result.error_in_exec, fm.ConfigurationError)
    assert "Traceback" in full.stdout and "operations.py" in full.stdout and len(_shown(full)) > 8, full.stdout
    # the magics too: the error is raised to IPython, not drawn as a block
    magic = run(ip, "%%foundry --df missing_frame --out o\nSay {text}")
    assert isinstance(magic.result.error_in_exec, fm.ConfigurationError)
    assert "Traceback" in magic.stdout and "magics.py" in magic.stdout
    # and back
    run(ip, "%config FoundryMagics.tracebacks = False")
    again = run(ip, 'df.foundry.prompt("Say {nope}")')
    assert "Traceback" not in again.stdout and len(_shown(again)) <= 4


def test_unloading_the_extension_restores_the_default(ip):
    run(ip, "%config FoundryMagics.tracebacks = True")
    assert errors.show_tracebacks() is True
    ip.run_line_magic("unload_ext", "foundry_magics")
    assert errors.show_tracebacks() is False
    ip.run_line_magic("load_ext", "foundry_magics")  # the %config kept in the shell's config applies again
    assert errors.show_tracebacks() is True
    run(ip, "%config FoundryMagics.tracebacks = False")


def test_run_interrupted_is_a_keyboard_interrupt_not_an_exception():
    exc = fm.RunInterrupted("Interrupted: 3 of 10 rows finished and cached; run the same call again to send "
                            "only the rest.")
    assert isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Exception)
    assert not isinstance(exc, fm.FoundryError)  # `except fm.FoundryError` does not swallow Ctrl-C
    assert exc._render_traceback_() == [str(exc)]
    try:
        errors.show_tracebacks(True)
        assert not hasattr(exc, "_render_traceback_")
        assert not hasattr(fm.ConfigurationError("x", hint="y"), "_render_traceback_")
    finally:
        errors.show_tracebacks(False)


def test_the_kept_line_says_what_was_kept():
    from foundry_magics.engine import BatchResult, RunReport

    r = RunReport(rows=5000, done=1234, interrupted=True)
    assert r.kept() == ("Interrupted: 1,234 of 5,000 rows finished and cached; "
                        "run the same call again to send only the rest.")
    assert "not cached" in RunReport(rows=10, done=3, cache=False).kept()
    assert "nothing was kept" in RunReport(rows=10, done=0).kept()
    with pytest.raises(KeyboardInterrupt) as info:
        BatchResult([], {}, r).raise_if_stopped()
    assert isinstance(info.value, fm.RunInterrupted) and info.value.report is r and str(info.value) == r.kept()


def _sigint_after(emu, requests: int) -> threading.Thread:
    """Ctrl-C (a real SIGINT to the main thread) once the emulator has served `requests`."""
    main = threading.main_thread().ident

    def fire():
        deadline = time.monotonic() + 30
        while emu.stats()["requests"] < requests and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


ROWS = 40


@pytest.mark.parametrize("cell", [
    "%%foundry --df frame --out o --concurrency 2\nSay {t}",
    's = frame.foundry.prompt("Say {t}", concurrency=2)',
], ids=["magic", "python"])
def test_ctrl_c_in_a_dataframe_run_shows_one_line(ip, slow_emu, cell):
    connect(ip, slow_emu.url)
    run(ip, f'import pandas as pd\nframe = pd.DataFrame({{"t": [f"row {{i}}" for i in range({ROWS})]}})')
    slow_emu.reset_stats()
    _sigint_after(slow_emu, 6).join(0)
    ran = run(ip, cell)
    exc = ran.result.error_in_exec
    assert isinstance(exc, fm.RunInterrupted) and isinstance(exc, KeyboardInterrupt), ran.everything
    lines = _shown(ran)
    assert len(lines) == 1 and "Traceback" not in ran.everything, ran.stdout
    report = fm.last_run()
    assert report.interrupted and 0 < report.done < ROWS
    assert lines[0] == (f"Interrupted: {report.done:,} of {ROWS} rows finished and cached; "
                        "run the same call again to send only the rest.")
    if cell.startswith("%%"):  # the magic wrote what finished into the frame
        assert ip.user_ns["frame"]["o"].notna().sum() == report.done
    # the shell is usable afterwards, and the same call sends only the rest
    slow_emu.reset_stats()
    slow_emu.configure(latency=0.0)
    try:
        again = run(ip, cell)
        assert again.result.error_in_exec is None, again.everything
        assert slow_emu.stats()["requests"] == ROWS - report.done
    finally:
        slow_emu.configure(latency=0.1)
