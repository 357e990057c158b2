"""The cost preview (`estimate`): it sends nothing and names exactly the requests the run
then sends; default output caps; images per row; the cost once prices are set."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.engine.estimate import Estimate
from foundry_magics.engine.report import last_run
from foundry_magics.frames import ops
from foundry_magics.store.prices import set_prices

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=300)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    set_prices(None)
    yield Connection.from_url(emu.url + "/openai/v1", auth="none", model="gpt-4o-mini")
    set_prices(None)


def sent(emu) -> int:
    return emu.stats()["requests"]


def bodies(emu, n):
    return [b for (_m, t, _h, b) in emu.requests[-n:] if "chat/completions" in t]


def test_a_10000_row_estimate_names_exactly_what_the_run_sends_and_its_cost(emu, conn):
    rng = np.random.default_rng(7)
    words = [f"review number {i}: {'good' if i % 3 else 'bad'} product" for i in range(1000)]
    texts = rng.choice(words, size=10_000).astype(object)
    texts[rng.choice(10_000, size=250, replace=False)] = None  # missing values: no request
    df = pd.DataFrame({"text": texts, "n": np.arange(10_000)})
    # an earlier run answered part of it: those rows are in the cache
    ops.prompt(df.iloc[:900], "Summarize: {text}", connection=conn, progress=False)
    cached_rows = df.iloc[:900]["text"].dropna().nunique()

    before = sent(emu)
    est = ops.prompt(df, "Summarize: {text}", connection=conn, estimate=True)
    assert sent(emu) == before, "the estimate sent something"
    assert isinstance(est, Estimate)
    distinct = df["text"].dropna().nunique()
    assert (est.rows, est.na_rows, est.distinct, est.cached) == (10_000, 250, distinct, cached_rows)
    assert est.to_send == est.requests == distinct - cached_rows > 0
    assert est.input_tokens > 0 and est.tokenizer == "chars/4 rule" and est.model == "gpt-4o-mini"
    assert est.input_cost is None and "no price" in str(est)  # nothing is built in

    set_prices({"gpt-4o-mini": (0.15, 0.60)})
    est = ops.prompt(df, "Summarize: {text}", connection=conn, estimate=True)
    assert est.input_cost == pytest.approx(est.input_tokens * 0.15 / 1e6)
    assert est.max_cost is None  # no output cap: the output cannot be bounded
    assert "$" in est._repr_html_() and "nothing was sent" in est._repr_html_()

    s = ops.prompt(df, "Summarize: {text}", connection=conn, progress=False)
    report = last_run()
    assert report.requests == sent(emu) - before == est.to_send
    assert s.notna().sum() == 10_000 - 250
    assert ops.prompt(df, "Summarize: {text}", connection=conn, estimate=True).to_send == 0
    assert report.cost == pytest.approx((report.input_tokens * 0.15 + report.output_tokens * 0.60) / 1e6)
    assert "$" in report.summary()


def test_identical_requests_from_different_rows_count_once(emu, conn):
    df = pd.DataFrame({"a": ["x", "xy", "q"], "b": ["yz", "z", "r"]})  # "xyz" twice
    est = ops.prompt(df, "{a}{b}", connection=conn, estimate=True, cache=False)
    before = sent(emu)
    ops.prompt(df, "{a}{b}", connection=conn, progress=False, cache=False)
    assert est.distinct == est.to_send == sent(emu) - before == 2
    assert est.cached == 0 and any("cache=False" in n for n in est.notes)


def test_batch_estimates_at_the_batch_price(emu, conn):
    set_prices({"gpt-4o-mini": (0.20, 0.80)})
    s = pd.Series([f"text {i}" for i in range(40)])
    online = s.foundry.classify(["a", "b"], connection=conn, estimate=True)
    batch = s.foundry.classify(["a", "b"], connection=conn, estimate=True, batch=True)
    assert online.to_send == batch.to_send == 40 and online.output_cap == 32
    assert online.max_output_tokens == 40 * 32
    assert batch.max_cost == pytest.approx(online.max_cost / 2)
    assert batch.online_max_cost == pytest.approx(online.max_cost)
    assert "Batch API" in str(batch)


def test_the_magic_estimates_and_sends_nothing(emu, conn):
    from magics_helpers import drop_shell, make_shell, run

    ip = make_shell()
    try:
        from foundry_magics.connections import session

        session.set_current(conn)
        ip.user_ns["df"] = pd.DataFrame({"text": ["one", "two", "two", None]})
        before = sent(emu)
        ran = run(ip, "%%foundry --df df --estimate\nSummarize: {text}")
        assert ran.result.error_in_exec is None, ran.everything
        est = ran.value
        assert isinstance(est, Estimate) and (est.rows, est.distinct, est.to_send) == (4, 2, 2)
        assert sent(emu) == before and list(ip.user_ns["df"].columns) == ["text"]
        ran = run(ip, "%%foundry --df df --out s --estimate\nSummarize: {text}")
        assert isinstance(ran.value, Estimate) and "s" not in ip.user_ns["df"]
        ran = run(ip, "%%foundry --estimate\nSummarize")
        assert "only applies in DataFrame mode" in ran.everything
    finally:
        drop_shell(ip)


# ---------------------------------------------------------------------- default output caps


def _caps(emu, n):
    out = []
    for b in bodies(emu, n):
        out.append(b.get("max_tokens", b.get("max_completion_tokens")))
    return out


def test_default_output_caps_and_overrides(emu, conn):
    s = pd.Series(["short", "a much longer text " * 60])
    kw = dict(connection=conn, progress=False, cache=False)
    s.foundry.classify(["x", "y"], **kw)
    assert _caps(emu, 2) == [32, 32]
    s.foundry.sentiment(**kw)
    assert _caps(emu, 2) == [32, 32]
    s.foundry.extract({"name": str}, **kw)
    assert _caps(emu, 2) == [256, 256]
    s.foundry.summarize(**kw)
    small, big = sorted(_caps(emu, 2))
    assert small == 64 and big == math.ceil(len(ops.SUMMARIZE.replace("{}", s[1])) / 4 * 0.5)
    s.foundry.translate("French", **kw)
    small, big = sorted(_caps(emu, 2))
    assert small == 64 and 64 < big <= 4096
    s.foundry.summarize(max_tokens=7, **kw)
    assert _caps(emu, 2) == [7, 7]
    s.foundry.classify(["x", "y"], max_tokens=None, **kw)  # None: no cap at all
    assert _caps(emu, 2) == [None, None]
    est = s.foundry.summarize(connection=conn, estimate=True)
    assert (est.output_cap_min, est.output_cap) == (64, big_cap(s[1])) and "in proportion" in str(est)


def big_cap(text: str) -> int:
    return min(512, max(64, math.ceil(len(ops.SUMMARIZE.replace("{}", text)) / 4 * 0.5)))


def test_reasoning_models_get_room_for_their_reasoning(emu, conn):
    s = pd.Series(["a", "b"])
    s.foundry.classify(["x", "y"], connection=conn, model="o4-mini", progress=False, cache=False)
    got = bodies(emu, 2)
    assert [b.get("max_completion_tokens") for b in got] == [1024, 1024] and "max_tokens" not in got[0]


# ---------------------------------------------------------------------- images per row


def _png(color: bytes) -> bytes:
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" + color)) + chunk(b"IEND", b""))


def test_images_per_row(emu, conn, tmp_path):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    red.write_bytes(_png(b"\xff\x00\x00"))
    blue.write_bytes(_png(b"\x00\x00\xff"))
    df = pd.DataFrame({"q": ["What colour?"] * 4, "img": [str(red), str(blue), str(red), None]},
                      index=["r1", "b1", "r2", "none"])
    est = df.foundry.estimate("{q}", images="img", connection=conn)
    assert (est.distinct, est.to_send, est.images) == (2, 2, 2)  # the same text, two different images
    assert est.input_tokens > 2 * 85
    before = sent(emu)
    out = df.foundry.prompt("{q}", images="img", connection=conn, progress=False)
    assert sent(emu) - before == 2
    assert out.notna().tolist() == [True, True, True, False]  # a row without its image is NA, not sent text-only
    failures = dict(last_run().failures)
    assert list(failures) == ["none"] and "no image" in failures["none"]
    got = bodies(emu, 2)
    parts = [b["messages"][-1]["content"] for b in got]
    assert all(isinstance(p, list) and p[1]["type"] == "image_url" for p in parts)
    # bytes and lists in the cells, and a Series in the Series form
    s = pd.Series(["Describe"], index=["only"])
    s.foundry.prompt("{}", images=pd.Series([[red.read_bytes(), "https://example.com/x.png"]], index=["only"]),
                     connection=conn, progress=False, cache=False)
    last = bodies(emu, 1)[-1]["messages"][-1]["content"]
    assert [p["type"] for p in last] == ["text", "image_url", "image_url"]


def test_bad_images_fail_their_rows_only_and_every_one_is_listed(emu, conn, tmp_path):
    red = tmp_path / "red.png"
    red.write_bytes(_png(b"\xff\x00\x00"))
    (tmp_path / "notes.txt").write_text("not an image")
    df = pd.DataFrame({"q": ["a", "b", "c"],
                       "img": [str(tmp_path / "missing.png"), str(tmp_path / "notes.txt"), str(red)]},
                      index=["first", "second", "third"])
    before = sent(emu)
    out = df.foundry.prompt("{q}", images="img", connection=conn, progress=False)
    assert sent(emu) - before == 1  # only the good row
    assert out.isna().tolist() == [True, True, False]
    failures = dict(last_run().failures)
    assert list(failures) == ["first", "second"]
    assert "missing.png" in failures["first"] and "notes.txt" in failures["second"]
    assert "not a PNG" in failures["second"] or "image" in failures["second"]
    assert last_run().failed == 2
    with pytest.raises(Exception, match="not a column"):
        df.foundry.prompt("{q}", images="photo", connection=conn, progress=False)


# ---------------------------------------------------------------------- embeddings


def test_embedding_estimates_match_the_run(emu, conn):
    texts = pd.Series([f"text {i % 5000}" for i in range(6000)])
    texts.iloc[:1000].foundry.embed(connection=conn, progress=False)  # 1,000 cached
    before = sent(emu)
    est = texts.foundry.embed(connection=conn, estimate=True)
    assert sent(emu) == before
    assert (est.distinct, est.cached, est.to_send) == (5000, 1000, math.ceil(4000 / 2048))
    texts.foundry.embed(connection=conn, progress=False)
    assert sent(emu) - before == est.to_send == last_run().requests
