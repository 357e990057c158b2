"""mkdocs hook: the pages made from the repository rather than written by hand.

* **Tutorials.** Every ``notebooks/*.ipynb`` becomes the page ``tutorials/NAME``. The notebooks are
  kept without outputs, so they are run here on the built-in emulator, each in a copy of
  ``notebooks/`` with a fresh ``FOUNDRY_MAGICS_HOME`` and none of the Azure variables (the page
  shows what a first-time reader sees, never your own connections or cache), two at a time, and
  the result is kept in ``.cache/docs-notebooks/`` under a hash of the notebook, its data and the
  package's source: a second build runs nothing. ``FOUNDRY_DOCS_NOTEBOOKS=recorded`` (what the test
  suite builds with) runs nothing and shows only the outputs the tests record
  (``tests/notebook_outputs/``). A notebook that fails to run is a warning (an error with
  ``--strict``).
* **API reference.** One page per area, listing every public ``fm.*`` name of the lazy export table
  (``foundry_magics/__init__.py``), read with ``ast`` (nothing is imported), plus the DataFrame
  accessors, for mkdocstrings to render from the docstrings.
* **Benchmarks.** ``<!-- benchmarks:latest -->`` in ``benchmarks.md`` becomes the table of
  ``benchmarks/results/latest.json`` (written by ``./dev bench``), or a note saying there is none yet.
"""

from __future__ import annotations

import ast
import concurrent.futures
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.foundry")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
RECORDED = REPO / "tests" / "notebook_outputs"
CACHE = Path(os.environ.get("FOUNDRY_DOCS_CACHE") or REPO / ".cache" / "docs-notebooks")  # the tests use a temp dir
LATEST = REPO / "benchmarks" / "results" / "latest.json"
MODE_VAR = "FOUNDRY_DOCS_NOTEBOOKS"  # "execute" (default) or "recorded"
CELL_TIMEOUT = 180
VERSION = "1"  # bump to run every notebook again after changing how they are prepared

# Azure / Foundry variables a notebook kernel must not see (it runs on the emulator).
_AZURE_PREFIXES = ("AZURE_", "FOUNDRY_", "OPENAI_", "APIM_", "PROJECT_ENDPOINT")
_NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*\n?", re.M)
_NOTEBOOK_LINK = re.compile(r"\]\((\d\d-[\w-]+)\.ipynb(#[\w-]*)?\)")


# ---------------------------------------------------------------------- mkdocs events

def on_config(config: Any) -> Any:
    """Add a page per notebook under the nav's Tutorials section (a new notebook needs no edit
    of mkdocs.yml), and watch notebooks/ and the package when serving."""
    for section in config.nav or []:
        if isinstance(section, dict) and "Tutorials" in section:
            pages = [p for p in section["Tutorials"] if not str(p).endswith(".ipynb")]
            section["Tutorials"] = pages + [f"tutorials/{nb.name}" for nb in notebooks()]
    for path in (NOTEBOOKS, REPO / "foundry_magics", LATEST.parent):
        if path.exists() and str(path) not in config.watch:
            config.watch.append(str(path))
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the .ipynb files into pages
def on_files(files: Files, config: Any) -> Files:
    pages = prepare_notebooks(os.environ.get(MODE_VAR, "execute"))
    for nb in notebooks():
        files.append(File(f"tutorials/{nb.name}", str(pages), config.site_dir, config.use_directory_urls))
    for page, text in reference_pages().items():
        files.append(File.generated(config, f"reference/{page}.md", content=text))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if "<!-- benchmarks:latest -->" in markdown:
        markdown = markdown.replace("<!-- benchmarks:latest -->", benchmarks_table(LATEST))
    return unescape_table_pipes(markdown)


def unescape_table_pipes(markdown: str) -> str:
    """GitHub needs `a\\|b` for a pipe inside code in a table cell; Python-Markdown keeps pipes
    inside code spans by itself and would show the backslash."""
    def row(line: str) -> str:
        if not line.startswith("|"):
            return line
        return re.sub(r"`[^`]*`", lambda m: m.group(0).replace("\\|", "|"), line)

    return "\n".join(row(line) for line in markdown.split("\n"))


# ---------------------------------------------------------------------- tutorials

def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256(VERSION.encode())
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def source_digest() -> str:
    """What every notebook's outputs depend on besides itself: the package and the data."""
    paths = sorted([*(REPO / "foundry_magics").rglob("*.py"), *(NOTEBOOKS / "data").rglob("*")])
    return _digest(*(p.relative_to(REPO).as_posix().encode() + p.read_bytes() for p in paths if p.is_file()))


