"""The benchmark harness: every benchmarks/bench_*.py, one table, JSON in benchmarks/results/.

    python benchmarks/run.py --quick          # about two minutes on 2 cores
    python benchmarks/run.py                  # the full figures of DESIGN.md's targets
    python benchmarks/run.py --only throughput,dedup

Each module has `run(quick: bool) -> list[dict]`; a row is
    {"name", "value", "unit", "target", "peer", "peer_value", "ratio", "note"}
plus optionally "better": "higher" | "lower" (how to read value against peer_value; default
"higher") and "ok": whether the target is met. `ratio` is the bench's own figure against a
ceiling or an ideal (named in the note); "vs peer" is computed here, from peers measured in
the same run. Peers that are not installed are reported as skipped, never made up.
Every bench starts its own emulator in a separate process (server and client do not share
a GIL) on 127.0.0.1 and stops it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor() or None}
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def discover(only: set[str] | None) -> list[Path]:
    mods = sorted(HERE.glob("bench_*.py"))
    if only:
        mods = [m for m in mods if m.stem.removeprefix("bench_") in only or m.stem in only]
    return mods


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def vs_peer(row: dict) -> str:
    v, p = row.get("value"), row.get("peer_value")
    if not isinstance(v, (int, float)) or not isinstance(p, (int, float)) or not v or not p:
        return ""
    factor = v / p if row.get("better", "higher") == "higher" else p / v
    return f"{factor:.2f}x " + ("better" if factor >= 1 else "worse")


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def print_table(rows: list[dict]) -> None:
    head = ["benchmark", "value", "target", "ratio", "peer", "peer value", "vs peer", "ok"]
    table = []
    for r in rows:
        table.append([
            r["name"], f"{fmt(r.get('value'))} {r.get('unit') or ''}".strip(), str(r.get("target") or ""),
            fmt(r.get("ratio")), str(r.get("peer") or ""),
            f"{fmt(r.get('peer_value'))} {r.get('unit') or ''}".strip() if r.get("peer_value") is not None else "",
            vs_peer(r), {True: "yes", False: "NO", None: ""}[r.get("ok")],
        ])
    widths = [min(60, max(len(h), *(len(row[i]) for row in table))) for i, h in enumerate(head)] if table else []
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(c[:60].ljust(w) for c, w in zip(row, widths)))
    notes = [(r["name"], r["note"]) for r in rows if r.get("note")]
    if notes:
        print()
        for name, note in notes:
            print(f"* {name}: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, about two minutes on 2 cores")
    ap.add_argument("--only", default="", help="comma-separated bench names (throughput, ratelimit, ...)")
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"), help="where to write the results")
    args = ap.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()} or None
    rows: list[dict] = []
    timings = {}
    failed = []
    for path in discover(only):
        t0 = time.monotonic()
        print(f"== {path.stem} ...", file=sys.stderr, flush=True)
        try:
            mod = load(path)
            if not hasattr(mod, "run"):
                continue
            got = mod.run(quick=args.quick)
            for r in got:
                r.setdefault("bench", path.stem)
            rows.extend(got)
        except Exception:  # one broken bench must not hide the others' figures
            failed.append(path.stem)
            traceback.print_exc()
            rows.append({"bench": path.stem, "name": f"{path.stem}: FAILED", "value": None, "unit": "",
                         "target": "", "peer": None, "peer_value": None, "ratio": None, "ok": False,
                         "note": "the bench raised; see the traceback above"})
        timings[path.stem] = round(time.monotonic() - t0, 1)
        print(f"   {path.stem}: {timings[path.stem]} s", file=sys.stderr, flush=True)
    print()
    print_table(rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
              "machine": machine(), "seconds": timings, "rows": rows}
    for r in rows:
        r["vs_peer"] = vs_peer(r) or None
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwritten: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
