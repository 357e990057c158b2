"""The package's public surface: complete exports, and nothing heavy at import time."""

from __future__ import annotations

import json
import subprocess
import sys

import foundry_magics as fm

HEAVY = ("httpx", "httpcore", "aiohttp", "tqdm", "pandas", "numpy", "ipywidgets", "azure", "azure.identity", "sqlite3")


def test_import_loads_nothing_heavy():
    code = (
        "import sys, json, foundry_magics; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_every_public_name_resolves():
    for name in fm.__all__:
        assert getattr(fm, name) is not None, name
    assert set(dir(fm)) == set(fm.__all__)


def test_exception_tree_is_exported():
    assert issubclass(fm.AuthError, fm.FoundryError)
    assert issubclass(fm.RateLimitError, fm.HTTPStatusError)
    assert issubclass(fm.ContentFilterError, fm.BadRequestError)
    assert issubclass(fm.ConfigurationError, ValueError)
    assert fm.errors.FoundryError is fm.FoundryError


def test_unknown_attribute_is_an_attribute_error():
    try:
        fm.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
