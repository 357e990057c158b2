"""The docs site builds strictly (a broken link, anchor or API reference fails), shows what the
issue asks of it, and the README stays a short front page that links into it (issue 23)."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

needs_mkdocs = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter")),
    reason="the docs extra is not installed (pip install -e '.[docs]')")


def hook():
    spec = importlib.util.spec_from_file_location("docs_site_hook", REPO / "docs" / "hooks" / "site.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def text_of(page: Path) -> str:
    body = page.read_text(encoding="utf-8")
    body = body[body.find("<article"):]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", body)).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built as `./dev docs` builds it, strictly, into a temporary folder; the tutorials
    with their recorded outputs (the tests run the notebooks themselves elsewhere)."""
    if any(importlib.util.find_spec(m) is None for m in ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter")):
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    tmp = tmp_path_factory.mktemp("docs")
    env = {**os.environ, "FOUNDRY_DOCS_NOTEBOOKS": "recorded", "FOUNDRY_DOCS_CACHE": str(tmp / "cache"),
           "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                            "-d", str(tmp / "site")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    assert "WARNING" not in built.stderr, built.stderr[-4000:]
    return tmp / "site"


@pytest.mark.slow
def test_the_api_reference_shows_the_client_and_the_dataframe_accessor_with_their_parameters(site):
    client = text_of(site / "reference" / "client" / "index.html")
    assert "FoundryClient" in client and "AsyncFoundryClient" in client
    chat = client[client.index("chat( prompt"):][:600]
    for parameter in ("prompt: str | None", "messages:", "system:", "model:", "temperature:", "max_tokens:",
                      "schema:", "stream: bool = False", "images:"):
        assert parameter in chat, (parameter, chat)
    frames = text_of(site / "reference" / "dataframes" / "index.html")
    assert "FoundryDataFrameAccessor" in frames and "FoundrySeriesAccessor" in frames
    prompt = frames[frames.index("prompt( template"):][:600]
    for parameter in ("template: str", "system:", "model:", "concurrency:", "rpm:", "cache: bool = True",
                      "schema:", "images:", "**options"):
        assert parameter in prompt, (parameter, prompt)
    assert "One request per row" in prompt  # the docstring is rendered too


@pytest.mark.slow
def test_every_public_name_and_every_tutorial_has_a_page(site):
    reference = " ".join(text_of(p) for p in (site / "reference").rglob("index.html"))
    missing = [name for name in hook().exports() if name not in reference]
    assert not missing, f"public names missing from the API reference: {missing}"
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        page = site / "tutorials" / nb.stem / "index.html"
        assert page.exists(), f"{nb.name} has no page"
    quick = text_of(site / "tutorials" / "01-quickstart" / "index.html")
    assert "[emulated] You said" in quick  # a recorded output is shown
    assert "NBVAL_CHECK_OUTPUT" not in quick  # the test markers are not
    start = (site / "tutorials" / "00-index" / "index.html").read_text(encoding="utf-8")
    assert 'href="../01-quickstart/' in start and 'href="01-quickstart.ipynb"' not in start  # links between pages work


@pytest.mark.slow
def test_the_guide_has_a_page_for_each_part(site):
    for page in ("getting-started", "guide/magics", "guide/connections", "guide/dataframes", "guide/spark",
                 "guide/polars", "guide/batch", "guide/agents", "guide/operators", "guide/packing",
                 "guide/evaluation", "guide/costs", "guide/emulator", "reliability", "guide/troubleshooting",
                 "architecture", "benchmarks", "changelog", "contributing"):
        assert (site / page / "index.html").exists(), page
    magics = text_of(site / "guide" / "magics" / "index.html")
    assert "--api chat|responses" in magics and "\\|" not in magics  # GitHub's escaped pipes, shown plain
    costs = text_of(site / "guide" / "costs" / "index.html")
    for topic in ("set_prices", "fm.usage()", "sample=N", "max_cost"):
        assert topic in costs, topic


def test_the_benchmarks_page_says_when_there_are_no_results(tmp_path):
    site = hook()
    missing = site.benchmarks_table(tmp_path / "latest.json")
    assert "No benchmark results here yet" in missing and "./dev bench" in missing
    (tmp_path / "latest.json").write_text(json.dumps({
        "when": "2026-12-04T22:26:06+00:00", "quick": True, "machine": {"cpu_count": 2, "python": "3.11.7"},
        "rows": [{"name": "prompt c=64: rows/s | vs ceiling", "value": 286.6, "unit": "rows/s", "target": ">= 304",
                  "peer": "raw aiohttp", "peer_value": 288.5, "ratio": 0.896, "ok": False, "note": "best of 2"}]}))
    table = site.benchmarks_table(tmp_path / "latest.json")
    assert "`./dev bench --quick`, 2026-12-04T22:26:06+00:00, on 2 cores, Python 3.11.7" in table
    row = "| prompt c=64: rows/s \\| vs ceiling | 286.6 rows/s | >= 304 | 0.896 | raw aiohttp | 288.5 rows/s | **no** |"
    assert row in table
    (tmp_path / "latest.json").write_text("{not json")
    assert "could not be read" in site.benchmarks_table(tmp_path / "latest.json")


def test_a_notebook_page_loses_its_test_markers_and_links_to_the_other_pages():
    site = hook()
    nb = site.finish(site.with_recorded(site._read(REPO / "notebooks" / "01-quickstart.ipynb"),
                                        REPO / "notebooks" / "01-quickstart.ipynb"))
    sources = "\n".join(c.source for c in nb.cells)
    assert "NBVAL" not in sources
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert shown and any("[emulated]" in str(o) for o in shown)
    index = site.finish(site._read(REPO / "notebooks" / "00-index.ipynb"))
    links = re.findall(r"\]\(([^)]*)\)", "\n".join(c.source for c in index.cells if c.cell_type == "markdown"))
    assert links and not any(link.endswith(".ipynb") for link in links), links


# ---------------------------------------------------------------------- the README


def test_the_readme_is_a_short_front_page_whose_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 12 * 1024
    assert "## Quick start\n\n```bash\n./dev demo\n./dev test\n```\n" in text
    assert "OWNER/REPO" not in text  # no Binder badge with a placeholder path
    links = [link for link in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in link]
    assert len(links) >= 10
    for link in links:
        assert (REPO / link).exists(), f"README links to {link}, which does not exist"
    for page in ("magics", "connections", "dataframes", "spark", "polars", "batch", "agents", "operators",
                 "packing", "evaluation", "costs", "emulator"):
        assert f"docs/guide/{page}.md" in text, page


@pytest.mark.slow
def test_a_tutorial_runs_on_the_emulator_for_its_page_in_a_clean_world(monkeypatch):
    """What `./dev docs` does for every notebook (the suite builds with the recorded outputs):
    run it in a fresh home with no Azure variable, whatever the caller's environment holds."""
    pytest.importorskip("nbclient")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://must-not-be-used.openai.azure.com/")
    site = hook()
    nb = site.executed(REPO / "notebooks" / "08-agents.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)  # run, not the recorded fallback
    outputs = json.dumps([o for c in code for o in c.outputs])
    assert "[emulated]" in outputs and "must-not-be-used" not in outputs
    assert "fm-docs-nb-" not in outputs and "NBVAL" not in "\n".join(c.source for c in nb.cells)
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
