"""`max_cost`: the budget gate's arithmetic (in-flight bounds, waiting, exhaustion), the upper
bound of one request, and runs on the emulator that stop within the budget and keep every
finished row; no price, no run; Batch API jobs over budget are not submitted."""

from __future__ import annotations

import asyncio
import random

import pandas as pd
import pytest

from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.engine.budget import (
    Budget,
    check_request,
    input_bound,
    may_be_billed,
    output_cap,
    uncapped_output,
)
from foundry_magics.engine.report import last_run
from foundry_magics.errors import ConfigurationError, ConnectionFailed, FoundryTimeoutError, ServerError
from foundry_magics.store.prices import Price, set_prices

pytestmark = pytest.mark.timeout(180)

PRICE = (1.5, 6.0)  # per 1M tokens: a 16 + 12 token emulator reply costs ~0.0001, so 0.05 buys ~500


# ---------------------------------------------------------------------- the gate, by hand


def test_reserve_and_settle_keep_spent_plus_in_flight_within_the_limit():
    b = Budget(1.0, Price(1, 1))
    assert b.try_reserve(0.4) and b.try_reserve(0.4)
    assert (b.inflight, round(b.reserved, 9)) == (2, 0.8)
    assert not b.try_reserve(0.3)  # 0.8 in flight + 0.3 > 1.0: waits, in flight may free room
    assert not b.exhausted  # ... so it is not used up yet
    b.settle(0.4, 0.1)  # the reply cost less than its bound
    assert round(b.spent, 9) == 0.1 and round(b.reserved, 9) == 0.4
    assert b.try_reserve(0.3)  # 0.1 + 0.4 + 0.3 = 0.8
    b.settle(0.4, 0.4)
    b.settle(0.3, 0.0)  # failed without being billed
    assert (b.inflight, b.reserved, round(b.spent, 9)) == (0, 0.0, 0.5)
    assert b.try_reserve(0.5)  # exactly the limit fits
    b.settle(0.5, 0.5)
    assert not b.try_reserve(0.01) and b.exhausted  # nothing in flight: used up
    assert not b.try_reserve(0.0)  # and stays so
    assert b.peak <= 1.0 + 1e-12
    assert b.reason() == "max_cost=1 reached (spent 1)"


def test_a_budget_below_one_request_says_nothing_was_sent():
    b = Budget(0.001, Price(1, 1))
    assert not b.try_reserve(0.002) and b.exhausted
    assert "could cost up to 0.002" in b.reason() and "nothing was sent" in b.reason()


def test_concurrent_requests_never_book_past_the_limit_and_stop_only_when_nothing_is_in_flight():
    """64 workers, random bounds and random real costs: at every moment spent + in flight stays
    within the limit; the run stops once a request does not fit with nothing in flight."""

    async def main() -> tuple[Budget, int, list[float]]:
        rng = random.Random(3)
        b = Budget(0.05, Price(1, 1))
        sent = 0
        checks: list[float] = []
        stop = asyncio.Event()

        async def worker() -> None:
            nonlocal sent
            while not stop.is_set():
                bound = rng.uniform(0.0005, 0.003)
                if not await b.reserve(bound):
                    stop.set()
                    return
                checks.append(b.spent + b.reserved)
                sent += 1
                await asyncio.sleep(rng.uniform(0, 0.004))
                b.settle(bound, bound * rng.uniform(0.1, 1.0))

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(64))), 30)
        return b, sent, checks

    b, sent, checks = asyncio.run(main())
    assert b.exhausted and b.inflight == 0 and b.reserved == 0.0
    assert max(checks) <= 0.05 + 1e-12 and b.peak <= 0.05 + 1e-12
    assert b.spent <= 0.05 + 1e-12
    assert b.spent > 0.05 - 0.003  # it went on until the last request really did not fit
    assert sent > 30


def test_a_waiter_is_woken_when_a_request_in_flight_settles():
    async def main() -> list[str]:
        b = Budget(1.0, Price(1, 1))
        order: list[str] = []
        assert b.try_reserve(0.9)

        async def second() -> None:
            ok = await b.reserve(0.5)  # does not fit while the first is in flight
            order.append(f"second {ok}")

        task = asyncio.ensure_future(second())
        await asyncio.sleep(0.01)
        order.append("first settles")
        b.settle(0.9, 0.2)
        await task
        return order

    assert asyncio.run(main()) == ["first settles", "second True"]


