"""The batch engine against the emulator: results, dedup, cache, budgets, 429s, stops, interrupts."""

from __future__ import annotations

import _thread
import asyncio
import io
import threading
import time

import pytest

from foundry_magics import engine
from foundry_magics.connections import Connection
from foundry_magics.emulator import Emulator
from foundry_magics.engine import looper, pacing
from foundry_magics.engine.prompts import PromptRun
from foundry_magics.errors import AuthError, ConfigurationError, RateLimitError
from foundry_magics.rest.client import FoundryClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def make_emu():
    started = []

    def make(**opts):
        opts.setdefault("lifetime", 120)
        emu = Emulator(**opts)
        emu.start()
        started.append(emu)
        conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        return emu, conn

    yield make
    for emu in started:
        emu.stop()


def prompts_batch(prompts, weights=None):
    return engine.Batch(len(prompts), lambda idx: [prompts[i] for i in idx], weights)


def reference(conn, prompts, **kw):
    """What the emulator answers, asked one by one with the plain client."""
    with FoundryClient(conn) as c:
        return [c.chat(p, **kw).text for p in prompts]


def test_results_match_direct_calls_and_are_in_order(make_emu):
    emu, conn = make_emu()
    prompts = [f"Tell me about item {i}" for i in range(150)]
    res = engine.run_batch(prompts_batch(prompts), connection=conn, concurrency=16, progress=False)
    assert res.error is None and not res.errors
    assert res.texts == reference(conn, prompts)
    r = res.report
    assert (r.rows, r.done, r.requests, r.failed, r.retries) == (150, 150, 150, 0, 0)
    assert r.input_tokens > 0 and r.output_tokens > 0
    assert engine.last_run() is r


def test_identical_requests_are_sent_once_and_cached(make_emu):
    emu, conn = make_emu()
    prompts = [f"Question {i % 7}" for i in range(70)]  # 7 distinct, not pre-deduplicated
    res = engine.run_batch(prompts_batch(prompts), connection=conn, progress=False)
    assert emu.stats()["requests"] == 7
    assert res.texts == reference(conn, prompts[:7]) * 10
    emu.reset_stats()
    again = engine.run_batch(prompts_batch(prompts), connection=conn, progress=False)
    assert emu.stats()["requests"] == 0
    assert again.texts == res.texts
    assert again.report.cache_hits >= 7 and again.report.requests == 0
    # cache=False: nothing read, still each distinct request once
    emu.reset_stats()
    engine.run_batch(prompts_batch(prompts), connection=conn, progress=False, cache=False)
    assert emu.stats()["requests"] == 7


def test_system_model_and_schema_change_the_request(make_emu):
    emu, conn = make_emu()
    spec = engine.RequestSpec(system="Be brief.", schema={"label": ("yes", "no")}, temperature=0)
    res = engine.run_batch(prompts_batch(["is it good? yes"]), spec, connection=conn, progress=False)
    with FoundryClient(conn) as c:
        assert res.texts == [c.chat("is it good? yes", system="Be brief.", schema={"label": ("yes", "no")},
                                    temperature=0).text]
    emu.reset_stats()
    engine.run_batch(prompts_batch(["is it good? yes"]), connection=conn, progress=False)  # other body
    assert emu.stats()["requests"] == 1


def test_responses_api(make_emu):
    emu, conn = make_emu()
    res = engine.run_batch(prompts_batch(["hello there"]), engine.RequestSpec(op="responses"), connection=conn,
                           progress=False)
    with FoundryClient(conn) as c:
        assert res.texts == [c.respond("hello there").text]
    assert emu.stats()["by_route"]


def test_rpm_budget_paces_requests(make_emu):
    emu, conn = make_emu()
    t0 = time.monotonic()
    res = engine.run_batch(prompts_batch([f"p{i}" for i in range(31)]), connection=conn, rpm=1200,
                           concurrency=32, progress=False)
    took = time.monotonic() - t0
    assert res.report.done == 31
    assert 1.3 <= took < 5  # 20 per second: 30 intervals of 50 ms


def test_tpm_budget_paces_requests(make_emu):
    emu, conn = make_emu()
    spec = engine.RequestSpec(max_tokens=100)  # ~101 estimated tokens per request
    t0 = time.monotonic()
    res = engine.run_batch(prompts_batch([f"p{i}" for i in range(12)]), spec, connection=conn, tpm=60_000,
                           progress=False)  # 1,000 tokens per second
    assert res.report.done == 12
    assert time.monotonic() - t0 >= 0.8


