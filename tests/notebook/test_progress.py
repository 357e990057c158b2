"""The DataFrame progress display (tqdm): text bars on a log stream and a terminal, the notebook
widget without a browser, odd snapshots, the end state of failed runs, and a light import."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest

from foundry_magics.engine.report import RunReport, Snapshot
from foundry_magics.notebook import progress
from foundry_magics.notebook.progress import TqdmProgress, format_line, make

pytestmark = pytest.mark.timeout(60)


def snap(rows=1000, done=0, failed=0, cached=0, elapsed=1.0, rate=100.0, eta=5.0, rate_limited=0,
         concurrency=8, finished=False):
    return Snapshot(rows=rows, done=done, failed=failed, cached=cached, elapsed=elapsed, rate=rate, eta=eta,
                    rate_limited=rate_limited, retries=0, concurrency=concurrency, finished=finished)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def lines(text):
    return [line for line in text.split("\n") if line]


# ---------------------------------------------------------------------- text


def test_text_bar_counts_status_and_final_lines():
    buf = io.StringIO()
    p = TqdmProgress(1000, "prompt", file=buf)
    p.update(snap(done=250, failed=5, cached=100, elapsed=2.0, rate=125.0, eta=6.0, rate_limited=3, concurrency=16))
    p.close(RunReport(rows=1000, done=995, failed=5, requests=900, cache_hits=100, seconds=8.0))
    out = buf.getvalue()
    first = out.split("\r")[1]
    assert first.startswith("prompt:  26%|") and first.endswith(
        "| 255/1,000 rows · 125 rows/s · ETA 0:06 · 5 failed · 100 cached · 3×429, concurrency 16")
    assert "1,000/1,000 rows · done" in out
    assert lines(out)[-1] == "prompt: 995/1,000 rows · 5 failed · 900 requests · 100 cache hits · 8.0 s (124 rows/s)"


def test_text_bar_on_a_log_stream_redraws_at_most_every_few_seconds():
    buf = io.StringIO()
    p = TqdmProgress(500, "embed", file=buf)
    for i in range(1, 50):
        p.update(snap(rows=500, done=i))
    assert buf.getvalue().count("\r") == 1  # the first update drew it; the next ones wait LOG_EVERY
    assert p.bar.mininterval == progress.LOG_EVERY


def test_text_bar_on_a_terminal_is_redrawn_in_place(monkeypatch):
    term = Terminal()
    p = TqdmProgress(100, "prompt", file=term)
    assert p.bar is None
    p.update(snap(rows=100, done=20))
    assert p.bar.mininterval == progress.REFRESH_EVERY and "\n" not in term.getvalue()


def test_interrupted_and_stopped_runs_say_so():
    buf = io.StringIO()
    p = TqdmProgress(60, "prompt", file=buf)
    p.update(snap(rows=60, done=22, failed=2, elapsed=1.0, rate=24.0, eta=1.5))
    p.close(RunReport(rows=60, done=22, failed=2, requests=24, seconds=1.0, interrupted=True))
    out = buf.getvalue()
    assert "24/60 rows · interrupted" in out and lines(out)[-1].endswith("INTERRUPTED")
    buf = io.StringIO()
    q = TqdmProgress(10, "prompt", file=buf)
    q.update(snap(rows=10, failed=3))
    q.close(RunReport(rows=10, failed=3, requests=3, seconds=1.0, stopped="AuthError: wrong key"))
    assert "3/10 rows · stopped" in buf.getvalue() and "stopped: AuthError: wrong key" in buf.getvalue()


def test_empty_and_odd_snapshots_do_not_break_the_display():
    buf = io.StringIO()
    p = TqdmProgress(0, "prompt", file=buf)
    p.update(snap(rows=0, rate=0.0, eta=None))
    p.close(RunReport(rows=0, seconds=0.6))
    assert "0/0 rows · 0 rows/s · ETA ?" in buf.getvalue() and buf.getvalue().endswith("\n")
    q = TqdmProgress(10, "prompt", file=io.StringIO())
    q.update(None)  # type: ignore[arg-type] - a broken snapshot: the display goes quiet, never raises
    q.close(RunReport(rows=10, seconds=1.0))


def test_close_without_any_update_still_draws_the_end():
    buf = io.StringIO()
    p = TqdmProgress(40, "prompt", file=buf)
    p.close(RunReport(rows=40, done=38, failed=2, requests=40, seconds=2.0))
    assert "40/40 rows · done" in buf.getvalue() and lines(buf.getvalue())[-1].startswith("prompt: 38/40 rows")


def test_total_follows_the_snapshot():
    buf = io.StringIO()
    p = TqdmProgress(10, "prompt", file=buf)
    p.update(snap(rows=20, done=5))
    p.update(snap(rows=20, done=20))
    p.close(RunReport(rows=20, done=20, seconds=1.0))
    assert p.bar.total == 20 and "5/20 rows" in buf.getvalue() and "20/20 rows · done" in buf.getvalue()


def test_format_line_is_kept():
    s = snap(done=250, failed=5, cached=100, elapsed=2.0, rate=125.0, eta=6.0, rate_limited=3, concurrency=16)
    assert format_line("prompt", s) == ("prompt: 255/1,000 rows (26%) · 125 rows/s · ETA 0:06 · 5 failed · "
                                        "100 cached · 3×429, concurrency 16")


def test_make_outside_a_kernel_draws_text_on_stderr(capsys):
    p = make(60, "prompt")
    p.update(snap(rows=60, done=30, cached=10))
    p.close(RunReport(rows=60, done=60, requests=50, seconds=1.0))
    captured = capsys.readouterr()
    assert p.widget is None and captured.out == ""
    assert "prompt:  50%|" in captured.err and "30/60 rows" in captured.err and "60/60 rows" in captured.err


def test_dataframe_run_with_progress_make(capsys):
    pd = pytest.importorskip("pandas")
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    with Emulator(latency=0.05, lifetime=60) as e:
        c = Connection.from_url(e.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        df = pd.DataFrame({"t": [f"row {i}" for i in range(60)]})
        df.foundry.prompt("Say {t}", connection=c, concurrency=2, progress=make)  # ~1.5 s
    err = capsys.readouterr().err
    assert "prompt:" in err and "60/60 rows" in err and err.endswith("\n")


# ---------------------------------------------------------------------- notebook widget


@pytest.fixture
def widget_bar(monkeypatch):
    """tqdm.auto as it is in a kernel with ipywidgets: the notebook class (no browser needed)."""
    pytest.importorskip("ipywidgets")
    import tqdm.auto
    import tqdm.notebook

    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.notebook.tqdm)
    return tqdm.notebook.tqdm


def test_widget_bar_in_a_kernel(widget_bar, capsys):
    p = make(200, "prompt")
    p.update(snap(rows=200, done=40, failed=2, cached=7, rate_limited=4, concurrency=6))
    box = p.widget
    assert box is not None and isinstance(p.bar, widget_bar)
    label, bar, text = box.children
    assert bar.max == 200 and bar.value == 42
    assert label.value.replace("\u2007", " ") == "prompt:  21%"
    assert "42/200 rows" in text.value.replace("\u2007", " ")
    assert "2 failed · 7 cached · 4×429, concurrency 6" in text.value.replace("\u2007", " ")
    p.close(RunReport(rows=200, done=200, requests=150, seconds=4.0))
    assert bar.bar_style == "success" and bar.value == 200
    assert text.value.startswith("200/200 rows · 150 requests")
    assert "prompt:" not in capsys.readouterr().err  # no text bar besides the widget


@pytest.mark.parametrize("report, style", [
    (RunReport(rows=100, done=40, requests=40, seconds=1.0, interrupted=True), "danger"),
    (RunReport(rows=100, done=40, failed=1, requests=41, seconds=1.0, stopped="QuotaError: blocked"), "danger"),
    (RunReport(rows=100, failed=100, requests=100, seconds=1.0), "danger"),
    (RunReport(rows=100, done=97, failed=3, requests=100, seconds=1.0), "warning"),
    (RunReport(rows=100, done=100, requests=100, seconds=1.0), "success"),
])
def test_widget_bar_end_state_shows_the_outcome(widget_bar, report, style):
    p = make(100, "prompt")
    p.update(snap(rows=100, done=report.done, failed=report.failed))
    p.close(report)
    _label, bar, text = p.widget.children
    assert bar.bar_style == style
    assert text.value.replace("&#x27;", "'") == report.summary()


def test_widget_bar_with_no_rows(widget_bar):
    p = make(0, "embed")
    p.update(snap(rows=0, done=0, rate=0.0, eta=None))
    p.close(RunReport(rows=0, seconds=0.6))
    assert p.widget is not None and p.widget.children[1].bar_style == "success"


# ---------------------------------------------------------------------- import


def test_import_is_light_and_registers_nothing():
    code = textwrap.dedent("""
        import sys
        import foundry_magics.notebook.progress as p
        heavy = [m for m in ("tqdm", "tqdm.auto", "IPython", "ipywidgets", "foundry_magics.engine.runner")
                 if m in sys.modules]
        print(heavy, callable(p.make), hasattr(p, "engine"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "True", "False"]
