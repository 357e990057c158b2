"""The `.foundry` accessors: registration without importing pandas, DESIGN's signatures, delegation."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.frames import accessor as dataframe, hook as pandas_hook, ops as frames

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def conn():
    e = Emulator(lifetime=120)
    e.start()
    yield Connection.from_url(e.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    e.stop()


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_does_not_load_pandas_but_the_accessor_appears_with_it():
    out = _run("""
        import sys, warnings
        warnings.simplefilter("error")
        import foundry_magics
        assert "pandas" not in sys.modules and "numpy" not in sys.modules and "httpx" not in sys.modules
        import pandas as pd
        print(type(pd.DataFrame({"a": [1]}).foundry).__name__, type(pd.Series([1]).foundry).__name__)
        from foundry_magics.frames import hook as pandas_hook
        print(pandas_hook.installed())
    """)
    assert out.split() == ["FoundryDataFrameAccessor", "FoundrySeriesAccessor", "False"]


def test_pandas_imported_first_also_works():
    out = _run("""
        import pandas as pd
        import foundry_magics
        print(hasattr(pd.DataFrame, "foundry"), hasattr(pd.Series, "foundry"))
    """)
    assert out.split() == ["True", "True"]


def test_the_hook_leaves_other_imports_alone():
    out = _run("""
        import foundry_magics, sys
        from foundry_magics.frames import hook as pandas_hook
        assert pandas_hook.installed()
        import json, decimal, sqlite3
        print(pandas_hook.installed())
    """)
    assert out.split() == ["True"]


def test_register_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataframe.register()
        dataframe.register()
        pandas_hook.install()
    assert isinstance(pd.DataFrame().foundry, dataframe.FoundryDataFrameAccessor)


def test_signatures_match_the_design():
    p = inspect.signature(dataframe.FoundryDataFrameAccessor.prompt).parameters
    assert list(p)[:11] == ["self", "template", "system", "model", "connection", "concurrency", "rpm", "tpm",
                            "cache", "progress", "schema"]
    assert p["cache"].default is True and p["progress"].default is True and p["schema"].default is None
    s = dataframe.FoundrySeriesAccessor
    for name in ("prompt", "classify", "extract", "embed", "summarize", "translate", "sentiment"):
        assert callable(getattr(s, name))
    assert list(inspect.signature(s.classify).parameters)[1] == "labels"
    assert list(inspect.signature(s.extract).parameters)[1] == "fields"
    assert list(inspect.signature(s.translate).parameters)[1] == "lang"
    assert fm.last_run is dataframe.last_run


def test_accessors_delegate(conn):
    df = pd.DataFrame({"text": ["I love it", "Broken and awful"], "who": ["Ann", "Bob"]}, index=["r1", "r2"])
    s = df.foundry.prompt("{who} wrote: {text}", connection=conn, progress=False)
    assert list(s.index) == ["r1", "r2"]
    assert list(s) == list(frames.prompt(df, "{who} wrote: {text}", connection=conn, progress=False))
    assert fm.last_run() is not None and fm.last_run().done == 2
    structured = df.foundry.prompt("Rate {text}", schema={"label": str, "score": float}, connection=conn,
                                   progress=False)
    assert list(structured.columns) == ["label", "score"]
    t = df["text"]
    assert list(t.foundry.prompt("Echo: {}", connection=conn, progress=False).index) == ["r1", "r2"]
    assert list(t.foundry.sentiment(connection=conn, progress=False)) == ["positive", "negative"]
    assert list(t.foundry.classify(["positive", "negative"], connection=conn, progress=False)) == [
        "positive", "negative"]
    assert list(t.foundry.extract({"item": str}, connection=conn, progress=False).columns) == ["item"]
    assert all(isinstance(v, np.ndarray) for v in t.foundry.embed(connection=conn, progress=False))
    assert t.foundry.summarize(connection=conn, progress=False).notna().all()
    assert t.foundry.translate("German", connection=conn, progress=False).str.contains("German").all()
    rep = dataframe.run_frame(df, "Rate {text}", out="r", connection=conn, progress=False)
    assert rep.done == 2 and df["r"].notna().all()


def test_progress_text_fallback_outside_a_kernel(conn, capsys):
    with Emulator(latency=0.05, lifetime=60) as e:
        c = Connection.from_url(e.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        df = pd.DataFrame({"t": [f"row {i}" for i in range(60)]})
        df.foundry.prompt("Say {t}", connection=c, concurrency=2)  # ~1.5 s: long enough to show progress
    err = capsys.readouterr().err
    assert "prompt:" in err and "60/60 rows" in err
