"""Memory: 1,000,000 rows with the cache on, in a fresh process, peak RSS above the frame itself.

The scenario is the expensive one, resuming a huge job: every row is distinct and all but
2,000 are already in the cache (a first process fills it directly, as an earlier run would
have), so the run looks up a million keys and sends 2,000 requests to the emulator. A second
process builds the frame, notes its RSS, runs `df.foundry.prompt`, and samples its RSS every
20 ms; the figure is the peak minus the RSS with the frame built. The result column itself
(a million strings) is part of the figure.

    python benchmarks/bench_memory.py [--quick]      # quick: 100,000 rows
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

MISSING = 2_000

_COMMON = textwrap.dedent("""
    import sys
    sys.path.insert(0, %r)
    N = int(sys.argv[2])
    def text(i):
        return f"order {i}: the customer in city {i %% 977} says the parcel was {'late' if i %% 3 else 'fine'}"
    TEMPLATE = "Summarize: {text}"
""" % ROOT)

FILL = _COMMON + textwrap.dedent("""
    from foundry_magics.rest.client import FoundryClient
    from foundry_magics.connections import Connection
    from foundry_magics.store.cache import CachedReply, ResponseCache, request_key, route_identity
    conn = Connection.from_url(sys.argv[1] + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    client = FoundryClient(conn)
    cache = ResponseCache()
    rid = None
    for i in range(%d, N):
        route, body = client.build_chat(TEMPLATE.format(text=text(i)))
        if rid is None:
            rid = route_identity(route.url, route.params, emulator=True)
        cache.put(request_key(rid, "chat", body), "chat", CachedReply(f"[cached] summary of order {i}", "stop", 20, 8))
        if len(cache._pending) >= 50_000:
            cache.flush()
    cache.close()
""" % MISSING)

MEASURE = _COMMON + textwrap.dedent("""
    import json, threading, time, resource
    import pandas as pd
    import foundry_magics as fm
    from foundry_magics.connections import Connection

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    conn = Connection.from_url(sys.argv[1] + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    df = pd.DataFrame({"text": [text(i) for i in range(N)]})
    frame_bytes = int(df.memory_usage(deep=True).sum())
    import gc; gc.collect()
    base = rss()
    peak = [base]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.02)
    t = threading.Thread(target=sample, daemon=True); t.start()
    t0 = time.perf_counter()
    out = df.foundry.prompt(TEMPLATE, connection=conn, concurrency=64, progress=False)
    took = time.perf_counter() - t0
    stop.set(); t.join()
    peak[0] = max(peak[0], rss())
    r = fm.last_run()
    print(json.dumps({"base": base, "peak": peak[0], "frame_bytes": frame_bytes, "seconds": took,
                      "requests": r.requests, "hits": r.cache_hits, "done": r.done,
                      "result_bytes": int(out.memory_usage(deep=True))}))
""")


def run(quick: bool = False) -> list[dict]:
    from foundry_magics.emulator import Emulator

    n = 100_000 if quick else 1_000_000
    home = tempfile.mkdtemp(prefix="fm-bench-memory-")
    env = dict(os.environ, FOUNDRY_MAGICS_HOME=home)
    with Emulator(process=True, lifetime=900) as emu:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", FILL, emu.url, str(n)], env=env, check=True, timeout=900)
        fill_s = time.perf_counter() - t0
        out = subprocess.run([sys.executable, "-c", MEASURE, emu.url, str(n)], env=env, check=True, timeout=900,
                             capture_output=True, text=True)
        sent = emu.stats()["requests"]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    above = (m["peak"] - m["base"]) / 1e6
    limit = 300 if not quick else 60
    return [{
        "name": f"{n:,} distinct rows, cache on ({n - MISSING:,} cached): peak RSS above the frame",
        "value": round(above, 1), "unit": "MB", "target": f"<= {limit} MB (a few hundred MB at 1,000,000 rows)",
        "peer": None, "peer_value": None, "ratio": round(above * 1e6 / m["frame_bytes"], 2), "ok": above <= limit
        and m["done"] == n and sent == MISSING,
        "note": f"ratio = growth / the frame's own size ({m['frame_bytes'] / 1e6:.0f} MB); the result column is "
                f"{m['result_bytes'] / 1e6:.0f} MB of it; {m['requests']:,} requests sent (emulator saw {sent:,}), "
                f"{m['hits']:,} cache hits, {m['seconds']:.1f} s (cache filled in {fill_s:.0f} s beforehand)",
    }]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
