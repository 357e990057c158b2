"""The tutorial notebooks run top to bottom under nbval, on the emulator, in a clean world.

Each notebook runs in its own `pytest --nbval-lax` subprocess (see notebook_harness.py): a
fresh FOUNDRY_MAGICS_HOME and IPYTHONDIR, no Azure variables, the kernel of this Python, the
working directory a copy of notebooks/. Cells marked `# NBVAL_CHECK_OUTPUT` are compared
with the outputs recorded in tests/notebook_outputs/.
"""

from __future__ import annotations

import re
import sys
import time

import pytest

import notebook_harness as harness

NOTEBOOKS = harness.notebooks()
COURSE = {  # the course of issue 6, in order: a file prefix and what the lesson must show
    "01-": "quick start",
    "02-": "connections",
    "03-": "conversations and structured output",
    "04-": "DataFrame enrichment",
    "05-": "going further",
}


def _ids(paths):
    return [p.stem for p in paths]


@pytest.mark.slow
@pytest.mark.timeout(harness.RUN_TIMEOUT + 30)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_under_nbval(notebook, tmp_path):
    nb = harness.read(notebook)
    if not harness.code_cells(nb):
        return  # a markdown-only page (the start page): nothing to execute, nbval would collect nothing
    started = time.monotonic()
    proc = harness.run_nbval(notebook, tmp_path)
    took = time.monotonic() - started
    output = proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr.strip() else "")
    assert proc.returncode == 0, f"nbval failed on {notebook.name} (exit {proc.returncode}):\n{output[-12000:]}"
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    cells = sum(not harness.is_skipped(c) for c in harness.code_cells(nb))
    assert re.search(rf"\b{cells} passed\b", summary), f"expected {cells} passed cells, got: {summary}\n{output[-4000:]}"
    print(f"{notebook.name}: {summary} (subprocess {took:.1f} s)")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_checked_cells_have_expected_output(notebook):
    """A `# NBVAL_CHECK_OUTPUT` cell with nothing to compare against would pass vacuously."""
    problems = harness.stale_cells(notebook)
    assert not problems, ("\n".join(problems) + "\nRecord them with: .venv/bin/python tests/notebook_harness.py "
                          f"--update {notebook.stem}   (then read the diff of tests/notebook_outputs/)")


def test_the_course_is_complete():
    names = [p.name for p in NOTEBOOKS]
    missing = [f"{prefix}* ({topic})" for prefix, topic in COURSE.items()
               if not any(n.startswith(prefix) for n in names)]
    assert not missing, f"tutorials missing from notebooks/: {missing}"


def test_the_start_page_links_every_tutorial():
    index = harness.NOTEBOOKS / "00-index.ipynb"
    assert index.exists(), "notebooks/00-index.ipynb is Binder's start page"
    nb = harness.read(index)
    assert not harness.code_cells(nb), "the start page is markdown only"
    text = "\n".join(c.source for c in nb.cells)
    linked = set(re.findall(r"\]\(([^)#\s]+\.ipynb)\)", text))
    tutorials = {p.name for p in NOTEBOOKS if p.name != index.name}
    assert tutorials <= linked, f"not linked from the start page: {sorted(tutorials - linked)}"
    assert linked <= tutorials | {index.name}, f"broken links on the start page: {sorted(linked - tutorials)}"


def test_sanitizers_hide_machine_specifics(tmp_path):
    pairs = harness.sanitizers((tmp_path / "notebooks", "<notebooks>"))
    text = (f"saved to {tmp_path}/notebooks/data.csv; emulator at http://127.0.0.1:43127/openai/v1, "
            "OK in 12 ms, took 0.35 s; scratch /tmp/fm-tutorial-x1y2/connections.toml")
    out = harness.sanitize(text, pairs)
    assert out == ("saved to <notebooks>/data.csv; emulator at http://127.0.0.1:PORT/openai/v1, "
                   "OK in N ms, took N.N s; scratch <tmp>")
    # the file nbval reads holds the same pairs
    cfg = harness.write_sanitize_file(tmp_path / "s.cfg", pairs)
    from nbval.plugin import get_sanitize_patterns

    assert get_sanitize_patterns(cfg.read_text()) == pairs


@pytest.mark.slow
@pytest.mark.timeout(harness.RUN_TIMEOUT + 30)
def test_the_harness_compares_checked_cells_in_a_clean_world(tmp_path, monkeypatch):
    """A synthetic notebook proves the harness is not vacuous: the kernel gets a fresh home, no
    Azure variables, notebooks/ as its working directory; a checked cell whose output differs
    from the recorded one fails, an unchecked one is not compared."""
    import json

    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from conftest import AZURE_VARS

    books, expected = tmp_path / "books", tmp_path / "expected"
    books.mkdir()
    expected.mkdir()
    (books / "data.txt").write_text("relative paths work\n")
    probe = ("# NBVAL_CHECK_OUTPUT\nimport os, pathlib\n"
             "print(os.environ['FOUNDRY_MAGICS_HOME'])\n"
             f"print([v for v in {list(AZURE_VARS)!r} if v in os.environ])\n"
             "print(pathlib.Path('data.txt').read_text().strip())\n"
             f"import sys; print(sys.prefix == {sys.prefix!r})")  # the kernel is this (venv) Python
    answer = "# NBVAL_CHECK_OUTPUT\nprint(6 * 7)"
    show = "# NBVAL_CHECK_OUTPUT\nprint(n)"  # the same source checked twice, with different outputs
    sources = [probe, answer, "n = 1", show, "n = 2", show, "print('not compared')"]
    nb = new_notebook(cells=[new_code_cell(src) for src in sources])
    nbformat.write(nb, str(books / "probe.ipynb"))
    monkeypatch.setattr(harness, "NOTEBOOKS", books)
    monkeypatch.setattr(harness, "EXPECTED", expected)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://must-not-leak.openai.azure.com/")
    monkeypatch.setenv("FOUNDRY_MAGICS_HOME", str(tmp_path / "the-callers-home"))

    def run(reply: str, where: str):
        stream = {"output_type": "stream", "name": "stdout"}
        cells = [{"source": probe, "outputs": [dict(stream, text="<fm-home>\n[]\nrelative paths work\nTrue\n")]},
                 {"source": answer, "outputs": [dict(stream, text=reply)]},
                 {"source": show, "outputs": [dict(stream, text="1\n")]},
                 {"source": show, "outputs": [dict(stream, text="2\n")]}]
        (expected / "probe.json").write_text(json.dumps({"cells": cells}))
        assert harness.stale_cells(books / "probe.ipynb") == []
        return harness.run_nbval(books / "probe.ipynb", tmp_path / where)

    ok = run("42\n", "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "7 passed" in ok.stdout
    wrong = run("41\n", "wrong")
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "1 failed, 6 passed" in wrong.stdout and "Cell outputs differ" in wrong.stdout
