"""`estimate(..., sample=N)`: N distinct requests answered (and cached: the run does not send
them again), then a forecast of the run's output tokens, cost and time with 90 % intervals.

The emulator's replies vary in length with the prompt (`emulator.brain.reply_text`: the first
sentence of up to 20 words, then key terms past 30 words, then counts past 80), so prompts of
3 to 150 words give replies from about 10 to 40 tokens."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.engine.estimate import Estimate, t_quantile, total_interval
from foundry_magics.engine.report import last_run
from foundry_magics.errors import ConfigurationError
from foundry_magics.frames import ops
from foundry_magics.store.prices import set_prices
from foundry_magics.store.usage import session_usage

pytestmark = pytest.mark.timeout(240)

WORDS = ("the quick brown fox jumps over a lazy dog by the river; data model price cost budget review product "
         "service great terrible slow fast support refund delivery").split()


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=300)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    set_prices({"gpt-4o-mini": (0.15, 0.60)})
    yield Connection.from_url(emu.url + "/openai/v1", auth="none", model="gpt-4o-mini")
    set_prices(None)


def sent(emu) -> int:
    return emu.stats()["requests"]


def frame(n: int, seed: int, lo: int = 3, hi: int = 150) -> pd.DataFrame:
    """`n` distinct texts of `lo` to `hi` words: the replies vary in length."""
    rng = np.random.default_rng(seed)
    texts = [f"#{i} " + " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi)))) + "." for i in range(n)]
    return pd.DataFrame({"text": texts, "k": np.arange(n)})


@pytest.mark.parametrize("template, seed", [("Comment on this: {text}", 1), ("Summarize: {text}", 2),
                                            ("{text}?", 3)])
def test_a_forecast_from_20_holds_the_real_output_tokens_of_the_full_run(emu, conn, template, seed):
    df = frame(300, seed)
    before = sent(emu)
    est = ops.prompt(df, template, connection=conn, estimate=True, sample=20, progress=False)
    assert sent(emu) - before == 20 == est.sent, "the sample sends exactly N requests"
    f = est.forecast
    assert (f.answered, f.failed, f.sent) == (20, 0, 20)
    # the estimate now describes what the run still sends: the sampled replies are cached
    assert (est.distinct, est.cached, est.to_send) == (300, 20, 280) and f.requests == 280
    assert f.output_low < f.output_tokens < f.output_high
    assert f.sample_output_tokens > 0 and f.sd_output > 0, "the replies should vary in length"

    ops.prompt(df, template, connection=conn, progress=False)
    run = last_run()
    assert run.requests == sent(emu) - before - 20 == 280, "the run sent the sampled requests again"
    real = run.output_tokens
    assert f.output_low <= real <= f.output_high, (f.output_low, real, f.output_high)
    assert f.output_high - f.output_low < 0.6 * real, "an interval this wide says little"
    cost_low, cost_high = est.cost_interval
    assert cost_low <= run.cost <= cost_high * 1.02  # input tokens calibrated by the sample: within 2 %
    assert est.expected_cost == pytest.approx(run.cost, rel=0.2)


def test_the_interval_covers_about_90_percent_of_samples():
    """The method itself, over many random samples of fixed populations (no I/O): a 90 %
    interval should hold the unseen total about 90 % of the time, for replies of a spread
    like the emulator's and for skewed ones."""
    rng = np.random.default_rng(0)
    populations = {
        "even": rng.integers(10, 40, 400),
        "lognormal": np.round(rng.lognormal(4, 0.5, 400)),
        "1 in 10 long": np.where(rng.random(400) < 0.1, 300, 30) + rng.integers(0, 10, 400),
    }
    for name, values in populations.items():
        m, n, hits = len(values), 20, 0
        trials = 600
        for k in range(trials):
            idx = random.Random(k).sample(range(m), n)
            unseen = np.delete(values, idx).sum()
            _, low, high = total_interval(values[idx].tolist(), m, m - n)
            hits += low <= unseen <= high
        assert 0.84 <= hits / trials <= 0.96, (name, hits / trials)


