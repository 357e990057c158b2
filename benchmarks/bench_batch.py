"""The Batch API: building and uploading the input of 100,000 rows, re-running a pending job's
call, and nothing lost under 20 % failing lines plus one expiry.

* **Submit** (`df.foundry.prompt(..., batch=True, wait=False)`): render, key (the online
  request keys, cache lookups, dedup), write the JSONL to a temporary file (split at 100,000
  lines / 200 MB), upload it streamed, wait until it is processed, create the batch, record
  the job. Measured in a fresh process: rows/s and peak RSS above the frame. The peer, in its
  own fresh process against the same emulator: the OpenAI SDK, the JSONL built by hand in
  memory (one `json.dumps` per row) and `files.create` + `batches.create` - less work (no
  cache, no dedup, no record of the job), the usual notebook recipe.
* **Re-run while pending**: the same call again must submit nothing (counted by the
  emulator: no upload, no batch) and re-attach to the job.
* **Faults**: 20 % of the lines fail and the batch expires half-way; every row must end
  answered (with its own answer) or NA with its reason, and a re-run must submit exactly the
  missing rows and fill them.

    python benchmarks/bench_batch.py [--quick]       # quick: the same 100,000 rows, fewer fault rows
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TARGET_RATE = 20_000  # rows/s
TARGET_MB = 300

_COMMON = textwrap.dedent("""
    import gc, json, sys, threading, time
    sys.path.insert(0, %r)
    import httpx, psutil
    url, n = sys.argv[1], int(sys.argv[2])
    def text(i):
        return f"order {i}: the customer in city {i %% 977} says the parcel was {'late' if i %% 3 else 'fine'}"
    def uploads():
        by = httpx.get(url + "/_emulator/stats", timeout=30).json()["by_route"]
        return sum(v for k, v in by.items() if k.endswith((":files", ":batches")))
    class Peak:
        def __enter__(self):
            gc.collect()
            self.proc = psutil.Process()
            self.base = self.peak = self.proc.memory_info().rss
            self.stop = threading.Event()
            self.t = threading.Thread(target=self.run, daemon=True)
            self.t.start()
            self.t0 = time.perf_counter()
            return self
        def run(self):
            while not self.stop.is_set():
                self.peak = max(self.peak, self.proc.memory_info().rss)
                time.sleep(0.01)
        def __exit__(self, *exc):
            self.seconds = time.perf_counter() - self.t0
            self.stop.set()
            self.t.join()
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.mb = (self.peak - self.base) / 1e6
""" % ROOT)

OURS = _COMMON + textwrap.dedent("""
    import pandas as pd
    import foundry_magics as fm
    from foundry_magics.connections import Connection
    conn = Connection.from_url(url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    df = pd.DataFrame({"text": [text(i) for i in range(n)]})
    before = uploads()
    with Peak() as p:
        job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, progress=False)
    made = uploads() - before
    t0 = time.perf_counter()
    again = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, progress=False)
    t_again = time.perf_counter() - t0
    print(json.dumps({"seconds": p.seconds, "mb": p.mb, "lines": job.counts.total, "files": len(job.batch_ids),
                      "requests_made": made, "again_made": uploads() - before - made, "again_seconds": t_again,
                      "reattached": again.ids == job.ids and again.counts.total == job.counts.total}))
""")

PEER = _COMMON + textwrap.dedent("""
    import openai
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="unused", max_retries=0)
    texts = [text(i) for i in range(n)]
    with Peak() as p:
        lines = [json.dumps({"custom_id": f"row-{i}", "method": "POST", "url": "/v1/chat/completions",
                             "body": {"model": "gpt-4o-mini",
                                      "messages": [{"role": "user", "content": "Summarize: " + t}]}})
                 for i, t in enumerate(texts)]
        data = ("\\n".join(lines) + "\\n").encode()
        del lines
        f = client.files.create(file=("input.jsonl", data), purpose="batch")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    print(json.dumps({"seconds": p.seconds, "mb": p.mb, "bytes": len(data)}))
