"""Which progress display a run shows when the caller says `progress=True`.

The engine has no display of its own; a face brings one. The facade registers the
notebook's progress bar (and the Batch API job bar) here, lazily, so the core and the
DataFrame front-ends never import the notebook face:

    set_displays(run=lambda: notebook_progress_factory, batch=lambda: batch_bar_factory)
    resolve(True)            # the registered factory, or None (no display) when none is set
    resolve(False)           # None
    resolve(my_display)      # as given
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["set_displays", "resolve"]

_providers: dict[str, Callable[[], Any]] = {}


def set_displays(*, run: Callable[[], Any] | None = None, batch: Callable[[], Any] | None = None) -> None:
    """Register providers: each returns a display factory `(total_rows, label) -> display`."""
    if run is not None:
        _providers["run"] = run
    if batch is not None:
        _providers["batch"] = batch


def resolve(progress: Any, *, batch: bool = False) -> Any:
    if progress is True:
        provider = _providers.get("batch" if batch else "run")
        if provider is None:
            return False
        try:
            return provider()
        except Exception:  # noqa: BLE001 - no display rather than no run
            return False
    return progress
