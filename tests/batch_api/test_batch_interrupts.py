"""Ctrl-C in IPython, while a job is waited for or submitted: one line saying the job keeps
running and how to pick it up, no traceback; and a job re-attached on a standalone emulator
polls at the emulator's fast clock from the start."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.batch_api import BatchInterrupted, job_rows, jobs as jobs_module
from foundry_magics.connections import Connection
from foundry_magics.rest.batches import BatchClient

from batch_helpers import POLL, conn, emu, routes  # noqa: F401 - emu and conn are fixtures
from magics_helpers import ip, run  # noqa: F401 - ip is a fixture

pytestmark = pytest.mark.timeout(60)


def one_line(ran) -> str:
    shown = ran.everything.strip()
    assert "Traceback" not in shown and "KeyboardInterrupt" not in shown, shown
    assert len(shown.splitlines()) == 1, shown
    return shown


def test_ctrl_c_while_waiting_is_one_line_in_ipython(ip, conn, emu):
    emu.configure(batch_seconds=0.5)

    def interrupt(seconds):
        raise KeyboardInterrupt

    ip.user_ns.update(s=pd.Series([f"parcel {i}" for i in range(6)]), conn=conn)
    with pytest.MonkeyPatch.context() as mp:  # (not `monkeypatch`: its undo() would drop FOUNDRY_MAGICS_HOME too)
        mp.setattr(jobs_module, "_sleep", interrupt)
        ran = run(ip, "out = s.foundry.prompt('Summarize: {}', batch=True, connection=conn, progress=False)")
    assert isinstance(ran.result.error_in_exec, BatchInterrupted)
    line = one_line(ran)
    job_id = job_rows()[0]["id"]
    assert line.startswith("Stopped waiting for batch job " + job_id) and "keeps running" in line
    assert "run the same call again" in line and "fm.batch_jobs()" in line
    emu.configure(batch_seconds=0.1)
    again = run(ip, "out = s.foundry.prompt('Summarize: {}', batch=True, connection=conn, poll_interval=0.02, "
                    "progress=False)")
    assert again.result.error_in_exec is None and ip.user_ns["out"].notna().all()
    assert fm.last_run().requests == 0  # picked up: nothing submitted again


def test_ctrl_c_while_submitting_is_one_line_in_ipython_and_the_rerun_picks_it_up(ip, conn, emu):
    ip.user_ns.update(s=pd.Series([f"crate {i}" for i in range(5)]), conn=conn)
    cell = "out = s.foundry.prompt('Summarize: {}', batch=True, connection=conn, poll_interval=0.02, progress=False)"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BatchClient, "create", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        ran = run(ip, cell)
    line = one_line(ran)
    row = job_rows()[0]
    assert line.startswith("Interrupted while submitting: 5 requests of batch job " + row["id"])
    assert "run the same call again" in line and row["status"] == "interrupted"
    uploads = routes(emu).get("files", 0)
    again = run(ip, cell)
    assert again.result.error_in_exec is None and ip.user_ns["out"].notna().all()
    assert routes(emu).get("files", 0) == uploads and job_rows()[0]["status"] == "completed"


def test_reattaching_on_a_standalone_emulator_polls_at_its_clock_from_the_start(emu):
    emu.configure(batch_seconds=1.0)
    standalone = Connection.from_url(emu.url + "/openai/v1", auth="none", model="gpt-4o-mini")
    assert not standalone.is_emulator  # as `%foundry connect http://127.0.0.1:PORT/openai/v1` makes it
    s = pd.Series([f"box {i}" for i in range(4)])
    job = s.foundry.prompt("Summarize: {}", batch=True, wait=False, connection=standalone)
    t0 = time.monotonic()
    picked = fm.BatchJob.attach(job.id, connection=standalone).wait()  # a new client: it knows nothing yet
    assert picked.done and time.monotonic() - t0 < 10  # not Azure's 60 s between polls
    emu.configure(batch_seconds=1.0)
    s2 = pd.Series([f"bag {i}" for i in range(4)])
    s2.foundry.prompt("Summarize: {}", batch=True, wait=False, connection=standalone)
    t0 = time.monotonic()
    out = s2.foundry.prompt("Summarize: {}", batch=True, connection=standalone, progress=False)  # re-attaches
    assert out.notna().all() and fm.last_run().requests == 0 and time.monotonic() - t0 < 10
