"""pack=N with batch=True: packed lines, each the packed request the online run sends; every
row's answer matched by id into its own cache entry; rows a packed reply leaves unanswered are
NA with their reason, and the same call run again submits only them."""

from __future__ import annotations

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.store.batches import JobStore

from batch_helpers import POLL, conn, emu, routes  # noqa: F401 - emu and conn are fixtures

pytestmark = pytest.mark.timeout(90)

LABELS = ["positive", "negative", "neutral"]


def reviews(n: int = 60) -> pd.Series:
    moods = ["great, I love it", "terrible and broken", "arrived on a Tuesday"]
    return pd.Series([f"Order {i} from Paris: {moods[i % 3]}" for i in range(n)])


def test_packed_lines_answer_exactly_as_unpacked_batch(conn, emu):
    s = reviews()
    plain = s.foundry.classify(LABELS, batch=True, connection=conn, poll_interval=POLL, progress=False, cache=False)
    assert fm.last_run().requests == 60
    est = s.foundry.classify(LABELS, batch=True, pack=10, connection=conn, estimate=True, cache=False)
    assert est.to_send == 6  # the estimate counts packed lines
    emu.reset_stats()
    job = s.foundry.classify(LABELS, batch=True, pack=10, wait=False, connection=conn, poll_interval=POLL,
                             progress=False, cache=False)
    assert job.counts.total == 6  # 60 rows in 6 lines
    packed = job.result()
    r = fm.last_run()
    assert r.requests == 6 and r.failed == 0 and r.done == 60
    pd.testing.assert_series_equal(packed, plain)
    assert not routes(emu).get("chat.completions")  # nothing went online
    emu.reset_stats()
    online = s.foundry.classify(LABELS, connection=conn, progress=False)  # answered from the rows' cache entries
    assert emu.stats()["requests"] == 0
    pd.testing.assert_series_equal(online, plain)


def test_a_running_packed_job_is_reattached_by_row_keys(conn, emu):
    s = reviews(30).str.replace("Order", "Parcel")
    emu.configure(batch_seconds=1.0)
    job = s.foundry.classify(LABELS, batch=True, pack=10, wait=False, connection=conn, poll_interval=POLL)
    again = s.foundry.classify(LABELS, batch=True, pack=10, wait=False, connection=conn, poll_interval=POLL)
    assert again.ids == job.ids and again.counts.total == 3  # nothing submitted twice
    out = again.result()
    assert out.notna().all() and fm.last_run().failed == 0


def test_corrupted_packed_items_are_na_with_a_reason_and_a_rerun_fills_them(conn, emu):
    s = reviews(80).str.replace("Order", "Box")
    truth = s.foundry.classify(LABELS, connection=conn, progress=False, cache=False)
    emu.configure(pack_fault_rate=0.3, pack_faults="drop,duplicate,rename,garble", seed=5)
    try:
        first = s.foundry.classify(LABELS, batch=True, pack=10, connection=conn, poll_interval=POLL, progress=False)
    finally:
        emu.configure(pack_fault_rate=0.0, pack_faults=None)
    r = fm.last_run()
    bad = first.isna()
    assert 0 < bad.sum() == r.failed < 80
    assert (first[~bad] == truth[~bad]).all()  # no row ever gets another row's answer
    assert len(r.failures) == bad.sum() and all("packed reply" in why for _, why in r.failures)
    emu.reset_stats()
    job = s.foundry.classify(LABELS, batch=True, pack=10, wait=False, connection=conn, poll_interval=POLL,
                             progress=False)
    assert job.counts.total == -(-int(bad.sum()) // 10)  # only the failed rows, packed again
    second = job.result()
    assert fm.last_run().cache_hits == 80 - bad.sum()
    pd.testing.assert_series_equal(second, truth)


def test_packed_lines_are_recorded_with_their_rows(conn, emu):
    s = reviews(20).str.replace("Order", "Crate")
    job = s.foundry.classify(LABELS, batch=True, pack=5, wait=False, connection=conn, poll_interval=POLL)
    store = JobStore()
    lines, schema = store.pack_lines(job.id, 0)
    assert len(lines) == 4 and all(len(rows) == 5 for rows in lines.values())
    assert '"label"' in schema
    job.result()
