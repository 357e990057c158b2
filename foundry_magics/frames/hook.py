"""Register the `.foundry` accessors without importing pandas ourselves.

`import foundry_magics` must stay light, so pandas is not imported for the accessor's sake:
if pandas is already imported the accessors are registered now; otherwise a small
`sys.meta_path` finder waits for pandas' own import to finish, registers them, and removes
itself. Nothing else is touched: every other import goes by untouched.

PySpark gets the same treatment: `sdf.foundry` (frames.spark) is attached when `pyspark.sql`
is (or gets) imported, by a second finder of the same kind; pyspark is never imported here.
Polars likewise: `pl_df.foundry` (frames.polars) when `polars` is (or gets) imported, by a third.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["install", "uninstall", "installed"]

_lock = threading.Lock()


def _register() -> None:
    try:
        from foundry_magics.frames.pandas import register

        register()
    except Exception:  # never break the user's `import pandas`
        import logging

        logging.getLogger("foundry_magics").exception("could not register the .foundry pandas accessors")


def _register_spark() -> None:
    try:
        from foundry_magics.frames.spark import register

        register()
    except Exception:  # never break the user's `import pyspark`
        import logging

        logging.getLogger("foundry_magics").exception("could not register the .foundry Spark accessor")


def _register_polars() -> None:
    try:
        from foundry_magics.frames.polars import register

        register()
    except Exception:  # never break the user's `import polars`
        import logging

        logging.getLogger("foundry_magics").exception("could not register the .foundry Polars namespaces")


class _PandasImportHook:
    """A meta path finder (importlib.abc.MetaPathFinder's protocol; the ABC costs ~9 ms to
    import) that finds nothing itself: it wraps pandas' loader so registration runs right after."""

    name = "pandas"

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return None

        def exec_and_register(module: Any) -> None:
            exec_module(module)
            self.loaded()

        try:
            loader.exec_module = exec_and_register  # type: ignore[union-attr,method-assign]  # this spec's own loader
        except AttributeError:  # an immutable loader: fall back to registering on first use
            return None
        return spec

    def loaded(self) -> None:
        uninstall()
        _register()


class _SparkImportHook(_PandasImportHook):
    """The same, waiting for `pyspark.sql` (imported by any `import pyspark...`)."""

    name = "pyspark.sql"

    def loaded(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        _register_spark()


class _PolarsImportHook(_PandasImportHook):
    """The same, waiting for `polars`."""

    name = "polars"

    def loaded(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        _register_polars()


_hook = _PandasImportHook()
_spark_hook = _SparkImportHook()
_polars_hook = _PolarsImportHook()


def installed() -> bool:
    return _hook in sys.meta_path


def install() -> None:
    """Make `df.foundry` available: now if pandas is loaded, else as soon as it is (and
    `sdf.foundry` likewise for pyspark, `pl_df.foundry` for polars)."""
    with _lock:
        pl = sys.modules.get("polars")
        if pl is not None and hasattr(pl, "DataFrame") and hasattr(pl, "api"):
            _register_polars()
        elif _polars_hook not in sys.meta_path:
            sys.meta_path.insert(0, _polars_hook)
        spark_sql = sys.modules.get("pyspark.sql")
        if spark_sql is not None and hasattr(spark_sql, "DataFrame"):
            _register_spark()
        elif _spark_hook not in sys.meta_path:
            sys.meta_path.insert(0, _spark_hook)
        pd = sys.modules.get("pandas")
        if pd is not None and hasattr(pd, "DataFrame"):
            _register()
            return
        if _hook not in sys.meta_path:
            sys.meta_path.insert(0, _hook)


def uninstall() -> None:
    try:
        sys.meta_path.remove(_hook)
    except ValueError:
        pass
