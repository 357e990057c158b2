"""`pl_df.foundry.evaluate(...)`: the Polars face of the evaluation, on the emulator. It samples
the same rows as pandas, sends the same requests (so the cache answers one from the other) and
returns the same `fm.Evaluation`, with `errors()` indexed by the Polars frame's row numbers."""

from __future__ import annotations

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator

pl = pytest.importorskip("polars")

LABELS = ["positive", "negative", "neutral"]
PRICES = {"gpt-4o": (2.5, 10.0), "gpt-4.1-nano": (0.1, 0.4), "phi-4": (0.125, 0.5)}
SCORED = ["prompt", "model", "rows", "accuracy", "macro_f1", "failures", "input_tokens", "output_tokens", "cost"]


def _reviews(n: int) -> dict[str, list]:
    pos = ["I love it, great and fast", "Excellent, works perfectly", "Wonderful friendly staff"]
    neg = ["Terrible, broken on arrival", "Awful and slow, a waste", "Worst purchase, useless"]
    neu = ["It arrived on Tuesday", "The box is blue", "I bought it in March"]
    text = [(pos, neg, neu)[i % 3][(i // 3) % 3] + f" (order {i})" for i in range(n)]
    label = [None if i % 7 == 6 else LABELS[i % 3] for i in range(n)]  # some rows without a true answer
    return {"text": text, "label": label}


@pytest.fixture(scope="module")
def server():
    with Emulator(lifetime=600) as e:
        yield e


@pytest.fixture
def conn(server):
    fm.set_prices(PRICES)
    return Connection.from_url(server.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o")


def test_polars_evaluation_matches_pandas_and_shares_its_cache(conn, server):
    data = _reviews(70)
    options = {"op": "classify", "labels": LABELS, "models": ["gpt-4o", "gpt-4.1-nano"],
               "prompts": {"short": "Sentiment of: {text}", "long": "Classify the sentiment of this review: {text}"},
               "sample": 40, "connection": conn, "progress": False}
    server.reset_stats()
    ev = pl.DataFrame(data).foundry.evaluate("label", **options)
    assert isinstance(ev, fm.Evaluation)
    sent = server.stats()["requests"]
    assert sent == 4 * 40  # every (prompt, model) once per sampled labelled row
    t = ev.table
    assert isinstance(t, pd.DataFrame) and len(t) == 4 and (t["rows"] == 40).all() and (t["failures"] == 0).all()
    acc = t.set_index(["prompt", "model"])["accuracy"]
    assert acc[("short", "gpt-4o")] == 1.0 and acc[("short", "gpt-4.1-nano")] < 1.0
    assert ev.best["model"] == "gpt-4o"
    assert int(ev.confusion("gpt-4.1-nano", "short").to_numpy().sum()) == 40

    # errors() are on the Polars frame's row numbers: each names a labelled row, its text and gold
    errs = ev.errors("gpt-4.1-nano", prompt="short")
    assert list(errs.columns) == ["input", "gold", "answer"] and errs.index.name == "row"
    assert len(errs) == round((1 - acc[("short", "gpt-4.1-nano")]) * 40) > 0
    for row, (text, gold, answer) in errs.iterrows():
        assert data["text"][row] == text and data["label"][row] == gold != answer

    # pandas samples the same rows and sends the same requests: all from the cache, the same scores
    server.reset_stats()
    pd_ev = pd.DataFrame(data).foundry.evaluate("label", **options)
    assert server.stats()["requests"] == 0
    pd.testing.assert_frame_equal(pd_ev.table[SCORED], t[SCORED])
    assert list(pd_ev.errors("gpt-4.1-nano", prompt="short").index) == list(errs.index)


def test_polars_mask_extract_and_the_default_template(conn):
    df = pl.DataFrame({"text": ["I love it, great", "Terrible and broken", "Wonderful staff", "Awful, slow"],
                       "good": [True, False, True, None]})
    ev = df.foundry.evaluate("good", op="mask", template="the review {text} is positive", models=["gpt-4o"],
                             connection=conn, progress=False)
    assert ev.table["rows"].iloc[0] == 3 and ev.confusion("gpt-4o").shape[0] == 2  # the null gold is left out
    people = pl.DataFrame({"text": ["Ana is 31", "Bob is 40"],
                           "gold": [{"name": "Ana", "age": 31}, {"name": "Bob", "age": 40}]})  # a Struct column
    ev = people.foundry.evaluate("gold", op="extract", schema={"name": str, "age": int}, models=["gpt-4o"],
                                 connection=conn, progress=False)
    assert {"name", "age", "all_fields"} <= set(ev.table.columns)
    one = pl.DataFrame(_reviews(21))  # one input column besides the gold: the op's own prompt
    ev = one.foundry.evaluate("label", labels=LABELS, models=["gpt-4o"], sample=9, connection=conn, progress=False)
    assert ev.table["rows"].iloc[0] == 9 and ev.table["accuracy"].iloc[0] == 1.0


def test_polars_bad_arguments_are_refused_before_anything_is_sent(server):
    df = pl.DataFrame({"text": ["a", "b"], "label": ["positive", None]})
    server.reset_stats()
    with pytest.raises(fm.ConfigurationError, match="not a column"):
        df.foundry.evaluate("gold", labels=LABELS, models=["m"])
    with pytest.raises(fm.ConfigurationError, match="sample="):
        df.foundry.evaluate("label", labels=LABELS, models=["m"], sample=0)
    with pytest.raises(fm.ConfigurationError, match="No labelled rows"):
        df.filter(pl.col("label").is_null()).foundry.evaluate("label", labels=LABELS, models=["m"])
    with pytest.raises(fm.ConfigurationError, match="labels"):
        df.foundry.evaluate("label", template="{text}", models=["m"])
    with pytest.raises(fm.ConfigurationError, match="one input column"):
        df.with_columns(other=pl.lit("x")).foundry.evaluate("label", labels=LABELS, models=["m"])
    assert server.stats()["requests"] == 0
