"""Running the tutorial notebooks as tests (nbval), each in a clean world.

The notebooks are committed without outputs, so that a reader (on GitHub, on Binder) starts
from a clean page and nothing machine-specific or secret can ride along. nbval compares only
cells that carry an output *and* an execution count, so the expected output of each cell
marked ``# NBVAL_CHECK_OUTPUT`` is kept beside the tests instead, in
``tests/notebook_outputs/NAME.json``, recorded from a run on the emulator and sanitized.

For a test run, the notebooks folder is copied to a temporary directory (so relative data
paths work and nothing is written into the work tree), each checked cell of the copy gets its
expected output back, and ``pytest --nbval-lax`` runs the copy in a subprocess whose
environment has a fresh ``FOUNDRY_MAGICS_HOME``, a fresh ``IPYTHONDIR`` and none of the Azure
variables. The kernel is the Python running the tests (``--nbval-current-env``).

After changing a checked cell, record its expected output again:

    .venv/bin/python tests/notebook_harness.py --update [NAME ...]

and read the diff of ``tests/notebook_outputs/`` before committing it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
EXPECTED = Path(__file__).resolve().parent / "notebook_outputs"
CELL_TIMEOUT = 60  # seconds per cell; a notebook as a whole should take well under a minute
RUN_TIMEOUT = 240  # seconds for one notebook's subprocess, kernel start included

# Sanitizers, applied by nbval to both the expected and the actual output of a checked cell,
# and to recorded outputs before they are written: nothing that differs between machines or
# runs (emulator ports, temporary folders, timings) is stored or compared.
STATIC_SANITIZERS: tuple[tuple[str, str], ...] = (
    (r"(127\.0\.0\.1|localhost):\d{4,5}\b", r"\1:PORT"),
    (r"(?:/private)?/(?:tmp|var/folders)/[^\s'\"<>)\]]*", "<tmp>"),
    (r"\b\d+(?:\.\d+)?\s?ms\b", "N ms"),
    (r"\b\d+\.\d+\s?s\b", "N.N s"),
)


def azure_vars() -> tuple[str, ...]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from conftest import AZURE_VARS
    finally:
        sys.path.pop(0)
    return tuple(AZURE_VARS)


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def read(path: Path) -> Any:
    import nbformat

    return nbformat.read(str(path), as_version=4)


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def is_checked(cell: Any) -> bool:
    """Whether nbval --nbval-lax compares this cell's output (comment marker or metadata tag)."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    options = dict(find_metadata_tags(cell.metadata))
    options.update(dict(find_comment_markers(cell.source)))
    return bool(options.get("check")) and not options.get("skip")


