"""Ctrl-C in the middle of a packed run (pack=N): the rows of every pack that finished are kept
and cached row by row, the call raises fm.RunInterrupted saying so, and running the same call
again sends only the rest (still packed), with every row its own answer."""

from __future__ import annotations

import math
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator

pytestmark = pytest.mark.timeout(120)

LABELS = ["positive", "negative", "neutral"]
ROWS, PACK = 200, 10


def _sigint_after(emu: Emulator, requests: int) -> threading.Thread:
    """Ctrl-C (a real SIGINT to the main thread) once the emulator has served `requests`."""
    main = threading.main_thread().ident

    def fire():
        deadline = time.monotonic() + 30
        while emu.stats()["requests"] < requests and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=fire, daemon=True)
    t.start()
    return t


def _cached_rows(home: Path) -> int:
    db = sqlite3.connect(home / "cache.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    finally:
        db.close()


def test_ctrl_c_mid_packed_run_keeps_finished_rows_and_a_rerun_sends_only_the_rest(fm_home):
    moods = ["great, I love it", "terrible and broken", "arrived on a Tuesday"]
    s = pd.Series([f"Order {i}: {moods[i % 3]}" for i in range(ROWS)])
    # 2 packs in flight, 0.15 s each: the run would take ~1.5 s; Ctrl-C after a few packs
    with Emulator(latency=0.15, lifetime=110) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        call = {"connection": conn, "pack": PACK, "concurrency": 2, "progress": False}
        _sigint_after(emu, 4)
        with pytest.raises(fm.RunInterrupted) as info:
            s.foundry.classify(LABELS, **call)
        first = fm.last_run()
        assert first.interrupted and 0 < first.done < ROWS, first
        assert info.value.report is first and "rows finished and cached" in str(info.value)
        assert first.done % PACK == 0  # whole packs finished; nothing half-assigned
        assert _cached_rows(fm_home) == first.done  # the cache stays per row

        emu.reset_stats()
        emu.configure(latency=0.0)
        again = s.foundry.classify(LABELS, **call)
        second = fm.last_run()
        assert emu.stats()["requests"] == second.requests == math.ceil((ROWS - first.done) / PACK)
        assert second.cache_hits == first.done and second.done == ROWS and not second.failed
        assert _cached_rows(fm_home) == ROWS

        alone = s.foundry.classify(LABELS, connection=conn, cache=False, progress=False)  # one row per request
    assert again.equals(alone)  # every row has the answer it gets alone