# ---------------------------------------------------------------------- one request's upper bound


def test_the_input_bound_counts_a_token_per_byte_and_images_by_their_tiles():
    ascii_body = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    assert 400 <= input_bound(ascii_body) < 460  # well above chars/4, never below the real count
    japanese = {"messages": [{"role": "user", "content": "日本語" * 100}]}
    assert input_bound(japanese) >= 900  # 3 bytes a character: a character can be a token
    schema = {"messages": [], "response_format": {"type": "json_schema", "json_schema": {
        "schema": {"properties": {"a_long_field_name": {"type": "string"}}}}}}
    assert input_bound(schema) >= len("a_long_field_name")  # field names are text the model reads
    image = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    assert input_bound(image) >= 1445  # a link's size is unknown: the rule's largest
    low = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]}]}
    assert input_bound(low) < 200
    assert input_bound({**ascii_body, "max_tokens": 10**9}) == input_bound(ascii_body)


def test_output_caps_and_the_default_for_requests_without_one():
    assert output_cap({"max_tokens": 50}) == 50
    assert output_cap({"max_completion_tokens": 70}) == 70
    assert output_cap({"max_output_tokens": 90}) == 90
    assert output_cap({}) is None
    assert uncapped_output("gpt-4o-mini") == 32_768
    assert uncapped_output("o3-mini") == uncapped_output("gpt-5") == 128_000


def test_a_single_request_over_the_budget_is_refused_and_an_unpriced_model_too():
    set_prices({"gpt-4o-mini": PRICE})
    try:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 100}
        bound = check_request("gpt-4o-mini", body, 0.01)
        assert 0 < bound < 0.001
        with pytest.raises(ConfigurationError, match=r"could cost up to .*nothing was sent"):
            check_request("gpt-4o-mini", {**body, "max_tokens": 10_000}, 0.01)
        uncapped = {k: v for k, v in body.items() if k != "max_tokens"}
        with pytest.raises(ConfigurationError, match="no max_tokens: counted at 32,768"):
            check_request("gpt-4o-mini", uncapped, 0.1)
        with pytest.raises(ConfigurationError, match="price of 'gpt-4.1'") as err:
            check_request("gpt-4.1", body, 1.0)
        assert "fm.set_prices" in err.value.hint and "prices.toml" in err.value.hint
    finally:
        set_prices(None)


def test_answers_lost_on_the_way_count_as_billed_errors_with_a_status_do_not():
    assert may_be_billed(FoundryTimeoutError("slow"))
    assert may_be_billed(ConnectionFailed("cut"))
    assert not may_be_billed(ServerError("boom", status=500))


# ---------------------------------------------------------------------- runs on the emulator


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=300, latency=0.03)
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


def frame(n: int, tag: str) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"{tag} review {i}: the product was fine and arrived on time" for i in range(n)]})


def test_a_run_stops_within_max_cost_keeps_every_finished_row_and_a_rerun_sends_only_the_rest(emu, conn):
    set_prices({"gpt-4o-mini": PRICE})
    df = frame(2000, "budget")
    before = sent(emu)
    out = df.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=100, max_cost=0.05, concurrency=32,
                            progress=False)
    report = last_run()
    requests = sent(emu) - before
    assert report.cost is not None and report.cost <= 0.05
    assert report.cost > 0.05 - 0.002  # it spent nearly all of it: in-flight bounds only held back the end
    assert 300 <= requests < 2000  # a few hundred requests, then the stop
    assert requests == report.requests == report.done == int(out.notna().sum())  # every finished row kept
    assert report.stopped.startswith("max_cost=0.05 reached (spent 0.04")
    assert report.not_sent == 2000 - report.done and not report.failed
    reasons = dict(report.failures)
    missing = out[out.isna()].index
    assert len(missing) == 2000 - report.done and all(
        reasons[i].startswith("not sent: max_cost=0.05 reached (spent 0.04") for i in missing)

    before = sent(emu)
    again = df.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=100, max_cost=1.0, progress=False)
    assert sent(emu) - before == 2000 - report.done  # the cache answered the finished rows
    assert again.notna().all() and last_run().ok and (again[out.notna()] == out[out.notna()]).all()


