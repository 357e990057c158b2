"""The layers of DESIGN.md, kept by walking the imports.

Core (`errors`, `defaults`, `connections`, `rest`, `store`, `ops`, `engine`, `batch_api`) never imports a face
(`notebook`, `frames`, `emulator`) - not at module level, not inside a function - and never
IPython, ipywidgets, pandas or pyspark. Importing (and using) the client loads none of them.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import foundry_magics
from foundry_magics import _compat

PKG = Path(foundry_magics.__file__).resolve().parent
CORE = ("errors", "defaults", "wording", "connections", "rest", "store", "ops", "engine", "batch_api")
FACES = ("notebook", "frames", "emulator")
FORBIDDEN_IN_CORE = ("IPython", "ipywidgets", "pandas", "polars", "pyspark", "traitlets")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in `path` names, absolute, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out.extend((node.lineno, f"{mod}.{a.name}") for a in node.names)  # `from pkg import module`
    return out


def _core_files() -> list[Path]:
    files = []
    for name in CORE:
        single = PKG / f"{name}.py"
        files.extend([single] if single.exists() else sorted((PKG / name).rglob("*.py")))
    return files


def test_every_core_module_is_found():
    names = {_module_name(p) for p in _core_files()}
    assert {"foundry_magics.errors", "foundry_magics.defaults", "foundry_magics.rest.client",
            "foundry_magics.connections.session", "foundry_magics.engine.runner", "foundry_magics.store.cache",
            "foundry_magics.batch_api.jobs"} <= names


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_core_imports_no_face_and_no_notebook_library(path):
    bad = []
    for line, mod in _imports(path):
        top = mod.split(".")[0]
        if top in FORBIDDEN_IN_CORE:
            bad.append(f"line {line}: {mod}")
        for face in FACES:
            if mod == f"foundry_magics.{face}" or mod.startswith(f"foundry_magics.{face}."):
                bad.append(f"line {line}: {mod}")
    assert not bad, f"{path.relative_to(PKG)} imports a face or a notebook library: {bad}"


# face -> the faces it must never import (notebook may use the pandas front-end for `--df`)
FACE_RULES = {"frames": ("notebook", "emulator"), "emulator": ("notebook", "frames")}


def _face_files(face: str) -> list[Path]:
    return sorted((PKG / face).rglob("*.py"))


@pytest.mark.parametrize("path", [p for face in FACE_RULES for p in _face_files(face)],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_faces_keep_out_of_each_other(path):
    face = path.relative_to(PKG).parts[0]
    bad = [f"line {line}: {mod}" for line, mod in _imports(path)
           for other in FACE_RULES[face]
           if mod == f"foundry_magics.{other}" or mod.startswith(f"foundry_magics.{other}.")]
    assert not bad, f"{path.relative_to(PKG)} ({face}/) imports another face: {bad}"


def test_no_front_end_reaches_into_private_names_of_another_module():
    """`from foundry_magics.x import _private` (or `x._private`) across modules: public modules only."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("foundry_magics"):
                for a in node.names:
                    is_module = (PKG.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
                    if a.name.startswith("_") and not a.name.startswith("__") and node.module != me and not is_module:
                        bad.append(f"{me}: from {node.module} import {a.name}")
    assert not bad, bad


def test_the_walker_sees_imports_inside_functions(tmp_path):
    probe = PKG / "rest" / "client.py"
    mods = {m for _, m in _imports(probe)}
    assert "httpx" in mods and "foundry_magics.rest.routes" in mods
    # relative and function-local imports are resolved too
    fake = PKG / "engine" / "_walker_probe.py"
    try:
        fake.write_text("def f():\n    from ..notebook import render\n    from . import runner\n")
        mods = {m for _, m in _imports(fake)}
        assert "foundry_magics.notebook.render" in mods and "foundry_magics.engine.runner" in mods
    finally:
        fake.unlink()


def test_using_the_client_loads_no_face_and_no_notebook_library():
    code = """
import sys, json
import foundry_magics  # the facade wires the faces' hooks (pandas import hook, fallback): that is allowed
faces_of_facade = {m for m in sys.modules if m.startswith("foundry_magics.")}
from foundry_magics.rest import FoundryClient, AsyncFoundryClient
from foundry_magics.connections import Connection
import foundry_magics.engine, foundry_magics.store.cache
conn = Connection.from_url("http://127.0.0.1:9/v1", model="m")
FoundryClient(conn).dry_run("chat", "hi")
AsyncFoundryClient(conn)
loaded = [m for m in sys.modules if m.split(".")[0] in ("IPython", "ipywidgets", "pandas", "pyspark", "traitlets")
          or (m.startswith(("foundry_magics.notebook", "foundry_magics.frames", "foundry_magics.emulator"))
              and m not in faces_of_facade)]
print(json.dumps(sorted(loaded)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("old", sorted(_compat.OLD_PATHS))
def test_old_import_paths_are_the_same_modules(old):
    before = importlib.import_module(f"foundry_magics.{old}")
    after = importlib.import_module(f"foundry_magics.{_compat.OLD_PATHS[old]}")
    assert before is after


def test_old_spellings_users_typed_still_work():
    from foundry_magics.client import FoundryClient
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator
    from foundry_magics.registry import registry_path
    from foundry_magics.session import describe_connections

    assert FoundryClient is foundry_magics.FoundryClient and Connection is foundry_magics.Connection
    assert callable(registry_path) and callable(describe_connections) and Emulator.__name__ == "Emulator"
    out = subprocess.run([sys.executable, "-m", "foundry_magics.demo", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "demo" in out.stdout.lower()


def test_no_connection_configured_falls_back_only_where_a_face_wired_it():
    """The core alone has no fallback; the facade wires in the emulator."""
    from foundry_magics.connections import fallback

    assert fallback.fallback() is not None  # `import foundry_magics` wired it
    saved = fallback.fallback()
    try:
        fallback.set_fallback(None)
        from foundry_magics.connections import session
        from foundry_magics.errors import ConfigurationError

        with pytest.raises(ConfigurationError, match="No Foundry connection is configured"):
            session.emulator_connection()
    finally:
        fallback.set_fallback(saved)
