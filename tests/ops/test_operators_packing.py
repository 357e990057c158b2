"""pack=N with the semantic operators' per-row requests, on the emulator: mask / filter judge
several rows in one request and topk scores several rows in one request (its pairwise
comparisons stay one pair per request), with the answers each row gets alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator

pytestmark = pytest.mark.timeout(180)

OFF = {"progress": False}
PRED = "The customer asks for a 'refund': {text}"


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=600)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    emu.configure(pack_fault_rate=0.0, pack_faults=None)
    emu.reset_stats()
    yield Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    emu.configure(pack_fault_rate=0.0, pack_faults=None)


def reviews(n: int = 60) -> pd.DataFrame:
    says = ["I want a refund, it broke", "Lovely kettle, works well", "Refunds take ages here",
            "Late parcel but fine", "Give me a refund or a new one"]
    text = [None if i % 13 == 12 else f"{says[i % 5]} (order {i % 40})" for i in range(n)]  # some repeat
    return pd.DataFrame({"text": text, "n": range(n)}, index=[f"r{i}" for i in range(n)])


def chat_bodies(emu) -> list[dict]:
    return [b for _, target, _, b in emu.requests if target.split("?")[0].endswith("/chat/completions")]


def test_mask_and_filter_packed_answer_as_alone_in_fewer_requests(conn, emu):
    df = reviews()
    distinct = df["text"].dropna().nunique()
    alone = df.foundry.mask(PRED, connection=conn, cache=False, **OFF)
    assert fm.last_run().requests == distinct
    assert alone.notna().sum() == df["text"].notna().sum() and alone.any() and not alone.all()
    packed = df.foundry.mask(PRED, connection=conn, cache=False, pack=10, **OFF)
    rep = fm.last_run()
    pd.testing.assert_series_equal(packed, alone)  # the same answer per row, NA where the text is missing
    assert rep.pack == 10 and rep.requests == math.ceil(distinct / 10) and rep.rows_per_request > 5
    assert rep.done == df["text"].notna().sum() and not rep.failed and rep.pack_saved_tokens > 0

    kept_alone = df.foundry.filter(PRED, connection=conn, cache=False, **OFF)
    kept = df.foundry.filter(PRED, connection=conn, cache=False, pack=10, **OFF)
    pd.testing.assert_frame_equal(kept, kept_alone)
    assert fm.last_run().requests == math.ceil(distinct / 10)
    # the packed request: the judgement's instructions once, the rows as items
    body = chat_bodies(emu)[-1]
    user = body["messages"][-1]["content"]
    assert user.count("'refund'") == 1 and "answers" in body["response_format"]["json_schema"]["schema"]["properties"]


def test_packed_judgements_are_cached_per_row(conn, emu):
    df = reviews(40)
    df.iloc[:20].foundry.mask(PRED, connection=conn, pack=10, **OFF)
    first = fm.last_run()
    whole = df.foundry.mask(PRED, connection=conn, **OFF)  # unpacked: the packed rows come from the cache
    rep = fm.last_run()
    assert rep.cache_hits == first.unique and rep.requests == df["text"].dropna().nunique() - first.unique
    again = df.foundry.mask(PRED, connection=conn, pack=10, **OFF)
    assert fm.last_run().requests == 0
    pd.testing.assert_series_equal(again, whole)


def test_corrupted_packed_judgements_never_mix_up_rows(conn, emu):
    df = reviews(80)
    alone = df.foundry.mask(PRED, connection=conn, cache=False, **OFF)
    emu.configure(pack_fault_rate=0.3, pack_faults=None, seed=11)  # drop, duplicate, shuffle, rename, garble
    packed = df.foundry.mask(PRED, connection=conn, cache=False, pack=10, **OFF)
    rep = fm.last_run()
    pd.testing.assert_series_equal(packed, alone)
    assert rep.pack_retried > 0 and not rep.failed


def test_polars_mask_packs_through_the_core(conn):
    pl = pytest.importorskip("polars")
    df = pl.from_pandas(reviews().reset_index(drop=True))
    alone = df.foundry.mask(PRED, connection=conn, cache=False, **OFF)
    packed = df.foundry.mask(PRED, connection=conn, cache=False, pack=10, **OFF)
    assert packed.to_list() == alone.to_list() and fm.last_run().rows_per_request > 5


def _scored_frame(n: int):
    values = np.random.default_rng(5).permutation(100_000)[:n] / 1000
    return pd.DataFrame({"text": [f"{v:.3f} points, item {i}" for i, v in enumerate(values)]},
                        index=[f"r{i}" for i in range(n)]), values


def _scoring(bodies: list[dict]) -> int:
    return sum("Rate from 0 to 100" in b["messages"][-1]["content"] for b in bodies)


def test_topk_scores_packed_and_ranks_the_same(conn, emu):
    df, values = _scored_frame(120)
    truth = [f"r{i}" for i in np.argsort(-values)[:5]]
    before = len(chat_bodies(emu))
    alone = df.foundry.topk("Best item: {text}", k=5, connection=conn, cache=False, **OFF)
    bodies = chat_bodies(emu)[before:]
    scoring_alone, total_alone = _scoring(bodies), len(bodies)
    assert alone.index.tolist() == truth and scoring_alone == 120

    before = len(chat_bodies(emu))
    packed = df.foundry.topk("Best item: {text}", k=5, connection=conn, cache=False, pack=10, **OFF)
    bodies = chat_bodies(emu)[before:]
    pd.testing.assert_frame_equal(packed, alone)
    assert _scoring(bodies) == 12  # 120 scores, 10 to a request
    assert len(bodies) - _scoring(bodies) == total_alone - scoring_alone  # the comparisons: as many as before
    assert fm.last_run().requests == len(bodies)
