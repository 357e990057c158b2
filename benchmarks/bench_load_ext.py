"""`%load_ext foundry_magics` time vs jupyter-ai-magics, and the streaming display's pace.

Each load is timed in a fresh Python process (an InteractiveShell already created, as in a
kernel), so module caches never help; the figure is the median. The peer,
`%load_ext jupyter_ai_magics`, is measured the same way in the same run when installed.

Streaming: against a local emulator that sends a token every 20 ms, the time from the first
streamed token to the first display update, and the display updates per second (bounded at
10/s by design, plus the final render).

    python benchmarks/bench_load_ext.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 0.15
PEER = "jupyter-ai-magics"

_LOAD = textwrap.dedent("""
    import sys, time
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    t0 = time.perf_counter()
    ip.run_line_magic("load_ext", sys.argv[1])
    took = time.perf_counter() - t0
    assert sys.argv[1] in ip.extension_manager.loaded, "extension did not load"
    print(took)
""")

_STREAM = textwrap.dedent("""
    import json, os, tempfile, time
    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp()
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from foundry_magics.notebook import prompting
    from foundry_magics.notebook import render
    from foundry_magics.emulator import Emulator

    first = {}
    real_iterate = prompting.Prompter.iterate

    def iterate(self, call):
        for delta in real_iterate(self, call):
            if delta.text and "token" not in first:
                first["token"] = time.monotonic()
            yield delta

    prompting.Prompter.iterate = iterate
    lives = []
    real_init = render.LiveView.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        lives.append(self)

    render.LiveView.__init__ = init
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "foundry_magics")
    with Emulator(token_delay=0.02, lifetime=120) as emu, capture_output():
        ip.run_line_magic("foundry", f"connect {emu.url}/openai/v1 --auth none --model gpt-4o-mini")
        ip.run_cell("%%foundry\\nwarm up")
        first.clear(); lives.clear()
        prompt = "Tell me a long and detailed story about the sea, the wind, the ships and the sailors"
        t0 = time.monotonic()
        ip.run_cell("%%foundry --chat\\n" + prompt)
        ip.run_cell("%%foundry --chat\\n" + prompt + " again, with more detail")
        total = time.monotonic() - t0
    live = lives[0]
    view = ip.user_ns["_"]
    print(json.dumps({
        "first_update_ms": (live.first_update_at - first["token"]) * 1000,
        "updates": sum(lv.updates for lv in lives),
        "seconds": total,
        "tokens": view.usage.output_tokens,
    }))
""")


def _median_load(ext: str, n: int) -> float | None:
    times = []
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(n):
        out = subprocess.run([sys.executable, "-c", _LOAD, ext], capture_output=True, text=True, timeout=120, env=env)
        if out.returncode != 0:
            return None
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def _stream_probe() -> dict | None:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NO_PROXY="127.0.0.1,localhost", FOUNDRY_MAGICS_HOME=tempfile.mkdtemp())
    out = subprocess.run([sys.executable, "-c", _STREAM], capture_output=True, text=True, timeout=180, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    n = 5 if quick else 15
    ours = _median_load("foundry_magics", n)
    if importlib.util.find_spec("jupyter_ai_magics") is not None:
        peer = _median_load("jupyter_ai_magics", max(3, n // 3))
        peer_label = PEER if peer is not None else f"{PEER}: failed to load"
    else:
        peer, peer_label = None, f"{PEER}: skipped (not installed)"
    rows = [{
        "name": "%load_ext foundry_magics (median, fresh process)",
        "value": round(ours * 1000, 1) if ours is not None else None,
        "unit": "ms",
        "target": f"< {TARGET_S * 1000:.0f} ms",
        "peer": peer_label,
        "peer_value": round(peer * 1000, 1) if peer is not None else None,
        "ratio": round(peer / ours, 1) if peer and ours else None,
    }]
    probe = _stream_probe()
    if probe is not None:
        rows.append({
            "name": "streaming: first token -> first display update", "value": round(probe["first_update_ms"], 2),
            "unit": "ms", "target": "< 50 ms (shown at once)", "peer": None, "peer_value": None, "ratio": None,
        })
        rows.append({
            "name": f"streaming: display updates/s ({probe['tokens']} tokens/reply at 50 tokens/s)",
            "value": round(probe["updates"] / probe["seconds"], 1), "unit": "updates/s",
            "target": "<= 10/s + final render", "peer": None, "peer_value": None, "ratio": None,
        })
    return rows


def _print(rows: list[dict]) -> None:
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']} {r['unit']}"
        peer = ""
        if r.get("peer"):
            peer = f"   peer {r['peer']}" + (f" = {r['peer_value']} {r['unit']}" if r["peer_value"] is not None else "")
            if r.get("ratio"):
                peer += f" ({r['ratio']}x slower)"
        print(f"{r['name']:<70} {value:>14}   target {r['target']}{peer}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    _print(run(ap.parse_args().quick))
