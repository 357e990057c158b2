"""`max_cost` on operations that send several runs (topk, agg, join, fm.compare, Spark): one
budget for the whole call, on the emulator with known prices. The spend never passes the
amount, what finished is kept (cached), the rest is reported with the reason, and the same
call with a larger budget sends only the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.errors import FoundryError
from foundry_magics.ops import agg as agg_mod
from foundry_magics.store.prices import set_prices

pytestmark = pytest.mark.timeout(180)

OFF = dict(progress=False)
# input free, output 1 per token: a request's upper bound is exactly its output cap, its real
# cost the tokens it answered (fewer), so a budget of N caps buys at least N requests
PRICE = (0.0, 1_000_000.0)


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=300)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    set_prices(None)
    agg_mod._learnt.clear()
    yield Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    set_prices(None)


def sent(emu) -> int:
    return emu.stats()["requests"]


def scored_frame(n: int, tag: str) -> tuple[pd.DataFrame, np.ndarray]:
    values = np.random.default_rng(7).permutation(100_000)[:n] / 1000
    return pd.DataFrame({"text": [f"{v:.3f} points, {tag} item {i}" for i, v in enumerate(values)]},
                        index=[f"r{i}" for i in range(n)]), values


# ---------------------------------------------------------------------- topk


def test_topk_scores_and_comparisons_share_one_budget_and_a_rerun_sends_only_the_rest(emu, conn):
    set_prices({"gpt-4o-mini": PRICE})
    df, values = scored_frame(200, "topk")
    before = sent(emu)
    # a cap of 16 output tokens per score request: 20 * 16 buys at least 20 of the 200 scores
    top = df.foundry.topk("Best item: {text}", k=3, connection=conn, max_cost=20 * 16, concurrency=1, **OFF)
    report = fm.last_run()
    first = sent(emu) - before
    assert report.cost is not None and report.cost <= 20 * 16
    assert 20 <= first < 200 and report.requests == first
    assert report.stopped.startswith("max_cost=320 reached")
    not_ranked = [label for label, why in report.failures if "not ranked (no score): not sent: max_cost=320" in why]
    assert len(not_ranked) == 200 - first  # every row not scored is reported, with the reason
    assert len(top) == 3 and not set(top.index) & set(not_ranked)  # what was decided is returned

    before = sent(emu)
    again = df.foundry.topk("Best item: {text}", k=3, connection=conn, max_cost=100_000, **OFF)
    assert fm.last_run().stopped is None and fm.last_run().cache_hits >= first
    assert sent(emu) - before == fm.last_run().requests  # the scores already paid for came from the cache
    assert again.index.tolist() == [f"r{i}" for i in np.argsort(-values)[:3]]


def test_topk_comparisons_stopped_by_the_budget_fall_back_to_the_scores(emu, conn):
    set_prices({"gpt-4o-mini": PRICE})
    df, values = scored_frame(40, "head")
    df.foundry.topk("Best item: {text}", k=3, connection=conn, max_cost=100_000, **OFF)
    cached = fm.last_run().requests  # scores and comparisons, all cached now
    # a larger k asks new comparisons, the scores come from the cache: two caps buy a few
    before = sent(emu)
    top = df.foundry.topk("Best item: {text}", k=6, connection=conn, max_cost=2 * 16, concurrency=1, **OFF)
    report = fm.last_run()
    assert cached > 40 and 2 <= sent(emu) - before == report.requests < 10 and report.cost <= 2 * 16
    assert "comparisons were not asked (the scores decided them)" in report.stopped
    assert report.stopped.startswith("max_cost=32 reached")
    assert len(top) == 6 and not any("comparison failed" in why for _, why in report.failures)


# ---------------------------------------------------------------------- agg


def numbered(n: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(n), "text": [f"the kettle number {i} was cold and slow" for i in range(n)]})


def test_agg_stopped_by_the_budget_raises_instead_of_answering_for_part_of_the_rows(emu, conn):
    set_prices({"tiny-4k": PRICE})
    df = numbered(2000)  # tiny-4k: a few dozen first-level requests, then the folds
    agg_mod.learn_window("tiny-4k", conn.endpoint, "maximum context length is 4000", 0)  # both runs pack alike
    before, ok = sent(emu), emu.stats()["by_status"].get("200", 0)
    # a cap of 512 output tokens per request, an answer of a few dozen: 512 + 100 buys a few
    with pytest.raises(FoundryError, match=r"max_cost=612 reached .*rows were not read, so no answer is "
                                           r"returned") as err:
        df.foundry.agg("What is wrong? {id}: {text}", connection=conn, model="tiny-4k", max_tokens=512,
                       max_cost=612, concurrency=1, **OFF)
    assert "larger max_cost" in err.value.hint
    report = fm.last_run()
    first, answered = sent(emu) - before, emu.stats()["by_status"].get("200", 0) - ok
    assert report.cost is not None and report.cost <= 612
    assert report.stopped.startswith("max_cost=612 reached") and 2 <= answered == first < 20

    before = sent(emu)
    reply = df.foundry.agg("What is wrong? {id}: {text}", connection=conn, model="tiny-4k", max_tokens=512,
                           max_cost=1_000_000, **OFF)
    assert reply.text.startswith("[emulated] 2,000 rows (ids 0-1999)") and fm.last_run().stopped is None
    assert fm.last_run().cache_hits == answered  # the answers paid for came from the cache


# ---------------------------------------------------------------------- join


def join_frames(tag: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    left = pd.DataFrame({"text": [f"{tag} order {i}: the kettle {i % 7} leaks" for i in range(30)]})
    right = pd.DataFrame({"title": [f"{tag} kettle {j}" for j in range(12)]})
    return left, right


def embed_bytes(left: pd.DataFrame, right: pd.DataFrame) -> int:
    """What the shortlist's one embeddings request is booked at (input 1 per token: a token a byte)."""
    texts = dict.fromkeys([*left["text"], *right["title"]])
    return sum(len(t.encode()) for t in texts)


