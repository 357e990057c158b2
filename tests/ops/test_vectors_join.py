"""Units of the embedding side of the semantic operators: numpy cosine, the k nearest, search's
top k, yes/no replies, qualified template names, the join's shortlist, the emulator's rules."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from foundry_magics.emulator import brain
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops.join import AUTO_K, Join, joined_names
from foundry_magics.ops.operations import Rows
from foundry_magics.ops.replies import MISSING, read_bool
from foundry_magics.ops.search import Similarity, top_k
from foundry_magics.ops.template import parse_template, resolve_names, resolve_qualified, split_qualified
from foundry_magics.ops.vectors import cosine_rows, matrix, nearest


def rows(**cols):
    n = len(next(iter(cols.values())))
    return Rows(names=list(cols), n=n, column=lambda key: pa.array(cols[key]))


# ---------------------------------------------------------------------- vectors


def test_cosine_rows_is_the_cosine_and_nan_where_a_vector_is_missing():
    a = [np.array([1.0, 0.0]), np.array([1.0, 1.0]), None, np.array([0.0, 0.0]), np.array([3.0, 4.0])]
    b = [np.array([2.0, 0.0]), np.array([-1.0, -1.0]), np.array([1.0, 0.0]), np.array([1.0, 0.0]),
         np.array([4.0, 3.0])]
    got = cosine_rows(a, b)
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(-1.0)
    assert math.isnan(got[2]) and math.isnan(got[3])  # missing, and a zero vector
    assert got[4] == pytest.approx(24 / 25)
    with pytest.raises(ValueError):
        cosine_rows([np.ones(2)], [np.ones(3)])


def test_nearest_gives_each_left_row_its_k_best_right_rows_best_first():
    rng = np.random.default_rng(0)
    right, _ = matrix(list(rng.normal(size=(50, 8))))
    left, _ = matrix(list(rng.normal(size=(7, 8))))
    idx, scores = nearest(left, right, 5)
    full = left @ right.T
    for i in range(7):
        want = np.argsort(-full[i], kind="stable")[:5]
        assert idx[i].tolist() == want.tolist()
        assert np.all(np.diff(scores[i]) <= 1e-7)
    present = np.ones(50, dtype=bool)
    present[want[0]] = False  # a right row without a vector is never chosen
    idx2, _ = nearest(left, right, 5, right_present=present)
    assert want[0] not in idx2[6].tolist()
    assert nearest(left, right, 80)[0].shape == (7, 50)  # k larger than the right side: all of it


def test_top_k_is_best_first_in_row_order_on_ties_and_skips_nan():
    assert top_k([0.1, float("nan"), 0.9, 0.5, 0.9], 3).tolist() == [2, 4, 3]
    assert top_k([float("nan")], 3).tolist() == []


# ---------------------------------------------------------------------- replies and templates


@pytest.mark.parametrize("text,want", [('{"answer": true}', True), ('{"answer": false}', False),
                                       ('Sure: {"match": true}', True), ("yes", True), ("No.", False),
                                       ('{"answer": "maybe"}', MISSING), ("it depends", MISSING)])
def test_read_bool(text, want):
    assert read_bool(text) is want


def test_qualified_names_are_split_by_side_and_plain_templates_are_unchanged():
    tpl = parse_template("{left.text} is about {right.title:.20} ({left.0})")
    got = resolve_qualified(tpl, {"left": ["text", 0], "right": ["title"]})
    assert got == {"left.text": ("left", "text"), "right.title": ("right", "title"), "left.0": ("left", 0)}
    assert split_qualified("price.usd", ("left", "right")) is None
    # a column whose own name has a dot still works in an ordinary template
    assert resolve_names(parse_template("{price.usd}"), ["price.usd"], None)[0] == {"price.usd": "price.usd"}
    with pytest.raises(ConfigurationError, match=r"\{left.txt\}, which is not a column of the left frame"):
        resolve_qualified(parse_template("{left.txt} {right.title}"), {"left": ["text"], "right": ["title"]})
    with pytest.raises(ConfigurationError, match="does not say whose column"):
        resolve_qualified(parse_template("{text} {right.title}"), {"left": ["text"], "right": ["title"]})


def test_joined_names_suffix_only_the_clashing_columns():
    assert joined_names(["id", "text"], ["id", "title"]) == (["id_left", "text"], ["id_right", "title"])


# ---------------------------------------------------------------------- join: options and candidates


def test_join_options_are_checked_before_anything_is_sent():
    with pytest.raises(ConfigurationError, match="shortlist must be"):
        Join("{left.a} {right.b}", shortlist=0)
    with pytest.raises(ConfigurationError, match="on= must be a pair"):
        Join("{left.a} {right.b}", on="a")
    with pytest.raises(ConfigurationError, match="Did you mean concurrency"):
        Join("{left.a} {right.b}", concurency=3)
    with pytest.raises(ConfigurationError, match="names no column of the right frame"):
        Join("{left.a} only").bind(rows(a=["x"]), rows(b=["y"]))
    with pytest.raises(ConfigurationError, match="'c' is not a column of the right frame"):
        Join("{left.a} {right.b}", on=("a", "c")).bind(rows(a=["x"]), rows(b=["y"]))


def test_auto_shortlists_only_beyond_ten_thousand_pairs():
    small = Join("{left.a} {right.b}").bind(rows(a=["x"] * 100), rows(b=["y"] * 100))
    assert small.k is None  # 10,000 pairs: every pair
    big = Join("{left.a} {right.b}").bind(rows(a=["x"] * 101), rows(b=["y"] * 100))
    assert big.k == AUTO_K and big.on == ("a", "b")
    li, ri, _ = Join("{left.a} {right.b}", shortlist=None).bind(rows(a=["x", "y"]), rows(b=["1", "2", "3"])) \
        .candidates(rows(a=["x", "y"]), rows(b=["1", "2", "3"]))
    assert list(zip(li.tolist(), ri.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_the_pair_plan_renders_each_pair_and_dedups_identical_ones():
    left, right = rows(a=["red", "red", None]), rows(b=["car", "hat"])
    op = Join("{left.a} goes with {right.b}", shortlist=None).bind(left, right)
    li, ri, _ = op.candidates(left, right)
    plan = op.pair_plan(left, right, li, ri)
    assert plan.n == 6 and plan.size == 2 and plan.na_rows == 2  # rows 0 and 1 are the same pairs
    texts = plan.texts()
    assert texts[0].endswith("red goes with car") and texts[1].endswith("red goes with hat")


def test_similarity_plans_distinct_pairs_and_names_a_missing_column():
    op = Similarity("a", "b")
    plan = op.plan(rows(a=["x", "x", "y"], b=["p", "p", "q"]))
    assert plan.size == 2 and op.pairs(plan) == (["x", "y"], ["p", "q"])
    with pytest.raises(ConfigurationError, match="'c' is not a column"):
        Similarity("a", "c").plan(rows(a=["x"], b=["y"]))
    with pytest.raises(ConfigurationError, match="second column or with one text"):
        Similarity("a")


# ---------------------------------------------------------------------- the emulator's rules


def test_emulator_embeddings_make_texts_that_share_words_similar():
    def cos(a, b):
        return float(np.dot(brain.embed(a, 64), brain.embed(b, 64)))

    assert cos("broken zipper on the bag", "the zipper is broken") > 0.5
    assert cos("broken zipper", "broken zipper") == pytest.approx(1.0)
    assert abs(cos("broken zipper", "delivery late parcel")) < 0.5


def test_emulator_pair_rule_is_a_shared_id_token():
    assert brain.pair_judgement("My kettle (SKU-0042) is about the product SKU-0042 steel kettle") is True
    assert brain.pair_judgement("My kettle (SKU-0042) is about the product SKU-0043 steel kettle") is False
    assert brain.pair_judgement("no identifier at all") is None
    assert brain.pair_judgement("only ORD-7 here") is None  # one ID: the other rules answer
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}}}
    assert brain.json_for_schema(schema, "ORD-7 late; ORD-7 order") == {"answer": True}
