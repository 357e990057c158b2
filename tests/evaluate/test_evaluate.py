"""Evaluating prompts and models on labelled rows: the metrics, the Pareto front and the best
choice (plain units), then `df.foundry.evaluate` and `%%foundry --eval` on the emulator."""

from __future__ import annotations

import math
import sys

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator, brain
from foundry_magics.ops import evaluate as core

from magics_helpers import connect, emu, ip, run  # noqa: F401 - emu and ip are fixtures

LABELS = ["positive", "negative", "neutral"]
PRICES = {"gpt-4o": (2.5, 10.0), "gpt-4.1-nano": (0.1, 0.4), "phi-4": (0.125, 0.5)}


# ====================================================================== units


def test_accuracy_and_macro_f1():
    gold = ["a", "a", "b", "b"]
    assert core.accuracy(["a", "a", "b", "b"], gold) == 1.0
    assert core.accuracy(["a", None, "b", "a"], gold) == 0.5  # a failure is wrong
    # a: tp 1 fp 1 fn 1 -> f1 0.5; b: tp 1 fp 0 fn 1 -> 2/3
    assert core.macro_f1(["a", None, "b", "a"], gold, ["a", "b"]) == pytest.approx((0.5 + 2 / 3) / 2)
    assert core.accuracy([" Positive. "], ["positive"]) == 1.0  # normalised


def test_confusion_counts_failures_in_their_own_column():
    rows, cols, counts = core.confusion(["a", None, "b", "a"], ["a", "a", "b", "b"], ["a", "b"])
    assert rows == ["a", "b"] and cols == ["a", "b", "(none)"]
    assert counts == [[1, 0, 1], [1, 1, 0]]


def test_extract_per_field_and_all_fields():
    answers = [{"name": "Ana", "age": 31}, {"name": "bob ", "age": 40}, None]
    gold = [{"name": "Ana", "age": 31}, '{"name": "Bob", "age": 41}', {"name": "Cy", "age": 2}]
    got = core.field_scores(answers, gold, ["name", "age"])
    assert got == {"name": pytest.approx(2 / 3), "age": pytest.approx(1 / 3), "all_fields": pytest.approx(1 / 3)}


def test_prompt_exact_match_and_a_metric():
    assert core.exact_match(["Paris ", "LISBON", None], ["paris", "Lisbon", "Rome"]) == pytest.approx(2 / 3)
    got = core.score_answers("prompt", ["the city of Paris", None], ["paris", "rome"],
                             metric=lambda a, g: g.lower() in a.lower())
    assert got == {"metric": 0.5}
    with pytest.raises(fm.ConfigurationError, match="metric"):
        core.score_answers("prompt", ["x"], ["y"], metric=lambda a, g: 1 / 0)


def test_pareto_and_best():
    pts = [(0.95, 10.0), (0.90, 1.0), (0.945, 2.0), (0.80, 5.0), (None, 0.1), (0.95, None)]
    assert core.pareto(pts) == [0, 1, 2, 5]  # (0.80, 5) is beaten by (0.90, 1); no score: never on it;
    # an unpriced point is compared on its score only
    assert core.best_index(pts) == 2  # the cheapest within one point of 0.95
    assert core.best_index([(0.95, 10.0), (0.90, 1.0)]) == 0  # five points below: not good enough
    assert core.best_index([(None, 1.0)]) is None
    assert core.best_index([(0.9, None), (0.9, 3.0)]) == 1  # an unpriced run comes after a priced one


def test_the_emulator_has_weaker_models():
    assert brain.weakness("gpt-4o") == 0 and brain.weakness("gpt-4o-mini") == 0
    assert brain.weakness("gpt-4.1-nano") > brain.weakness("phi-4") > 0
    texts = [f"I love it, great ({i})" for i in range(400)]
    wrong = sum(brain.choose_label(LABELS, t, model="gpt-4.1-nano") != "positive" for t in texts)
    assert 0.15 * 400 < wrong < 0.35 * 400
    assert all(brain.choose_label(LABELS, t, model="gpt-4o") == "positive" for t in texts)
    assert [brain.choose_label(LABELS, t, model="phi-4") for t in texts] == \
        [brain.choose_label(LABELS, t, model="phi-4") for t in texts]  # deterministic


