"""The tutorial notebooks (01, 03, 05) and `python -m foundry_magics.demo`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["01-quickstart.ipynb", "03-conversations-structured-output.ipynb", "05-going-further.ipynb"]

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean_and_complete(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    assert any(c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in code)
    assert any("%load_ext foundry_magics" in c.source for c in code)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "real endpoint" in markdown and "%foundry connect https://" in markdown


def _demo(*args, env_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FOUNDRY_MAGICS_HOME=str(env_home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "foundry_magics.demo", *args], capture_output=True, text=True,
                          timeout=240, env=env, cwd=str(ROOT))


def test_demo_runs_the_quickstart_on_the_emulator(fm_home, tmp_path):
    out = _demo(env_home=fm_home)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "using the built-in emulator" in text and "[emulated]" in text and "no errors" in text
    assert "Describe Lisbon (trams, tiles)" in text  # interpolation, printed from the executed cells
    executed = Path(text.strip().splitlines()[-1].split("Executed notebook: ")[1])
    nb = nbformat.read(executed, as_version=4)
    assert all(c.outputs for c in nb.cells if c.cell_type == "code" and "%%foundry" in c.source)
    assert not fm_home.exists() or not any(fm_home.rglob("history.sqlite"))  # the demo used its own home


@pytest.mark.parametrize("name", NOTEBOOKS[1:])
def test_other_tutorials_run_top_to_bottom(name, fm_home):
    out = _demo("--notebook", str(ROOT / "notebooks" / name), env_home=fm_home)
    assert out.returncode == 0 and "no errors" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
