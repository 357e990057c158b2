"""search, similarity and join on the emulator (pandas and Polars): the truth is the emulator's
documented rules (embeddings: shared words; a pair: a shared ID token), requests counted by it."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest

import foundry_magics as fm  # noqa: F401 - registers the accessors
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.errors import ConfigurationError

pytestmark = pytest.mark.timeout(180)

REVIEWS = ["The zipper broke on my backpack", "Delivery was late, the parcel sat in a depot",
           "Lovely kettle, boils fast", None, "The backpack strap and zipper are sturdy"]


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=300)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    emu.reset_stats()
    return Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")


def routes(emu) -> dict[str, int]:
    return {k.split(":", 1)[1]: v for k, v in emu.stats()["by_route"].items()}


def test_search_returns_the_k_most_similar_rows_and_reuses_the_column_vectors(emu, conn):
    df = pd.DataFrame({"text": REVIEWS, "n": range(5)}, index=list("abcde"))
    hits = df.foundry.search("broken zipper backpack", k=2, column="text", connection=conn, progress=False)
    assert list(hits.index) == ["a", "e"] and list(hits.columns) == ["text", "n", "score"]
    assert hits["score"].iloc[0] >= hits["score"].iloc[1] > 0
    assert routes(emu) == {"embeddings": 1}  # one embeddings request (4 texts + the query), no chat
    hits2 = df.foundry.search("late parcel delivery", k=1, column="text", connection=conn, progress=False)
    assert list(hits2.index) == ["b"]
    assert routes(emu) == {"embeddings": 2}  # the column came from the cache: only the new query was sent
    assert fm.last_run().cache_hits == 4
    df.foundry.search("late parcel delivery", k=1, column="text", connection=conn, progress=False)
    assert routes(emu) == {"embeddings": 2}  # all cached: nothing sent
    with pytest.raises(ConfigurationError, match="needs the column"):
        df.foundry.search("x", connection=conn)
    with pytest.raises(ConfigurationError, match="k, a whole number"):
        df.foundry.search("x", k=0, column="text", connection=conn)


def test_similarity_column_against_column_and_against_one_text(emu, conn):
    df = pd.DataFrame({"text": REVIEWS, "title": ["backpack zipper", "late delivery", "garden hose", "x", "strap"]})
    sim = df.foundry.similarity("text", "title", connection=conn, progress=False)
    assert sim.dtype == "float64" and list(sim.index) == list(df.index) and sim.name == "similarity"
    assert sim[0] > 0.3 and sim[1] > 0.3 and abs(sim[2]) < 0.3 and math.isnan(sim[3])
    assert ((sim.dropna() >= -1) & (sim.dropna() <= 1)).all()
    one = df["text"].foundry.similarity("Delivery was late, the parcel sat in a depot", connection=conn, progress=False)
    assert one[1] == pytest.approx(1.0, abs=1e-6) and math.isnan(one[3])
    assert set(routes(emu)) == {"embeddings"}
    est = df.foundry.similarity("text", "title", connection=conn, estimate=True)
    assert est.to_send == 0 and est.cached > 0  # every text is cached now; nothing sent


def test_join_returns_the_matching_pairs_by_the_emulator_rule(emu, conn):
    left = pd.DataFrame({"id": [1, 2, 3], "text": ["My SKU-7 kettle boils fast", "SKU-9 lamp flickers",
                                                  "SKU-5 mug, no such product"]}, index=[10, 20, 30])
    right = pd.DataFrame({"id": [7, 8, 9], "title": ["SKU-7 steel kettle", "SKU-8 desk", "SKU-9 reading lamp"]})
    out = left.foundry.join(right, "{left.text} is about the product {right.title}", connection=conn,
                            progress=False)
    assert list(out.columns) == ["id_left", "text", "id_right", "title"]
    assert list(out.index) == [0, 1]
    assert list(zip(out["id_left"], out["id_right"])) == [(1, 7), (2, 9)]
    assert routes(emu) == {"chat.completions": 9}  # 9 pairs <= 10,000: every pair, no embeddings
    # again: every judgement comes from the cache
    left.foundry.join(right, "{left.text} is about the product {right.title}", connection=conn, progress=False)
    assert routes(emu) == {"chat.completions": 9} and fm.last_run().cache_hits == 9


def test_join_shortlist_judges_only_the_k_nearest_and_reports_failed_pairs(emu, conn, caplog):
    left = pd.DataFrame({"text": ["SKU-1 backpack zipper broke", "SKU-2 kettle boils #emulator:content_filter",
                                  "SKU-3 lamp flickers", None]})
    right = pd.DataFrame({"title": ["SKU-1 hiking backpack", "SKU-2 steel kettle", "SKU-3 desk lamp",
                                    "SKU-4 garden hose"]})
    with caplog.at_level(logging.WARNING, logger="foundry_magics"):
        out = left.foundry.join(right, "{left.text} is about {right.title}", shortlist=1, connection=conn,
                                progress=False)
    assert out["title"].tolist() == ["SKU-1 hiking backpack", "SKU-3 desk lamp"]
    got = routes(emu)
    assert got["chat.completions"] == 3 and got["embeddings"] == 1  # 3 left rows x K=1
    report = fm.last_run()
    assert [label for label, _ in report.failures] == [(1, 1)]  # (left label, right label)
    assert "ContentFilterError" in report.failures[0][1]
    assert "1 pair could not be judged" in caplog.text


def test_join_refuses_bad_names_before_sending(emu, conn):
    left, right = pd.DataFrame({"text": ["a"]}), pd.DataFrame({"title": ["b"]})
    with pytest.raises(ConfigurationError, match="not a column of the right frame"):
        left.foundry.join(right, "{left.text} {right.name}", connection=conn)
    with pytest.raises(ConfigurationError, match="does not say whose column"):
        left.foundry.join(right, "{text} {right.title}", connection=conn)
    with pytest.raises(ConfigurationError, match="pandas DataFrame on the right"):
        left.foundry.join([1], "{left.text} {right.title}", connection=conn)
    assert routes(emu) == {}


def test_polars_search_similarity_and_join(emu, conn):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"text": REVIEWS, "n": list(range(5))})
    hits = df.foundry.search("broken zipper backpack", k=2, column="text", connection=conn, progress=False)
    assert hits["n"].to_list() == [0, 4] and hits.columns == ["text", "n", "score"]
    sim = df["text"].foundry.similarity("The zipper broke on my backpack", connection=conn, progress=False)
    assert sim.dtype == pl.Float64 and sim[0] == pytest.approx(1.0, abs=1e-6) and sim[3] is None
    left = pl.DataFrame({"id": [1, 2], "text": ["SKU-7 kettle", "SKU-9 lamp"]})
    right = pl.DataFrame({"id": [9, 7], "title": ["SKU-9 lamp", "SKU-7 kettle"]})
    out = left.foundry.join(right, "{left.text} is about {right.title}", connection=conn, progress=False)
    assert out.columns == ["id_left", "text", "id_right", "title"]
    assert out.select("id_left", "id_right").rows() == [(1, 7), (2, 9)]
