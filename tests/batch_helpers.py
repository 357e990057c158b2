"""Shared by the Batch API tests: an emulator on a fast batch clock with no faults, a
connection to it that puts the faults back after each test, and per-route request counts."""

from __future__ import annotations

import pytest

from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator

FAST = dict(batch_seconds=0.1, batch_fail_rate=0.0, batch_expire=0, file_pending_seconds=0.0,
            batch_refuse_embeddings=False, seed=0)
POLL = 0.02  # seconds between polls in tests (the default is Azure's 60)


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=600, **FAST)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    emu.configure(**FAST)
    emu.reset_stats()
    yield Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    emu.configure(**FAST)


def routes(emu) -> dict[str, int]:
    return {k.split(":", 1)[1]: v for k, v in emu.stats()["by_route"].items()}
