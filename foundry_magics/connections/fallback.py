"""What "no connection configured" falls back to: wired in by the faces, not by the core.

The core only knows that a fallback may exist. `import foundry_magics` (the facade) installs
the built-in emulator as the fallback; a program that imports the core alone and sets none
gets a readable "no connection" error instead.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["set_fallback", "fallback"]

_provider: Callable[[], Any] | None = None


def set_fallback(provider: Callable[[], Any] | None) -> None:
    """`provider()` returns the Connection to use when nothing is configured (None: no fallback)."""
    global _provider
    _provider = provider


def fallback() -> Callable[[], Any] | None:
    return _provider
