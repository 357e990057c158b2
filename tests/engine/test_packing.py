"""pack=N / "auto": several rows in one request, answers matched by id only, the cache per row."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator, packing as emu_packing
from foundry_magics.engine.packing import Entry, Packing, group, match, pack_prompt, pack_schema
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops.options import check

pytestmark = pytest.mark.timeout(180)

LABELS = ["positive", "negative", "neutral"]
LABEL_SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": LABELS}},
                "required": ["label"], "additionalProperties": False}


def _problem(schema):
    return Packing(size=2, task="", items=lambda idx: [], answer_schema=schema).problem


# ---------------------------------------------------------------------- the matcher


def _reply(*answers):
    return json.dumps({"answers": [dict(zip(("id", "answer"), a)) if isinstance(a, tuple) else a for a in answers]})


def test_match_takes_answers_by_id_in_any_order():
    got, why = match(_reply(("b", {"label": "negative"}), ("a", {"label": "positive"})), ["a", "b"],
                     _problem(LABEL_SCHEMA))
    assert got == {"a": {"label": "positive"}, "b": {"label": "negative"}} and why == {}


@pytest.mark.parametrize("reply, reason", [
    (_reply(("a", {"label": "positive"})), "no answer"),                                   # missing
    (_reply(("a", {"label": "positive"}), ("zz", {"label": "negative"})), "no answer"),    # unknown id instead
    (_reply(("a", {"label": "positive"}), ("b", {"label": "x"})), "not valid"),           # not in the enum
    (_reply(("a", {"label": "positive"}), ("b", "negative")), "not valid"),               # wrong type
    (_reply(("a", {"label": "positive"}), ("b", {})), "not valid"),                        # required field missing
    (_reply(("a", {"label": "positive"}), ("b", {"label": "negative"}), ("b", {"label": "neutral"})),
     "more than once"),                                                                    # duplicated, different
    (_reply(("a", {"label": "positive"}), ("b", {"label": "negative"}), ("b", {"label": "negative"})),
     "more than once"),                                                                    # duplicated, same
    (_reply(("a", {"label": "positive"}), {"id": "b"}), "no answer"),                      # no "answer" key
    (_reply(("a", {"label": "positive"}), {"answer": {"label": "negative"}}), "no answer"),  # no id
    (_reply(("a", {"label": "positive"}), ["b", {"label": "negative"}]), "no answer"),    # not an object
    (_reply(("a", {"label": "positive"}), (None, {"label": "negative"})), "no answer"),   # id null
    (_reply(("a", {"label": "positive"}), (True, {"label": "negative"})), "no answer"),   # id a bool
])
def test_match_discards_every_malformed_answer(reply, reason):
    got, why = match(reply, ["a", "b"], _problem(LABEL_SCHEMA))
    assert got == {"a": {"label": "positive"}}
    assert set(why) == {"b"} and reason in why["b"]


@pytest.mark.parametrize("reply", ['{"answers": [{"id": "a", "answer": {"label": "posi', "not json", "[]", "null",
                                   '{"answers": {"a": {"label": "positive"}}}', '{"results": []}', None])
def test_match_unreadable_reply_answers_nobody(reply):
    got, why = match(reply, ["a", "b"], _problem(LABEL_SCHEMA))
    assert got == {} and set(why) == {"a", "b"}


def test_match_never_by_position():
    # answers without ids (or with positional ids) never land on rows
    reply = json.dumps({"answers": [{"id": "0", "answer": {"label": "positive"}},
                                    {"id": "1", "answer": {"label": "negative"}}]})
    got, why = match(reply, ["a", "b"], _problem(LABEL_SCHEMA))
    assert got == {} and set(why) == {"a", "b"}


def test_match_free_text_answers_must_be_text():
    got, why = match(_reply(("a", "hello"), ("b", {"garbled": True}), ("c", 3)), ["a", "b", "c"], _problem(None))
    assert got == {"a": "hello"} and set(why) == {"b", "c"}


def test_match_numeric_ids_given_as_numbers():
    got, _ = match(_reply((12, "x")), ["12"], _problem(None))
    assert got == {"12": "x"}


# ---------------------------------------------------------------------- property: corruption never mixes rows

KINDS = st.sampled_from(["drop", "duplicate", "shuffle", "rename", "garble", "keep"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), truth=st.lists(st.sampled_from(LABELS), min_size=1, max_size=12),
       other=st.sampled_from(LABELS + ["bogus", None, 3]), cut=st.integers(0, 400))
def test_property_any_corruption_never_changes_a_rows_answer(data, truth, other, cut):
    """Whatever is done to each answer of a packed reply (dropped, its id answered again with any
    value, moved anywhere, renamed to an id of no row, made invalid for the schema), and even the
    reply cut short, a row's final answer - what the match takes, and for the others their own
    request alone, as the run does - is its answer alone."""
    ids = [f"r{i}" for i in range(len(truth))]
    originals = [{"id": i, "answer": {"label": t}} for i, t in zip(ids, truth)]
    faults = data.draw(st.lists(st.tuples(KINDS, st.integers(0, 100)), min_size=len(ids), max_size=len(ids)))
    answers = list(originals)
    for a, (kind, b) in zip(originals, faults):
        k = next(n for n, x in enumerate(answers) if x is a)
        if kind == "drop":
            answers.pop(k)
        elif kind == "duplicate":
            answers.insert(b % (len(answers) + 1), {"id": a["id"], "answer": {"label": other}})
        elif kind == "shuffle":
            answers.insert(b % len(answers), answers.pop(k))
        elif kind == "rename":
            answers[k] = {"id": f"{a['id']}~{b}", "answer": a["answer"]}
        elif kind == "garble":
            bad = ["bogus", None, 3, {}, {"label": "bogus"}, {"label": None}, [other]][b % 7]  # invalid for the schema
            answers[k] = {"id": a["id"], "answer": bad}
    text = json.dumps({"answers": answers})
    if cut % 5 == 0:
        text = text[:cut]
    got, why = match(text, ids, _problem(LABEL_SCHEMA))
    final = {i: got[i]["label"] if i in got else truth[ids.index(i)] for i in ids}  # the rest: alone
    assert final == dict(zip(ids, truth))
    assert set(got) | set(why) == set(ids) and not set(got) & set(why)


# ---------------------------------------------------------------------- grouping


def _entries(n, cap=32, text="x" * 40):
    out = []
    for i in range(n):
        e = Entry(i, bytes([i % 256, i // 256]), None, {}, cap, 20)
        e.item = {"text": text}
        out.append(e)
    return out


def test_group_fixed_size_and_output_limit():
    packing = Packing(size=20, task="Classify: {text}", items=lambda idx: [])
    packs, rest = group(_entries(45), packing, 50)
    assert [len(p) for p in packs] == [20, 20, 5] and rest == []
    packs, rest = group(_entries(45), packing, 50, final=False)
    assert [len(p) for p in packs] == [20, 20] and len(rest) == 5
    small = Packing(size=20, task="", items=lambda idx: [], output_limit=300)  # 6 answers of 32+16 fit in 300
    packs, _ = group(_entries(20), small, 50)
    assert max(len(p) for p in packs) == 5


def test_group_auto_fills_about_2000_input_tokens_or_50_rows():
    auto = Packing(size="auto", task="", items=lambda idx: [])
    packs, _ = group(_entries(120, text="y" * 20), auto, 100)
    assert len(packs[0]) == 50
    packs, _ = group(_entries(120, text="y" * 400), auto, 100)  # ~105 tokens each
    assert 15 <= len(packs[0]) <= 19
    assert sum(len(p) for p in packs) == 120


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize("bad", [0, 101, -3, 2.5, "x", "AUTO ", True, [2]])
def test_pack_option_refuses_bad_values(bad):
    with pytest.raises(ConfigurationError, match="pack must be"):
        check({"pack": bad}, {"pack"}, "classify()")


def test_pack_option_values_and_batch():
    assert check({"pack": 20}, {"pack"}, "x") == {"pack": 20}
    assert check({"pack": "auto"}, {"pack"}, "x") == {"pack": "auto"}
    assert check({"pack": None}, {"pack"}, "x") == {"pack": None}
    assert check({"pack": 20, "batch": True}, {"pack", "batch"}, "x") == {"pack": 20, "batch": True}  # packed lines


def test_single_calls_refuse_pack():
    from foundry_magics.ops.options import REQUEST

    with pytest.raises(ConfigurationError, match="does not take pack"):
        check({"pack": 2}, REQUEST, "client.chat()")


# ---------------------------------------------------------------------- against the emulator


@pytest.fixture
def emu():
    e = Emulator(lifetime=170)
    e.start()
    yield e
    e.stop()


def _conn(e):
    return Connection.from_url(e.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")


def _frame(n=60):
    import pandas as pd

    moods = ["great, I love it", "terrible and broken", "arrived on a Tuesday"]
    return pd.DataFrame({"text": [f"Order {i} from Paris: {moods[i % 3]} {{braces}}" for i in range(n)],
                         "n": range(n)})


OPS = [
    ("classify", lambda s, **kw: s.foundry.classify(LABELS, **kw)),
    ("sentiment", lambda s, **kw: s.foundry.sentiment(**kw)),
    ("summarize", lambda s, **kw: s.foundry.summarize(**kw)),
    ("translate", lambda s, **kw: s.foundry.translate("French", **kw)),
    ("extract", lambda s, **kw: s.foundry.extract({"city": str, "order": int}, **kw)),
    ("prompt", lambda s, **kw: s.foundry.prompt("Answer briefly {{literally}}: {}", **kw)),
    ("prompt schema", lambda s, **kw: s.foundry.prompt("Rate: {}", schema={"label": ["good", "bad"], "score": float},
                                                       **kw)),
]


@pytest.mark.parametrize("name, call", OPS, ids=[o[0] for o in OPS])
def test_packed_answers_equal_unpacked_for_every_operation(emu, name, call):
    import foundry_magics as fm

    s = _frame()["text"]
    conn = _conn(emu)
    alone = call(s, connection=conn, progress=False, cache=False)
    assert fm.last_run().requests == 60
    for pack in (7, "auto"):
        packed = call(s, connection=conn, progress=False, cache=False, pack=pack)
        rep = fm.last_run()
        assert packed.equals(alone), (name, pack)
        assert rep.requests < 60 / 5 + 2 and rep.pack == pack and rep.rows_per_request > 5
        assert rep.done == 60 and not rep.failed


def test_frame_template_with_several_columns_and_format_spec(emu):
    import foundry_magics as fm

    df = _frame(30)
    tpl = "Order number {n:03d} says: {text}. Classify it."
    conn = _conn(emu)
    alone = df.foundry.prompt(tpl, connection=conn, progress=False, cache=False)
    packed = df.foundry.prompt(tpl, connection=conn, progress=False, cache=False, pack=10)
    assert packed.equals(alone) and fm.last_run().requests == 3


def test_the_packed_request_sends_instructions_once_and_items_with_ids(emu):
    s = _frame(5)["text"]
    s.foundry.classify(LABELS, connection=_conn(emu), progress=False, cache=False, pack=5, system="Be terse.")
    bodies = [b for _, target, _, b in emu.requests if target.split("?")[0].endswith("/chat/completions")]
    assert len(bodies) == 1
    body = bodies[0]
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    user = body["messages"][1]["content"]
    assert user.count("Classify the text into one of these labels") == 1
    task, items = emu_packing.parse(user)
    assert task.endswith("Text: {value}") and len(items) == 5
    assert {i["value"] for i in items} == set(s) and len({i["id"] for i in items}) == 5
    assert not any(i["id"] in ("0", "1", "2", "3", "4") for i in items)  # ids are the rows' own, not positions
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answers"]["items"]["properties"]["answer"] == LABEL_SCHEMA
    assert body["max_tokens"] >= 5 * 32


def test_pack_prompt_and_emulator_round_trip():
    task = "Classify {{this}}: {text} (order {n:03d})"
    items = [{"id": "a1", "text": "good day", "n:03d": "007"}]
    text = pack_prompt(task, items)
    assert text.count("Classify") == 1
    got_task, got_items = emu_packing.parse(text)
    assert got_task == task and got_items == items
    assert emu_packing.render(task, items[0]) == "Classify {this}: good day (order 007)"
    assert emu_packing.answer_schema(pack_schema(LABEL_SCHEMA)) == LABEL_SCHEMA
    assert emu_packing.answer_schema(pack_schema(None)) == {"type": "string"}
    assert emu_packing.answer_schema(LABEL_SCHEMA) is None


def test_cache_stays_per_row(emu):
    import foundry_magics as fm

    s = _frame(60)["text"]
    conn = _conn(emu)
    half = s.iloc[:30].foundry.classify(LABELS, connection=conn, progress=False, pack=10)
    assert fm.last_run().requests == 3
    full = s.foundry.classify(LABELS, connection=conn, progress=False)  # unpacked: the 30 packed rows are hits
    rep = fm.last_run()
    assert rep.cache_hits == 30 and rep.requests == 30
    assert list(full.iloc[:30]) == list(half)
    again = s.foundry.classify(LABELS, connection=conn, progress=False, pack=20)
    assert fm.last_run().requests == 0 and again.equals(full)
    # dedup: identical rows are one item
    import pandas as pd

    dup = pd.Series(["same text, great"] * 10 + ["other text, terrible"] * 10)
    dup.foundry.classify(LABELS, connection=conn, progress=False, cache=False, pack=20)
    rep = fm.last_run()
    assert rep.requests == 1 and rep.dedup_saved == 18 and rep.done == 20


@pytest.mark.parametrize("kind", ["drop", "duplicate", "shuffle", "rename", "garble", None])
def test_emulator_faults_never_mix_up_or_lose_rows(emu, kind):
    import foundry_magics as fm

    s = _frame(80)["text"]
    conn = _conn(emu)
    alone = s.foundry.classify(LABELS, connection=conn, progress=False, cache=False)
    emu.configure(pack_fault_rate=0.25, pack_faults=kind, seed=7)
    try:
        packed = s.foundry.classify(LABELS, connection=conn, progress=False, cache=False, pack=16)
        rep = fm.last_run()
        stats = emu.stats()
    finally:
        emu.configure(pack_fault_rate=0.0, pack_faults=None)
    assert packed.equals(alone)
    assert rep.done == 80 and not rep.failed
    hits = {k: v for k, v in (stats.get("faults") or {}).items() if k.startswith("pack_")}
    assert hits, stats
    if kind == "shuffle":
        assert rep.pack_retried == 0  # moved answers are still matched by their ids
    else:
        assert rep.pack_retried > 0


def test_auto_lowers_the_size_when_packs_come_back_incomplete(emu):
    import foundry_magics as fm

    s = _frame(200)["text"]
    conn = _conn(emu)
    emu.configure(pack_fault_rate=0.5, pack_faults="drop", seed=3)
    try:
        s.foundry.sentiment(connection=conn, progress=False, cache=False, pack="auto", concurrency=1)
    finally:
        emu.configure(pack_fault_rate=0.0, pack_faults=None)
    rep = fm.last_run()
    assert rep.done == 200 and rep.pack_retried > 0
    assert rep.rows_per_request < 10  # it started at 50 rows a pack


def test_a_failing_row_fails_alone_not_its_pack(emu):
    import pandas as pd

    import foundry_magics as fm

    s = pd.Series([f"row {i} fine" for i in range(9)] + ["row 9 #emulator:status=400"])
    out = s.foundry.prompt("Say: {}", connection=_conn(emu), progress=False, cache=False, pack=10)
    rep = fm.last_run()
    assert out.isna().sum() == 1 and pd.isna(out.iloc[9])
    assert rep.failed == 1 and len(rep.failures) == 1 and rep.failures[0][0] == 9


def test_estimate_counts_packed_requests(emu):
    s = _frame(100)["text"]
    conn = _conn(emu)
    plain = s.foundry.classify(LABELS, connection=conn, estimate=True, system="x" * 1600)
    packed = s.foundry.classify(LABELS, connection=conn, estimate=True, pack=20, system="x" * 1600)
    assert plain.to_send == 100 and packed.to_send == 5
    assert packed.input_tokens * 4 < plain.input_tokens
    assert any("pack=20" in n for n in packed.notes)
    with pytest.raises(ConfigurationError, match="sample"):
        s.foundry.classify(LABELS, connection=conn, estimate=True, pack=20, sample=5)


def test_estimate_matches_what_the_packed_run_sends(emu):
    import foundry_magics as fm

    s = _frame(100)["text"]
    conn = _conn(emu)
    est = s.foundry.classify(LABELS, connection=conn, estimate=True, pack=20)
    s.foundry.classify(LABELS, connection=conn, progress=False, pack=20)
    rep = fm.last_run()
    assert rep.requests == est.to_send == 5
    assert abs(rep.input_tokens - est.input_tokens) <= est.input_tokens * 0.25


def test_images_are_not_packed(emu):
    import pandas as pd

    with pytest.raises(ConfigurationError, match="images"):
        pd.DataFrame({"t": ["a"], "img": ["https://example.com/a.png"]}).foundry.prompt(
            "Describe {t}", images="img", connection=_conn(emu), pack=5)


def test_polars_packs_through_the_core(emu):
    pl = pytest.importorskip("polars")
    import foundry_magics as fm

    s = pl.Series("text", list(_frame(40)["text"]))
    alone = s.foundry.classify(LABELS, connection=_conn(emu), progress=False, cache=False)
    packed = s.foundry.classify(LABELS, connection=_conn(emu), progress=False, cache=False, pack=20)
    assert fm.last_run().requests == 2 and alone.to_list() == packed.to_list()


def test_report_says_rows_per_request_and_tokens_saved(emu):
    import foundry_magics as fm

    s = _frame(40)["text"]
    s.foundry.classify(LABELS, connection=_conn(emu), progress=False, cache=False, pack=20, system="x" * 1600)
    rep = fm.last_run()
    assert rep.rows_per_request == 20 and rep.pack_saved_tokens > 10_000
    assert "pack=20: 20.0 rows/request" in rep.summary()
    assert any(k == "packing" for k, _ in rep._rows())


def test_max_cost_counts_packed_requests_and_keeps_finished_rows(emu):
    import foundry_magics as fm

    fm.set_prices({"gpt-4o-mini": (0.40, 1.60)})
    s = _frame(200)["text"]
    out = s.foundry.classify(LABELS, connection=_conn(emu), progress=False, cache=False, pack=20, concurrency=1,
                             max_cost=0.004)
    rep = fm.last_run()
    assert rep.stopped and 0 < rep.done < 200
    assert out.notna().sum() == rep.done
    assert rep.cost <= 0.004 and rep.done % 20 == 0
