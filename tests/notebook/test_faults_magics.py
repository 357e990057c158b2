"""A streamed `%%foundry` cell whose stream dies shows the partial text, marked incomplete,
and the error (cause and fix) in one readable block: no traceback, the kernel stays usable,
and the history log keeps what arrived.

In process (InteractiveShell + the emulator in its own process) for the exact content, then
once in a real kernel (nbclient) to check that the saved notebook holds a single output.
"""

from __future__ import annotations

import json
import sys

import pytest

from magics_helpers import ip, run  # noqa: F401 - ip is a fixture

pytestmark = pytest.mark.timeout(120)

PROMPT = "Write a long answer about rivers, seas, lakes, glaciers and the water cycle."
CLEAN = dict(stream_cut_rate=0.0, token_delay=0.0, latency=0.0, fail_rate=0.0)


@pytest.fixture(scope="module")
def emu():
    from foundry_magics.emulator import Emulator

    e = Emulator(process=True, lifetime=600)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def shell(ip, emu):  # noqa: F811
    emu.configure(**CLEAN)
    ran = run(ip, f"%foundry connect {emu.url}/openai/v1 --auth none --model gpt-4o-mini")
    assert ran.result.error_in_exec is None, ran.everything
    yield ip
    emu.configure(**CLEAN)


def full_reply(ip, api: str = "chat") -> str:
    ran = run(ip, f"%%foundry --no-stream -f text --api {api}\n{PROMPT}")
    assert ran.value.complete
    return ran.value.text


def assert_no_traceback(ran):
    text = ran.everything
    assert "Traceback" not in text and 'File "' not in text and "RemoteProtocolError(" not in text, text
    assert ran.result.error_in_exec is None and ran.result.error_before_exec is None


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_stream_cut_shows_partial_text_marked_incomplete_with_the_error(shell, emu, api):
    whole = full_reply(shell, api)
    emu.configure(stream_cut_rate=1.0)
    ran = run(shell, f"%%foundry --api {api} -o answer\n{PROMPT}")
    assert_no_traceback(ran)
    view = ran.value
    partial = view.text
    assert partial and whole.startswith(partial) and len(partial) < len(whole)

    # the final state of the (single, live-updated) display: text, then the error block
    final = ran.outputs[-1]
    plain, md = final.data["text/plain"], final.data["text/markdown"]
    assert plain.startswith(partial + "\n\n")
    block = plain[len(partial):].strip()
    assert block.splitlines()[0].startswith("The stream stopped early: The stream was cut after "
                                            f"{len(partial)} characters")
    assert "Fix:" in block and "incomplete" in block and "run it again" in block
    assert "partial text received is shown above" in block
    assert md.startswith(partial) and "**⚠ The stream stopped early:**" in md and "**Fix:**" in md
    assert final.metadata["foundry_magics"]["complete"] is False
    assert final.metadata["foundry_magics"]["error"] == "StreamError"
    assert "▌" not in plain  # the streaming cursor is gone: this is the final render

    # what code sees: Out/_ says incomplete; the error is attached
    assert view.complete is False and type(view.error).__name__ == "StreamError"
    assert view.error.partial == partial
    assert shell.user_ns["answer"] == partial

    # the history log kept what arrived, as a failed call
    hist = run(shell, "%foundry history -n 1")
    assert_no_traceback(hist)
    from foundry_magics.notebook import prompting

    last = prompting.prompter().history.recent(1)[0]
    assert last["status"] == "error" and last["reply"] == partial and "StreamError" in (last["error"] or "")

    emu.configure(stream_cut_rate=0.0)
    again = run(shell, f"%%foundry --api {api}\n{PROMPT}")
    assert_no_traceback(again)
    assert again.value.complete and again.value.text == whole


def test_stalled_stream_past_the_timeout_is_the_same_one_block(shell, emu):
    whole = full_reply(shell)
    shell.run_line_magic("config", "FoundryMagics.timeout = 0.5")
    emu.configure(token_delay=1.5)  # the first tokens come, then nothing for longer than the timeout
    ran = run(shell, f"%%foundry\n{PROMPT}")
    assert_no_traceback(ran)
    view = ran.value
    assert view.complete is False and type(view.error).__name__ == "StreamError"
    assert whole.startswith(view.text) and len(view.text) < len(whole)
    plain = ran.outputs[-1].data["text/plain"]
    assert plain.startswith(view.text) and "The stream stopped early" in plain and "ReadTimeout" in plain
    assert "Fix:" in plain


def test_no_answer_at_all_is_one_error_block_without_partial_text(shell, emu):
    shell.run_line_magic("config", "FoundryMagics.timeout = 0.3")
    shell.run_line_magic("config", "FoundryMagics.max_retries = 0")
    emu.configure(latency=2.0)
    ran = run(shell, f"%%foundry\n{PROMPT}")
    assert_no_traceback(ran)
    assert ran.value is None
    plain = ran.outputs[-1].data["text/plain"]
    assert plain.startswith("Timed out: No answer from 127.0.0.1 within the timeout")
    assert "\nFix: Raise timeout=" in plain and "partial" not in plain
    assert ran.outputs[-1].metadata == {"foundry_magics": {"error": "TimeoutError"}}


# --------------------------------------------------------------------------- in a real kernel


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_saved_notebook_holds_one_output_with_partial_text_and_error(tmp_path, fm_home, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from foundry_magics.emulator import Emulator

    spec = tmp_path / "jupyter" / "kernels" / "fm-stream"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fm", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    with Emulator(process=True, stream_cut_rate=1.0, token_delay=0.01, lifetime=120) as emu:
        monkeypatch.setenv("FM_EMU", emu.url)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell("%load_ext foundry_magics\nimport os\nimport foundry_magics as fm\n"
                                      "fm.connect(os.environ['FM_EMU'] + '/openai/v1', auth='none', "
                                      "model='gpt-4o-mini');"),
            nbformat.v4.new_code_cell(f"%%foundry\n{PROMPT}"),
            nbformat.v4.new_code_cell("print('still alive', 6 * 7)"),
        ]
        nbclient.NotebookClient(nb, kernel_name="fm-stream", timeout=60,
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, str(path))
    saved = nbformat.read(str(path), as_version=4)
    outs = saved.cells[1].outputs
    assert len(outs) == 1, [o.get("output_type") for o in outs]  # one block, updated in place
    out = outs[0]
    assert out.output_type == "display_data"
    plain = out.data["text/plain"]
    assert plain.startswith("[emulated] ") and "\n\nThe stream stopped early: The stream was cut after" in plain
    assert "Fix:" in plain and "incomplete" in plain
    assert out.metadata["foundry_magics"]["complete"] is False
    assert all(o.output_type != "error" for c in saved.cells for o in c.outputs)
    assert saved.cells[2].outputs[0].text == "still alive 42\n"
