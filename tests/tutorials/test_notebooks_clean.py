"""Committed notebooks are clean: no outputs, no execution counts, no saved widget state with a
key, and nothing secret or machine-specific anywhere in the file. The expected outputs that
nbval compares (tests/notebook_outputs/*.json) are held to the same standard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import notebook_harness as harness

NOTEBOOKS = harness.notebooks()
EXPECTED_FILES = sorted(harness.EXPECTED.glob("*.json"))
SENTINEL = "sk-SENTINEL-0123456789abcdef-DO-NOT-LEAK"

# Things that look like a secret. A redacted value (***, <redacted>, REDACTED, $VAR, {var}) is fine.
_REDACTED = r"(?:\*|<|\$|\{|redacted|REDACTED|\(set in)"
SECRET_PATTERNS = {
    "an OpenAI-style key (sk-...)": re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    "an api-key header value": re.compile(rf"api-key[\"']?\s*[:=]\s*[\"']?(?!{_REDACTED})[A-Za-z0-9_\-]{{12,}}",
                                          re.IGNORECASE),
    "a Bearer token": re.compile(rf"Bearer\s+(?!{_REDACTED})[A-Za-z0-9_\-.=]{{16,}}"),
}
MACHINE_PATHS = ("/root", "/home/", "/tmp/", "/Users/", "/private/var/", "C:\\Users", str(harness.REPO))


def secrets_in(text: str) -> list[str]:
    found = [what for what, rx in SECRET_PATTERNS.items() if rx.search(text)]
    if SENTINEL in text:
        found.append("the test sentinel key")
    return found


def paths_in(text: str) -> list[str]:
    return [p for p in MACHINE_PATHS if p in text]


def _ids(paths):
    return [p.name for p in paths]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(notebook):
    import nbformat

    nb = harness.read(notebook)
    nbformat.validate(nb)
    dirty = [f"code cell {i}: {len(c.outputs)} output(s), execution_count {c.execution_count}"
             for i, c in enumerate(harness.code_cells(nb)) if c.outputs or c.execution_count is not None]
    assert not dirty, (f"{notebook.name} was saved with outputs:\n  " + "\n  ".join(dirty) +
                       "\nClear them (JupyterLab: Edit > Clear Outputs of All Cells, then save; or "
                       f"`.venv/bin/jupyter nbconvert --clear-output --inplace notebooks/{notebook.name}`). "
                       "Expected outputs of checked cells live in tests/notebook_outputs/.")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_widget_state_with_a_key(notebook):
    nb = harness.read(notebook)
    state = nb.metadata.get("widgets", {})
    text = json.dumps(state)
    assert not secrets_in(text), f"{notebook.name}: saved widget state holds {secrets_in(text)}"
    for manager in state.values():
        for model in (manager.get("state") or {}).values():
            if model.get("model_name") == "PasswordModel":
                assert not model.get("state", {}).get("value"), f"{notebook.name}: a Password widget value was saved"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_nothing_secret_or_machine_specific(notebook):
    nb = harness.read(notebook)
    whole = notebook.read_text(encoding="utf-8")
    assert not secrets_in(whole), f"{notebook.name} contains {secrets_in(whole)}"
    # Outside the sources (outputs, notebook and cell metadata) no path of this machine either.
    meta = json.dumps(nb.metadata) + "".join(json.dumps(c.metadata) + json.dumps(c.get("outputs", []))
                                             for c in nb.cells)
    assert not paths_in(meta), f"{notebook.name}: machine paths in outputs or metadata: {paths_in(meta)}"


@pytest.mark.parametrize("expected", EXPECTED_FILES, ids=_ids(EXPECTED_FILES))
def test_recorded_outputs_are_clean(expected):
    text = expected.read_text(encoding="utf-8")
    outputs = json.dumps([c["outputs"] for c in json.loads(text)["cells"]])
    assert not secrets_in(text), f"{expected.name} contains {secrets_in(text)}"
    assert not paths_in(outputs), f"{expected.name}: machine paths in recorded outputs: {paths_in(outputs)}"
    notebook = harness.NOTEBOOKS / (expected.stem + ".ipynb")
    assert notebook.exists(), f"{expected.name} records outputs of a notebook that does not exist"


@pytest.mark.parametrize("text, found", [
    (f'"api-key": "{SENTINEL}"', ["an OpenAI-style key (sk-...)", "an api-key header value", "the test sentinel key"]),
    ('api-key: 0123456789abcdef0123', ["an api-key header value"]),
    ('"Authorization": "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi"', ["a Bearer token"]),
    ('api-key: ***', []),
    ('"api-key": "<redacted>"', []),
    ('Authorization: Bearer ***', []),
    ('print("api-key:", request["headers"]["api-key"])', []),
    ('key_header="api-key", api_key_env="AZURE_OPENAI_API_KEY"', []),
])
def test_the_detector_itself(text, found):
    assert secrets_in(text) == found


def test_a_notebook_with_outputs_is_caught(tmp_path, monkeypatch):
    """The checks above reject a notebook saved after running, with a pasted key."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    cell = new_code_cell("p = fm.picker()", execution_count=3,
                         outputs=[new_output("stream", name="stdout", text=f"home is {Path.home()}/x\n")])
    nb = new_notebook(cells=[cell])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "abc": {"model_name": "PasswordModel", "state": {"value": SENTINEL}}}}}
    path = tmp_path / "dirty.ipynb"
    nbformat.write(nb, str(path))
    for check in (test_committed_without_outputs, test_no_widget_state_with_a_key, test_nothing_secret_or_machine_specific):
        with pytest.raises(AssertionError):
            check(path)
