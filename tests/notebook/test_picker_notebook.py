"""The picker in a real kernel (nbclient): a key pasted into it works, and the executed
notebook, saved *with widget state*, does not contain it. Neither do the registry, the
history DB, IPython's own history, or any other file the kernel wrote."""

from __future__ import annotations

import json
import sys

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10: tomli, a dependency there
    import tomli as tomllib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

CELLS = [
    "import os\nimport foundry_magics as fm\np = fm.picker()\np",
    # the key comes from the environment: the notebook's own source must not hold it either
    'p.endpoint.value = os.environ["FM_TEST_EMULATOR_URL"] + "/openai/v1"\n'
    'p.name.value = "nb-pasted"\n'
    'p.key.value = os.environ["FOUNDRY_TEST_KEY"]   # as if pasted into the Password field\n'
    "print(repr(p.key.value), p._secret is not None)",
    "p.test_button.click()\nprint(p.last_result.ok, p.model.value)\nprint(p.last_result.summary())",
    "p.save_button.click()\np.use_button.click()\nprint(fm.current_connection().name)\nprint(p.status.value)",
    # a real call with the pasted key, logged to the history DB
    "from foundry_magics.store.history import History\n"
    "with fm.FoundryClient(on_record=History().record) as client:\n"
    '    reply = client.chat("Does the pasted key work?")\n'
    "print(reply.emulated, reply.text[:10])",
    "p",  # displayed again: its state is stored with the notebook
]


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A kernelspec for this very interpreter (the venv), whatever else is installed."""
    spec = tmp_path / "jupyter" / "kernels" / "fm-test-python"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "foundry-magics test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "fm-test-python"


def test_pasted_key_never_reaches_the_saved_notebook(tmp_path, fm_home, sentinel_key, kernel_name):
    import os

    from foundry_magics.emulator import Emulator

    from conftest import AZURE_VARS

    with Emulator(api_key=sentinel_key, lifetime=200) as emu:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
        work = tmp_path / "work"
        work.mkdir()
        ipython_dir = tmp_path / "ipython"
        env = {k: v for k, v in os.environ.items() if k not in AZURE_VARS}
        env.update(FOUNDRY_MAGICS_HOME=str(fm_home), FOUNDRY_TEST_KEY=sentinel_key,
                   FM_TEST_EMULATOR_URL=emu.url, IPYTHONDIR=str(ipython_dir), JUPYTER_PLATFORM_DIRS="1")
        client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=90, startup_timeout=90,
                                         store_widget_state=True, resources={"metadata": {"path": str(work)}})
        client.execute(env=env, cwd=str(work))
        stats = emu.stats()

    outputs = ["".join(o.get("text", "") for o in cell.get("outputs", [])) for cell in nb.cells]
    assert outputs[1].split() == ["''", "True"]
    assert outputs[2].startswith("True gpt-4o-mini"), outputs[2]
    assert outputs[3].startswith("nb-pasted"), outputs[3]
    assert outputs[4].strip() == "True [emulated]", outputs[4]
    assert stats["requests"] >= 2  # the listing and the chat really went out with the key

    path = work / "picker.ipynb"
    nbformat.write(nb, str(path))
    text = path.read_text()
    assert sentinel_key not in text
    # the check is not vacuous: the widget state is in the file, the key field with it (empty)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    passwords = [m for m in state.values() if m["model_name"] == "PasswordModel"]
    assert passwords and all(m["state"].get("value", "") == "" for m in passwords)
    statuses = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    assert any("Now using" in s for s in statuses)

    registry = fm_home / "connections.toml"
    saved = tomllib.loads(registry.read_text())["connections"]["nb-pasted"]
    assert saved["key_prompt"] is True
    assert (fm_home / "history.sqlite").exists()
    scanned = 0
    for root in (fm_home, ipython_dir, work):
        for f in root.rglob("*"):
            if f.is_file():
                scanned += 1
                assert sentinel_key.encode() not in f.read_bytes(), f
    assert scanned >= 4
