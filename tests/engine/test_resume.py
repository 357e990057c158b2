"""Nothing is lost: a killed process resumes where it stopped; faults do not drop or mix rows."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from foundry_magics import engine
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.frames import ops as frames
from foundry_magics.rest.client import FoundryClient

pytestmark = pytest.mark.timeout(180)

ROWS = 240

JOB = textwrap.dedent("""
    import json, sys
    import pandas as pd
    import foundry_magics as fm
    from foundry_magics.frames import ops as frames
    from foundry_magics.connections import Connection
    url, out = sys.argv[1], sys.argv[2]
    conn = Connection.from_url(url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    df = pd.DataFrame({"text": [f"Review number {i}: it works" for i in range(%d)]})
    s = df.foundry.prompt("Summarize: {text}", connection=conn, concurrency=4, progress=False)
    r = fm.last_run()
    json.dump({"values": s.tolist(), "requests": r.requests, "hits": r.cache_hits}, open(out, "w"))
""" % ROWS)


def _cached(home) -> int:
    path = home / "cache.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute("SELECT count(*) FROM replies").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_in_a_new_process(fm_home, tmp_path):
    with Emulator(latency=0.2, process=True, lifetime=150) as emu:
        script = tmp_path / "job.py"
        script.write_text(JOB)
        env = dict(os.environ, FOUNDRY_MAGICS_HOME=str(fm_home))
        first = subprocess.Popen([sys.executable, str(script), emu.url, str(tmp_path / "first.json")], env=env)
        deadline = time.monotonic() + 60
        while _cached(fm_home) < 40 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)  # no cleanup, no flush: like a crashed kernel
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        kept = _cached(fm_home)
        assert 40 <= kept < ROWS

        emu.reset_stats()
        second = subprocess.run([sys.executable, str(script), emu.url, str(tmp_path / "second.json")], env=env,
                                timeout=120)
        assert second.returncode == 0
        sent = emu.stats()["requests"]
        result = json.loads((tmp_path / "second.json").read_text())
        assert sent == ROWS - kept  # only what was missing
        assert result["requests"] == sent and result["hits"] == kept

        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        with FoundryClient(conn) as c:
            sample = [0, kept - 1, kept, ROWS - 1]
            ref = [c.chat(f"Summarize: Review number {i}: it works").text for i in sample]
        assert [result["values"][i] for i in sample] == ref


@pytest.mark.slow
def test_faults_lose_no_row_and_mix_none(fm_home):
    df = pd.DataFrame({"text": [f"Customer {i} says the blender is {'great' if i % 3 else 'noisy'}"
                                for i in range(300)]}, index=[f"id-{i}" for i in range(300)])
    with Emulator(lifetime=120) as clean:
        ref_conn = Connection.from_url(clean.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        with FoundryClient(ref_conn) as c:
            expected = [c.chat(f"Summarize: {t}").text for t in df["text"]]
    with Emulator(fail_rate=0.2, cut_rate=0.1, seed=7, lifetime=120) as flaky:
        conn = Connection.from_url(flaky.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        s = frames.prompt(df, "Summarize: {text}", connection=conn, concurrency=16, progress=False, cache=False)
        stats = flaky.stats()
    r = engine.last_run()
    assert r.failed == 0 and r.done == 300 and s.notna().all()
    assert list(s) == expected  # each row its own answer
    assert list(s.index) == list(df.index)
    assert r.retries > 30 and stats["faults"].get("fail", 0) > 0
    assert r.requests == stats["requests"]