def test_without_a_price_a_budgeted_run_refuses_to_start(emu, conn):
    before = sent(emu)
    with pytest.raises(ConfigurationError, match=r"max_cost=0.05 needs the price of 'gpt-4o-mini'") as err:
        frame(10, "noprice").foundry.prompt("Summarize: {text}", connection=conn, max_cost=0.05, progress=False)
    assert "fm.set_prices" in err.value.hint
    assert sent(emu) == before


def test_requests_without_max_tokens_are_counted_at_the_default_cap_and_the_reason_says_so(emu, conn):
    set_prices({"gpt-4o-mini": PRICE})
    before = sent(emu)
    s = frame(50, "uncapped")["text"]
    out = s.foundry.prompt("{}", connection=conn, max_tokens=None, max_cost=0.2, progress=False)
    report = last_run()
    # each request in flight is booked at 32,768 output tokens (~0.197): one at a time, and once
    # ~0.003 is spent the next one's bound no longer fits
    assert report.cost <= 0.2 and "counted at 32,768 output tokens" in report.stopped
    assert sent(emu) - before == report.done == int(out.notna().sum()) and 0 < report.done < 50


def test_a_budget_below_one_request_sends_nothing_and_returns_all_na(emu, conn):
    set_prices({"gpt-4o-mini": PRICE})
    before = sent(emu)
    out = frame(5, "tiny")["text"].foundry.classify(["good", "bad"], connection=conn, max_cost=1e-6, progress=False)
    assert sent(emu) == before and out.isna().all()
    assert "nothing was sent" in last_run().stopped


def test_polars_and_embeddings_take_max_cost_too(emu, conn):
    pl = pytest.importorskip("polars")
    set_prices({"gpt-4o-mini": PRICE, "text-embedding-3-small": (200.0, 0.0)})
    df = pl.DataFrame({"text": [f"polars budget {i} of many words here" for i in range(400)]})
    before = sent(emu)
    out = df.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=50, max_cost=0.01, progress=False)
    report = last_run()
    assert report.cost <= 0.01 and report.stopped.startswith("max_cost=0.01")
    assert sent(emu) - before == report.done == out.drop_nulls().len() < 400
    # embeddings: each request counted at its bound (the reply carries no per-text usage)
    vecs = frame(10, "embed")["text"].foundry.embed(connection=conn, max_cost=1.0, progress=False)
    assert vecs.notna().all(), (last_run().summary(), last_run().failures[:2])
    with pytest.raises(ConfigurationError, match="price of 'text-embedding-3-large'"):
        frame(3, "embed")["text"].foundry.embed(connection=conn, model="text-embedding-3-large", max_cost=1.0,
                                                progress=False)


def test_max_cost_is_checked_like_every_option(conn):
    with pytest.raises(ConfigurationError, match="max_cost must be a positive number"):
        frame(2, "bad").foundry.prompt("{text}", connection=conn, max_cost=0)
    with pytest.raises(ConfigurationError, match="max_cost must be a positive number"):
        frame(2, "bad").foundry.prompt("{text}", connection=conn, max_cost="a lot")
    with pytest.raises(ConfigurationError, match="Did you mean max_cost="):
        frame(2, "bad").foundry.prompt("{text}", connection=conn, max_costs=1)


def test_a_batch_api_job_over_the_budget_is_not_submitted(emu, conn):
    set_prices({"gpt-4o-mini": PRICE})
    df = frame(300, "batchjob")
    before = len(emu.requests)
    with pytest.raises(ConfigurationError, match=r"max_cost=0.01: this Batch API job could cost up to") as err:
        df.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=100, batch=True, max_cost=0.01,
                          progress=False)
    assert "300 requests" in err.value.message and "nothing was submitted" in err.value.message
    assert not [t for (_m, t, _h, _b) in emu.requests[before:] if "/files" in t or "/batches" in t]
    set_prices(None)
    with pytest.raises(ConfigurationError, match="needs the price of 'gpt-4o-mini'"):
        df.foundry.prompt("Summarize: {text}", connection=conn, batch=True, max_cost=10.0, progress=False)
    # within the budget it is submitted and answered as usual
    set_prices({"gpt-4o-mini": PRICE})
    out = df.head(20).foundry.prompt("Summarize: {text}", connection=conn, max_tokens=100, batch=True, max_cost=1.0,
                                     progress=False, poll_interval=0.2)
    assert out.notna().all()
