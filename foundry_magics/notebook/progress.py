"""Progress of a DataFrame run, drawn by tqdm: a widget bar in a notebook kernel with
ipywidgets, a text bar elsewhere (`tqdm.auto` decides).

The faces pass `progress=make` to the engine (importing this module registers nothing and
imports neither tqdm nor IPython/ipywidgets: `make` does, at the first display). The engine
creates the display once a run has lasted half a second, calls `update(Snapshot)` from the
caller's thread a few times a second and `close(RunReport)` once at the end.

tqdm draws the bar and the percentage; the words after it are the engine's own numbers
(rows, rate, ETA, failures, cache hits, 429s), so the bar says what the run report says:

    prompt:  40%|████      | 24/60 rows · 24 rows/s · ETA 0:01 · 2 failed · 5 cached

At the end a notebook bar turns green, orange (some rows failed) or red (interrupted,
stopped, or nothing succeeded) and shows the report's summary; a text bar is followed by the
summary on a line of its own.
"""

from __future__ import annotations

import html
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # a display only reads these fields
    from foundry_magics.engine.report import RunReport, Snapshot

__all__ = ["make", "TqdmProgress", "format_line", "BAR_FORMAT"]

log = logging.getLogger("foundry_magics.progress")

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {status}"
REFRESH_EVERY = 0.2  # seconds between redraws on a terminal or in a notebook
LOG_EVERY = 5.0  # seconds between redraws on a stream that is not a terminal (a log, CI)


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _status(snap: Snapshot) -> str:
    finished = snap.done + snap.failed
    bits = [f"{finished:,}/{snap.rows:,} rows", f"{snap.rate:,.0f} rows/s"]
    bits.append(f"{_clock(snap.elapsed)} elapsed" if snap.finished else f"ETA {_clock(snap.eta)}")
    if snap.failed:
        bits.append(f"{snap.failed:,} failed")
    if snap.cached:
        bits.append(f"{snap.cached:,} cached")
    if snap.rate_limited:
        bits.append(f"{snap.rate_limited:,}×429, concurrency {snap.concurrency}")
    return " · ".join(bits)


def format_line(label: str, snap: Snapshot) -> str:
    """The run in one line: `prompt: 255/1,000 rows (26%) · 125 rows/s · ETA 0:06 · 5 failed · …`."""
    finished = snap.done + snap.failed
    pct = 100.0 * finished / snap.rows if snap.rows else 100.0
    first, _, rest = _status(snap).partition(" · ")
    return f"{label}: {first} ({pct:.0f}%) · {rest}"


def _outcome(report: RunReport) -> str:
    """The notebook bar's last style: success, warning (some rows failed) or danger."""
    if report.interrupted or report.stopped or (report.failed and not report.done):
        return "danger"
    return "warning" if report.failed else "success"


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class TqdmProgress:
    """A run's display (`update(Snapshot)`, `close(RunReport)`) drawn by one tqdm bar.

    `tqdm_class`: by default tqdm.auto's, or the text bar when `file` is given. A display
    never raises into the run: a failure is logged (debug) and the display goes quiet. The bar
    is drawn at the first update, so its first line already shows the rows done."""

    def __init__(self, total: int, label: str, *, file: TextIO | None = None, tqdm_class: Any = None) -> None:
        self.total = max(0, int(total))
        self.label = label
        self.file = file
        self.stream = file if file is not None else sys.stderr
        self.tqdm_class = tqdm_class
        self.bar: Any = None
        self.closed = False

    def _open(self, snap: Snapshot) -> Any:
        cls = self.tqdm_class or (_text_class() if self.file is not None else _auto_class())
        in_place = _is_tty(self.stream) or type(self.stream).__module__.startswith("ipykernel")  # '\r' works there
        self.bar = _with_status(cls)(total=snap.rows or self.total, initial=snap.done + snap.failed, desc=self.label,
                                     unit="rows", bar_format=BAR_FORMAT, status=_status(snap), leave=True,
                                     file=self.file, miniters=0, mininterval=REFRESH_EVERY if in_place else LOG_EVERY,
                                     dynamic_ncols=_is_tty(self.stream))
        return self.bar

    @property
    def widget(self) -> Any:
        """The notebook bar's ipywidgets container (None for a text bar)."""
        return getattr(self.bar, "container", None)

    def update(self, snap: Snapshot) -> None:
        if self.closed:
            return
        try:
            if self.bar is None:
                self._open(snap)
                return
            bar = self.bar
            if snap.rows and snap.rows != bar.total:
                bar.total = snap.rows
                if self.widget is not None:
                    self.widget.children[1].max = snap.rows
            bar.status = _status(snap)
            bar.update(snap.done + snap.failed - bar.n)  # redraws at most every mininterval
        except Exception:  # noqa: BLE001 - a display must never break a run
            log.debug("progress display failed", exc_info=True)
            self.closed = True

    def close(self, report: RunReport) -> None:
        if self.closed:
            return
        try:
            bar = self.bar
            if bar is None:
                from foundry_magics.engine.report import Snapshot

                bar = self._open(Snapshot(rows=report.rows or self.total, done=report.done, failed=report.failed,
                                          cached=report.cache_hits, elapsed=report.seconds, rate=report.rows_per_s,
                                          eta=0.0, rate_limited=report.rate_limited, retries=report.retries,
                                          concurrency=report.concurrency, finished=True))
            self.closed = True
            bar.n = report.done + report.failed
            status = "interrupted" if report.interrupted else "stopped" if report.stopped else "done"
            bar.status = f"{bar.n:,}/{report.rows:,} rows · {status}"
            bar.refresh()
            box = self.widget
            bar.close()
            if box is not None:
                box.children[1].bar_style = _outcome(report)
                box.children[2].value = html.escape(report.summary())
            else:
                self.stream.write(f"{self.label}: {report.summary()}\n")
                self.stream.flush()
        except Exception:  # noqa: BLE001
            log.debug("progress display failed to close", exc_info=True)


_classes: dict[Any, Any] = {}


def _with_status(base: Any) -> Any:
    """`base` (a tqdm class) with a `{status}` field for its bar_format: the engine's numbers
    (tqdm's documented way to add a field is a format_dict that has it)."""
    if base not in _classes:
        class Bar(base):
            def __init__(self, *args: Any, status: str = "", **kwargs: Any) -> None:
                self.status = status  # before tqdm's constructor draws the first bar
                super().__init__(*args, **kwargs)

            @property
            def format_dict(self) -> dict[str, Any]:
                return {**super().format_dict, "status": self.status}

        _classes[base] = Bar
    return _classes[base]


def _auto_class() -> Any:
    """tqdm.auto's bar; in a kernel without ipywidgets tqdm warns (IProgress not found) and
    draws text: the text, without the warning."""
    import warnings

    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm

    return tqdm


def _text_class() -> Any:
    from tqdm import tqdm

    return tqdm


def make(total_rows: int, label: str) -> TqdmProgress:
    """The display for this environment (pass it as `progress=make`)."""
    return TqdmProgress(total_rows, label)