def test_total_interval_and_t_quantile_edges():
    assert t_quantile(19) == pytest.approx(1.729) and t_quantile(1) == pytest.approx(6.314)
    assert t_quantile(30) == pytest.approx(1.697, abs=1e-3) and t_quantile(120) == pytest.approx(1.658, abs=1e-3)
    assert t_quantile(10 ** 6) == pytest.approx(1.6449, abs=1e-3)
    assert total_interval([5, 5, 5], 10, 7) == (35.0, 35.0, 35.0)  # no spread in the sample
    assert total_interval([5], 10, 9)[2] == float("inf")  # one value: no spread known
    assert total_interval([1, 2], 2, 0) == (0.0, 0.0, 0.0)  # nothing unseen
    exp, low, high = total_interval([1, 100], 1000, 998)
    assert low == 0.0 and exp == pytest.approx(998 * 50.5) and high > exp


def test_views_show_the_sample_the_forecast_and_expected_and_upper_bound_cost(emu, conn):
    df = frame(120, 4)
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=10, max_tokens=64,
                     progress=False)
    text, md, page = str(est), est._repr_markdown_(), est._repr_html_()
    for view in (text, md, page):
        assert "sent 10 requests" in view and "nothing was sent" not in view
        assert "output tokens (forecast)" in view and "90 %" in view and "expected cost" in view
        assert "run time (forecast)" in view and "at most" in view  # the upper bound: every output cap used
    assert "sent 10 requests" in est.summary() and "expected" in est.summary()
    assert est.forecast.output_high <= est.max_output_tokens  # the caps bound the forecast
    assert est.max_cost is not None and est.expected_cost < est.max_cost

    plain = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, max_tokens=64)
    assert plain.sent == 0 and plain.forecast is None and plain.expected_cost is None
    assert "unknown without a sample" in str(plain) and "nothing was sent" in str(plain)

    set_prices(None)  # costs are computed when shown: unpriced now
    assert est.expected_cost is None and "unknown: no price" in str(est)


def test_the_sample_is_spread_over_the_frame_and_counted_in_usage(emu, conn):
    df = frame(200, 5)
    before, used = sent(emu), session_usage().total.requests
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=15, progress=False)
    bodies = [b for (_m, t, _h, b) in emu.requests[-15:] if "chat/completions" in t]
    picked = sorted(int(b["messages"][-1]["content"].split("#")[1].split()[0]) for b in bodies)
    assert len(picked) == 15 and picked[-1] - picked[0] > 100, f"not a random spread: {picked}"
    assert session_usage().total.requests - used == 15 == sent(emu) - before
    # the same call again samples 15 more: the first 15 are cached
    again = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=15, progress=False)
    assert (again.cached, again.to_send) == (30, 170) and sent(emu) - before == 30
    assert est.forecast.output_tokens == pytest.approx(again.forecast.output_tokens, rel=0.35)


def test_everything_cached_sends_nothing_and_a_sample_larger_than_the_run_answers_it_all(emu, conn):
    df = frame(12, 6)
    before = sent(emu)
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=50, progress=False)
    assert sent(emu) - before == 12 and est.to_send == 0 and est.forecast.output_tokens == 0
    assert est.forecast.output_low == est.forecast.output_high == 0
    again = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=5, progress=False)
    assert sent(emu) - before == 12 and again.sent == 0 and "nothing sent: no request left" in str(again)
    s = ops.prompt(df, "Comment on this: {text}", connection=conn, progress=False)
    assert s.notna().all() and sent(emu) - before == 12


def test_cache_false_samples_but_the_run_sends_them_again(emu, conn):
    df = frame(60, 7)
    before = sent(emu)
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=10, cache=False,
                     progress=False)
    assert sent(emu) - before == 10 and est.to_send == 60 and est.forecast.requests == 60
    assert "the run sends them again" in str(est)
    ops.prompt(df, "Comment on this: {text}", connection=conn, progress=False, cache=False)
    real = last_run().output_tokens
    assert est.forecast.output_low <= real <= est.forecast.output_high


