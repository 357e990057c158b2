"""Templates, validation, NA, dedup, alignment, schema columns, classify/extract/embed, run_frame."""

from __future__ import annotations

import _thread
import threading

import numpy as np
import pandas as pd
import pytest

from foundry_magics import engine
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.errors import ConfigurationError
from foundry_magics.frames import ops as frames
from foundry_magics.ops.replies import MISSING, match_label
from foundry_magics.ops.template import SERIES
from foundry_magics.rest.client import FoundryClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def emu():
    e = Emulator(lifetime=120)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    return Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")


def ask(conn, prompts, **kw):
    with FoundryClient(conn) as c:
        return [c.chat(p, **kw).text for p in prompts]


# ---------------------------------------------------------------------- templates


def test_parse_template():
    t = frames.parse_template("Hi {name}, {{literal}} {n:03d} {name} {}")
    assert t.names == ["name", "n"] and t.positional
    assert t.render_with({"name": "Ann", "n": 7, SERIES: "v"}) == "Hi Ann, {literal} 007 Ann v"
    assert frames.parse_template("{first name}").names == ["first name"]
    assert frames.parse_template("no fields").names == []
    for bad in ("oops {", "oops }", "{a"):
        with pytest.raises(ConfigurationError, match="Unbalanced"):
            frames.parse_template(bad)
    for empty in ("", "   \n"):
        with pytest.raises(ConfigurationError, match="empty"):
            frames.parse_template(empty)


def test_missing_column_is_named_before_anything_is_sent(emu, conn):
    df = pd.DataFrame({"text": ["a"], "title": ["b"]})
    with pytest.raises(ConfigurationError) as err:
        frames.prompt(df, "Summarize {txt} and {title}", connection=conn)
    msg = str(err.value)
    assert "{txt}" in msg and "'text'" in msg and "'title'" in msg and "{{" in msg
    with pytest.raises(ConfigurationError, match="only works on a Series"):
        frames.prompt(df, "Hi {}", connection=conn)
    with pytest.raises(ConfigurationError, match="Series form"):
        frames.prompt(df["text"], "Hi {other}", connection=conn)
    with pytest.raises(ConfigurationError, match="column or a variable"):
        frames.run_frame(df, "{nope}", out="o", namespace={"x": 1}, connection=conn)
    assert emu.stats()["requests"] == 0


def test_namespace_values_and_integer_column_names(conn):
    df = pd.DataFrame({0: ["alpha", "beta"]})
    rep = frames.run_frame(df, "In {lang}: {0}", out="o", namespace={"lang": "French"}, connection=conn,
                           progress=False)
    assert list(df["o"]) == ask(conn, ["In French: alpha", "In French: beta"])
    assert rep.done == 2


# ---------------------------------------------------------------------- rows


def test_na_rows_get_na_and_no_request(emu, conn):
    df = pd.DataFrame({"a": ["x", None, "y", np.nan], "b": [1, 2, None, 4], "unused": [None] * 4})
    s = frames.prompt(df, "{a} / {b}", connection=conn, progress=False)
    assert s.isna().tolist() == [False, True, True, True]
    assert emu.stats()["requests"] == 1
    assert s.iloc[0] == ask(conn, ["x / 1.0"])[0]  # str() of the cell: b is a float column
    r = engine.last_run()
    assert (r.rows, r.na_rows, r.done, r.requests) == (4, 3, 1, 1)


def test_custom_and_duplicate_index_line_up(conn):
    df = pd.DataFrame({"t": ["one", "two", "three", "two", "five"]}, index=["k", "k", 10, -1, "k"])
    df = df.iloc[[4, 2, 0, 3, 1]]  # shuffled, duplicate labels
    s = frames.prompt(df, "Word: {t}", connection=conn, progress=False)
    assert list(s.index) == list(df.index)
    assert list(s) == ask(conn, [f"Word: {t}" for t in df["t"]])
    out = df.copy()
    frames.run_frame(out, "Word: {t}", out="r", connection=conn, progress=False)
    assert list(out["r"]) == list(s)


def test_identical_rows_make_one_request(emu, conn):
    df = pd.DataFrame({"a": [f"v{i % 10}" for i in range(100)], "b": [i % 2 for i in range(100)]})
    s = frames.prompt(df, "{a}-{b}", connection=conn, progress=False)
    assert emu.stats()["requests"] == 10  # (i % 10, i % 2) has 10 combinations
    assert s.iloc[13] == s.iloc[3] and s.iloc[3] != s.iloc[4]
    r = engine.last_run()
    assert r.unique == 10 and r.dedup_saved == 90
    emu.reset_stats()
    again = frames.prompt(df, "{a}-{b}", connection=conn, progress=False)
    assert emu.stats()["requests"] == 0
    pd.testing.assert_series_equal(again, s)


def test_unhashable_cells_are_compared_by_text(emu, conn):
    df = pd.DataFrame({"tags": [["a", "b"], ["a", "b"], ["c"]]})
    s = frames.prompt(df, "Tags: {tags}", connection=conn, progress=False)
    assert emu.stats()["requests"] == 2
    assert s.iloc[0] == s.iloc[1] == ask(conn, ["Tags: ['a', 'b']"])[0]


# ---------------------------------------------------------------------- structured output


def test_schema_gives_a_column_per_field(conn):
    df = pd.DataFrame({"text": ["I love this phone", "Terrible, it broke", None]}, index=[7, 8, 9])
    schema = {"label": ["positive", "negative"], "score": float, "stars": int}
    out = frames.prompt(df, "Rate: {text}", schema=schema, connection=conn, progress=False)
    assert list(out.columns) == ["label", "score", "stars"] and list(out.index) == [7, 8, 9]
    with FoundryClient(conn) as c:
        ref = [c.chat(f"Rate: {t}", schema=schema).json() for t in df["text"][:2]]
    for i in range(2):
        assert out.iloc[i].to_dict() == pytest.approx(ref[i])
    assert out.iloc[2].isna().all()
    assert str(out["stars"].dtype) == "Int64" and str(out["score"].dtype) == "Float64"


