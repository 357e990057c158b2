"""The engine's own event loop, in one background thread (Jupyter already runs a loop on
the main thread, so async work never uses asyncio.run there)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from foundry_magics.errors import ConfigurationError

__all__ = ["submit", "stop_soon"]


class _LoopThread:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None or self.thread is None or not self.thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                t = threading.Thread(target=run, name="foundry-engine", daemon=True)
                t.start()
                ready.wait(10)
                self.loop, self.thread = loop, t
            return self.loop


_engine_loop = _LoopThread()


def submit(coro: Any) -> concurrent.futures.Future:
    """Run a coroutine on the engine's loop; returns a concurrent Future."""
    if threading.current_thread() is _engine_loop.thread:
        coro.close()
        raise ConfigurationError("A DataFrame run cannot be started from inside another one's callback.",
                                 hint="Call it from your own code (a notebook cell), not from the engine's thread.")
    return asyncio.run_coroutine_threadsafe(coro, _engine_loop.get())


def stop_soon(callback: Any) -> None:
    """Run `callback` on the engine's loop as soon as it can (from any thread)."""
    _engine_loop.get().call_soon_threadsafe(callback)