def test_bad_arguments_are_refused_before_anything_is_sent():
    df = pd.DataFrame({"text": ["a", "b"], "label": ["positive", "negative"]})
    with pytest.raises(fm.ConfigurationError, match="not a column"):
        df.foundry.evaluate("gold", labels=LABELS, models=["m"])
    with pytest.raises(fm.ConfigurationError, match="labels"):
        df.foundry.evaluate("label", template="{text}", models=["m"])
    with pytest.raises(fm.ConfigurationError, match="op="):
        df.foundry.evaluate("label", op="rank", template="{text}", models=["m"])
    with pytest.raises(fm.ConfigurationError, match="not both"):
        df.foundry.evaluate("label", labels=LABELS, template="{text}", prompts={"a": "{text}"}, models=["m"])
    with pytest.raises(fm.ConfigurationError, match="batch"):
        df.foundry.evaluate("label", labels=LABELS, template="{text}", models=["m"], batch=True)


# ====================================================================== on the emulator


def _reviews(n: int) -> pd.DataFrame:
    pos = ["I love it, great and fast", "Excellent, works perfectly", "Wonderful friendly staff"]
    neg = ["Terrible, broken on arrival", "Awful and slow, a waste", "Worst purchase, useless"]
    neu = ["It arrived on Tuesday", "The box is blue", "I bought it in March"]
    rows = [{"text": (pos, neg, neu)[i % 3][(i // 3) % 3] + f" (order {i})", "label": LABELS[i % 3]}
            for i in range(n)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def server():
    with Emulator(lifetime=600) as e:
        yield e


@pytest.fixture
def conn(server):
    fm.set_prices(PRICES)
    return Connection.from_url(server.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o")


def test_classify_evaluation_end_to_end(conn, server):
    df = _reviews(90)
    server.reset_stats()
    ev = df.foundry.evaluate("label", op="classify", labels=LABELS, models=["gpt-4o", "gpt-4.1-nano", "phi-4"],
                             prompts={"short": "Sentiment of: {text}",
                                      "long": "Classify the sentiment of this review: {text}"},
                             connection=conn, progress=False)
    assert isinstance(ev, fm.Evaluation)
    t = ev.table
    assert list(t.columns) == ["prompt", "model", "rows", "accuracy", "macro_f1", "failures", "input_tokens",
                               "output_tokens", "cost", "cost_per_1k_rows", "p50_s", "p95_s"]
    assert len(t) == 6 and (t["rows"] == 90).all() and (t["failures"] == 0).all()
    acc = t.set_index(["prompt", "model"])["accuracy"]
    assert acc[("short", "gpt-4o")] == 1.0 and acc[("short", "gpt-4.1-nano")] < 0.9
    assert (t["cost"] > 0).all() and (t["p95_s"] >= t["p50_s"]).all()
    assert server.stats()["requests"] == 6 * 90  # every (prompt, model) once per distinct row
    best = ev.best
    assert best["model"] == "gpt-4o" and best["prompt"] == "short"  # the others are more than a point worse
    conf = ev.confusion("gpt-4.1-nano", "short")
    assert int(conf.to_numpy().sum()) == 90
    errs = ev.errors("gpt-4.1-nano", prompt="short")
    assert list(errs.columns) == ["input", "gold", "answer"] and len(errs) == round((1 - acc[("short", "gpt-4.1-nano")]) * 90)
    assert (errs["gold"] != errs["answer"]).all() and errs.index.isin(df.index).all()
    with pytest.raises(fm.ConfigurationError, match="several prompts"):
        ev.confusion("gpt-4o")
    # again: everything from the cache, the same table (tokens and cost count the cached answers)
    server.reset_stats()
    again = df.foundry.evaluate("label", op="classify", labels=LABELS, models=["gpt-4o", "gpt-4.1-nano", "phi-4"],
                                prompts={"short": "Sentiment of: {text}",
                                         "long": "Classify the sentiment of this review: {text}"},
                                connection=conn, progress=False)
    assert server.stats()["requests"] == 0
    cols = ["prompt", "model", "accuracy", "input_tokens", "output_tokens", "cost"]
    pd.testing.assert_frame_equal(again.table[cols], t[cols])


def test_a_failing_model_does_not_stop_the_others(conn):
    with Emulator(lifetime=120, strict_models=True, deployments="gpt-4o,phi-4") as e:
        c = Connection.from_url(e.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o")
        ev = _reviews(30).foundry.evaluate("label", labels=LABELS, template="Sentiment of: {text}",
                                           models=["gpt-4o", "no-such-model", "phi-4"], connection=c, progress=False)
    t = ev.table.set_index("model")
    assert t.loc["gpt-4o", "accuracy"] == 1.0 and t.loc["phi-4", "failures"] == 0
    assert t.loc["no-such-model", "failures"] == 30 and t.loc["no-such-model", "accuracy"] == 0
    assert "no-such-model" in str(t.loc["no-such-model", "error"]) or t.loc["no-such-model", "error"]
    assert ev.best["model"] == "gpt-4o"


def test_max_cost_covers_the_whole_evaluation(conn):
    ev = _reviews(60).foundry.evaluate("label", labels=LABELS, template="Label {text}",
                                       models=["gpt-4o", "phi-4"], connection=conn, progress=False, max_cost=0.001,
                                       cache=False)
    spent = sum(c for c in ev.table["cost"] if not math.isnan(c))
    assert spent <= 0.001 + 1e-12
    assert ev.table["failures"].sum() > 0  # it stopped before every row was sent


def test_mask_extract_and_prompt(conn):
    df = pd.DataFrame({"text": ["I love it, great", "Terrible and broken", "Wonderful staff", "Awful, slow"],
                       "good": [True, False, True, False]})
    ev = df.foundry.evaluate("good", op="mask", template="the review {text} is positive", models=["gpt-4o"],
                             connection=conn, progress=False)
    assert list(ev.table.columns[:5]) == ["prompt", "model", "rows", "accuracy", "macro_f1"]
    assert ev.confusion("gpt-4o").shape[0] == 2
    people = pd.DataFrame({"text": ["Ana is 31", "Bob is 40"], "gold": [{"name": "Ana", "age": 31}, {"name": "Bob", "age": 40}]})
    ev = people.foundry.evaluate("gold", op="extract", schema={"name": str, "age": int}, models=["gpt-4o", "phi-4"],
                                 connection=conn, progress=False)
    assert {"name", "age", "all_fields"} <= set(ev.table.columns)
    cities = pd.DataFrame({"q": ["a", "b"], "gold": ["x", "y"]})
    ev = cities.foundry.evaluate("gold", op="prompt", template="Say {q}", models=["gpt-4o"], connection=conn,
                                 progress=False, metric=lambda a, g: len(a) > 0)
    assert ev.table["metric"].iloc[0] == 1.0


def test_sample_and_the_default_template(conn):
    df = _reviews(50)[["text", "label"]]
    ev = df.foundry.evaluate("label", labels=LABELS, models=["gpt-4o"], sample=20, connection=conn, progress=False)
    assert ev.table["rows"].iloc[0] == 20 and ev.table["accuracy"].iloc[0] == 1.0


def test_plot_and_the_notebook_display(conn):
    pytest.importorskip("matplotlib")
    ev = _reviews(30).foundry.evaluate("label", labels=LABELS, template="Sentiment of: {text}",
                                       models=["gpt-4o", "gpt-4.1-nano", "phi-4"], connection=conn, progress=False)
    fig = ev.plot()
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("cost per 1,000 rows") and ax.get_ylabel() == "accuracy"
    assert {t.get_text() for t in ax.texts} == {"gpt-4o", "gpt-4.1-nano", "phi-4"}
    assert fig._repr_png_().startswith(b"\x89PNG")
    bundle = ev._repr_mimebundle_()
    assert "data:image/png;base64," in bundle["text/html"] and "Best: gpt-4o" in bundle["text/html"]
    assert "Best:" in bundle["text/plain"]


def test_plot_without_matplotlib_names_the_extra(conn, monkeypatch):
    ev = _reviews(9).foundry.evaluate("label", labels=LABELS, template="Sentiment of: {text}", models=["gpt-4o"],
                                      connection=conn, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(fm.ConfigurationError, match=r"foundry-magics\[plot\]"):
        ev.plot()
    assert "foundry-magics[plot]" in ev._repr_html_()  # the display still shows the table


def test_eval_cell(ip, server):  # noqa: F811
    fm.set_prices(PRICES)
    connect(ip, server.url, "--auth none --model gpt-4o")
    ip.user_ns["reviews"] = _reviews(24)
    ran = run(ip, "%%foundry --df reviews --eval label -m gpt-4o,gpt-4.1-nano --labels positive,negative,neutral "
                  "-o ev\nSentiment of: {text}")
    assert ran.result.error_in_exec is None, ran.everything
    ev = ip.user_ns["ev"]
    assert isinstance(ev, fm.Evaluation) and ran.value is ev
    assert list(ev.table["model"]) == ["gpt-4o", "gpt-4.1-nano"] and "accuracy" in ev.table.columns
    bad = run(ip, "%%foundry --df reviews --labels a,b\n{text}")
    assert "--labels goes with --eval" in bad.everything
    bad = run(ip, "%%foundry --eval label -m a,b\n{text}")
    assert "needs --df" in bad.everything