def test_classify_is_categorical_and_na_when_unmatched(conn):
    s = pd.Series(["I love it, great", "awful, broke at once", "#emulator:status=400 x", None], index=list("abcd"))
    out = frames.classify(s, ["positive", "negative", "neutral"], connection=conn, progress=False)
    assert isinstance(out.dtype, pd.CategoricalDtype)
    assert list(out.cat.categories) == ["positive", "negative", "neutral"]
    assert out["a"] == "positive" and out["b"] == "negative"
    assert pd.isna(out["c"]) and pd.isna(out["d"])
    r = engine.last_run()
    assert [label for label, _ in r.failures] == ["c"]
    with pytest.raises(ConfigurationError):
        frames.classify(s, ["only one"], connection=conn)


def test_match_label_is_tolerant():
    labels = ["positive", "negative", "neutral"]
    assert match_label('{"label": "negative"}', labels) == "negative"
    assert match_label("Positive.", labels) == "positive"
    assert match_label("**Neutral**", labels) == "neutral"
    assert match_label("I would say it is negative overall", labels) == "negative"
    assert match_label("positive or negative, hard to say", labels) is MISSING
    assert match_label("banana", labels) is MISSING
    assert match_label("3", [1, 2, 3]) == 3


def test_sentiment_summarize_translate_are_presets(conn):
    s = pd.Series(["I love it", "It is awful and broken"])
    assert list(frames.sentiment(s, connection=conn, progress=False)) == ["positive", "negative"]
    assert list(frames.summarize(s, connection=conn, progress=False)) == ask(
        conn, [frames.SUMMARIZE.replace("{}", t) for t in s])
    fr = frames.translate(s, "French", connection=conn, progress=False)
    assert list(fr) == ask(conn, [frames.TRANSLATE.replace("{lang}", "French").replace("{}", t) for t in s])
    assert "(French)" in fr.iloc[0]


def test_extract(conn):
    s = pd.Series(["Alice Smith is 34 and lives in Paris", "Bob, 51"])
    out = frames.extract(s, {"name": str, "age": int}, connection=conn, progress=False)
    assert list(out.columns) == ["name", "age"]
    with FoundryClient(conn) as c:
        ref = c.chat(frames.EXTRACT.replace("{fields}", "name, age").replace("{}", s[0]),
                     schema={"name": str, "age": int}).json()
    assert out.iloc[0].to_dict() == ref


def test_embed(emu, conn):
    s = pd.Series(["red apple", "green pear", None, "red apple"], index=[3, 2, 1, 0])
    out = frames.embed(s, connection=conn, progress=False)
    assert emu.stats()["requests"] == 1
    with FoundryClient(conn) as c:
        ref = c.embed(["red apple", "green pear"])
    assert isinstance(out.iloc[0], np.ndarray) and out.iloc[0].dtype == np.float32
    np.testing.assert_allclose(out.iloc[0], ref[0], rtol=1e-6)
    np.testing.assert_allclose(out.iloc[1], ref[1], rtol=1e-6)
    assert out.iloc[2] is None
    np.testing.assert_array_equal(out.iloc[3], out.iloc[0])
    emu.reset_stats()
    frames.embed(s, connection=conn, progress=False)
    assert emu.stats()["requests"] == 0  # cached per text


# ---------------------------------------------------------------------- run_frame (the magic)


def test_run_frame_writes_in_place(conn):
    df = pd.DataFrame({"text": ["good", "bad", None]}, index=["x", "y", "z"])
    rep = frames.run_frame(df, "Rate: {text}", out="rating", connection=conn, progress=False)
    assert isinstance(rep, engine.RunReport) and rep is engine.last_run()
    assert list(df.columns) == ["text", "rating"]
    assert df.loc["x", "rating"] == ask(conn, ["Rate: good"])[0] and pd.isna(df.loc["z", "rating"])
    frames.run_frame(df, "Rate: {text}", out="s", schema={"label": str, "score": float}, connection=conn,
                     progress=False)
    assert {"s_label", "s_score"} <= set(df.columns)
    frames.run_frame(df, "Rate: {text}", out="only", schema={"label": str}, connection=conn, progress=False)
    assert "only" in df.columns
    with pytest.raises(ConfigurationError):
        frames.run_frame(df, "x", out="", connection=conn)


def test_run_frame_keeps_finished_rows_on_interrupt():
    with Emulator(latency=0.2, lifetime=60) as e:
        conn = Connection.from_url(e.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        df = pd.DataFrame({"t": [f"row {i}" for i in range(200)]})
        timer = threading.Timer(0.7, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            frames.run_frame(df, "Say {t}", out="o", connection=conn, concurrency=4, progress=False)
        timer.cancel()
        r = engine.last_run()
        assert r.interrupted and 0 < r.done < 200
        assert df["o"].notna().sum() == r.done


def test_failures_are_listed_by_row_label(conn):
    df = pd.DataFrame({"t": ["ok", "#emulator:content_filter", "fine"]}, index=["a", "b", "c"])
    s = frames.prompt(df, "{t}", connection=conn, progress=False)
    assert pd.isna(s["b"]) and s[["a", "c"]].notna().all()
    r = engine.last_run()
    assert r.failed == 1 and r.failures[0][0] == "b" and "ContentFilter" in r.failures[0][1]
    assert "row 'b'" in str(r)
