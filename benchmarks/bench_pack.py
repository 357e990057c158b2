"""Packing rows into requests under a rate limit (emulator: 200 ms, 600 RPM enforced per 10 s window).

classify over distinct rows with a 400-token instruction, the client paced at rpm=600 (the
deployment's limit, as a user would give it):

* rows/s of pack=20 against pack=None in the same run (target >= 12x, ideal 20x);
* input tokens per row, packed against unpacked (target <= 1/4);
* the packed answers against each row's answer alone (target: identical, row by row);
* with the emulator corrupting 10 % of the packed answers (dropped, duplicated, moved, renamed,
  garbled): rows mixed up (a wrong answer) or lost (NA) - target 0.

The answers alone are the same emulator's, asked one row to a request with the rate limit off.
--quick runs pack=None on 300 rows (its rows/s does not depend on the count) and the corrupted
run on 1,000; the full run uses 3,000 rows for everything.

    python benchmarks/bench_pack.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RPM = 600
LATENCY = 0.2
ROWS = 3_000
PACK = 20
MODEL = "gpt-4o-mini"
LABELS = ["positive", "negative", "neutral"]
MOODS = ["I love it, works great", "terrible, arrived broken", "it came on a Tuesday", "fast delivery, nice box",
         "slow and disappointing", "ordered a second one"]
# about 400 tokens of instructions (1,600 characters), the same for every row
INSTRUCTION = (
    "You label customer reviews for a retailer's quality team. Read the review and decide its overall sentiment. "
    "A review is positive when the customer is satisfied with the product or the service, praises it, or would "
    "recommend it; negative when the customer complains, is disappointed, reports a defect, a delay, a missing "
    "part or asks for a refund; neutral when it only states facts without an opinion, or when praise and "
    "complaints balance out. Ignore the customer's tone towards other brands, shipping companies or previous "
    "orders unless it is about this order. Do not guess from the product's category or its price. Sarcasm counts "
    "as what the customer means, not what the words say. When a review mentions both a problem and its solution, "
    "label what the customer feels at the end. Reviews may be short, contain typos, emoji, or several languages; "
    "read them as a native speaker would. Some reviews quote an earlier message: label the customer's own words "
    "only. Never explain the label, never add a field, never answer with anything but one of the labels. "
    "Examples of positive: 'arrived early, works perfectly'; of negative: 'stopped working after a week'; of "
    "neutral: 'delivered on Monday'. When in doubt between positive and neutral, prefer neutral; between "
    "negative and neutral, prefer negative, because the quality team would rather read one review too many "
    "than miss a complaint. Labels: positive, negative, neutral. "
)
TEMPLATE = INSTRUCTION + "Review: {}"


def _series(n: int, tag: str = ""):
    import pandas as pd

    return pd.Series([f"Review {tag}{i}: {MOODS[i % len(MOODS)]} (order {i * 7919 % 100_003})" for i in range(n)],
                     name="text")


def _classify(url: str, s, **kw):
    import foundry_magics as fm
    from foundry_magics.connections import Connection

    conn = Connection.from_url(url + "/openai/v1", kind="emulator", auth="none", model=MODEL)
    t0 = time.perf_counter()
    out = s.foundry.classify(LABELS, template=TEMPLATE, connection=conn, progress=False, cache=False, **kw)
    took = time.perf_counter() - t0
    return list(out), took, fm.last_run()


def run(quick: bool = False) -> list[dict]:
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-pack-")
    n_alone = 300 if quick else ROWS
    n_faults = 1_000 if quick else ROWS
    s = _series(ROWS)
    rows = []
    with Emulator(latency=LATENCY, process=True, lifetime=1200) as emu:
        truth, _, _ = _classify(emu.url, s, concurrency=64)  # every row alone, no rate limit: the reference
        emu.configure(rpm=RPM, rpm_window=10.0)
        emu.reset_stats()
        alone, t_alone, r_alone = _classify(emu.url, s.iloc[:n_alone], rpm=RPM)
        time.sleep(10.0)  # a fresh rate-limit window
        emu.reset_stats()
        packed, t_packed, r_packed = _classify(emu.url, s, rpm=RPM, pack=PACK)
        time.sleep(10.0)
        emu.configure(pack_fault_rate=0.10, seed=11)
        emu.reset_stats()
        sub = s.iloc[:n_faults]
        faulty, t_faulty, r_faulty = _classify(emu.url, sub, rpm=RPM, pack=PACK)
        stats = emu.stats()
    rate_alone = r_alone.done / t_alone
    rate_packed = r_packed.done / t_packed
    speedup = rate_packed / rate_alone
    tok_alone = r_alone.input_tokens / max(1, r_alone.done)
    tok_packed = r_packed.input_tokens / max(1, r_packed.done)
    differ = sum(1 for a, b in zip(packed, truth) if a != b)
    alone_differ = sum(1 for a, b in zip(alone, truth) if a != b)
    mixed = sum(1 for a, b in zip(faulty, truth) if a is not None and a == a and a != b)
    lost = sum(1 for a in faulty if a is None or a != a)
    corrupted = sum(v for k, v in (stats.get("faults") or {}).items() if k.startswith("pack_"))
    rows.append({
        "name": f"classify, {ROWS:,} distinct rows, {RPM} RPM, {LATENCY * 1000:.0f} ms: rows/s pack={PACK} vs pack=None",
        "value": round(rate_packed, 1), "unit": "rows/s", "target": ">= 12x pack=None (ideal 20x)",
        "peer": "pack=None (same run)", "peer_value": round(rate_alone, 2), "better": "higher",
        "ratio": round(speedup / PACK, 3), "ok": speedup >= 12,
        "note": f"{speedup:.1f}x; ratio = speedup / {PACK} (ideal); pack=None on {n_alone:,} rows: {r_alone.requests:,} "
                f"requests in {t_alone:.1f} s; pack={PACK}: {r_packed.requests:,} requests in {t_packed:.1f} s "
                f"({r_packed.rows_per_request:.1f} rows/request, {r_packed.rate_limited}x429)",
    })
    rows.append({
        "name": "input tokens per row (400-token instruction)", "value": round(tok_packed, 1), "unit": "tokens/row",
        "target": "<= 1/4 of pack=None", "peer": "pack=None (same run)", "peer_value": round(tok_alone, 1),
        "better": "lower", "ratio": round(tok_packed / tok_alone, 3), "ok": tok_packed <= tok_alone / 4,
        "note": f"ratio = packed / unpacked; report: ~{r_packed.pack_saved_tokens:,} input tokens saved",
    })
    rows.append({
        "name": f"answers differing from each row's answer alone (pack={PACK}, {ROWS:,} rows)", "value": differ,
        "unit": "rows", "target": "0", "peer": None, "peer_value": None, "better": "lower", "ratio": None,
        "ok": differ == 0 and alone_differ == 0 and r_packed.done == ROWS,
        "note": f"the pack=None run differs on {alone_differ} of its {n_alone:,} rows",
    })
    rows.append({
        "name": f"10 % of packed answers corrupted ({n_faults:,} rows): rows mixed up + lost", "value": mixed + lost,
        "unit": "rows", "target": "0", "peer": None, "peer_value": None, "better": "lower", "ratio": None,
        "ok": mixed == 0 and lost == 0,
        "note": f"{mixed} mixed up, {lost} lost; {corrupted} answers corrupted by the emulator "
                f"({', '.join(f'{k[5:]} {v}' for k, v in sorted((stats.get('faults') or {}).items()) if k.startswith('pack_'))}); "
                f"{r_faulty.pack_retried:,} rows sent again, {r_faulty.requests:,} requests in {t_faulty:.1f} s",
    })
    return rows


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
