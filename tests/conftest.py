"""Shared fixtures: every test gets its own FOUNDRY_MAGICS_HOME and no Azure variables;
one emulator per session on 127.0.0.1 that stops by itself."""

from __future__ import annotations

import pytest

from foundry_magics.defaults import SERVICE_VARIABLES

AZURE_VARS = SERVICE_VARIABLES  # every variable that could point a test at a real service
SENTINEL_KEY = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"


@pytest.fixture(autouse=True)
def fm_home(tmp_path, monkeypatch):
    """A fresh home for user state, no Azure configuration, and a fresh session."""
    home = tmp_path / "fm-home"
    monkeypatch.setenv("FOUNDRY_MAGICS_HOME", str(home))
    for var in AZURE_VARS:
        monkeypatch.delenv(var, raising=False)
    from foundry_magics.connections import keys, session

    session.set_current(None)
    keys.clear()
    yield home
    session.set_current(None)
    keys.clear()


@pytest.fixture(scope="session")
def emulator_url():
    """A thread-mode emulator shared by the session's tests; it stops itself after 15 minutes."""
    from foundry_magics.emulator import Emulator

    emu = Emulator(lifetime=900)
    url = emu.start()
    yield url
    emu.stop()


@pytest.fixture
def sentinel_key(monkeypatch):
    monkeypatch.setenv("FOUNDRY_TEST_KEY", SENTINEL_KEY)
    return SENTINEL_KEY