def prepare_notebooks(mode: str) -> Path:
    """The notebooks as pages, executed (cached) or with their recorded outputs: a folder holding
    tutorials/NAME.ipynb for each notebook."""
    if mode not in ("execute", "recorded"):
        log.warning("%s=%r: use 'execute' or 'recorded'; showing the recorded outputs", MODE_VAR, mode)
        mode = "recorded"
    store, pages = CACHE / mode / "store", CACHE / mode / "pages"
    store.mkdir(parents=True, exist_ok=True)
    shared = source_digest() if mode == "execute" else ""
    wanted, todo = [], []
    for nb in notebooks():
        key = _digest(nb.read_bytes(), shared.encode(), mode.encode())
        target = store / f"{nb.stem}.{key}.ipynb"
        wanted.append((nb, target))
        if not target.exists():
            todo.append((nb, target))
    keep = {t for _, t in wanted}
    for old in store.glob("*.ipynb"):  # earlier versions of the same notebooks
        if old not in keep:
            old.unlink(missing_ok=True)
    if mode == "execute" and todo:
        log.info("Running %d tutorial notebook(s) on the emulator (kept in %s)", len(todo), store)
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda pair: _write(pair[1], executed(pair[0])), todo))
    else:
        for nb, target in todo:
            _write(target, finish(with_recorded(_read(nb), nb)))
    shutil.rmtree(pages, ignore_errors=True)
    (pages / "tutorials").mkdir(parents=True)
    for nb, target in wanted:
        shutil.copyfile(target, pages / "tutorials" / nb.name)
    return pages


def _read(path: Path) -> Any:
    import nbformat

    return nbformat.read(str(path), as_version=4)


def _write(target: Path, nb: Any) -> None:
    import nbformat

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, str(tmp))
    tmp.replace(target)


def with_recorded(nb: Any, source: Path) -> Any:
    """A copy of `nb` whose cells recorded by the tests carry that output (the other cells none)."""
    import nbformat

    nb = copy.deepcopy(nb)
    recorded = RECORDED / f"{source.stem}.json"
    queues: dict[str, list[list[dict]]] = {}
    if recorded.exists():
        for entry in json.loads(recorded.read_text(encoding="utf-8"))["cells"]:
            queues.setdefault(entry["source"], []).append(entry["outputs"])
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        if queues.get(cell.source):
            cell.outputs = [nbformat.from_dict(o) for o in queues[cell.source].pop(0)]
            for out in cell.outputs:  # the recording drops what nbformat requires back
                if out.output_type in ("display_data", "execute_result"):
                    out.setdefault("metadata", {})
                if out.output_type == "execute_result":
                    out["execution_count"] = count
    return nb


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AZURE_PREFIXES)}
    env["FOUNDRY_MAGICS_HOME"] = str(home / "fm-home")
    env["IPYTHONDIR"] = str(home / "ipython")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop(MODE_VAR, None)
    return env


def executed(source: Path) -> Any:
    """`source` run top to bottom on the emulator in a clean world; on failure, a warning and
    the notebook with its recorded outputs."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    class ThisPython(KernelSpecManager):  # the kernel is the Python building the docs
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name="Python 3", language="python")

    with tempfile.TemporaryDirectory(prefix="fm-docs-nb-") as tmp:
        work = Path(tmp)
        copy_dir = work / "notebooks"
        shutil.copytree(NOTEBOOKS, copy_dir, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        nb = _read(copy_dir / source.name)
        km = KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())
        client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(copy_dir)}})
        try:
            client.execute(env=clean_env(work))
        except Exception as exc:  # noqa: BLE001 - any failure: say which notebook and why, keep building
            last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            log.warning("Tutorial %s did not run on the emulator (%s); its page shows the recorded outputs only",
                        source.name, last[0][:300])
            return finish(with_recorded(_read(source), source))
        return finish(nb, replace=[(str(copy_dir), "notebooks"), (str(work / "fm-home"), "~/.config/foundry-magics"),
                                   (str(work), "<tmp>")])


def finish(nb: Any, replace: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]
    """What a reader should see: no test markers, links between tutorials that work on the site,
    no widget state (the text form of a progress bar is shown), no machine paths."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = _NOTEBOOK_LINK.sub(lambda m: f"](../{m.group(1)}/{m.group(2) or ''})", cell.source)
            continue
        if cell.cell_type != "code":
            continue
        cell.source = _NBVAL_MARKER.sub("", cell.source)
        cell.metadata.pop("tags", None)
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and "application/vnd.jupyter.widget-view+json" in data:
                del data["application/vnd.jupyter.widget-view+json"]
            for old, new in replace:
                _replace_in(out, old, new)
    return nb


def _replace_in(node: Any, old: str, new: str) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in list(items):
        if isinstance(v, str):
            node[k] = v.replace(old, new)
        else:
            _replace_in(v, old, new)


# ---------------------------------------------------------------------- API reference

