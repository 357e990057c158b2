"""Polars against pandas: the same DataFrame prompt, rows/s of `pl_df.foundry.prompt` as a share
of `df.foundry.prompt`'s in the same run.

Both send the same 2,048 distinct chat requests (`Summarize: <text>`, as bench_throughput) at
concurrency 64 to an emulator in its own process at 200 ms latency (ceiling 64 / 0.2 s = 320
rows/s), timed from the call to the last result. Each gets a warm-up round, then TRIALS runs,
round-robin, so a burst of load from elsewhere on the shared box hits both alike; each figure
is its best rate (and its lowest client CPU per 1,000 rows) over its trials. The front-ends
differ only in converting the frame to Arrow and the result back, so the target is >= 0.95.
Skipped (not made up) when polars is not installed.

    python benchmarks/bench_polars.py [--quick]
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LATENCY = 0.2
MODEL = "gpt-4o-mini"
ROWS = 2048  # a multiple of the concurrency: the ceiling is reachable
CONCURRENCY = 64

POLARS = "ours: pl_df.foundry.prompt"
PANDAS = "ours: df.foundry.prompt (pandas, same run)"


def _texts(tag: str, n: int) -> list[str]:
    return [f"{tag} review {i}: the kettle boils fast and looks nice" for i in range(n)]


def _connection(url: str):
    from foundry_magics.connections import Connection

    return Connection.from_url(url + "/openai/v1", kind="emulator", auth="none", model=MODEL)


def _timed(call, n: int) -> tuple[float, float, int]:
    import foundry_magics as fm

    t0, c0 = time.perf_counter(), time.process_time()
    answered = call()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert fm.last_run().requests == n, (fm.last_run().requests, n)
    return wall, cpu, answered


def with_pandas(url: str, n: int, c: int, tag: str) -> tuple[float, float, int]:
    import pandas as pd

    conn = _connection(url)
    df = pd.DataFrame({"text": _texts(tag, n)})
    return _timed(lambda: int(df.foundry.prompt("Summarize: {text}", connection=conn, concurrency=c,
                                                progress=False).notna().sum()), n)


def with_polars(url: str, n: int, c: int, tag: str) -> tuple[float, float, int]:
    import polars as pl

    import foundry_magics  # noqa: F401 - registers pl_df.foundry

    conn = _connection(url)
    df = pl.DataFrame({"text": _texts(tag, n)})
    return _timed(lambda: n - df.foundry.prompt("Summarize: {text}", connection=conn, concurrency=c,
                                                progress=False).null_count(), n)


def run(quick: bool = False) -> list[dict]:
    name = f"polars prompt c={CONCURRENCY}, {ROWS:,} rows: rows/s vs pandas"
    if importlib.util.find_spec("polars") is None:
        return [{"name": name, "value": None, "unit": "rows/s", "target": ">= 0.95x pandas",
                 "peer": f"{PANDAS}", "peer_value": None, "ratio": None, "ok": None,
                 "note": "skipped: polars is not installed (pip install 'foundry-magics[polars]')"}]
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-polars-")
    trials = 2 if quick else 3
    contenders = {POLARS: with_polars, PANDAS: with_pandas}
    got = {k: {"rates": [], "cpus": [], "answered": ROWS} for k in contenders}
    with Emulator(latency=LATENCY, process=True, lifetime=900) as emu:
        for key, fn in contenders.items():
            fn(emu.url, CONCURRENCY, CONCURRENCY, f"warm-{key}")
        for k in range(trials):
            for key, fn in contenders.items():
                wall, cpu, answered = fn(emu.url, ROWS, CONCURRENCY, f"{key}-{k}")
                got[key]["rates"].append(ROWS / wall)
                got[key]["cpus"].append(cpu / ROWS * 1000)
                got[key]["answered"] = min(got[key]["answered"], answered)
    pol, pan = got[POLARS], got[PANDAS]
    rate, peer = max(pol["rates"]), max(pan["rates"])
    ratio = rate / peer
    complete = pol["answered"] == pan["answered"] == ROWS
    ceiling = CONCURRENCY / LATENCY

    def runs(g: dict) -> str:
        return ", ".join(f"{x:,.0f}" for x in g["rates"]) + " rows/s; CPU s/1k rows " + ", ".join(
            f"{x:.3f}" for x in g["cpus"])

    return [{
        "name": name, "value": round(rate, 1), "unit": "rows/s", "target": ">= 0.95x pandas",
        "peer": PANDAS, "peer_value": round(peer, 1), "ratio": round(ratio, 3), "ok": complete and ratio >= 0.95,
        "note": (f"ratio = polars / pandas rows/s, best of {trials} trials each, round-robin; the same {ROWS:,} "
                 f"distinct chat requests at {int(LATENCY * 1000)} ms latency (ceiling {ceiling:,.0f} rows/s); "
                 f"{pol['answered']:,}/{ROWS:,} rows answered; polars: {runs(pol)}; pandas: {runs(pan)}"),
        "measurements": {k: {"rows": ROWS, "trials_rows_per_s": [round(x, 1) for x in g["rates"]],
                             "trials_cpu_s_per_1k_rows": [round(x, 3) for x in g["cpus"]]} for k, g in got.items()},
    }]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