def test_run_time_is_bounded_by_the_rpm_budget(emu, conn):
    df = frame(100, 8)
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=5, rpm=6000,
                     progress=False)
    f = est.forecast
    assert f.seconds is not None and f.seconds_low <= f.seconds <= f.seconds_high
    assert f.mean_latency > 0 and f.concurrency == 32
    slow = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=5, rpm=60,
                      progress=False)
    g = slow.forecast
    assert g.bound_by == "rpm" and g.seconds == pytest.approx(60.0 * slow.to_send / 60) and "rpm budget" in str(slow)


def test_the_batch_api_forecast_is_priced_at_the_batch_rate_and_its_time_not_forecast(emu, conn):
    df = frame(40, 9)
    before = sent(emu)
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, batch=True, sample=8,
                     progress=False)
    assert sent(emu) - before == 8  # sent online: a Batch API job would take up to 24 h
    assert est.forecast.seconds is None and "within 24 h" in str(est)
    f = est.forecast
    assert est.expected_cost == pytest.approx((f.input_tokens * 0.15 + f.output_tokens * 0.60) / 2 / 1e6)


@pytest.mark.parametrize("value", [0, -3, 2.5, "20", True, [20]])
def test_sample_must_be_a_positive_whole_number(emu, conn, value):
    before = sent(emu)
    with pytest.raises(ConfigurationError, match="sample must be a positive whole number"):
        ops.prompt(frame(5, 10), "{text}", connection=conn, estimate=True, sample=value)
    assert sent(emu) == before


def test_sample_goes_with_estimates_only(emu, conn):
    df = frame(5, 11)
    before = sent(emu)
    with pytest.raises(ConfigurationError, match="sample= applies to estimates only") as info:
        ops.prompt(df, "{text}", connection=conn, sample=5)
    assert "estimate=True" in info.value.hint
    with pytest.raises(ConfigurationError, match="sample= applies to estimates only"):
        df["text"].foundry.classify(["a", "b"], connection=conn, sample=5)
    with pytest.raises(ConfigurationError, match="embeddings have no output tokens"):
        df["text"].foundry.embed(connection=conn, estimate=True, sample=5)
    assert sent(emu) == before
    est = df.foundry.estimate("{text}", connection=conn, sample=2, progress=False)  # estimate() takes it
    assert isinstance(est, Estimate) and est.sent == 2
    est = df["text"].foundry.summarize(estimate=True, sample=2, connection=conn, progress=False)
    assert est.sent == 2 and est.forecast.output_high <= est.max_output_tokens


def test_polars_estimate_takes_sample(emu, conn):
    pl = pytest.importorskip("polars")
    df = pl.from_pandas(frame(30, 12))
    before = sent(emu)
    est = df.foundry.estimate("Comment on this: {text}", connection=conn, sample=4, progress=False)
    assert est.sent == 4 == sent(emu) - before and est.to_send == 26


def test_failed_sample_requests_are_said_and_the_forecast_uses_the_answered_ones(emu, conn):
    df = frame(30, 13)
    df.loc[df.index % 3 == 0, "text"] += " #emulator:content_filter"  # a third of the requests fail
    est = ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=12, progress=False)
    f = est.forecast
    assert f.failed > 0 and f.answered > 0 and f.answered + f.failed == 12
    assert "failed" in str(est) and "ContentFilter" in str(est)
    assert est.to_send == 30 - f.answered  # the failed ones are still to send
    assert f.output_tokens > 0


def test_a_sample_that_every_request_fails_raises_the_error_and_estimates_nothing(emu, conn):
    from foundry_magics.errors import FoundryError

    df = frame(10, 14)
    df["text"] += " #emulator:status=401"  # a wrong key: every request would fail alike
    with pytest.raises(FoundryError) as info:
        ops.prompt(df, "Comment on this: {text}", connection=conn, estimate=True, sample=5, progress=False)
    assert "401" in str(info.value) or "key" in str(info.value).lower()