# page -> (title, introduction, modules whose exported names it lists, extra objects)
REFERENCE: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "connections": ("Connections", "Where requests go and how they authenticate "
                    "([guide](../guide/connections.md)).", ("connections.", "notebook.widgets"), ()),
    "client": ("Clients and replies", "One call at a time, sync or async "
               "([guide](../guide/python-api.md)).", ("rest.",), ()),
    "dataframes": ("DataFrames", "`df.foundry` / `series.foundry` (pandas), `pl_df.foundry` (Polars), "
                   "`sdf.foundry` and `fm.spark` (Spark), and what a run reports "
                   "([guide](../guide/dataframes.md)).", ("frames.", "engine."),
                   ("frames.pandas.FoundryDataFrameAccessor", "frames.pandas.FoundrySeriesAccessor",
                    "frames.polars.FoundryPolarsFrame", "frames.polars.FoundryPolarsSeries", "frames.spark")),
    "batch": ("Batch API", "Jobs submitted with `batch=True` ([guide](../guide/batch.md)).", ("batch_api.",), ()),
    "notebook": ("Comparisons, agents, usage and prices", "Helpers the magics use, callable from Python "
                 "([costs](../guide/costs.md), [agents](../guide/agents.md)).", ("notebook.", "store."), ()),
    "errors": ("Errors", "Everything raised on purpose is an `fm.FoundryError` whose message names the "
               "cause and the fix ([guide](../guide/python-api.md#errors)).", ("errors",), ()),
    "emulator": ("The emulator", "`fm.emulator`: the offline Foundry REST API "
                 "([guide](../guide/emulator.md)).", (), ("emulator",)),
}


def exports() -> dict[str, str]:
    """The lazy export table of foundry_magics/__init__.py (public name -> module), read with ast."""
    tree = ast.parse((REPO / "foundry_magics" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == "_EXPORTS" \
                and node.value is not None:
            return ast.literal_eval(node.value)
    raise RuntimeError("foundry_magics/__init__.py has no _EXPORTS table")


def reference_pages() -> dict[str, str]:
    table = exports()
    placed: dict[str, list[tuple[str, str]]] = {page: [] for page in REFERENCE}
    for name, module in table.items():
        page = next((p for p, (_, _, prefixes, _) in REFERENCE.items()
                     if any(module == x or module.startswith(x) for x in prefixes)), "notebook")
        placed[page].append((name, module))
    pages = {}
    for page, (title, intro, _, extra) in REFERENCE.items():
        lines = [f"# {title}", "", intro, ""]
        if page == "errors":
            names = [n for n, _ in placed[page]]
            lines += ["::: foundry_magics.errors", "    options:", "      show_root_heading: false",
                      "      members:", *(f"        - {n}" for n in names), ""]
        else:
            for name, module in placed[page]:
                lines += [f"::: foundry_magics.{module}.{name}", ""]
        for obj in extra:
            lines += [f"::: foundry_magics.{obj}", ""]
        pages[page] = "\n".join(lines)
    listed = ", ".join(f"`fm.{n}`" for n in sorted(table))
    pages["index"] = "\n".join([
        "# API reference", "",
        "`import foundry_magics as fm` gives these names (loaded on first use, so the import stays fast):",
        "", listed, "",
        *(f"* [{title}]({page}.md)" for page, (title, *_rest) in REFERENCE.items()), "",
        "The pages are generated from the docstrings of the modules that define each name.", "",
    ])
    return pages


# ---------------------------------------------------------------------- benchmarks

def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def benchmarks_table(path: Path) -> str:
    """The table of the latest `./dev bench` run, or a note that there is none (a fresh clone)."""
    if not path.exists():
        return ("!!! note \"No benchmark results here yet\"\n    `benchmarks/results/latest.json` is written by "
                "`./dev bench` (it is not committed: the figures belong to the machine that measured them). "
                "Run `./dev bench --quick` and build the docs again to see the table here.\n")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["rows"]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("benchmarks/results/latest.json could not be read (%s); run ./dev bench again", exc)
        return "!!! warning \"The latest benchmark results could not be read\"\n    Run `./dev bench` again.\n"
    machine = data.get("machine") or {}
    about = ", ".join(str(x) for x in (machine.get("cpu_model"), f"{machine.get('cpu_count')} cores"
                                       if machine.get("cpu_count") else None,
                                       f"{machine.get('memory_gb')} GB" if machine.get("memory_gb") else None,
                                       f"Python {machine.get('python')}" if machine.get("python") else None) if x)
    kind = "`./dev bench --quick`" if data.get("quick") else "`./dev bench`"
    out = [f"Latest run: {kind}, {data.get('when', 'at an unknown time')}" + (f", on {about}" if about else "") + ".",
           "", "| benchmark | ours | target | ratio | peer (same run) | peer | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = r.get("unit") or ""
        value = f"{_fmt(r.get('value'))} {unit}".strip()
        peer_value = f"{_fmt(r.get('peer_value'))} {unit}".strip() if r.get("peer_value") is not None else ""
        met = {True: "yes", False: "**no**"}.get(r.get("ok"), "")
        out.append("| " + " | ".join(_cell(x) for x in (r.get("name", ""), value, r.get("target") or "",
                                                         _fmt(r.get("ratio")), r.get("peer") or "", peer_value,
                                                         met)) + " |")
    notes = [(r.get("name", ""), r["note"]) for r in rows if r.get("note")]
    if notes:
        out += ["", "??? info \"Notes on each row\"", ""]
        out += [f"    * **{_cell(name)}**: {_cell(note)}" for name, note in notes]
    return "\n".join(out) + "\n"
