"""Lint and types are part of the test suite: `ruff check` and `mypy`, configured in pyproject.toml.

Both run from the repository root with its configuration, so `./dev test` (and so `.ci/run`) fails on a
finding and prints it. mypy keeps its cache in .mypy_cache (gitignored): a warm run takes a few seconds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: it is part of the test extra (pip install -e '.[test]')")
    return subprocess.run(
        [sys.executable, "-m", tool, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ruff_finds_nothing():
    # the paths are pyproject's; --no-fix so the test never edits files
    done = _run("ruff", "check", "--no-fix", "--output-format", "concise", "foundry_magics", "tests", "benchmarks",
                timeout=120)
    assert done.returncode == 0, f"ruff check found problems (fix them; `ruff check --fix` sorts imports):\n" \
        f"{done.stdout}{done.stderr}"


@pytest.mark.timeout(600)
def test_mypy_finds_nothing():
    # the files to check and the options come from [tool.mypy] in pyproject.toml
    done = _run("mypy", timeout=600)
    assert done.returncode == 0, f"mypy found problems:\n{done.stdout}{done.stderr}"
