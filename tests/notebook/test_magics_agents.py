"""`%%foundry --agent` / `--conversation`, `%foundry agents`, `fm.agents()` and server-side
conversations in `%foundry chat`, in-process against the emulator's project; and a three-turn
agent conversation that continues after a kernel restart (two kernels, one FOUNDRY_MAGICS_HOME)."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

import foundry_magics as fm
from foundry_magics.notebook.render import ReplyView

from magics_helpers import bodies, emu, ip, run  # noqa: F401 - emu and ip are fixtures

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def project(ip, emu):
    fm.connect(emu.url + "/api/projects/demo", auth="none", model="gpt-4o-mini")
    return emu


def markdown_of(ran) -> str:
    return ran.outputs[-1].data.get("text/markdown", "")


# ----------------------------------------------------------------------------- --agent


def test_agent_cell_streams_tool_lines_above_the_text_and_clickable_footnotes(ip, project):
    ran = run(ip, "%%foundry --agent helpdesk\nMy printer shows error 49. What should I do?")
    assert ran.result.error_in_exec is None, ran.everything
    view = ran.value
    assert isinstance(view, ReplyView) and view.agent == "helpdesk:2" and view.complete
    body = bodies(project, "/api/projects/demo/openai/v1/responses")[-1]
    assert body["agent_reference"] == {"type": "agent_reference", "name": "helpdesk"} and body["stream"] is True
    assert "model" not in body  # the agent's model, not the connection's
    md = markdown_of(ran)
    lines = md.split("\n\n")
    assert lines[0].startswith("<sub>🔧 *file search* — searched files for") and "<br>🔧 *web search*" in lines[0]
    assert md.index("🔧") < md.index("[emulated]")  # tool calls above the text
    # numbered footnotes with clickable links, and the marks in the text link to them too
    links = re.findall(r"^(\d)\. \[([^\]]+)\]\((https://kb\.contoso\.example/[^)]+)\)$", md, re.M)
    assert [n for n, _, _ in links] == ["2", "3"] and "1. " in md and "(file: assistant-" in md
    assert re.search(r"\[\[2\]\]\(https://kb\.contoso\.example/", md)
    assert "**Sources**" in md and "agent helpdesk:2" in md
    # the live display showed the tool lines while the text streamed
    assert any("🔧 web search" in t for t in ran.texts[:-1])
    plain = ran.final
    assert plain.startswith("🔧 file search:") and "[2] Contoso KB:" in plain
    meta = ran.outputs[-1].metadata["foundry_magics"]
    assert meta["agent"] == "helpdesk:2" and len(meta["citations"]) == 3 and len(meta["tool_calls"]) == 2


def test_agent_version_no_stream_out_and_json(ip, project):
    ran = run(ip, "%%foundry --agent helpdesk:1 --no-stream -o answer\nWhere are the printer drivers?")
    assert ran.result.error_in_exec is None, ran.everything
    assert ip.user_ns["answer"] == ran.value.text and "printer drivers" in ip.user_ns["answer"]
    assert bodies(project, "/responses")[-1]["agent_reference"]["version"] == "1"
    assert [t.type for t in ran.value.tool_calls] == ["file_search_call"]
    ran = run(ip, "%%foundry --agent researcher -f json -o facts\nDescribe a printer as JSON.")
    assert ran.result.error_in_exec is None, ran.everything
    assert isinstance(ip.user_ns["facts"], dict) and ran.value.parse_error is None
    assert ran.outputs[-1].data["application/json"] == ip.user_ns["facts"]


def test_line_form_and_html(ip, project):
    ran = run(ip, "%foundry --agent calculator What is 6 times 7?")
    assert ran.result.error_in_exec is None and "printed 42" in ran.value.text
    assert "🔧 code interpreter: ran code: print(6 * 7)" in ran.final
    ran = run(ip, "%%foundry --agent researcher -f html\nWho makes printers?")
    html = ran.outputs[-1].data["text/html"]
    assert '<a href="https://kb.contoso.example/' in html and 'target="_blank"' in html and "🔧 web search" in html


def test_dry_run_shows_the_agent_request_and_sends_nothing(ip, project):
    before = len(bodies(project))
    ran = run(ip, "%%foundry --agent helpdesk:2 --conversation desk --dry-run\nHello")
    req = ran.value
    assert req["json"] == {"agent_reference": {"type": "agent_reference", "name": "helpdesk", "version": "2"},
                           "input": "Hello", "conversation": "<new conversation: created when sent>", "stream": True}
    assert req["url"].endswith("/api/projects/demo/openai/v1/responses") and len(bodies(project)) == before


@pytest.mark.parametrize("cell, message", [
    ("%%foundry --agent helpdesk --api chat\nx", "Responses API"),
    ("%%foundry --agent 'help desk'\nx", "NAME or NAME:VERSION"),
    ("%%foundry --agent helpdesk:\nx", "NAME or NAME:VERSION"),
    ("%%foundry --chat a --conversation b\nx", "use one of them"),
    ("%%foundry --conversation ''\nx", "non-empty name"),
    ("%%foundry --df df --out c --agent helpdesk\n{x}", "cannot be used with --df"),
    ("%%foundry --agnet helpdesk\nx", "Did you mean --agent"),
])
def test_bad_agent_options_are_one_readable_line(ip, project, cell, message):
    ran = run(ip, cell)
    assert ran.result.error_in_exec is None
    assert message in ran.everything and "Traceback" not in ran.everything


def test_agents_on_a_connection_that_is_not_a_project(ip, emu):
    fm.connect(emu.url + "/openai/v1", auth="none", model="gpt-4o-mini")
    for cell in ("%%foundry --agent helpdesk\nhello", "%foundry agents"):
        ran = run(ip, cell)
        assert "Agents live on a Foundry project endpoint: https://RES.services.ai.azure.com/api/projects/P" \
            in ran.everything
        assert "Configuration problem" in ran.everything and "Traceback" not in ran.everything
    fm.connect("emulator")
    ran = run(ip, "%%foundry --agent helpdesk\nhello")
    assert "/api/projects/demo" in ran.everything  # the fix names the emulator's own project URL


def test_unknown_agent_names_the_fix(ip, project):
    ran = run(ip, "%%foundry --agent nobody\nhello")
    assert "Not found" in ran.everything and "%foundry agents" in ran.everything


# ----------------------------------------------------------------------------- %foundry agents, fm.agents()


def test_agents_command_and_fm_agents(ip, project):
    ran = run(ip, "%foundry agents")
    table = ran.outputs[-1].data["text/plain"]
    assert table.splitlines()[0] == "Agents"
    assert re.search(r"helpdesk\s+2\s+gpt-4o-mini\s+You are Contoso's IT helpdesk\.", table)
    assert "researcher" in table and "calculator" in table
    from foundry_magics.notebook.agents import agents

    frame = agents()
    assert list(frame.columns) == ["name", "version", "model", "instructions", "tools"]
    assert frame.set_index("name").loc["calculator", "tools"] == "code_interpreter"


# ----------------------------------------------------------------------------- --conversation


def test_a_server_conversation_by_name_chat_show_list_and_reset(ip, project, fm_home):
    for prompt in ("My name is Ada and my printer jams.", "What is my name?", "What jams?"):
        ran = run(ip, f"%%foundry --agent helpdesk --conversation desk\n{prompt}")
        assert ran.result.error_in_exec is None, ran.everything
    assert "(turn 3)" in ran.value.text and "My name is Ada" in ran.value.text
    convs = {b.get("conversation") for b in bodies(project, "/responses") if "conversation" in b}
    assert len(convs) == 1 and next(iter(convs)).startswith("conv_")
    created = bodies(project, "/openai/v1/conversations")
    assert created[-1]["metadata"]["name"] == "desk"
    show = run(ip, "%foundry chat show desk")
    md = markdown_of(show)
    assert "on the service" in md and "3 turns, 12 items" in md and md.count("**user:**") == 3
    assert "🔧 web_search_call" in md
    listing = run(ip, "%foundry chat list").final
    assert re.search(r"desk\s+3\s+on the service\s+conv_\w+\s+helpdesk", listing)
    # the history log records the agent and the conversation
    from foundry_magics.store.history import History

    rows = History().recent(3)
    assert {r["agent"] for r in rows} == {"helpdesk:2"}  # the version that answered and {r["conversation"] for r in rows} == {"desk"}
    assert {r["conversation_id"] for r in rows} == convs
    table = run(ip, "%foundry history -n 2").final
    assert re.search(r"agent\s+conversation$", table.splitlines()[1]) and re.search(r"helpdesk:2\s+desk$", table)
    # --new starts it afresh (a new conversation on the service); reset forgets the name
    ran = run(ip, "%%foundry --agent helpdesk --conversation desk --new\nHello again")
    assert "(turn" not in ran.value.text and ran.value.conversation not in convs
    reset = run(ip, "%foundry chat reset desk")
    assert "starts a new one" in reset.final
    ran = run(ip, "%%foundry --agent helpdesk --conversation desk\nAnd now?")
    assert "(turn" not in ran.value.text


def test_a_conversation_without_an_agent_uses_the_model(ip, project):
    run(ip, "%%foundry --conversation plain\nRemember the colour blue.")
    ran = run(ip, "%%foundry --conversation plain --no-stream\nWhich colour?")
    assert "(turn 2)" in ran.value.text and ran.value.agent is None
    assert bodies(project, "/responses")[-1]["model"] == "gpt-4o-mini"


# ----------------------------------------------------------------------------- a kernel restart


nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SETUP = ("import os\nimport foundry_magics as fm\n%load_ext foundry_magics\n"
         'fm.connect(os.environ["FM_TEST_PROJECT"], auth="none")')
TURN = "%%foundry --agent helpdesk --conversation helpdesk-chat\n{}"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / "fm-test-python"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "foundry-magics test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "fm-test-python"


def _run_kernel(cells: list[str], env: dict[str, str], kernel_name: str, work) -> list:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=60, startup_timeout=90,
                                     resources={"metadata": {"path": str(work)}})
    client.execute(env=env, cwd=str(work))  # a kernel of its own, shut down at the end
    return nb.cells


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_agent_conversation_continues_after_a_kernel_restart(tmp_path, fm_home, kernel_name):
    from foundry_magics.emulator import Emulator

    from conftest import AZURE_VARS

    with Emulator(lifetime=240) as e:
        env = {k: v for k, v in os.environ.items() if k not in AZURE_VARS}
        env.update(FOUNDRY_MAGICS_HOME=str(fm_home), FM_TEST_PROJECT=e.url + "/api/projects/demo",
                   IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_PLATFORM_DIRS="1")
        work = tmp_path / "work"
        work.mkdir()
        first = _run_kernel([SETUP, TURN.format("My name is Ada and the printer on floor 3 jams."),
                             TURN.format("Which floor is my printer on?")], env, kernel_name, work)
        second = _run_kernel([SETUP, TURN.format("What was my name again?"), "%foundry chat show helpdesk-chat"],
                             env, kernel_name, work)
        conversations = {b.get("conversation") for (_m, t, _h, b) in e.requests
                         if isinstance(b, dict) and t.endswith("/responses")}

    def shown(cell) -> dict:
        out = [o for o in cell.outputs if o.get("output_type") in ("display_data", "execute_result", "update_display_data")]
        assert out, cell.outputs
        return out[-1]["data"]

    assert "(turn 2)" in shown(first[2])["text/plain"]
    third = shown(second[1])
    assert "(turn 3)" in third["text/plain"] and "My name is Ada" in third["text/plain"]  # after the restart
    assert re.search(r"\[\[\d\]\]\(https://kb\.contoso\.example/", third["text/markdown"])  # clickable citations
    assert re.search(r"^\d\. \[Contoso KB: [^\]]+\]\(https://kb\.contoso\.example/", third["text/markdown"], re.M)
    assert len(conversations) == 1  # one server conversation across both kernels
    transcript = shown(second[2])["text/markdown"]
    assert "3 turns" in transcript and transcript.count("**user:**") == 3
