"""foundry-magics: Microsoft Foundry as a first-class citizen of Jupyter.

    %load_ext foundry_magics
    import foundry_magics as fm

Public names are resolved lazily (PEP 562) so that importing the package, and so
`%load_ext foundry_magics`, stays fast: httpx, pandas, ipywidgets and azure-identity load
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from foundry_magics.defaults import __version__

# public name -> module that defines it
_EXPORTS = {
    "Connection": "connections.connection",
    "Secret": "connections.connection",
    "FoundryClient": "rest.client",
    "AsyncFoundryClient": "rest.client",
    "Stream": "rest.client",
    "AsyncStream": "rest.client",
    "Reply": "rest.models",
    "Usage": "rest.models",
    "Delta": "rest.models",
    "connect": "connections.session",
    "current_connection": "connections.session",
    "picker": "notebook.widgets",
    "ConnectionPicker": "notebook.widgets",
    "last_run": "engine.report",
    "agents": "notebook.agents",
    "BatchJob": "batch_api.jobs",
    "BatchFailedError": "batch_api.failures",
    "batch_jobs": "frames.pandas",
    "compare": "notebook.compare",
    "Comparison": "notebook.compare",
    "Estimate": "engine.estimate",
    "Evaluation": "frames.evaluate",
    "set_prices": "store.prices",
    "usage": "notebook.prompting",
    "FoundryError": "errors",
    "ConfigurationError": "errors",
    "MissingKeyError": "errors",
    "ConnectionFailed": "errors",
    "TimeoutError": "errors",
    "FoundryTimeoutError": "errors",
    "StreamError": "errors",
    "ResponseError": "errors",
    "HTTPStatusError": "errors",
    "BadRequestError": "errors",
    "AuthError": "errors",
    "NotFoundError": "errors",
    "RateLimitError": "errors",
    "ContentFilterError": "errors",
    "ContextLengthError": "errors",
    "ServerError": "errors",
    "RunInterrupted": "errors",
}
_SUBMODULES = ("emulator", "errors", "spark")
_SUBMODULE_PATHS = {"spark": "frames.spark"}  # public name -> module, where they differ

# Spelled out (not computed) so that editors, type checkers and linters read it: the names of _EXPORTS and
# _SUBMODULES plus the three below (tests/package/test_exports.py checks).
__all__ = [
    "AsyncFoundryClient",
    "AsyncStream",
    "AuthError",
    "BadRequestError",
    "BatchFailedError",
    "BatchJob",
    "Comparison",
    "ConfigurationError",
    "Connection",
    "ConnectionFailed",
    "ConnectionPicker",
    "ContentFilterError",
    "ContextLengthError",
    "Delta",
    "Estimate",
    "Evaluation",
    "FoundryClient",
    "FoundryError",
    "FoundryTimeoutError",
    "HTTPStatusError",
    "MissingKeyError",
    "NotFoundError",
    "RateLimitError",
    "Reply",
    "ResponseError",
    "RunInterrupted",
    "Secret",
    "ServerError",
    "Stream",
    "StreamError",
    "TimeoutError",
    "Usage",
    "__version__",
    "agents",
    "batch_jobs",
    "compare",
    "connect",
    "current_connection",
    "emulator",
    "errors",
    "last_run",
    "load_ipython_extension",
    "picker",
    "set_prices",
    "spark",
    "unload_ipython_extension",
    "usage",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{_SUBMODULE_PATHS.get(name, name)}", __name__)
    raise AttributeError(f"module 'foundry_magics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    from foundry_magics.notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from foundry_magics.notebook.magics import unload_ipython_extension as unload

    unload(ipython)


# What editors and type checkers see: the same names as _EXPORTS and _SUBMODULES, from the same
# modules (tests/package/test_exports.py keeps the three in step).
if TYPE_CHECKING:  # pragma: no cover
    from foundry_magics import emulator, errors
    from foundry_magics.batch_api.failures import BatchFailedError
    from foundry_magics.batch_api.jobs import BatchJob
    from foundry_magics.connections.connection import Connection, Secret
    from foundry_magics.connections.session import connect, current_connection
    from foundry_magics.engine.estimate import Estimate
    from foundry_magics.engine.report import last_run
    from foundry_magics.errors import (
        AuthError,
        BadRequestError,
        ConfigurationError,
        ConnectionFailed,
        ContentFilterError,
        ContextLengthError,
        FoundryError,
        FoundryTimeoutError,
        HTTPStatusError,
        MissingKeyError,
        NotFoundError,
        RateLimitError,
        ResponseError,
        RunInterrupted,
        ServerError,
        StreamError,
        TimeoutError,
    )
    from foundry_magics.frames import spark
    from foundry_magics.frames.evaluate import Evaluation
    from foundry_magics.frames.pandas import batch_jobs
    from foundry_magics.notebook.agents import agents
    from foundry_magics.notebook.compare import Comparison, compare
    from foundry_magics.notebook.prompting import usage
    from foundry_magics.notebook.widgets import ConnectionPicker, picker
    from foundry_magics.rest.client import AsyncFoundryClient, AsyncStream, FoundryClient, Stream
    from foundry_magics.rest.models import Delta, Reply, Usage
    from foundry_magics.store.prices import set_prices


def _emulator_fallback() -> Any:
    from foundry_magics.emulator.connection import emulator_connection

    return emulator_connection()


def _run_display() -> Any:
    from foundry_magics.notebook.progress import make

    return make


def _batch_display() -> Any:
    from foundry_magics.notebook.render import batch_progress

    return batch_progress


def _wire() -> None:
    """The facade is where the faces meet the core: old import paths, the emulator as the
    fallback connection, the notebook's progress bars for runs that ask for progress, and
    df.foundry once pandas is (or gets) imported. Each step is cheap: nothing heavy is
    imported here."""
    from foundry_magics import _compat
    from foundry_magics.connections.fallback import set_fallback
    from foundry_magics.frames import hook
    from foundry_magics.ops.display import set_displays

    _compat.install()
    set_fallback(_emulator_fallback)
    set_displays(run=_run_display, batch=_batch_display)
    hook.install()


_wire()
