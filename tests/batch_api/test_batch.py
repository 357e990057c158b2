"""The Batch API from the DataFrame operations: the same answers as online at half the price,
the cache shared across modes, jobs recorded and re-attached (also from another process), files
split at their limits, identical requests submitted once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics.batch_api import BatchJob, job_rows, submit
from foundry_magics.connections import Connection
from foundry_magics.engine import Batch, RequestSpec
from foundry_magics.errors import ConfigurationError

from batch_helpers import FAST, POLL, conn, emu, routes  # noqa: F401 - emu and conn are fixtures

pytestmark = pytest.mark.timeout(60)


def frame(n: int = 40, distinct: int = 20) -> pd.DataFrame:
    idx = pd.Index([f"r{i % 7}" for i in range(n)], name="id")  # duplicate labels line up too
    return pd.DataFrame({"text": [f"Review {i % distinct}: the parcel came {'late' if i % 3 else 'early'}"
                                  for i in range(n)]}, index=idx)


def test_batch_answers_exactly_as_online_and_fills_the_cache(conn, emu):
    df = frame()
    df.iloc[5, 0] = None  # NA: no request
    s = df.foundry.prompt("Summarize: {text}", batch=True, connection=conn, poll_interval=POLL, progress=False)
    r = fm.last_run()
    assert s.index.equals(df.index) and s.isna().sum() == 1
    assert r.requests == df["text"].nunique() and r.failed == 0 and r.na_rows == 1
    assert getattr(r, "batch", False) is True  # priced at the Batch API's rate
    assert routes(emu).get("files", 0) == 1 and routes(emu).get("batches", 0) == 1
    assert not routes(emu).get("chat.completions")  # nothing went online
    emu.reset_stats()
    online = df.foundry.prompt("Summarize: {text}", connection=conn, progress=False)
    assert emu.stats()["requests"] == 0, "the batch results answer the online call from the cache"
    pd.testing.assert_series_equal(online, s)
    emu.reset_stats()
    fresh = df.foundry.prompt("Summarize: {text}", connection=conn, cache=False, progress=False)
    pd.testing.assert_series_equal(fresh, s)  # the same text a fresh online request gets


def test_rows_answered_online_are_not_submitted(conn, emu):
    df = frame(30, 30)
    df.iloc[:20].foundry.prompt("Summarize: {text}", connection=conn, progress=False)
    emu.reset_stats()
    job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert job.counts.total == 10  # only the 10 rows the online call did not answer
    s = job.result()
    assert s.notna().all() and fm.last_run().cache_hits == 20 and fm.last_run().requests == 10
    emu.reset_stats()
    again = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert again.id is None and again.status == "completed" and again.counts.total == 0
    assert "nothing to submit" in repr(again)
    pd.testing.assert_series_equal(again.result(), s)
    assert emu.stats()["requests"] == 0


def test_custom_ids_are_the_online_request_keys(conn, emu):
    from foundry_magics.rest.base import BaseClient
    from foundry_magics.store.cache import request_key, route_identity

    texts = pd.Series(["one", "two", "two", "three"])
    texts.foundry.prompt("Say {}", batch=True, connection=conn, poll_interval=POLL, progress=False, system="Be brief")
    client = BaseClient(conn)
    route, body = client.build_chat("Say two", system="Be brief")
    key = request_key(route_identity(route.url, route.params, emulator=True), "chat", body)
    from foundry_magics.store.cache import ResponseCache

    cache = ResponseCache()
    try:
        assert key in cache.get_many([key])
    finally:
        cache.close()
    assert fm.last_run().requests == 3 and fm.last_run().dedup_saved == 1


def test_wait_false_gives_the_job_and_result_the_series(conn, emu):
    df = frame(24, 12)
    job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert isinstance(job, fm_batch_job()) and job.id.startswith("fmb-")
    assert job.status in ("validating", "in_progress", "finalizing", "completed")
    assert job.counts.total == 12 and job.batch_ids and job.batch_ids[0].startswith("batch_")
    job.refresh()
    job.wait(poll_interval=POLL)
    assert job.status == "completed" and job.counts.completed == 12 and job.done
    out = job.result()
    assert isinstance(out, pd.Series) and out.index.equals(df.index) and out.notna().all()
    assert job.result() is out  # collected once
    rows = fm_batch_jobs()
    assert rows.iloc[0]["id"] == job.id and rows.iloc[0]["status"] == "completed"
    assert rows.iloc[0]["rows"] == 24 and rows.iloc[0]["requests"] == 12 and rows.iloc[0]["model"] == "gpt-4o-mini"


def fm_batch_job():
    return BatchJob


def fm_batch_jobs():
    from foundry_magics.frames.accessor import batch_jobs

    return batch_jobs()


def test_the_same_call_while_pending_reattaches_and_submits_nothing(conn, emu):
    emu.configure(batch_seconds=0.6)
    df = frame(30, 15)
    first = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    uploads = routes(emu).get("files", 0)
    del first  # "close the notebook": forget the job object
    again = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert routes(emu).get("files", 0) == uploads, "a pending job's call must submit nothing"
    assert len(job_rows()) == 1 and again.id == job_rows()[0]["id"]
    s = again.result()
    assert s.notna().all() and fm.last_run().requests == 0


def test_reattach_from_another_process_after_the_first_one_exited(conn, emu, fm_home, tmp_path):
    emu.configure(batch_seconds=1.5)
    script = tmp_path / "submit.py"
    script.write_text(textwrap.dedent("""
        import sys, pandas as pd, foundry_magics as fm
        from foundry_magics.connections import Connection
        conn = Connection.from_url(sys.argv[1] + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        df = pd.DataFrame({"text": [f"order {i}: it arrived" for i in range(50)]})
        job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn)
        print(job.id)
    """))
    env = dict(os.environ, FOUNDRY_MAGICS_HOME=str(fm_home))
    proc = subprocess.run([sys.executable, str(script), emu.url], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    uploads = routes(emu).get("files", 0)
    df = pd.DataFrame({"text": [f"order {i}: it arrived" for i in range(50)]})
    job = df.foundry.prompt("Summarize: {text}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert job.ids == [job_id] and routes(emu).get("files", 0) == uploads
    s = job.result()
    assert s.notna().all() and s.iloc[0].startswith("[emulated]")
    by_id = BatchJob.attach(job_id, connection=conn)
    assert by_id.status == "completed" and by_id.done and by_id.counts.completed == 50
    with pytest.raises(ConfigurationError, match="re-attaches"):
        by_id.result()  # picked up by id: it does not know the frame; the same call does


def test_attach_by_batch_id_and_unknown_ids(conn, emu):
    s = pd.Series(["a b", "c d"])
    job = s.foundry.prompt("Echo {}", batch=True, wait=False, connection=conn, poll_interval=POLL)
    other = BatchJob.attach(job.batch_ids[0], connection=conn)
    assert other.id == job.id
    other.wait(poll_interval=POLL)
    assert other.done and "completed" in repr(other)
    with pytest.raises(ConfigurationError, match="No batch job"):
        BatchJob.attach("fmb-000000000000")


def test_files_split_at_the_line_and_byte_limits(conn, emu):
    prompts = [f"Summarize: item number {i} is fine" for i in range(23)]
    batch = Batch(len(prompts), lambda idx: [prompts[i] for i in idx])
    job = submit(batch, RequestSpec(), connection=conn, poll_interval=POLL, max_lines=10)
    assert len(job.batch_ids) == 3 and [p["lines"] for p in job._all_parts()] == [10, 10, 3]
    res = job.result()
    assert all(t is not None for t in res.texts) and not res.errors and res.report.requests == 23
    prompts2 = [f"Summarize: another item {i}, rather longer than the others" for i in range(12)]
    batch2 = Batch(len(prompts2), lambda idx: [prompts2[i] for i in idx])
    job2 = submit(batch2, RequestSpec(), connection=conn, poll_interval=POLL, max_bytes=700)
    parts = job2._all_parts()
    assert len(parts) > 1 and all(p["bytes"] <= 700 for p in parts) and sum(p["lines"] for p in parts) == 12
    assert not job2.result().errors


def test_every_operation_takes_batch_true(conn, emu):
    s = pd.Series(["I love it, great", "terrible, broken", "Ada Lovelace is 36"], name="text")
    labels = s.foundry.classify(["positive", "negative", "neutral"], batch=True, connection=conn, poll_interval=POLL,
                                progress=False)
    assert str(labels.dtype) == "category" and labels.iloc[0] == "positive" and labels.iloc[1] == "negative"
    people = s.foundry.extract({"name": str, "age": int}, batch=True, connection=conn, poll_interval=POLL,
                               progress=False)
    assert list(people.columns) == ["name", "age"] and len(people) == 3
    assert s.foundry.summarize(batch=True, connection=conn, poll_interval=POLL, progress=False).notna().all()
    fr = s.foundry.translate("French", batch=True, connection=conn, poll_interval=POLL, progress=False)
    assert fr.notna().all()
    assert s.foundry.sentiment(batch=True, connection=conn, poll_interval=POLL, progress=False).notna().all()
    df = s.to_frame()
    rated = df.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float}, batch=True,
                              connection=conn, poll_interval=POLL, progress=False)
    assert list(rated.columns) == ["label", "score"]
    resp = df.foundry.prompt("Summarize: {text}", api="responses", batch=True, connection=conn, poll_interval=POLL,
                             progress=False)
    assert resp.notna().all()
    vecs = s.foundry.embed(batch=True, connection=conn, poll_interval=POLL, progress=False)
    assert len(vecs.iloc[0]) == 64 and fm.last_run().operation == "embeddings"
    emu.reset_stats()
    online = s.foundry.embed(connection=conn, progress=False)
    assert emu.stats()["requests"] == 0 and all((a == b).all() for a, b in zip(online, vecs))


def test_wait_false_then_result_for_classify_and_embed(conn, emu):
    s = pd.Series(["good and great", "awful", None])
    job = s.foundry.classify(["positive", "negative"], batch=True, wait=False, connection=conn, poll_interval=POLL)
    assert isinstance(job, BatchJob)
    out = job.result()
    assert out.tolist()[:2] == ["positive", "negative"] and pd.isna(out.iloc[2])
    ej = s.foundry.embed(batch=True, wait=False, connection=conn, poll_interval=POLL)
    vecs = ej.result()
    assert vecs.iloc[2] is None and len(vecs.iloc[0]) == 64


def test_options_are_checked_before_anything_is_sent(conn, emu):
    s = pd.Series(["x"])
    with pytest.raises(ConfigurationError, match="poll_interval"):
        s.foundry.prompt("Say {}", batch=True, poll_interval=0, connection=conn)
    with pytest.raises(ConfigurationError, match="batch=True"):
        s.foundry.prompt("Say {}", wait=False, connection=conn)
    with pytest.raises(ConfigurationError, match="batch=True"):
        s.foundry.embed(poll_interval=5, connection=conn)
    models = Connection.from_url(emu.url + "/models", auth="none", model="gpt-4o-mini")
    with pytest.raises(ConfigurationError, match="Batch API is not available"):
        s.foundry.prompt("Say {}", batch=True, connection=models)
    assert emu.stats()["requests"] == 0 and job_rows() == []


def test_legacy_deployment_route_carries_the_deployment_in_each_line(emu, conn, monkeypatch):
    dep = Connection.from_url(emu.url + "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
                              auth="none")
    s = pd.Series(["alpha", "beta"])
    out = s.foundry.prompt("Summarize: {}", batch=True, connection=dep, poll_interval=POLL, progress=False)
    assert out.notna().all()
    emu.reset_stats()
    assert s.foundry.prompt("Summarize: {}", connection=dep, progress=False).equals(out)
    assert emu.stats()["requests"] == 0


def test_progress_shows_the_job_status_and_counts(conn, emu):
    seen = []

    class Display:
        def __init__(self, total, label):
            self.total, self.label = total, label

        def update(self, snap):
            seen.append((snap.status, snap.requests.total, snap.done, snap.rows))

        def close(self, report):
            seen.append(("closed", report.done))

    s = pd.Series([f"thing {i}" for i in range(10)])
    s.foundry.prompt("Describe {}", batch=True, connection=conn, poll_interval=POLL,
                     progress=lambda total, label: Display(total, label))
    statuses = [x[0] for x in seen]
    assert statuses[-1] == "closed" and "completed" in statuses
    assert any(st in ("validating", "in_progress", "finalizing") for st in statuses)
    assert all(x[1] == 10 and x[3] == 10 for x in seen[:-1]) and seen[-1][1] == 10
    assert [x[2] for x in seen[:-1]] == sorted(x[2] for x in seen[:-1])  # rows done only grow
