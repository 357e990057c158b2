"""`python -m foundry_magics.demo`: run the quick-start notebook on the built-in emulator.

Executes notebooks/01-quickstart.ipynb with nbclient in a fresh kernel, in a temporary
FOUNDRY_MAGICS_HOME with every Azure variable removed (so nothing real is used and nothing of
yours is touched), prints each cell and what it showed, and writes the executed notebook to a
temporary folder. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from foundry_magics.defaults import ENV_HOME, SERVICE_VARIABLES

__all__ = ["main", "find_notebook", "render_output"]

NOTEBOOK = "01-quickstart.ipynb"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def find_notebook(name: str = NOTEBOOK) -> Path:
    """The tutorial notebook: next to the package in a source checkout, or under share/ in an install."""
    here = Path(__file__).resolve().parent
    candidates = [here.parents[1] / "notebooks" / name,
                  Path(sys.prefix) / "share" / "foundry-magics" / "notebooks" / name,
                  Path.cwd() / "notebooks" / name]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"Cannot find {name}; looked in: " + ", ".join(str(p) for p in candidates))


def render_output(output: dict[str, Any]) -> str:
    """What a terminal can show of one notebook output: markdown/plain text, stream text, errors."""
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("text", "")
    if kind == "error":
        return _ANSI.sub("", "\n".join(output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"]))
    data = output.get("data") or {}
    for mime in ("text/plain", "text/markdown"):
        if mime in data:
            text = data[mime]
            return "".join(text) if isinstance(text, list) else str(text)
    if "application/json" in data:
        import json

        return json.dumps(data["application/json"], indent=2)
    if "text/html" in data:
        return "(HTML output: open the executed notebook to see it)"
    return ""


def _indent(text: str, prefix: str = "  │ ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foundry_magics.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", default=None, help="another notebook to run (default: the quick start)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per cell (default 120)")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient import NotebookClient

    path = Path(args.notebook) if args.notebook else find_notebook()
    nb = nbformat.read(path, as_version=4)
    out_dir = Path(tempfile.mkdtemp(prefix="foundry-magics-demo-"))
    home = out_dir / "home"
    saved = {k: os.environ.get(k) for k in (*SERVICE_VARIABLES, ENV_HOME, "NO_PROXY", "no_proxy")}
    for var in SERVICE_VARIABLES:
        os.environ.pop(var, None)
    os.environ[ENV_HOME] = str(home)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    # The kernel must import this very package (a source checkout need not be installed).
    pkg_root = str(Path(__file__).resolve().parent.parent)
    old_pp = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = pkg_root + (os.pathsep + old_pp if old_pp else "")

    print(f"foundry-magics demo: running {path.name} on the built-in emulator (no Azure account, no network)\n")
    t0 = time.perf_counter()
    from jupyter_client.manager import KernelManager

    # IPC transport: local sockets only (no TCP port, and no warning about one).
    km = (KernelManager(kernel_name="python3") if os.name == "nt"
          else KernelManager(kernel_name="python3", transport="ipc", ip=str(out_dir / "kernel")))
    client = NotebookClient(nb, km=km, timeout=int(args.timeout), allow_errors=True,
                            resources={"metadata": {"path": str(out_dir)}})
    try:
        client.execute()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if old_pp is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_pp

    failed = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            if first.startswith("#"):
                title = first.lstrip("# ").strip()
                print(f"\n── {title} " + "─" * max(3, 72 - len(title)))
            continue
        print("\n  In:  " + cell.source.replace("\n", "\n       "))
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                failed += 1
            text = render_output(output)
            if text.strip():
                print(_indent(text))
    executed = out_dir / path.name
    nbformat.write(nb, executed)
    took = time.perf_counter() - t0
    print(f"\nRan {sum(c.cell_type == 'code' for c in nb.cells)} cells in {took:.1f} s"
          + (f", {failed} with errors" if failed else ", no errors") + ".")
    print(f"Executed notebook: {executed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