def test_429s_are_waited_out_and_concurrency_adapts(make_emu):
    emu, conn = make_emu(rpm=300, rpm_window=1)  # 5 requests per 1 s window
    prompts = [f"row {i}" for i in range(20)]
    t0 = time.monotonic()
    res = engine.run_batch(prompts_batch(prompts), connection=conn, concurrency=16, progress=False)
    took = time.monotonic() - t0
    r = res.report
    assert r.done == 20 and r.failed == 0 and not res.errors
    assert r.rate_limited > 0 and r.retries >= r.rate_limited
    assert r.concurrency < 16  # lowered on 429
    assert 2.5 <= took < 15
    emu.configure(rpm=None)
    assert res.texts == reference(conn, prompts)


def test_quota_block_stops_fast_and_keeps_finished(make_emu):
    emu, conn = make_emu()
    prompts = [f"row {i}" for i in range(40)]
    engine.run_batch(prompts_batch(prompts[:10]), connection=conn, progress=False)  # cached
    emu.configure(quota_block_seconds=7200)
    emu.reset_stats()
    t0 = time.monotonic()
    res = engine.run_batch(prompts_batch(prompts), connection=conn, concurrency=4, progress=False)
    assert time.monotonic() - t0 < 3
    assert isinstance(res.error, RateLimitError) and res.error.quota_block
    assert res.report.stopped.startswith("quota exhausted")
    assert res.report.done == 10 and res.report.not_sent >= 25
    assert res.texts[:10] == [t for t in res.texts[:10] if t is not None]
    assert emu.stats()["requests"] <= 4
    with pytest.raises(RateLimitError):
        res.raise_if_stopped()


def test_wrong_key_stops_at_once(make_emu, sentinel_key, monkeypatch):
    emu, _ = make_emu(api_key="the-right-key")
    conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="key", api_key_env="FOUNDRY_TEST_KEY",
                               model="gpt-4o-mini")
    res = engine.run_batch(prompts_batch([f"row {i}" for i in range(200)]), connection=conn, concurrency=4,
                           progress=False)
    assert isinstance(res.error, AuthError)
    assert emu.stats()["requests"] <= 8
    assert sentinel_key not in str(res.report) + res.report._repr_html_() + str(res.error)


def test_bad_request_rows_fail_alone(make_emu):
    emu, conn = make_emu()
    prompts = ["fine 1", "#emulator:content_filter bad", "fine 2", "#emulator:context_length long"]
    res = engine.run_batch(prompts_batch(prompts), connection=conn, progress=False)
    assert res.error is None
    assert res.texts[0] and res.texts[2] and res.texts[1] is None and res.texts[3] is None
    assert "ContentFilterError" in res.errors[1] and "ContextLengthError" in res.errors[3]
    assert res.report.failed == 2 and res.report.done == 2


def test_the_first_requests_all_failing_alike_stops_the_run(make_emu):
    emu, conn = make_emu()
    res = engine.run_batch(prompts_batch([f"#emulator:status=400 row {i}" for i in range(300)]), connection=conn,
                           concurrency=2, progress=False)
    assert res.error is not None
    assert "failed" in res.report.stopped
    assert emu.stats()["requests"] < 50


def test_validation_happens_before_sending(make_emu):
    emu, conn = make_emu()
    for bad in (dict(concurrency=0), dict(rpm=-1), dict(tpm="x")):
        with pytest.raises(ConfigurationError):
            engine.run_batch(prompts_batch(["x"]), connection=conn, progress=False, **bad)
    assert emu.stats()["requests"] == 0


def test_works_inside_a_running_event_loop(make_emu):
    emu, conn = make_emu()

    async def notebook_cell():  # Jupyter runs cells while its loop is running
        return engine.run_batch(prompts_batch(["a", "b"]), connection=conn, progress=False)

    res = asyncio.run(notebook_cell())
    assert res.report.done == 2


def test_ctrl_c_stops_promptly_and_resume_sends_only_the_rest(make_emu):
    emu, conn = make_emu(latency=0.2)
    prompts = [f"row {i}" for i in range(400)]
    timer = threading.Timer(0.7, _thread.interrupt_main)
    timer.start()
    t0 = time.monotonic()
    res = engine.run_batch(prompts_batch(prompts), connection=conn, concurrency=8, progress=False)
    stopped_after = time.monotonic() - t0
    timer.cancel()
    r = res.report
    assert r.interrupted and 0 < r.done < 400
    assert stopped_after < 0.7 + 2.0
    done = [i for i, t in enumerate(res.texts) if t is not None]
    assert len(done) == r.done
    with pytest.raises(KeyboardInterrupt):
        res.raise_if_stopped()
    emu.reset_stats()
    emu.configure(latency=0)
    again = engine.run_batch(prompts_batch(prompts), connection=conn, progress=False)
    assert emu.stats()["requests"] == 400 - r.done
    assert again.report.cache_hits == r.done
    assert [again.texts[i] for i in done] == [res.texts[i] for i in done]


