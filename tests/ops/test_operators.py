"""The semantic operators of the core (ops/judge, ops/topk, ops/agg) through the pandas and Polars
front-ends, on the emulator: the truth its documented rules give, every row accounted for,
the options and modes of any operation, the request counts of the algorithms."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator, operators as rules
from foundry_magics.engine.estimate import Estimate
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import agg as agg_mod
from foundry_magics.ops.judge import Judge, read_answer
from foundry_magics.ops.topk import TopK

pytestmark = pytest.mark.timeout(180)

OFF = dict(progress=False)
PRED = "The customer asks for a 'refund': {text}"


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=600)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    emu.configure(fail_rate=0.0, fail_first=0)
    emu.reset_stats()
    agg_mod._learnt.clear()
    yield Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    emu.configure(fail_rate=0.0, fail_first=0)


def sent(emu) -> int:
    return emu.stats()["requests"]


def reviews() -> pd.DataFrame:
    return pd.DataFrame({"text": ["I want a refund, it broke", "Lovely kettle", None, "Refunds take ages",
                                  "I want a refund, it broke", "#emulator:status=400 refund now"]},
                        index=list("abcdef"))


# ---------------------------------------------------------------------- mask / filter


def test_mask_is_boolean_with_na_for_failed_and_missing(conn, emu):
    m = reviews().foundry.mask(PRED, connection=conn, **OFF)
    assert str(m.dtype) == "boolean"
    assert m.index.tolist() == list("abcdef")
    assert m["a"] and m["d"] and m["e"] and not m["b"]
    assert pd.isna(m["c"]) and pd.isna(m["f"])
    assert sent(emu) == 4  # a and e are one distinct request; c sends nothing
    report = fm.last_run()
    assert [label for label, _ in report.failures] == ["f"]


def test_filter_keeps_rows_judged_true_and_says_what_it_left_out(conn, caplog):
    df = reviews()
    with caplog.at_level(logging.WARNING, logger="foundry_magics"):
        kept = df.foundry.filter(PRED, connection=conn, **OFF)
    assert kept.index.tolist() == ["a", "d", "e"]
    assert kept.columns.tolist() == ["text"]
    assert "1 row was left out because the judgement failed" in caplog.text
    assert [label for label, _ in fm.last_run().failures] == ["f"]


def test_series_form_and_the_emulator_rule(conn):
    s = pd.Series(["a refund please", "five stars", "refunds!"], name="text")
    assert s.foundry.mask("Asks for a 'refund': {}", connection=conn, **OFF).tolist() == [True, False, True]
    assert s.foundry.filter("Asks for a 'refund': {}", connection=conn, **OFF).tolist() == ["a refund please",
                                                                                             "refunds!"]


def test_mask_options_and_modes(conn, emu):
    with pytest.raises(ConfigurationError, match="Did you mean concurrency"):
        reviews().foundry.mask(PRED, connection=conn, concurency=3)
    with pytest.raises(ConfigurationError, match="nosuch"):
        reviews().foundry.mask("{nosuch} is a refund", connection=conn)
    est = reviews().foundry.mask(PRED, connection=conn, estimate=True)
    assert isinstance(est, Estimate) and est.distinct == 4 and sent(emu) == 0
    # cache: the same call again sends only the judgement that failed
    reviews().foundry.mask(PRED, connection=conn, **OFF)
    before = sent(emu)
    reviews().foundry.mask(PRED, connection=conn, **OFF)
    assert sent(emu) == before + 1


def test_judge_request_and_reader():
    op = Judge(PRED)
    assert op.request_schema()["properties"] == {"answer": {"type": "boolean"}}
    assert read_answer('{"answer": true}') is True and read_answer("no") is False
    assert read_answer("perhaps") is None


def test_filter_batch_api(conn, emu):
    emu.configure(batch_seconds=0.1)
    kept = reviews().foundry.filter(PRED, connection=conn, batch=True, poll_interval=0.02, **OFF)
    assert kept.index.tolist() == ["a", "d", "e"]


# ---------------------------------------------------------------------- the emulator's rules


def test_emulator_rules_are_consistent():
    assert rules.judge("Statement: Mentions a 'refund': give me my refund") is True
    assert rules.judge("Statement: Mentions a delivery problem: it arrived late, delivery was slow") is True
    assert rules.judge("Statement: no colon here refund") is False
    assert rules.score("Item: Best: 87.4 points") == 87.4
    assert rules.compare("x\nA: Best: 5 stars\nB: Best: 7 stars") == "B"
    for a, b in [("Best: apples", "Best: pears"), ("Best: 3 x", "Best: 3 y")]:  # a strict order
        assert {rules.compare(f"\nA: {a}\nB: {b}"), rules.compare(f"\nA: {b}\nB: {a}")} == {"A", "B"}
    reply = rules.reduction("Q\n\nItems:\n[1] 3: cold kettle\n[2] 4: cold tea")
    assert reply.startswith("[emulated] 2 rows (ids 3-4)")
    folded = rules.reduction("Q\n\nPartial answers:\n[1] " + reply + "\n[2] [emulated] 3 rows (ids 5-7): mostly about x.")
    assert folded.startswith("[emulated] 5 rows (ids 3-7)")
    assert rules.context_window("tiny-4k") == 4000 and rules.context_window("gpt-4o") == 128_000


# ---------------------------------------------------------------------- topk


def scored_frame(n: int, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.permutation(100_000)[:n] / 1000
    return pd.DataFrame({"text": [f"{v:.3f} points, item {i}" for i, v in enumerate(values)]},
                        index=[f"r{i}" for i in range(n)]), values


def test_topk_returns_the_true_top_k_in_order_with_few_requests(conn, emu):
    df, values = scored_frame(400)
    top = df.foundry.topk("Best item: {text}", k=7, connection=conn, **OFF)
    truth = [f"r{i}" for i in np.argsort(-values)[:7]]
    assert top.index.tolist() == truth
    assert top["rank"].tolist() == list(range(1, 8))
    assert sent(emu) <= 400 + 7 * 20  # n scores plus a small head
    assert fm.last_run().requests == sent(emu)


def test_topk_when_every_score_ties_is_still_exact(conn):
    # no numbers: the emulator's hash values decide, and scores and comparisons agree
    words = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu"]
    df = pd.DataFrame({"text": [f"{a} {b}" for a in words for b in words]})
    top = df.foundry.topk("Best fruit pair: {text}", k=5, connection=conn, **OFF)
    truth = sorted(df["text"], key=lambda t: rules._value(t), reverse=True)[:5]
    assert top["text"].tolist() == truth


def test_topk_reports_rows_it_could_not_score(conn):
    df = pd.DataFrame({"text": ["1 point", "#emulator:status=400 9 points", "5 points", None]})
    top = df.foundry.topk("Best: {text}", k=3, connection=conn, **OFF)
    assert top.index.tolist() == [2, 0]
    assert [label for label, _ in fm.last_run().failures] == [1]
    assert "not ranked" in fm.last_run().failures[0][1]


def test_topk_checks_k_and_refuses_batch(conn, emu):
    with pytest.raises(ConfigurationError, match="k must be a positive"):
        TopK("Best: {text}", k=0)
    with pytest.raises(ConfigurationError, match="batch=True does not apply"):
        reviews().foundry.topk("Best: {text}", k=2, connection=conn, batch=True, **OFF)
    est = reviews().foundry.topk("Best: {text}", k=2, connection=conn, estimate=True)
    assert isinstance(est, Estimate) and est.notes and sent(emu) == 0


# ---------------------------------------------------------------------- agg


def numbered(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "text": [f"the kettle number {i} was cold and slow" for i in range(n)],
                         "group": [("even", "odd")[i % 2] for i in range(n)]})


def covered(answer: str) -> set[int]:
    import re

    m = re.search(r"\(ids ([\d, \-]+)\)", answer)
    return rules.parse_ranges(m.group(1)) if m else set()


def test_agg_folds_to_one_answer_covering_every_row_on_a_small_window(conn, emu):
    df = numbered(600)
    reply = df.foundry.agg("What is wrong? {id}: {text}", connection=conn, model="tiny-4k", **OFF)
    assert isinstance(reply, fm.Reply) and reply.emulated
    assert reply.text.startswith("[emulated] 600 rows")
    assert covered(reply.text) == set(range(600))
    report = fm.last_run()
    assert report.failures == [] and report.failed == 0 and report.done == 600
    assert emu.stats()["by_status"].get("400", 0) == 1  # the assumed window was tried once, then learnt
    assert agg_mod.context_window("tiny-4k", conn.endpoint) == (4000, True)


def test_agg_by_group_gives_one_answer_per_group(conn):
    df = numbered(300)
    out = df.foundry.agg("What is wrong? {id}: {text}", by="group", connection=conn, model="tiny-4k", **OFF)
    assert out.index.tolist() == ["even", "odd"] and out.index.name == "group"
    assert covered(out["even"]) == set(range(0, 300, 2)) and covered(out["odd"]) == set(range(1, 300, 2))
    with pytest.raises(ConfigurationError, match="Did you mean by='group'"):
        df.foundry.agg("x {text}", by="grup", connection=conn, **OFF)


def test_agg_known_window_sends_no_failing_request(conn, emu):
    df = numbered(50)
    reply = df.foundry.agg("Summarise: {text}", connection=conn, **OFF)  # gpt-4o-mini: 128k, one request
    assert reply.text.startswith("[emulated] 50 rows") and sent(emu) == 1
    est = df.foundry.agg("Summarise: {text}", connection=conn, estimate=True)
    assert isinstance(est, Estimate) and est.to_send == 0  # cached now


def test_context_windows_known_by_prefix():
    assert agg_mod.context_window("gpt-4o-2024-08-06")[0] == 128_000
    assert agg_mod.context_window("my-own-model") == (agg_mod.AGG_ASSUMED_WINDOW, False)


# ---------------------------------------------------------------------- Polars


def test_polars_operators(conn):
    pl = pytest.importorskip("polars")
    df = pl.from_pandas(reviews().reset_index(drop=True))
    m = df.foundry.mask(PRED, connection=conn, **OFF)
    assert m.dtype == pl.Boolean and m.to_list() == [True, False, None, True, True, None]
    assert df.foundry.filter(PRED, connection=conn, **OFF).height == 3
    top = pl.from_pandas(scored_frame(50)[0].reset_index(drop=True)).foundry.topk("Best: {text}", k=3,
                                                                                connection=conn, **OFF)
    assert top["rank"].to_list() == [1, 2, 3]
    out = pl.from_pandas(numbered(20)).foundry.agg("Why? {text}", by="group", connection=conn, **OFF)
    assert out.columns == ["group", "agg"] and out.height == 2
