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

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Connection": "connections",
    "Secret": "connections",
    "FoundryClient": "client",
    "AsyncFoundryClient": "client",
    "Stream": "client",
    "AsyncStream": "client",
    "Reply": "models",
    "Usage": "models",
    "Delta": "models",
    "connect": "session",
    "current_connection": "session",
    "picker": "widgets",
    "ConnectionPicker": "widgets",
    "last_run": "engine",
    "FoundryError": "errors",
    "ConfigurationError": "errors",
    "MissingKeyError": "errors",
    "ConnectionFailed": "errors",
    "TimeoutError": "errors",
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
}
_SUBMODULES = ("emulator", "errors")

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__", "load_ipython_extension", "unload_ipython_extension"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'foundry_magics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


def load_ipython_extension(ipython: Any) -> None:
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:  # pragma: no cover
    from . import emulator, errors
    from .client import AsyncFoundryClient, AsyncStream, FoundryClient, Stream
    from .connections import Connection, Secret
    from .errors import *  # noqa: F403
    from .models import Delta, Reply, Usage
    from .session import connect, current_connection

from . import pandas_hook  # noqa: E402 - registers df.foundry when pandas is (or gets) imported

pandas_hook.install()