def test_progress_updates_and_report(make_emu):
    emu, conn = make_emu(latency=0.1)
    seen = []

    class Sink:
        def update(self, snap):
            seen.append(snap)

        def close(self, report):
            seen.append(report)

    res = engine.run_batch(prompts_batch([f"r{i}" for i in range(60)], weights=[2] * 60), connection=conn,
                           concurrency=4, progress=Sink(), label="test")
    snaps = [s for s in seen if isinstance(s, engine.Snapshot)]
    assert snaps and seen[-1] is not None and isinstance(seen[-1], engine.RunReport)
    assert snaps[-1].done == 120 and snaps[-1].rows == 120
    assert any(0 < s.done < 120 for s in snaps)
    assert res.report.dedup_saved == 60
    md = res.report._repr_markdown_()
    assert "requests sent" in md and "120 of 120" in md


def test_text_progress_line():
    from foundry_magics.notebook.progress import TqdmProgress, format_line

    snap = engine.Snapshot(rows=1000, done=250, failed=5, cached=100, elapsed=2.0, rate=125.0, eta=6.0,
                           rate_limited=3, retries=4, concurrency=16)
    line = format_line("prompt", snap)
    assert "255/1,000 rows" in line and "125 rows/s" in line and "ETA 0:06" in line
    assert "5 failed" in line and "100 cached" in line and "3×429" in line
    buf = io.StringIO()
    p = TqdmProgress(1000, "prompt", file=buf)
    p.update(snap)
    p.close(engine.RunReport(rows=1000, done=995, failed=5, requests=900, seconds=8))
    out = buf.getvalue()
    assert "255/1,000" in out and "995/1,000 rows" in out and out.endswith("\n")


def test_report_lists_failures():
    r = engine.RunReport(rows=3, done=1, failed=2, failures=[("a", "ContentFilterError: no"), (7, "x")])
    assert "row 'a': ContentFilterError: no" in str(r)
    html = r._repr_html_()
    assert "2 failed rows" in html and "ContentFilterError" in html
    assert "**Failures**" in r._repr_markdown_()


def test_token_bucket_and_adaptive_limit_units():
    now = [0.0]
    b = pacing.TokenBucket(10.0, 1.0, clock=lambda: now[0])
    assert b.reserve() == 0.0
    assert b.reserve() == pytest.approx(0.1)
    assert b.reserve() == pytest.approx(0.2)  # bookings queue up evenly
    now[0] = 10.0
    assert b.reserve() == 0.0  # refilled, but never above the burst
    assert b.reserve() == pytest.approx(0.1)

    lim = pacing.AdaptiveLimit(16, cooldown=1.0)
    lim.decrease(5.0)
    lim.decrease(5.5)  # same rate-limit event: no second cut
    assert lim.current == 8
    lim.decrease(6.6)
    assert lim.current == 4
    for _ in range(200):
        lim.success()
    assert lim.current == 16


def test_engine_loop_is_reused(make_emu):
    emu, conn = make_emu()
    engine.run_batch(prompts_batch(["a"]), connection=conn, progress=False)
    t1 = looper._engine_loop.thread
    engine.run_batch(prompts_batch(["b"]), connection=conn, progress=False)
    assert looper._engine_loop.thread is t1 and t1.is_alive() and t1.daemon


def test_a_run_stopped_before_it_starts_ends_at_once(make_emu):
    emu, conn = make_emu()
    run = PromptRun(prompts_batch([f"r{i}" for i in range(5000)]), engine.RequestSpec(), conn, concurrency=8,
                    rpm=None, tpm=None, cache=True, timeout=10, max_retries=2)
    run.stop("interrupted (Ctrl-C)", interrupted=True)  # Ctrl-C landed before the loop ran main()
    looper.submit(run.main()).result(timeout=10)
    assert run.report().interrupted and emu.stats()["requests"] == 0


def test_a_broken_progress_display_does_not_break_the_run(make_emu):
    emu, conn = make_emu(latency=0.05)

    class Broken:
        def update(self, snap):
            raise RuntimeError("widget gone")

        def close(self, report):
            raise RuntimeError("widget gone")

    res = engine.run_batch(prompts_batch([f"r{i}" for i in range(40)]), connection=conn, concurrency=2,
                           progress=Broken())
    assert res.report.done == 40