""")


def _child(script: str, url: str, n: int, home: str) -> dict:
    env = dict(os.environ, FOUNDRY_MAGICS_HOME=home)
    proc = subprocess.run([sys.executable, "-c", script, url, str(n)], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _faults(n: int) -> dict:
    """20 % failing lines + one expiry: nothing lost; the re-run submits exactly the missing rows."""
    import pandas as pd

    import foundry_magics as fm
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-batch-faults-")
    df = pd.DataFrame({"text": [f"ticket {i}: the {'printer' if i % 2 else 'screen'} broke" for i in range(n)]})
    with Emulator(process=True, lifetime=300, batch_seconds=1.0, batch_fail_rate=0.2, batch_expire=1, seed=3) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        clean = df.foundry.prompt("Summarize: {text}", connection=conn, cache=False, concurrency=64, progress=False)
        t0 = time.perf_counter()
        first = df.foundry.prompt("Summarize: {text}", batch=True, connection=conn, poll_interval=0.2,
                                  progress=False)
        t_first = time.perf_counter() - t0
        report = fm.last_run()
        reasons = [r for _, r in report.failures]
        na = int(first.isna().sum())
        wrong = int(((first != clean) & first.notna()).sum())
        lost = n - int(first.notna().sum()) - len([r for r in reasons if r])
        expired = sum("expired" in r for r in reasons)
        failed_lines = sum("ServerError" in r for r in reasons)
        emu.configure(batch_fail_rate=0.0, batch_expire=0)
        job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=0.2)
        resubmitted = job.counts.total
        second = job.result()
        still_na = int(second.isna().sum())
        still_wrong = int((second != clean).sum())
    return {"rows": n, "na": na, "lost": lost, "wrong": wrong, "expired": expired, "failed_lines": failed_lines,
            "resubmitted": resubmitted, "still_na": still_na, "still_wrong": still_wrong, "seconds": t_first}


def run(quick: bool = False) -> list[dict]:
    from foundry_magics.emulator import Emulator

    n = 100_000
    fault_rows = 2_000 if quick else 10_000
    with Emulator(process=True, lifetime=600, batch_seconds=3600.0) as emu:  # jobs stay pending
        ours = _child(OURS, emu.url, n, tempfile.mkdtemp(prefix="fm-bench-batch-"))
        try:
            import openai  # noqa: F401

            peer = _child(PEER, emu.url, n, tempfile.mkdtemp(prefix="fm-bench-batch-peer-"))
        except ImportError:
            peer = None
    faults = _faults(fault_rows)
    rate = n / ours["seconds"]
    peer_name = "OpenAI SDK: JSONL by hand in memory + files.create" if peer else "OpenAI SDK: skipped (not installed)"
    rows = [
        {"name": f"batch: build + upload the input of {n:,} rows: rows/s", "value": round(rate, 1), "unit": "rows/s",
         "target": f">= {TARGET_RATE:,}", "peer": peer_name,
         "peer_value": round(n / peer["seconds"], 1) if peer else None, "ratio": round(rate / TARGET_RATE, 3),
         "ok": rate >= TARGET_RATE,
         "note": f"{ours['seconds']:.2f} s for {ours['lines']:,} lines in {ours['files']} file(s): keys, cache lookup, "
                 f"dedup, JSONL streamed to disk, upload, file processed, batch created, job recorded; "
                 f"ratio is against the target"},
        {"name": f"batch: build + upload {n:,} rows: peak RSS above the frame", "value": round(ours["mb"], 1),
         "unit": "MB", "target": f"< {TARGET_MB}", "peer": peer_name,
         "peer_value": round(peer["mb"], 1) if peer else None, "better": "lower",
         "ratio": round(ours["mb"] / TARGET_MB, 3), "ok": ours["mb"] < TARGET_MB,
         "note": "fresh process, RSS sampled every 10 ms; the peer holds its whole JSONL in memory"},
        {"name": "batch: the same call again while the job is pending: files + batches created",
         "value": ours["again_made"], "unit": "requests", "target": "= 0", "peer": None, "peer_value": None,
         "ratio": None, "ok": ours["again_made"] == 0 and ours["reattached"],
         "note": f"counted by the emulator; re-attached to the same job: {ours['reattached']}; "
                 f"{ours['again_seconds']:.2f} s to find its {ours['lines']:,} requests pending"},
        {"name": f"batch: {faults['rows']:,} rows, 20% failing lines + one expiry: rows lost", "value": faults["lost"],
         "unit": "rows", "target": "= 0 (answered, or NA with its reason)", "peer": None, "peer_value": None,
         "ratio": None, "ok": faults["lost"] == 0 and faults["wrong"] == 0 and faults["na"] > 0,
         "note": f"{faults['na']:,} NA with a reason ({faults['expired']:,} expired, {faults['failed_lines']:,} "
                 f"failed lines), {faults['wrong']} answers not their own row's; first pass {faults['seconds']:.1f} s"},
        {"name": f"batch: {faults['rows']:,} rows, the re-run: rows still missing", "value": faults["still_na"],
         "unit": "rows", "target": "= 0, submitting only the missing", "peer": None, "peer_value": None,
         "ratio": None,
         "ok": faults["still_na"] == 0 and faults["still_wrong"] == 0 and faults["resubmitted"] == faults["na"],
         "note": f"re-run submitted {faults['resubmitted']:,} requests for {faults['na']:,} NA rows; "
                 f"{faults['still_wrong']} answers differ from a clean online run"},
    ]
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
