"""Semantic join: 1,000 reviews x 1,000 products, one true match per review, on the emulator.

    left.foundry.join(right, "{left.text} is about the product {right.title}", shortlist="auto")

A million pairs: "auto" shortlists each review to its 10 most similar products by embeddings
(cached, numpy cosine), then asks one yes/no per pair. The emulator's truth is known from the
text: a review and a product match when they name the same ID token (SKU-0042) - the
emulator's documented pair rule - and its embeddings are a hashed bag of words, so a review
that shares its product's words is near it. Targets (DESIGN "Semantic operators"): recall
>= 0.95, precision 1.0, <= 20,000 chat requests.

    python benchmarks/bench_join.py [--quick]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ADJ = ("waterproof rugged compact folding heated wireless ergonomic stainless bamboo insulated "
       "lightweight vintage modular magnetic solar cordless padded reusable ceramic carbon").split()
NOUN = ("backpack kettle lamp chair blender headphones tent jacket bottle keyboard stroller drill "
        "umbrella mattress speaker camera helmet grill toaster suitcase").split()
SAYS = ["arrived quickly and works as described", "stopped working after a week", "is smaller than I expected",
        "was a gift and they loved it", "feels cheap but does the job", "exceeded what I hoped for"]


def data(n: int, seed: int = 7) -> tuple[list[dict], list[dict], dict[int, int]]:
    rnd = random.Random(seed)
    products = []
    for j in range(n):
        words = rnd.sample(ADJ, 2) + [rnd.choice(NOUN)]
        products.append({"sku": f"SKU-{j:04d}", "title": f"SKU-{j:04d} {' '.join(words)}", "words": words})
    target = list(range(n))
    rnd.shuffle(target)
    reviews, truth = [], {}
    for i, j in enumerate(target):
        p = products[j]
        reviews.append({"review_id": i, "text": f"My {' '.join(p['words'])} ({p['sku']}) {rnd.choice(SAYS)}."})
        truth[i] = j
    return reviews, [{"product_id": j, "title": p["title"]} for j, p in enumerate(products)], truth


def run(quick: bool = False) -> list[dict]:
    import pandas as pd

    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-join-")
    n = 300 if quick else 1000
    reviews, products, truth = data(n)
    left, right = pd.DataFrame(reviews), pd.DataFrame(products)
    with Emulator(process=True, lifetime=600, latency=0.05) as emu:
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        t0 = time.perf_counter()
        pairs = left.foundry.join(right, "{left.text} is about the product {right.title}", shortlist="auto",
                                  connection=conn, concurrency=64, progress=False)
        took = time.perf_counter() - t0
        routes = {k.split(":", 1)[1]: v for k, v in emu.stats()["by_route"].items()}
    import foundry_magics as fm

    report = fm.last_run()
    found = {(int(a), int(b)) for a, b in zip(pairs["review_id"], pairs["product_id"])}
    true = {(i, j) for i, j in truth.items()}
    hit = len(found & true)
    recall = hit / len(true)
    precision = hit / len(found) if found else 0.0
    chat = routes.get("chat.completions", 0)
    embed = routes.get("embeddings", 0)
    unjudged = len(report.failures) if report is not None else 0
    note = (f"{n:,} x {n:,} = {n * n:,} pairs; shortlist 'auto' (K=10): {chat:,} chat + {embed:,} embeddings "
            f"requests, {len(found):,} pairs returned, {unjudged:,} not judged; {took:.1f} s at concurrency 64, "
            "emulator latency 50 ms")
    return [
        {"name": f"join {n:,} x {n:,}: recall", "value": round(recall, 4), "unit": "", "target": ">= 0.95",
         "peer": None, "peer_value": None, "ratio": None, "ok": recall >= 0.95, "note": note},
        {"name": f"join {n:,} x {n:,}: precision", "value": round(precision, 4), "unit": "", "target": "= 1.0",
         "peer": None, "peer_value": None, "ratio": None, "ok": precision == 1.0},
        {"name": f"join {n:,} x {n:,}: chat requests", "value": chat, "unit": "requests", "target": "<= 20,000",
         "peer": "every pair judged (shortlist=None)", "peer_value": n * n, "better": "lower",
         "ratio": round(chat / (n * n), 4), "ok": chat <= 20_000},
        {"name": f"join {n:,} x {n:,}: time", "value": round(took, 2), "unit": "s", "target": "", "peer": None,
         "peer_value": None, "ratio": None},
    ]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