def is_skipped(cell: Any) -> bool:
    """Whether nbval skips this cell (# NBVAL_SKIP or the nbval-skip tag)."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    options = dict(find_metadata_tags(cell.metadata))
    options.update(dict(find_comment_markers(cell.source)))
    return bool(options.get("skip"))


def clean_env(home: Path, ipython_dir: Path) -> dict[str, str]:
    """The environment of a notebook kernel: the caller's, with a fresh user home for the
    extension and IPython, and no Azure configuration (the notebooks run on the emulator)."""
    env = {k: v for k, v in os.environ.items() if k not in azure_vars()}
    env.pop("FOUNDRY_TEST_KEY", None)
    env["FOUNDRY_MAGICS_HOME"] = str(home)
    env["IPYTHONDIR"] = str(ipython_dir)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def sanitizers(*paths: tuple[Path, str]) -> list[tuple[str, str]]:
    """Per-run sanitizers: the given machine paths (most specific first), then the static ones."""
    pairs = [(re.escape(str(p)), label) for p, label in sorted(paths, key=lambda x: -len(str(x[0])))]
    pairs.append((re.escape(str(REPO)), "<repo>"))
    if len(str(Path.home())) > 1:
        pairs.append((re.escape(str(Path.home())) + r"(?=/|\b)", "<home>"))
    return pairs + list(STATIC_SANITIZERS)


def write_sanitize_file(path: Path, pairs: Iterable[tuple[str, str]]) -> Path:
    # nbval's format: "regex: R" then "replace: S" on the next line, one pair per section.
    text = "".join(f"[pattern{i}]\nregex: {rx}\nreplace: {rep}\n\n" for i, (rx, rep) in enumerate(pairs))
    path.write_text(text, encoding="utf-8")
    return path


def sanitize(value: Any, pairs: Iterable[tuple[str, str]]) -> Any:
    pairs = list(pairs)
    if isinstance(value, str):
        for rx, rep in pairs:
            value = re.sub(rx, rep, value)
        return value
    if isinstance(value, list):
        return [sanitize(v, pairs) for v in value]
    if isinstance(value, dict):
        return {k: sanitize(v, pairs) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------- expected outputs

def expected_path(notebook: Path) -> Path:
    return EXPECTED / (notebook.stem + ".json")


def load_expected(notebook: Path) -> list[dict[str, Any]]:
    path = expected_path(notebook)
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _queues(notebook: Path) -> dict[str, list[list[dict[str, Any]]]]:
    """Recorded outputs by cell source, in notebook order (the same source may be checked twice)."""
    queues: dict[str, list[list[dict[str, Any]]]] = {}
    for entry in load_expected(notebook):
        queues.setdefault(entry["source"], []).append(entry["outputs"])
    return queues


def stale_cells(notebook: Path) -> list[str]:
    """Checked cells with no recorded output for their current source (and recordings for
    cells that are no longer checked): each one a line saying which cell and what to do."""
    nb = read(notebook)
    queues = _queues(notebook)
    problems = []
    for index, cell in enumerate(code_cells(nb)):
        if is_checked(cell):
            if queues.get(cell.source):
                queues[cell.source].pop(0)
            else:
                last = cell.source.strip().splitlines()[-1] if cell.source.strip() else ""
                problems.append(f"{notebook.name} code cell {index} ({last[:60]!r}) has no recorded output")
    for source, left in queues.items():
        for _ in left:
            problems.append(f"{expected_path(notebook).name} records a cell that is no longer checked: "
                            f"{source.strip()[:60]!r}")
    return problems


def inject_expected(nb: Any, notebook: Path) -> Any:
    """A copy of `nb` whose checked cells carry their recorded output, so nbval compares them."""
    nb = copy.deepcopy(nb)
    queues = _queues(notebook)
    import nbformat

    for index, cell in enumerate(code_cells(nb)):
        if is_checked(cell) and queues.get(cell.source):
            cell.outputs = [nbformat.from_dict(o) for o in queues[cell.source].pop(0)]
            for out in cell.outputs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = index + 1
            cell.execution_count = index + 1
    return nb


def prepare_copy(dest: Path, names: Iterable[str] | None = None, *, with_expected: bool = True) -> Path:
    """Copy notebooks/ to dest/notebooks, with recorded outputs injected into checked cells."""
    import nbformat

    target = dest / "notebooks"
    shutil.copytree(NOTEBOOKS, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    if with_expected:
        for nb_path in notebooks():
            if names is None or nb_path.stem in names or nb_path.name in names:
                nbformat.write(inject_expected(read(nb_path), nb_path), str(target / nb_path.name))
    return target


# ---------------------------------------------------------------------- running

def run_nbval(notebook: Path, workdir: Path) -> subprocess.CompletedProcess:
    """Run one notebook under `pytest --nbval-lax` in a subprocess with a clean environment."""
    work = Path(workdir)
    copy_dir = prepare_copy(work, [notebook.name])
    home, ipy = work / "fm-home", work / "ipython"
    sanitize_file = write_sanitize_file(work / "nbval-sanitize.cfg",
                                        sanitizers((copy_dir, "<notebooks>"), (home, "<fm-home>"), (work, "<work>")))
    cmd = [
        sys.executable, "-m", "pytest", str(copy_dir / notebook.name),
        "--nbval-lax", "--nbval-current-env", f"--nbval-cell-timeout={CELL_TIMEOUT}",
        f"--nbval-sanitize-with={sanitize_file}", f"--timeout={CELL_TIMEOUT * 2}",
        "-p", "no:cacheprovider", "--rootdir", str(work), "-o", "addopts=", "-q", "-rfE", "--color=no",
    ]
    return subprocess.run(cmd, cwd=str(copy_dir), env=clean_env(home, ipy), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def record(notebook: Path) -> list[dict[str, Any]]:
    """Execute `notebook` as the test does and return the sanitized outputs of its checked cells."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

    with tempfile.TemporaryDirectory(prefix="fm-nb-record-") as tmp:
        work = Path(tmp)
        copy_dir = prepare_copy(work, with_expected=False)
        home, ipy = work / "fm-home", work / "ipython"
        nb = read(copy_dir / notebook.name)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(clean_env(home, ipy))
        try:
            # the kernel nbval's --nbval-current-env starts: this Python
            km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager())
            client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT,
                                    resources={"metadata": {"path": str(copy_dir)}})
            client.execute()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        pairs = sanitizers((copy_dir, "<notebooks>"), (home, "<fm-home>"), (work, "<work>"))
        cells = []
        for cell in code_cells(nb):
            if not is_checked(cell):
                continue
            outputs = []
            for out in cell.outputs:
                out = nbformat.from_dict(dict(out))
                out.pop("metadata", None)
                out.pop("execution_count", None)
                out.pop("transient", None)
                outputs.append(sanitize(json.loads(json.dumps(out)), pairs))
            cells.append({"source": cell.source, "outputs": outputs})
    return cells


def update(names: list[str]) -> None:
    EXPECTED.mkdir(exist_ok=True)
    chosen = [nb for nb in notebooks() if not names or nb.stem in names or nb.name in names]
    for nb in chosen:
        cells = record(nb)
        path = expected_path(nb)
        if cells:
            payload = {"notebook": nb.name, "note": "expected outputs of the # NBVAL_CHECK_OUTPUT cells "
                       "(recorded on the emulator by tests/notebook_harness.py --update)", "cells": cells}
            path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path.relative_to(REPO)}: {len(cells)} checked cell(s)")
        elif path.exists():
            path.unlink()
            print(f"{path.relative_to(REPO)}: removed (no checked cells)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="record the expected outputs of checked cells")
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    args = parser.parse_args(argv)
    if args.update:
        update(args.names)
        return 0
    for nb in notebooks():
        for line in stale_cells(nb):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
