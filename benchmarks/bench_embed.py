"""Embeddings: 10,000 texts in at most 5 requests (2,048 inputs per request).

Ours: `series.foundry.embed()` (distinct texts, batches of 2,048, cached per text). Peer: the
OpenAI SDK, the same batches sent one after the other by hand (the SDK does not batch for
you; one call per text would be 10,000 requests).

    python benchmarks/bench_embed.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL = "text-embedding-3-small"


def run(quick: bool = False) -> list[dict]:
    import pandas as pd

    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-embed-")
    n = 10_000
    texts = [f"note {i}: the parcel arrived {'late' if i % 3 else 'early'} and the box was {i % 7} cm wide"
             for i in range(n)]
    with Emulator(process=True, lifetime=300) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        s = pd.Series(texts)
        t0 = time.perf_counter()
        vecs = s.foundry.embed(connection=conn, progress=False)
        took = time.perf_counter() - t0
        sent = emu.stats()["requests"]
        ok_vectors = int(vecs.map(lambda v: v is not None and len(v) > 0).sum())
        peer_t = None
        try:
            import openai
        except ImportError:
            openai = None
        if openai is not None:
            client = openai.OpenAI(base_url=emu.url + "/openai/v1", api_key="bench")
            t0 = time.perf_counter()
            got = 0
            for start in range(0, n, 2048):
                r = client.embeddings.create(model=MODEL, input=texts[start:start + 2048])
                got += len(r.data)
            peer_t = time.perf_counter() - t0
            client.close()
    return [
        {"name": f"embed {n:,} texts: requests", "value": sent, "unit": "requests", "target": "<= 5",
         "peer": None, "peer_value": None, "ratio": None, "ok": sent <= 5 and ok_vectors == n,
         "note": f"counted by the emulator; {ok_vectors:,} vectors returned"},
        {"name": f"embed {n:,} texts: time", "value": round(took, 2), "unit": "s", "target": "",
         "peer": "OpenAI SDK, batches of 2,048 by hand" if peer_t is not None else "OpenAI SDK: skipped (not installed)",
         "peer_value": round(peer_t, 2) if peer_t is not None else None, "better": "lower", "ratio": None,
         "note": "ours includes building the Series of numpy vectors and writing the cache"},
    ]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
