"""The facade's three lists of public names agree.

foundry_magics/__init__.py names its public API three times: `_EXPORTS` (+ `_SUBMODULES`), which
`__getattr__` resolves lazily at run time; `__all__`, which `dir()`, `import *`, linters and the
docs read; and the `if TYPE_CHECKING:` imports, which are all editors and type checkers see (a name
missing there is `Any` to them). The file is read with `ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import foundry_magics

INIT = Path(foundry_magics.__file__).resolve()
PACKAGE = "foundry_magics"
EXTRAS = {"__version__", "load_ipython_extension", "unload_ipython_extension"}


def _module_assignments(tree: ast.Module) -> dict[str, ast.expr]:
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    return found


def _type_checking_imports(tree: ast.Module) -> dict[str, str]:
    """name -> absolute module it is imported from, inside `if TYPE_CHECKING:`."""
    blocks = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, "one `if TYPE_CHECKING:` block of imports"
    imported: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.level == 0, ast.unparse(node)
        for alias in node.names:
            assert alias.name != "*", f"`{ast.unparse(node)}`: a star import hides which names are exported"
            name = alias.asname or alias.name
            assert name not in imported, f"{name} imported twice under TYPE_CHECKING"
            imported[name] = _where(node.module or "", alias.name)
    return imported


def _where(module: str, name: str) -> str:
    """`from a.b import c`: "a.b.c" when c is a submodule, else "a.b"."""
    path = INIT.parent.parent / module.replace(".", "/") / name
    is_submodule = path.is_dir() or path.with_suffix(".py").is_file()
    return f"{module}.{name}" if is_submodule else module


TREE = ast.parse(INIT.read_text(), str(INIT))
ASSIGNED = _module_assignments(TREE)
EXPORTS: dict[str, str] = ast.literal_eval(ASSIGNED["_EXPORTS"])
SUBMODULES: tuple[str, ...] = ast.literal_eval(ASSIGNED["_SUBMODULES"])
SUBMODULE_PATHS: dict[str, str] = ast.literal_eval(ASSIGNED["_SUBMODULE_PATHS"])
ALL: list[str] = ast.literal_eval(ASSIGNED["__all__"])  # a literal, so static tools can read it
TYPED = _type_checking_imports(TREE)


def test_all_is_the_export_table_plus_the_extension_hooks():
    assert len(ALL) == len(set(ALL)), "a name listed twice in __all__"
    assert ALL == sorted(ALL)
    assert set(ALL) == set(EXPORTS) | set(SUBMODULES) | EXTRAS
    assert not set(EXPORTS) & set(SUBMODULES)


def test_type_checking_imports_every_public_name_from_where_it_is_resolved():
    expected = {name: f"{PACKAGE}.{module}" for name, module in EXPORTS.items()}
    expected |= {name: f"{PACKAGE}.{SUBMODULE_PATHS.get(name, name)}" for name in SUBMODULES}
    missing = sorted(set(expected) - set(TYPED))
    extra = sorted(set(TYPED) - set(expected))
    assert not missing, f"public names editors see as Any (add them under TYPE_CHECKING): {missing}"
    assert not extra, f"names imported under TYPE_CHECKING that are not exported: {extra}"
    wrong = {name: (TYPED[name], expected[name]) for name in expected if TYPED[name] != expected[name]}
    assert not wrong, f"imported from another module than _EXPORTS resolves (typed, runtime): {wrong}"


def test_the_runtime_agrees_with_the_source():
    assert foundry_magics.__all__ == ALL
    assert foundry_magics._EXPORTS == EXPORTS
    for name in EXTRAS - {"__version__"}:
        assert callable(getattr(foundry_magics, name))
    assert isinstance(foundry_magics.__version__, str)


def test_py_typed_ships_with_the_package():
    # PEP 561: without the marker, type checkers ignore the package's annotations. The wheel target
    # (pyproject: [tool.hatch.build.targets.wheel] packages = ["foundry_magics"]) takes every file in it.
    assert (INIT.parent / "py.typed").is_file()
