"""DataFrame runs under faults: nothing lost, every row its own answer, and what finished
survives Ctrl-C ("interrupt kernel") and kernel death.

* hundreds of rows against an emulator (own process) answering 20 % of requests with 500
  and cutting 10 % of connections: every row ends with exactly the answer a clean server
  gives for *its* prompt (checked against direct client calls), or NA listed with a reason in
  the run report; a re-run sends only those and fills them;
* a real kernel (jupyter_client) interrupted mid-run: the cell stops promptly, the kernel
  lives on, every finished row is in the cache, and a re-run sends only the missing ones;
* a real kernel killed (SIGKILL) mid-run: the cache file is intact, and a new kernel sends
  only the rows that are not in it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

import foundry_magics as fm
from foundry_magics.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"
TEMPLATE = "Summarize: {text}"


def conn_for(url: str) -> fm.Connection:
    return fm.Connection.from_url(f"{url}/openai/v1", auth="none", model=MODEL)


def truth(prompts) -> dict[str, str]:
    """What a fault-free emulator answers for each prompt, by direct client calls."""
    with Emulator(process=True, lifetime=120) as clean:
        with fm.FoundryClient(conn_for(clean.url), timeout=10) as c:
            return {p: c.chat(p).text for p in sorted(set(prompts))}


def reviews(n: int, distinct: int):
    import pandas as pd

    texts = [f"review {i % distinct}: the kettle {'works' if (i % distinct) % 3 else 'broke'} "
             f"after {i % distinct} days" for i in range(n)]
    return pd.DataFrame({"text": texts, "stars": [i % 5 + 1 for i in range(n)]})


# =========================================================================== in process


@pytest.mark.slow
def test_hundreds_of_rows_under_500s_and_cuts_lose_nothing(fm_home):
    import pandas as pd

    n = 300
    df = reviews(n, distinct=240)
    df.index = [f"r{i // 2}" for i in range(n)]  # a duplicate, non-integer index
    df.iloc[[7, 8, 150], df.columns.get_loc("text")] = [None, pd.NA, None]  # missing values: NA, no request
    before = df.copy()
    expect = truth(TEMPLATE.format(text=t) for t in df["text"].dropna())

    with Emulator(process=True, fail_rate=0.2, cut_rate=0.1, seed=4, lifetime=300) as emu:
        out = df.foundry.prompt(TEMPLATE, connection=conn_for(emu.url), progress=False)
        report = fm.last_run()
        stats = emu.stats()
        faults = stats["faults"]
        assert faults.get("fail", 0) >= 20 and faults.get("cut", 0) >= 10, faults  # the faults really happened

        pd.testing.assert_frame_equal(df, before)  # the input frame is untouched
        assert out.index.equals(df.index) and len(out) == n
        missing_input = df["text"].isna()
        assert out[missing_input.to_numpy()].isna().all()
        failed_labels = {label for label, _ in report.failures}
        for pos, (text, got) in enumerate(zip(df["text"], out)):
            if pd.isna(text):
                continue
            if pd.isna(got):  # a row may fail after all its retries: never silently, always listed
                assert df.index[pos] in failed_labels
            else:
                assert got == expect[TEMPLATE.format(text=text)], f"row {pos} got another row's answer"
        assert report.done + report.failed + report.na_rows == n
        assert report.na_rows == 3 and report.retries >= 1
        assert all(reason for _, reason in report.failures)

        # Nothing lost: a re-run answers every finished row from the cache and sends only the failed ones.
        distinct_failed = {TEMPLATE.format(text=t) for t, g in zip(df["text"], out) if pd.notna(t) and pd.isna(g)}
        emu.reset_stats()
        emu.configure(fail_rate=0.0, cut_rate=0.0)
        again = df.foundry.prompt(TEMPLATE, connection=conn_for(emu.url), progress=False)
        second = fm.last_run()
        assert emu.stats()["requests"] == len(distinct_failed) == second.requests
        assert second.cache_hits == len(expect) - len(distinct_failed)
    for text, got in zip(df["text"], again):
        if pd.notna(text):
            assert got == expect[TEMPLATE.format(text=text)]
        else:
            assert pd.isna(got)


# =========================================================================== in a kernel


@pytest.fixture
def kernel_env(tmp_path, fm_home, monkeypatch):
    """A kernelspec for this interpreter, and the environment a kernel gets (same FOUNDRY_MAGICS_HOME)."""
    spec = tmp_path / "jupyter" / "kernels" / "fm-faults"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "foundry-magics faults", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    env = dict(os.environ)
    env["FOUNDRY_MAGICS_HOME"] = str(fm_home)
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return "fm-faults", env


class Kernel:
    """A real ipykernel driven over ZMQ, with its outputs collected per cell."""

    def __init__(self, name: str, env: dict, cwd: Path) -> None:
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name=name)
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> dict:
        outputs: list[str] = []

        def hook(msg):
            c = msg["content"]
            if msg["msg_type"] == "stream":
                outputs.append(c["text"])
            elif msg["msg_type"] == "error":
                outputs.append(c["ename"])

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        return {"status": reply["content"]["status"], "ename": reply["content"].get("ename"),
                "out": "".join(outputs)}

    def start(self, code: str) -> str:
        return self.kc.execute(code)

    def wait_reply(self, msg_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        raise AssertionError("no execute_reply in time")

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def close(self) -> None:
        try:
            self.kc.stop_channels()
        finally:
            if self.km.is_alive():
                self.km.shutdown_kernel(now=True)


SETUP = f"""
import json, os
import pandas as pd
import foundry_magics as fm
n = int(os.environ["FM_ROWS"])
df = pd.DataFrame({{"text": [f"slow review {{i}}: it arrived on day {{i}}" for i in range(n)]}})
conn = fm.Connection.from_url(os.environ["FM_EMU"] + "/openai/v1", auth="none", model="{MODEL}")
"""
RUN = f's = df.foundry.prompt("{TEMPLATE}", connection=conn, concurrency=4, progress=False)'
REPORT = ("r = fm.last_run()\n"
          "print(json.dumps(dict(done=r.done, failed=r.failed, requests=r.requests, cache_hits=r.cache_hits,"
          " interrupted=r.interrupted)))")
ANSWERS = "print(json.dumps(s.tolist()))"


def cached_rows(home: Path) -> int:
    db = sqlite3.connect(home / "cache.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    finally:
        db.close()


def wait_for_requests(emu: Emulator, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while emu.stats()["requests"] < at_least:
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.05)


def last_json(text: str):
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_interrupt_kernel_keeps_finished_rows_and_a_rerun_sends_only_the_rest(kernel_env, fm_home, tmp_path):
    name, env = kernel_env
    n = 160
    prompts = [TEMPLATE.format(text=f"slow review {i}: it arrived on day {i}") for i in range(n)]
    expect = truth(prompts)
    # 4 in flight, 0.1 s each: the whole run would take ~4 s; it is interrupted after ~30 requests.
    with Emulator(process=True, latency=0.1, lifetime=300) as emu:
        env = dict(env, FM_EMU=emu.url, FM_ROWS=str(n))
        k = Kernel(name, env, tmp_path)
        try:
            assert k.run(SETUP)["status"] == "ok"
            msg_id = k.start(RUN)
            wait_for_requests(emu, 30)
            t0 = time.monotonic()
            k.km.interrupt_kernel()
            reply = k.wait_reply(msg_id, timeout=15)
            stopped_in = time.monotonic() - t0
            # fm.RunInterrupted, a KeyboardInterrupt shown as one line (what was kept), no traceback
            assert reply["status"] == "error" and reply["ename"] == "RunInterrupted"
            assert len(reply["traceback"]) == 1 and "rows finished and cached" in reply["traceback"][0]
            assert stopped_in < 3.0, f"Ctrl-C took {stopped_in:.1f} s to stop the run"

            first = last_json(k.run(REPORT)["out"])  # the kernel is still usable
            assert first["interrupted"] and 0 < first["done"] < n
            assert cached_rows(fm_home) == first["done"]  # every finished row is in the cache

            emu.reset_stats()
            assert k.run(RUN)["status"] == "ok"
            second = last_json(k.run(REPORT)["out"])
            answers = last_json(k.run(ANSWERS)["out"])
            sent = emu.stats()["requests"]
        finally:
            k.close()
    assert sent == n - first["done"] == second["requests"]  # only the missing rows
    assert second["cache_hits"] == first["done"] and second["done"] == n
    assert answers == [expect[p] for p in prompts]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kernel_death_keeps_what_was_flushed_and_a_new_kernel_sends_only_the_rest(kernel_env, fm_home, tmp_path):
    name, env = kernel_env
    n = 160
    prompts = [TEMPLATE.format(text=f"slow review {i}: it arrived on day {i}") for i in range(n)]
    expect = truth(prompts)
    with Emulator(process=True, latency=0.1, lifetime=300) as emu:
        env = dict(env, FM_EMU=emu.url, FM_ROWS=str(n))
        k = Kernel(name, env, tmp_path)
        try:
            assert k.run(SETUP)["status"] == "ok"
            k.start(RUN)
            wait_for_requests(emu, 40)
            time.sleep(0.7)  # the engine flushes finished replies to the cache every 0.5 s
            os.kill(k.pid, signal.SIGKILL)  # kernel death: no cleanup, no final flush
            k.km.provisioner.process.wait(10)
        finally:
            k.close()
        kept = cached_rows(fm_home)  # the file is intact (integrity_check inside)
        assert 0 < kept < n

        emu.reset_stats()
        k2 = Kernel(name, env, tmp_path)
        try:
            assert k2.run(SETUP)["status"] == "ok"
            assert k2.run(RUN)["status"] == "ok"
            second = last_json(k2.run(REPORT)["out"])
            answers = last_json(k2.run(ANSWERS)["out"])
            sent = emu.stats()["requests"]
        finally:
            k2.close()
    assert sent == n - kept == second["requests"]  # only what the dead kernel had not stored
    assert second["cache_hits"] == kept and second["done"] == n
    assert answers == [expect[p] for p in prompts]
