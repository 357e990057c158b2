"""A rate-limited service (1,200 RPM enforced per 10 s window): time against the ideal, rows lost.

The emulator admits 200 requests per fixed 10 s window and answers the rest with 429 and
`retry-after-ms` until the window ends. Two ideals:

* paced: `rpm=1200` given, the smooth schedule is rows / 1,200 per minute (600 rows: 30 s);
* adaptive: no budget given, the best any client can do is to fill each window
  ((ceil(rows / 200) - 1) windows of 10 s, plus one reply's latency).

Peer: the OpenAI SDK with its defaults (2 retries honouring retry-after), all requests
gathered at once, as a notebook user would write it.

    python benchmarks/bench_ratelimit.py [--quick]
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RPM = 1200
WINDOW = 10.0
LATENCY = 0.1
MODEL = "gpt-4o-mini"


def _frame(tag: str, n: int):
    import pandas as pd

    return pd.DataFrame({"text": [f"{tag} order {i}: please check the delivery date" for i in range(n)]})


def ours(url: str, n: int, tag: str, rpm: int | None) -> tuple[float, int, int]:
    import foundry_magics as fm
    from foundry_magics.connections import Connection

    conn = Connection.from_url(url + "/openai/v1", kind="emulator", auth="none", model=MODEL)
    df = _frame(tag, n)
    t0 = time.perf_counter()
    out = df.foundry.prompt("Answer: {text}", connection=conn, concurrency=64, rpm=rpm, progress=False)
    took = time.perf_counter() - t0
    return took, int(out.isna().sum()), fm.last_run().rate_limited


def openai_defaults(url: str, n: int, tag: str) -> tuple[float, int, int]:
    import openai

    texts = list(_frame(tag, n)["text"])
    counts = {"429": 0}

    async def main():
        client = openai.AsyncOpenAI(base_url=url + "/openai/v1", api_key="bench")

        async def one(t):
            try:
                r = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Answer: {t}"}])
                return r.choices[0].message.content
            except openai.RateLimitError:
                counts["429"] += 1
                return None

        try:
            return await asyncio.gather(*(one(t) for t in texts))
        finally:
            await client.close()

    t0 = time.perf_counter()
    out = asyncio.run(main())
    return time.perf_counter() - t0, sum(1 for x in out if not x), counts["429"]


def run(quick: bool = False) -> list[dict]:
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-ratelimit-")
    n = 300 if quick else 600
    allow = int(RPM * WINDOW / 60)
    paced_ideal = n / RPM * 60
    burst_ideal = (math.ceil(n / allow) - 1) * WINDOW + LATENCY
    rows = []
    with Emulator(latency=LATENCY, rpm=RPM, rpm_window=WINDOW, process=True, lifetime=600) as emu:
        emu.reset_stats()  # a fresh window starts now
        peer_t, peer_lost, peer_429 = openai_defaults(emu.url, n, "openai")
        emu.reset_stats()
        took, lost, n429 = ours(emu.url, n, "paced", RPM)
        rows.append({
            "name": f"{n} rows, rpm={RPM} given (server: {RPM} RPM per {WINDOW:.0f} s window): time",
            "value": round(took, 2), "unit": "s", "target": f"<= {paced_ideal * 1.1:.1f} s (ideal {paced_ideal:.0f} s + 10%)",
            "peer": None, "peer_value": None, "better": "lower",
            "ratio": round(took / paced_ideal, 3), "ok": took <= paced_ideal * 1.1 and lost == 0,
            "note": f"ratio = time / ideal ({n} rows at {RPM} per minute, evenly); {lost} rows lost, {n429}×429",
        })
        emu.reset_stats()
        took, lost, n429 = ours(emu.url, n, "adaptive", None)
        rows.append({
            "name": f"{n} rows, no rpm given (adapts to 429s): time", "value": round(took, 2), "unit": "s",
            "target": f"<= {burst_ideal * 1.1:.1f} s (ideal {burst_ideal:.1f} s + 10%)",
            "peer": "OpenAI SDK defaults, gather", "peer_value": round(peer_t, 2), "better": "lower",
            "ratio": round(took / burst_ideal, 3), "ok": took <= burst_ideal * 1.1 and lost == 0,
            "note": f"ratio = time / ideal (every {WINDOW:.0f} s window filled: {allow} requests each); "
                    f"ours: {lost} rows lost, {n429} 429s waited out; "
                    f"OpenAI SDK: {peer_lost} rows lost, {peer_429} failed with 429 after its retries",
        })
        rows.append({
            "name": f"{n} rows, rate limited: rows lost", "value": lost, "unit": "rows", "target": "0",
            "peer": "OpenAI SDK defaults, gather", "peer_value": peer_lost, "better": "lower", "ratio": None,
            "ok": lost == 0, "note": "",
        })
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
