"""Progress of a DataFrame run: an ipywidgets bar in a notebook, a text line elsewhere.

The engine calls `update(Snapshot)` from the caller's thread while it waits (a few times a
second) and `close(RunReport)` at the end; a run shorter than half a second shows nothing.
Importing this module registers `make` with the engine (core never imports faces).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from foundry_magics.engine import runner as engine

__all__ = ["make", "TextProgress", "WidgetProgress", "format_line"]


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_line(label: str, snap: engine.Snapshot) -> str:
    todo = snap.rows
    finished = snap.done + snap.failed
    pct = 100.0 * finished / todo if todo else 100.0
    bits = [f"{label}: {finished:,}/{todo:,} rows ({pct:.0f}%)", f"{snap.rate:,.0f} rows/s"]
    if not snap.finished:
        bits.append(f"ETA {_clock(snap.eta)}")
    else:
        bits.append(f"{_clock(snap.elapsed)} elapsed")
    if snap.failed:
        bits.append(f"{snap.failed:,} failed")
    if snap.cached:
        bits.append(f"{snap.cached:,} cached")
    if snap.rate_limited:
        bits.append(f"{snap.rate_limited:,}×429, concurrency {snap.concurrency}")
    return " · ".join(bits)


class TextProgress:
    """One line on stderr: rewritten in place on a terminal, else printed every few seconds."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.every = 0.2 if self.tty else 5.0
        self.last = 0.0
        self.width = 0
        self.closed = False

    def update(self, snap: engine.Snapshot) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        self._write(format_line(self.label, snap))

    def _write(self, line: str) -> None:
        try:
            if self.tty:
                pad = max(0, self.width - len(line))
                self.stream.write("\r" + line + " " * pad)
                self.width = len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (ValueError, OSError):  # a closed stream must not break the run
            pass

    def close(self, report: engine.RunReport) -> None:
        if self.closed:
            return
        self.closed = True
        line = f"{self.label}: " + report.summary()
        if self.tty:
            pad = max(0, self.width - len(line))
            try:
                self.stream.write("\r" + line + " " * pad + "\n")
                self.stream.flush()
            except (ValueError, OSError):
                pass
        else:
            self._write(line)


class WidgetProgress:
    """An ipywidgets bar with a label (rows, rate, ETA, failures, cache hits)."""

    def __init__(self, total: int, label: str) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.label = label
        self.bar = w.IntProgress(value=0, min=0, max=max(1, total), description=label[:12],
                                 bar_style="info", layout=w.Layout(width="40%"))
        self.text = w.HTML(value="starting…")
        self.box = w.HBox([self.bar, self.text])
        self.last = 0.0
        display(self.box)

    def update(self, snap: engine.Snapshot) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and not snap.finished:
            return
        self.last = now
        self.bar.value = min(self.bar.max, snap.done + snap.failed)
        self.text.value = _html(format_line(self.label, snap).split(": ", 1)[-1])

    def close(self, report: engine.RunReport) -> None:
        self.bar.value = min(self.bar.max, report.done + report.failed)
        if report.interrupted or report.stopped:
            self.bar.bar_style = "warning"
        elif report.failed:
            self.bar.bar_style = "danger" if not report.done else "warning"
        else:
            self.bar.bar_style = "success"
        self.text.value = _html(report.summary())


def _html(text: str) -> str:
    import html

    return f"<span style='font-family:monospace'>{html.escape(text)}</span>"


def _in_widget_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    if ip is None or getattr(ip, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def make(total: int, label: str) -> Any:
    """The display for this environment: a widget in a notebook kernel, else text on stderr."""
    if _in_widget_kernel():
        try:
            return WidgetProgress(total, label)
        except Exception:  # a broken widget stack falls back to text
            pass
    return TextProgress(total, label)


engine.set_progress_factory(make)
