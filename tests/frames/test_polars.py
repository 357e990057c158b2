"""The Polars front-end: `pl_df.foundry` / `pl_series.foundry` registered lazily, the pandas
results as Polars objects, nulls, dedup, the same option errors, batch=True and estimate=True."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

pl = pytest.importorskip("polars")

import foundry_magics as fm  # noqa: E402
from foundry_magics.engine.estimate import Estimate  # noqa: E402
from foundry_magics.errors import ConfigurationError  # noqa: E402
from foundry_magics.frames import polars as plf  # noqa: E402
from foundry_magics.frames.hook import install  # noqa: E402

from batch_helpers import POLL, conn, emu, routes  # noqa: E402,F401 - emu and conn are fixtures

pytestmark = pytest.mark.timeout(120)

TEXTS = ["I love this phone", "Terrible, it broke at once", None, "I love this phone", "An ordinary day"]
OFF = dict(progress=False)


def sent(emu) -> int:
    return emu.stats()["requests"]


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


# ---------------------------------------------------------------------- registration


def test_import_loads_no_polars_and_the_namespaces_appear_with_it():
    out = _run("""
        import sys, warnings
        warnings.simplefilter("error")
        import foundry_magics
        assert "polars" not in sys.modules
        import polars as pl
        print(type(pl.DataFrame({"a": [1]}).foundry).__name__, type(pl.Series([1]).foundry).__name__)
        print("pandas" in sys.modules)  # registering loads no pandas
        from foundry_magics.frames import hook
        print(hook._polars_hook in sys.meta_path)
    """)
    assert out == ["FoundryPolarsFrame", "FoundryPolarsSeries", "False", "False"]


def test_polars_imported_first_also_works():
    out = _run("""
        import polars as pl
        import foundry_magics
        print(hasattr(pl.DataFrame, "foundry"), hasattr(pl.Series, "foundry"))
        from foundry_magics.frames import hook
        print(hook._polars_hook in __import__("sys").meta_path)
    """)
    assert out == ["True", "True", "False"]


def test_register_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plf.register()
        plf.register()
        install()
    assert isinstance(pl.DataFrame({"a": [1]}).foundry, plf.FoundryPolarsFrame)
    assert isinstance(pl.Series([1]).foundry, plf.FoundryPolarsSeries)


def test_every_pandas_method_is_there_with_the_same_parameters():
    import inspect

    from foundry_magics.frames import pandas as pdf

    for ours, theirs in ((plf.FoundryPolarsFrame, pdf.FoundryDataFrameAccessor),
                         (plf.FoundryPolarsSeries, pdf.FoundrySeriesAccessor)):
        names = {n for n in vars(theirs) if not n.startswith("_")}
        assert names <= set(dir(ours))
        for n in names:
            mine = list(inspect.signature(getattr(ours, n)).parameters)
            assert [p for p in mine if p != "output_col"] == list(inspect.signature(getattr(theirs, n)).parameters)


# ---------------------------------------------------------------------- results = pandas results


def test_prompt_equals_pandas_with_nulls_and_dedup(emu, conn):
    df = pl.DataFrame({"text": TEXTS, "who": ["Ann", "Bob", "Cy", "Ann", None]})
    s = df.foundry.prompt("{who} wrote: {text}", connection=conn, **OFF)
    assert sent(emu) == 2  # a null in either column sends nothing; the repeated row is sent once
    assert isinstance(s, pl.Series) and s.name == "prompt" and s.dtype == pl.String
    assert s.is_null().to_list() == [False, False, True, False, True]
    r = fm.last_run()
    assert (r.rows, r.na_rows, r.done, r.requests, r.unique) == (5, 2, 3, 2, 2)
    ref = df.to_pandas().foundry.prompt("{who} wrote: {text}", connection=conn, cache=False, **OFF)
    assert s.to_list() == [None if pd.isna(v) else v for v in ref]
    named = df.foundry.prompt("{who} wrote: {text}", output_col="said", connection=conn, **OFF)
    assert named.name == "said" and named.to_list() == s.to_list()
    again = df["text"].foundry.prompt("Echo: {}", connection=conn, **OFF)
    assert again.name == "text"
    assert again.to_list() == [None if pd.isna(v) else v
                               for v in pd.Series(TEXTS).foundry.prompt("Echo: {}", connection=conn, **OFF)]


def test_schema_gives_a_dataframe_with_the_pandas_values(conn):
    df = pl.DataFrame({"text": TEXTS})
    schema = {"label": ["positive", "negative"], "score": float, "stars": int}
    out = df.foundry.prompt("Rate: {text}", schema=schema, connection=conn, **OFF)
    assert isinstance(out, pl.DataFrame) and out.columns == ["label", "score", "stars"]
    assert out.schema["stars"] == pl.Int64 and out.schema["label"] == pl.String
    ref = df.to_pandas().foundry.prompt("Rate: {text}", schema=schema, connection=conn, cache=False, **OFF)
    assert out.to_pandas().astype(object).where(out.to_pandas().notna(), None).values.tolist() == \
        ref.astype(object).where(ref.notna(), None).values.tolist()
    assert out.row(2) == (None, None, None)
    prefixed = df.foundry.prompt("Rate: {text}", schema=schema, output_col="r", connection=conn, **OFF)
    assert prefixed.columns == ["r_label", "r_score", "r_stars"]


def test_classify_sentiment_are_enums_null_when_unmatched(conn):
    s = pl.Series("review", ["I love it, great", "awful, broke at once", "#emulator:status=400 x", None])
    out = s.foundry.classify(["positive", "negative", "neutral"], connection=conn, **OFF)
    assert out.dtype == pl.Enum(["positive", "negative", "neutral"]) and out.name == "review"
    assert out.to_list() == ["positive", "negative", None, None]
    assert [label for label, _ in fm.last_run().failures] == [2]  # by row number
    ref = pd.Series(s.to_list()).foundry.classify(["positive", "negative", "neutral"], connection=conn, **OFF)
    assert out.to_list() == [None if pd.isna(v) else v for v in ref]
    senti = s.foundry.sentiment(connection=conn, **OFF)
    assert senti.dtype == pl.Enum(["positive", "negative", "neutral"])
    assert senti.to_list()[:2] == ["positive", "negative"]
    numbers = pl.Series(["one", "three"]).foundry.classify([1, 2, 3], template="Which number: {}",
                                                              connection=conn, **OFF)
    ref = pd.Series(["one", "three"]).foundry.classify([1, 2, 3], template="Which number: {}", connection=conn, **OFF)
    assert numbers.dtype == pl.Int64 and numbers.to_list() == list(ref)  # labels keep their own type


def test_summarize_translate_extract_equal_pandas(conn):
    s = pl.Series("t", ["Alice Smith is 34 and lives in Paris", "Bob, 51", None])
    ps = pd.Series(s.to_list())
    for ours, theirs in ((s.foundry.summarize(connection=conn, **OFF), ps.foundry.summarize(connection=conn, **OFF)),
                         (s.foundry.translate("French", connection=conn, **OFF),
                          ps.foundry.translate("French", connection=conn, **OFF))):
        assert ours.dtype == pl.String and ours.to_list() == [None if pd.isna(v) else v for v in theirs]
    out = s.foundry.extract({"name": str, "age": int}, connection=conn, **OFF)
    ref = ps.foundry.extract({"name": str, "age": int}, connection=conn, cache=False, **OFF)
    assert isinstance(out, pl.DataFrame) and out.columns == ["name", "age"]
    assert out.schema["name"] == pl.String and out.schema["age"] == pl.Int64
    assert out.row(0) == tuple(ref.iloc[0]) and out.row(2) == (None, None)


def test_embed_is_an_array_of_float32_with_nulls(emu, conn):
    s = pl.Series("t", ["red apple", "green pear", None, "red apple"])
    out = s.foundry.embed(connection=conn, **OFF)
    assert sent(emu) == 1
    assert isinstance(out.dtype, pl.Array) and out.dtype.inner == pl.Float32 and out.name == "t"
    ref = pd.Series(s.to_list()).foundry.embed(connection=conn, cache=False, **OFF)
    np.testing.assert_array_equal(out[0].to_numpy(), ref.iloc[0])
    np.testing.assert_array_equal(out[1].to_numpy(), ref.iloc[1])
    assert out[2] is None and out.is_null().to_list() == [False, False, True, False]
    np.testing.assert_array_equal(out[3].to_numpy(), out[0].to_numpy())
    emu.reset_stats()
    s.foundry.embed(connection=conn, **OFF)
    assert sent(emu) == 0  # cached per text


def test_failed_rows_are_null_and_listed_by_row_number(conn):
    df = pl.DataFrame({"t": ["ok", "#emulator:content_filter", "fine", "#emulator:content_filter"]})
    s = df.foundry.prompt("{t}", connection=conn, **OFF)
    assert s.is_null().to_list() == [False, True, False, True]
    r = fm.last_run()
    assert r.failed == 2 and [p for p, _ in r.failures] == [1, 3] and "ContentFilter" in r.failures[0][1]


def test_a_categorical_column_and_numbers_render_as_in_pandas(emu, conn):
    df = pl.DataFrame({"c": ["x", "y", "x"], "n": [1, 2, 1]}).with_columns(pl.col("c").cast(pl.Categorical))
    s = df.foundry.prompt("{c}={n}", connection=conn, **OFF)
    assert sent(emu) == 2
    ref = pd.DataFrame({"c": ["x", "y", "x"], "n": [1, 2, 1]}).foundry.prompt("{c}={n}", connection=conn, **OFF)
    assert s.to_list() == list(ref)


# ---------------------------------------------------------------------- options: the same errors as pandas


BAD = [
    ("prompt", ("Hi {text}",), dict(temperature="hot")),
    ("prompt", ("Hi {text}",), dict(temperature=9)),
    ("prompt", ("Hi {text}",), dict(max_tokens="lots")),
    ("prompt", ("Hi {text}",), dict(progres=False)),
    ("prompt", ("Hi {text}",), dict(concurrency=0)),
    ("prompt", ("Hi {text}",), dict(wait=False)),
    ("prompt", ("Hi {txt}",), {}),
    ("prompt", ("Hi {}",), {}),
    ("estimate", ("Hi {text}",), dict(cache="yes")),
]
SERIES_BAD = [
    ("classify", (["a"],), {}),
    ("classify", (["a", "b"],), dict(schema={"x": int})),
    ("extract", ({"name": str},), dict(temperature=-1)),
    ("embed", (), dict(temperature=0.5)),
    ("summarize", (), dict(rpm=-3)),
    ("translate", ("",), {}),
    ("sentiment", (), dict(batch="yes")),
    ("prompt", ("Hi {other}",), {}),
]


def _error(call) -> str:
    with pytest.raises(ConfigurationError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("method,args,kw", BAD, ids=lambda v: str(v)[:30])
def test_dataframe_option_errors_are_the_pandas_ones(emu, conn, method, args, kw):
    data = {"text": ["a", "b"]}
    mine = _error(lambda: getattr(pl.DataFrame(data).foundry, method)(*args, connection=conn, **kw))
    theirs = _error(lambda: getattr(pd.DataFrame(data).foundry, method)(*args, connection=conn, **kw))
    assert mine == theirs
    assert sent(emu) == 0


@pytest.mark.parametrize("method,args,kw", SERIES_BAD, ids=lambda v: str(v)[:30])
def test_series_option_errors_are_the_pandas_ones(emu, conn, method, args, kw):
    mine = _error(lambda: getattr(pl.Series("text", ["a", "b"]).foundry, method)(*args, connection=conn, **kw))
    theirs = _error(lambda: getattr(pd.Series(["a", "b"], name="text").foundry, method)(*args, connection=conn,
                                                                                        **kw))
    assert mine == theirs
    assert sent(emu) == 0


def test_a_misspelt_option_says_did_you_mean(conn):
    msg = _error(lambda: pl.DataFrame({"t": ["a"]}).foundry.prompt("{t}", progres=False, connection=conn))
    assert "progres=" in msg and "did you mean progress" in msg.lower()
    with pytest.raises(ConfigurationError, match="output_col"):
        pl.DataFrame({"t": ["a"]}).foundry.prompt("{t}", output_col="", connection=conn)
    with pytest.raises(ConfigurationError, match="LazyFrame"):
        plf.prompt(pl.DataFrame({"t": ["a"]}).lazy(), "{t}", connection=conn)


# ---------------------------------------------------------------------- modes


def test_estimate_is_the_pandas_estimate_and_sends_nothing(emu, conn):
    texts = [f"review {i % 7}" for i in range(50)] + [None]
    df, pdf = pl.DataFrame({"text": texts}), pd.DataFrame({"text": texts})
    est = df.foundry.estimate("Summarize: {text}", connection=conn)
    assert isinstance(est, Estimate) and sent(emu) == 0
    ref = pdf.foundry.estimate("Summarize: {text}", connection=conn)
    assert str(est) == str(ref)
    assert (est.rows, est.na_rows, est.distinct, est.to_send) == (51, 1, 7, 7)
    s = df["text"]
    for call in (lambda x: x.foundry.summarize(estimate=True, connection=conn),
                 lambda x: x.foundry.classify(["a", "b"], estimate=True, batch=True, connection=conn),
                 lambda x: x.foundry.embed(estimate=True, connection=conn),
                 lambda x: x.foundry.estimate("Echo {}", connection=conn)):
        assert str(call(s)) == str(call(pdf["text"]))
    assert df.foundry.prompt("Summarize: {text}", estimate=True, connection=conn).to_send == 7
    assert sent(emu) == 0


def test_batch_gives_the_online_results_and_wait_false_a_job(emu, conn):
    df = pl.DataFrame({"text": [f"Review {i % 6}: the parcel came late" for i in range(20)] + [None]})
    s = df.foundry.prompt("Summarize: {text}", batch=True, connection=conn, poll_interval=POLL, **OFF)
    assert isinstance(s, pl.Series) and s.name == "prompt" and s.null_count() == 1
    r = fm.last_run()
    assert r.requests == 6 and getattr(r, "batch", False) is True
    assert routes(emu).get("batches", 0) == 1 and not routes(emu).get("chat.completions")
    emu.reset_stats()
    online = df.foundry.prompt("Summarize: {text}", connection=conn, cache=False, **OFF)
    assert online.to_list() == s.to_list()

    t = df["text"].head(8)
    job = t.foundry.classify(["late", "early"], batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert isinstance(job, fm.BatchJob)
    labels = job.result()
    assert isinstance(labels, pl.Series) and labels.dtype == pl.Enum(["late", "early"]) and len(labels) == 8
    vecs = t.foundry.embed(batch=True, connection=conn, poll_interval=POLL, **OFF)
    assert isinstance(vecs.dtype, pl.Array) and vecs.null_count() == 0
    fields = t.foundry.extract({"item": str}, batch=True, connection=conn, poll_interval=POLL, **OFF)
    assert isinstance(fields, pl.DataFrame) and fields.columns == ["item"]


def test_images_per_row(emu, conn, tmp_path):
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    red = tmp_path / "red.png"
    red.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))
    df = pl.DataFrame({"q": ["What colour?"] * 3, "img": [str(red), str(tmp_path / "missing.png"), None]})
    out = df.foundry.prompt("{q}", images="img", connection=conn, **OFF)
    assert sent(emu) == 1 and out.is_null().to_list() == [False, True, True]
    assert [p for p, _ in fm.last_run().failures] == [1, 2]
    with pytest.raises(ConfigurationError, match="not a column"):
        df.foundry.prompt("{q}", images="photo", connection=conn)
