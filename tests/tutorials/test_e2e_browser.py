"""The extension in a real browser: JupyterLab on 127.0.0.1, driven through headless Chromium
(Debian's package, via Python playwright). A person's path, click for click:

1. open a notebook, run `%load_ext foundry_magics` and a `%%foundry` cell, and watch the reply
   stream into the output area and end as rendered Markdown marked as emulated;
2. run `%foundry picker`, fill in an emulator's URL and auth "None", press Test, and see the
   model list in the status line and in the Model field;
3. compare three models (`%%foundry -m A,B,C`): the replies stream into three columns side by
   side, each ending with its model, tokens and time;
4. evaluate two models on a few labelled rows (`df.foundry.evaluate`): the evaluation's display and
   `ev.plot()` show the plot as a PNG image of a real size.

Screenshots land in tests/artifacts/ (e2e-reply.png, e2e-picker.png, e2e-compare.png, e2e-evaluate.png, and
e2e-failure.png when something goes wrong). Skips, with the reason, when playwright, JupyterLab or Chromium are
missing; installs Chromium with apt-get when run as root with CI=true or FOUNDRY_E2E_INSTALL=1.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

import e2e_helpers as e2e

PROMPT = "Write two sentences about testing a Jupyter extension in a real browser."
CELLS = [
    "%load_ext foundry_magics",
    # Nothing is configured, so %%foundry uses the built-in emulator; slow its tokens down a
    # little so that the stream is visible in the browser.
    "from foundry_magics import emulator\n_ = emulator.start(token_delay=0.05)",
    f"%%foundry\n{PROMPT}",
    "%foundry picker",
    "%%foundry -m gpt-4o-mini,gpt-4.1-mini,phi-4\nWrite two sentences about comparing models side by side.",
    # a small evaluation: its display (table, best choice, plot) and the plot alone
    ("import pandas as pd\nimport foundry_magics as fm\n"
     "fm.set_prices({'gpt-4o': (2.50, 10.00), 'phi-4': (0.125, 0.50)});\n"
     "labelled = pd.DataFrame({'text': ['I love it', 'Broken on arrival', 'It is blue', 'Great value'] * 3,\n"
     "                         'label': ['positive', 'negative', 'neutral', 'positive'] * 3})\n"
     "ev = labelled.foundry.evaluate(gold='label', op='classify', labels=['positive', 'negative', 'neutral'],\n"
     "                               template='Sentiment of: {text}', models=['gpt-4o', 'phi-4'], progress=False)\n"
     "display(ev)\n"
     "ev.plot()"),
]
REPLY_CELL, PICKER_CELL, COMPARE_CELL, EVALUATE_CELL = 2, 3, 4, 5
COMPARED = ("gpt-4o-mini", "gpt-4.1-mini", "phi-4")

# Record every state the reply cell's output goes through, as a person would see it.
OBSERVE_JS = """(cell) => {
  window.__fmTexts = [];
  const seen = () => {
    const out = cell.querySelector('.jp-OutputArea');
    const text = out ? out.innerText.trim() : '';
    const texts = window.__fmTexts;
    if (text && texts[texts.length - 1] !== text) texts.push(text);
  };
  new MutationObserver(seen).observe(cell, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def chromium():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install jupyterlab)")
    path, why = e2e.ensure_chromium()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture
def model_server():
    """A separate emulator process for the picker to test; it stops itself after 4 minutes."""
    from foundry_magics.emulator import Emulator

    emu = Emulator(process=True, lifetime=240)
    url = emu.start()
    try:
        yield url
    finally:
        emu.stop()


@pytest.fixture
def lab(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from conftest import AZURE_VARS

    books, state = tmp_path / "books", tmp_path / "state"
    books.mkdir()
    state.mkdir()
    nb = new_notebook(cells=[new_code_cell(src) for src in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, str(books / "e2e.ipynb"))
    server = e2e.JupyterLab(books, state, e2e.clean_env(state, tuple(AZURE_VARS)), lifetime=240)
    with server:
        yield server


def _models(url: str) -> list[str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "/openai/v1/models", timeout=10) as r:
        return sorted(m["id"] for m in json.loads(r.read())["data"])


def _run_cell(page, index: int) -> object:
    cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    return cell


def _wait_done(cell, timeout_s: float = 60) -> None:
    """Until the cell's prompt shows an execution count (not `[*]` / `[ ]`)."""
    prompt = cell.locator(".jp-InputArea-prompt")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = prompt.inner_text().strip()
        if any(ch.isdigit() for ch in text):
            return
        time.sleep(0.1)
    raise AssertionError(f"the cell did not finish within {timeout_s:.0f} s (prompt {prompt.inner_text()!r})")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_magic_and_picker_in_jupyterlab(chromium, lab, model_server):
    from playwright.sync_api import expect, sync_playwright

    e2e.ARTIFACTS.mkdir(exist_ok=True)
    expected_models = _models(model_server)
    assert expected_models, "the emulator lists no models"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=e2e.CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            page.goto(lab.url("lab/tree/e2e.ipynb"))
            page.locator(".jp-NotebookPanel .jp-Cell").nth(len(CELLS) - 1).wait_for()
            expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)

            # 1. %%foundry: a streamed reply, rendered as Markdown, marked as emulated
            for i in range(REPLY_CELL):
                _wait_done(_run_cell(page, i))
            reply_cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(REPLY_CELL)
            reply_cell.element_handle().evaluate(OBSERVE_JS)
            _run_cell(page, REPLY_CELL)
            _wait_done(reply_cell)
            # the once-per-session notice says the emulator is in use, then the reply itself
            expect(reply_cell.locator(".jp-OutputArea")).to_contain_text("No Foundry connection is configured")
            rendered = reply_cell.locator(".jp-OutputArea .jp-RenderedMarkdown").filter(has_text="[emulated]")
            expect(rendered).to_have_count(1)
            final = rendered.inner_text()
            assert "emulated" in final and "gpt-4o-mini" in final, final  # the meta line of the reply
            assert "Traceback" not in reply_cell.inner_text()
            texts = page.evaluate("window.__fmTexts")
            partial = [t for t in texts if "[emulated]" in t and t != texts[-1]]
            assert len(partial) >= 2, f"no streaming seen; the output went through {texts!r}"
            assert all(len(a) < len(b) for a, b in zip(partial, partial[1:])), texts
            reply_cell.screenshot(path=str(e2e.ARTIFACTS / "e2e-reply.png"))

            # 2. the picker: fill it, press Test, see the models
            picker_cell = _run_cell(page, PICKER_CELL)
            _wait_done(picker_cell)
            picker = picker_cell.locator(".jp-OutputArea-output")
            name_field = picker.get_by_placeholder("e.g. prod-gpt4o")
            name_field.fill("browser-test")  # top to bottom, as a person fills a form
            endpoint = picker.get_by_placeholder("any URL the Foundry portal shows")
            endpoint.fill(model_server + "/openai/v1")
            endpoint.press("Enter")  # continuous_update=False: the value syncs on Enter
            # the kernel reads the URL and says what it inferred
            expect(picker.locator(".widget-html").filter(has_text="kind")).to_contain_text("openai-v1")
            none = picker.locator(".widget-toggle-buttons button", has_text="None")
            none.click()
            expect(none).to_have_class(re.compile(r"\bmod-active\b"))
            picker.locator("button.widget-button", has_text="Test").click()
            status = picker.locator(".widget-html").filter(has_text="model(s)")
            expect(status).to_contain_text("✓ OK", timeout=30_000)
            shown = status.inner_text()
            for name in expected_models:
                assert name in shown or len(expected_models) > 8, f"{name} not in the status line: {shown}"
            model = picker.get_by_placeholder("deployment / model name")
            expect(model).not_to_have_value("")
            assert model.input_value() in expected_models
            options = model.evaluate("el => Array.from(el.list ? el.list.options : []).map(o => o.value)")
            assert sorted(options) == expected_models
            picker_cell.screenshot(path=str(e2e.ARTIFACTS / "e2e-picker.png"))
            page.screenshot(path=str(e2e.ARTIFACTS / "e2e-lab.png"), full_page=True)
            # With auth "None" only the key rows hide: the form itself stays on screen.
            for label, field in (("Endpoint URL", endpoint), ("Model", model), ("Name", name_field)):
                assert field.is_visible(), f"the picker's {label} field disappeared after choosing auth None"

            # 3. three models side by side, streamed into their columns
            compare_cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(COMPARE_CELL)
            compare_cell.element_handle().evaluate(OBSERVE_JS)
            _run_cell(page, COMPARE_CELL)
            _wait_done(compare_cell)
            table = compare_cell.locator(".jp-OutputArea .jp-RenderedMarkdown table")
            expect(table).to_have_count(1)
            heads = [h.strip() for h in table.locator("th").all_inner_texts()]
            assert heads == list(COMPARED), heads
            cells = table.locator("td")
            expect(cells).to_have_count(3)
            boxes = [cells.nth(i).bounding_box() for i in range(3)]
            assert all(b is not None for b in boxes)
            assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"], f"not side by side: {boxes}"
            assert max(abs(b["y"] - boxes[0]["y"]) for b in boxes) < 2, f"not on one row: {boxes}"
            for i, name in enumerate(COMPARED):
                text = cells.nth(i).inner_text()
                assert "[emulated]" in text and name in text and "tokens" in text, text
                assert "▌" not in text and "Traceback" not in text
                # the Markdown inside a column is rendered (a paragraph, not the raw text)
                assert cells.nth(i).locator("p").count() >= 1
            texts = page.evaluate("window.__fmTexts")
            streamed = [t for t in texts if "▌" in t]
            assert len(streamed) >= 2, f"no streaming into the columns seen; the output went through {texts!r}"
            compare_cell.screenshot(path=str(e2e.ARTIFACTS / "e2e-compare.png"))

            # 4. an evaluation: the plot shown as a PNG image, in its display and alone
            evaluate_cell = _run_cell(page, EVALUATE_CELL)
            _wait_done(evaluate_cell)
            output = evaluate_cell.locator(".jp-OutputArea")
            expect(output.locator(".foundry-evaluation table")).to_have_count(1)
            expect(output).to_contain_text("Best:")
            images = output.locator("img")
            expect(images).to_have_count(2)  # in the evaluation's display, and the Figure ev.plot() returns
            for i in range(2):
                image = images.nth(i)
                image.scroll_into_view_if_needed()
                seen = image.evaluate("img => ({src: img.getAttribute('src').slice(0, 22), complete: img.complete, "
                                      "w: img.naturalWidth, h: img.naturalHeight})")
                assert seen["src"] == "data:image/png;base64,", seen
                assert seen["complete"] and seen["w"] >= 300 and seen["h"] >= 200, f"the plot did not render: {seen}"
                box = image.bounding_box()
                assert box is not None and box["width"] >= 200 and box["height"] >= 100, f"the plot is not on screen: {box}"
            assert "Traceback" not in evaluate_cell.inner_text()
            evaluate_cell.screenshot(path=str(e2e.ARTIFACTS / "e2e-evaluate.png"))
        except Exception:
            page.screenshot(path=str(e2e.ARTIFACTS / "e2e-failure.png"), full_page=True)
            print("--- JupyterLab log ---\n" + lab.log())
            raise
        finally:
            browser.close()


# ---------------------------------------------------------------------- the skip/install rules

@pytest.mark.parametrize("env, root, allowed", [
    ({"CI": "true"}, True, True),
    ({"FOUNDRY_E2E_INSTALL": "1"}, True, True),
    ({"CI": "true"}, False, False),   # never apt-get as a normal user
    ({}, True, False),                # a developer's machine: only when asked
])
def test_chromium_is_installed_only_when_allowed(monkeypatch, env, root, allowed):
    for var in ("CI", "FOUNDRY_E2E_INSTALL"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(e2e.os, "geteuid", lambda: 0 if root else 1000)
    monkeypatch.setattr(e2e.shutil, "which", lambda name: "/usr/bin/" + name)
    assert e2e.may_install() is allowed


def test_missing_chromium_gives_a_reason(monkeypatch):
    monkeypatch.setattr(e2e, "find_chromium", lambda: None)
    monkeypatch.setattr(e2e, "may_install", lambda: False)
    path, why = e2e.ensure_chromium()
    assert path is None and "chromium is not installed" in why and "apt-get install -y chromium" in why