def test_join_embeddings_and_judgements_share_one_budget_and_a_rerun_sends_only_the_rest(emu, conn):
    set_prices({"gpt-4o-mini": PRICE, "text-embedding-3-small": (1_000_000.0, 0.0)})
    left, right = join_frames("join")
    pred = "{left.text} is about {right.title}"
    cost = embed_bytes(left, right) + 2 * 32  # the embeddings, then at least 2 judgements of a 32-token cap
    before = sent(emu)
    out = left.foundry.join(right, pred, shortlist=3, connection=conn, max_cost=cost, concurrency=1, **OFF)
    report = fm.last_run()  # the judgements' run
    first = sent(emu) - before
    assert report.cost is not None and embed_bytes(left, right) + report.cost <= cost  # the embeddings count too
    assert 2 <= report.requests == first - 1 < 90  # one embeddings request, then some of the 90 judgements
    assert report.stopped.startswith(f"max_cost={cost} reached")
    unjudged = [pair for pair, why in report.failures if why.startswith(f"not sent: max_cost={cost} reached")]
    assert len(unjudged) == 90 - report.requests and isinstance(out, pd.DataFrame)

    before = sent(emu)
    again = left.foundry.join(right, pred, shortlist=3, connection=conn, max_cost=100_000, **OFF)
    assert sent(emu) - before == 90 - report.requests  # the embeddings and the judgements made came from the cache
    assert fm.last_run().stopped is None and len(again) >= len(out)


def test_join_a_budget_the_embeddings_do_not_fit_sends_nothing(emu, conn):
    set_prices({"gpt-4o-mini": PRICE, "text-embedding-3-small": (1_000_000.0, 0.0)})
    left, right = join_frames("nojoin")
    before = sent(emu)
    out = left.foundry.join(right, "{left.text} is about {right.title}", shortlist=3, connection=conn,
                            max_cost=embed_bytes(left, right) - 1, **OFF)
    assert sent(emu) == before and out.empty
    reasons = [why for _, why in fm.last_run().failures]
    assert len(reasons) == 30 and all("no shortlist" in r and "not sent: max_cost=" in r for r in reasons)


# ---------------------------------------------------------------------- fm.compare


def test_compare_refuses_before_sending_when_the_requests_together_could_pass_max_cost(emu, conn):
    from foundry_magics.errors import ConfigurationError

    set_prices({"gpt-4o-mini": PRICE, "gpt-4.1": PRICE})
    models = ["gpt-4o-mini", "gpt-4.1"]
    before = sent(emu)
    with pytest.raises(ConfigurationError, match=r"max_cost=99: these 2 requests could cost up to 100 together "
                                                 r"\(gpt-4o-mini: 50, gpt-4.1: 50\)") as err:
        fm.compare("Hi there", models=models, connection=conn, max_tokens=50, max_cost=99)  # each alone fits
    assert sent(emu) == before and "compare fewer models" in err.value.hint
    set_prices(None)
    set_prices({"gpt-4o-mini": PRICE})
    with pytest.raises(ConfigurationError, match="price of 'gpt-4.1'"):
        fm.compare("Hi there", models=models, connection=conn, max_tokens=50, max_cost=1000)
    assert sent(emu) == before
    set_prices({"gpt-4o-mini": PRICE, "gpt-4.1": PRICE})
    comp = fm.compare("Hi there", models=models, connection=conn, max_tokens=50, max_cost=100)
    assert sent(emu) == before + 2 and set(comp.replies) == set(models)
    with pytest.raises(ConfigurationError, match="max_cost must be a positive number"):
        fm.compare("Hi there", models=models, connection=conn, max_cost=0)
