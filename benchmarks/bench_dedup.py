"""Identical requests are sent once: 10,000 rows with 1,000 distinct prompts.

The emulator (own process, no latency) counts what actually arrives: exactly 1,000 requests
the first time, none when the same call runs again (all from the cache).

    python benchmarks/bench_dedup.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(quick: bool = False) -> list[dict]:
    import pandas as pd

    import foundry_magics as fm
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-dedup-")
    rows_n, distinct = 10_000, 1_000
    df = pd.DataFrame({"product": [f"product {i % distinct}" for i in range(rows_n)],
                       "city": ["Lisbon" if (i % distinct) % 2 else "Porto" for i in range(rows_n)]})
    with Emulator(process=True, lifetime=300) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        t0 = time.perf_counter()
        first = df.foundry.prompt("Describe {product} for a shop in {city}", connection=conn, concurrency=64,
                                  progress=False)
        t_first = time.perf_counter() - t0
        sent_first = emu.stats()["requests"]
        emu.reset_stats()
        t0 = time.perf_counter()
        second = df.foundry.prompt("Describe {product} for a shop in {city}", connection=conn, concurrency=64,
                                   progress=False)
        t_second = time.perf_counter() - t0
        sent_second = emu.stats()["requests"]
        report = fm.last_run()
    same = bool((first == second).all()) and int(first.notna().sum()) == rows_n
    return [
        {"name": f"{rows_n:,} rows / {distinct:,} distinct: requests sent", "value": sent_first, "unit": "requests",
         "target": f"= {distinct:,}", "peer": None, "peer_value": None, "ratio": round(distinct / max(1, sent_first), 3),
         "ok": sent_first == distinct,
         "note": f"counted by the emulator; {t_first:.2f} s; a per-row loop would send {rows_n:,}"},
        {"name": f"{rows_n:,} rows / {distinct:,} distinct, same call again: requests sent", "value": sent_second,
         "unit": "requests", "target": "= 0", "peer": None, "peer_value": None, "ratio": None,
         "ok": sent_second == 0 and same,
         "note": f"{report.cache_hits:,} cache hits, {t_second:.2f} s; results identical: {same}"},
    ]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
