"""evaluate: 3 models x 2 prompts over 500 labelled rows, in one call, at once.

The emulator (own process, 200 ms per reply) answers; each (prompt, model) is first run alone
(`s.foundry.classify`, concurrency 32, cache off), then the whole evaluation (the same six
runs, concurrency 32 each) in one call. Target: its wall time at most 1.3x the slowest single
run alone. Then the same evaluation again: nothing is sent (all from the cache).

    python benchmarks/bench_evaluate.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LATENCY = 0.2
LABELS = ["positive", "negative", "neutral"]
MODELS = ["gpt-4o", "gpt-4.1-nano", "phi-4"]
PROMPTS = {"short": "Sentiment of: {text}", "long": "Classify the sentiment of this customer review: {text}"}


def run(quick: bool = False) -> list[dict]:
    import pandas as pd

    import foundry_magics as fm
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-eval-")
    n = 500
    words = (["great", "love", "excellent"], ["awful", "broken", "useless"], ["blue", "Tuesday", "box"])
    df = pd.DataFrame({"text": [f"Review {i}: it is {words[i % 3][i % 7 % 3]} ({i})" for i in range(n)],
                       "label": [LABELS[i % 3] for i in range(n)]})
    fm.set_prices({"gpt-4o": (2.5, 10.0), "gpt-4.1-nano": (0.1, 0.4), "phi-4": (0.125, 0.5)})
    with Emulator(latency=LATENCY, process=True, lifetime=600) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o")
        alone = {}
        for name, tpl in PROMPTS.items():
            for m in MODELS:
                t0 = time.perf_counter()
                df.foundry.evaluate("label", labels=LABELS, template=tpl, models=[m], connection=conn,
                                    concurrency=32, progress=False, cache=False)
                alone[(name, m)] = time.perf_counter() - t0
        slowest = max(alone.values())
        emu.reset_stats()
        t0 = time.perf_counter()
        ev = df.foundry.evaluate("label", labels=LABELS, prompts=PROMPTS, models=MODELS, connection=conn,
                                 concurrency=32, progress=False)
        together = time.perf_counter() - t0
        sent = emu.stats()["requests"]
        emu.reset_stats()
        t0 = time.perf_counter()
        again = df.foundry.evaluate("label", labels=LABELS, prompts=PROMPTS, models=MODELS, connection=conn,
                                    concurrency=32, progress=False)
        t_again = time.perf_counter() - t0
        sent_again = emu.stats()["requests"]
    ratio = together / slowest
    acc = ", ".join(f"{r.model}/{r.prompt} {r.accuracy:.0%}" for r in ev.table.itertuples())
    same = bool((again.table["accuracy"] == ev.table["accuracy"]).all())
    return [
        {"name": f"evaluate 3 models x 2 prompts x {n} rows: wall time / slowest single run", "value": round(ratio, 3),
         "unit": "x", "target": "<= 1.3", "peer": "slowest (prompt, model) alone", "peer_value": None,
         "ratio": round(ratio, 3), "ok": ratio <= 1.3,
         "note": f"{together:.2f} s together vs {slowest:.2f} s slowest alone ({LATENCY * 1000:.0f} ms latency, "
                 f"concurrency 32 per run); {sent:,} requests; {acc}"},
        {"name": "evaluate again: requests sent", "value": sent_again, "unit": "requests", "target": "= 0",
         "peer": None, "peer_value": None, "ratio": None, "ok": sent_again == 0 and same,
         "note": f"{t_again:.2f} s, all from the cache; the same table: {same}"},
    ]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
