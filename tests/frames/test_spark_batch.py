"""batch=True on Spark DataFrames: executors upload the input, the driver creates and records the
job, the result is a Spark DataFrame joined back by key; on local[2] against the emulator
(fast batch clock, polled every 20 ms)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed: pip install 'foundry-magics[spark]'")
pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'foundry-magics[spark]'")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Java is not installed (Spark needs it: apt-get install openjdk-17-jre-headless)",
                allow_module_level=True)

import foundry_magics as fm  # noqa: E402
from foundry_magics.batch_api import BatchInterrupted  # noqa: E402
from foundry_magics.errors import ConfigurationError  # noqa: E402

from batch_helpers import FAST, POLL, conn, emu, routes  # noqa: E402,F401 - emu and conn are fixtures

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
                      SPARK_LOCAL_IP="127.0.0.1")
    session = (SparkSession.builder.master("local[2]").appName("foundry-magics-batch-tests")
               .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2").config("spark.default.parallelism", "2")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def frame(spark, n: int = 40, distinct: int = 20, extra=()):
    """`n` rows of `distinct` texts spread over 3 partitions (so identical rows meet across
    partitions), a None row, and `extra` rows."""
    rows = [(f"Review {i % distinct}: the parcel came {'late' if i % distinct % 3 else 'early'}", i)
            for i in range(n)]
    rows += [(None, 1000)] + [(t, 1001 + k) for k, t in enumerate(extra)]
    return spark.createDataFrame(rows, "text string, n int").repartition(3)


def by_n(sdf) -> list:
    return sorted(sdf.collect(), key=lambda r: r.n)


def uploads(emu) -> int:
    return routes(emu).get("files", 0)


def creates(emu) -> int:
    return routes(emu).get("batches", 0)


def test_results_equal_the_online_mode_for_every_operation(spark, conn, emu):
    sdf = frame(spark)
    calls = [
        ("prompt", lambda s, **kw: s.foundry.prompt("Summarize: {text}", **kw)),
        ("schema", lambda s, **kw: s.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float},
                                                   **kw)),
        ("classify", lambda s, **kw: s.foundry.classify("text", ["late", "early"], **kw)),
        ("extract", lambda s, **kw: s.foundry.extract("text", {"when": str, "count": int}, **kw)),
        ("summarize", lambda s, **kw: s.foundry.summarize("text", **kw)),
        ("translate", lambda s, **kw: s.foundry.translate("text", "French", output_col="fr", **kw)),
        ("sentiment", lambda s, **kw: s.foundry.sentiment("text", **kw)),
        ("embed", lambda s, **kw: s.foundry.embed("text", **kw)),
    ]
    for name, call in calls:
        online = by_n(call(sdf, connection=conn, cache=False))  # the cache stays empty: the batch sends all
        emu.reset_stats()
        out = call(sdf, connection=conn, batch=True, poll_interval=POLL, progress=False)
        assert type(out).__name__ == "DataFrame", name
        assert out.columns == call(sdf, connection=conn).columns, name  # the same columns as online
        got = by_n(out)
        assert got == online, name
        assert got[-1].foundry_error.startswith("missing value"), name
        r = routes(emu)
        assert uploads(emu) >= 1 and creates(emu) == uploads(emu), (name, r)
        assert not r.get("chat.completions") and not r.get("responses") and not r.get("embeddings"), (name, r)
        report = fm.last_run()
        assert report.batch and report.rows == 41 and report.na_rows == 1 and report.unique == 20, name


def test_identical_requests_go_once_across_partitions_and_the_rerun_submits_nothing(spark, conn, emu):
    sdf = frame(spark, n=60, distinct=12)
    out = sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, poll_interval=POLL, progress=False)
    assert fm.last_run().requests == 12  # 60 rows, 12 distinct texts in 3 partitions: 12 lines
    assert sum(1 for r in out.collect() if r.reply) == 60
    emu.reset_stats()
    again = sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, poll_interval=POLL, progress=False)
    assert uploads(emu) == creates(emu) == 0  # every row answered by the cache
    assert by_n(again) == by_n(out) and fm.last_run().cache_hits == 12


def test_cached_rows_are_not_submitted(spark, conn, emu):
    sdf = frame(spark, n=30, distinct=30)
    half = sdf.filter("n < 15")
    half.foundry.prompt("Summarize: {text}", connection=conn).collect()  # online: into the cache
    emu.reset_stats()
    job = sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, wait=False, poll_interval=POLL)
    assert job.counts.total == 15  # only the rows not answered yet
    assert sum(1 for r in job.result().collect() if r.reply) == 30
    assert fm.last_run().cache_hits == 15


def test_wait_false_gives_the_job_and_a_rerun_reattaches_instead_of_submitting(spark, conn, emu):
    emu.configure(batch_seconds=1.0)
    sdf = frame(spark)
    job = sdf.foundry.classify("text", ["late", "early"], connection=conn, batch=True, wait=False,
                               poll_interval=POLL)
    assert isinstance(job, fm.BatchJob) and job.id.startswith("fmb-") and job.counts.total == 20
    assert [r["id"] for r in fm.batch_jobs().to_dict("records")] == [job.id]
    sent = (uploads(emu), creates(emu))
    again = sdf.foundry.classify("text", ["late", "early"], connection=conn, batch=True, wait=False,
                                 poll_interval=POLL)
    assert again.ids == [job.id] and (uploads(emu), creates(emu)) == sent  # re-attached: nothing submitted
    out = again.result()
    assert type(out).__name__ == "DataFrame" and out.columns == ["text", "n", "label", "foundry_error"]
    labels = [r.label for r in by_n(out)]
    assert all(lab in ("late", "early") for lab in labels[:-1]) and labels[-1] is None
    assert by_n(job.result()) == by_n(out)  # the first job's result() too (same cache)
    assert (uploads(emu), creates(emu)) == sent


def test_a_failed_line_is_null_with_its_reason_and_the_rerun_submits_only_it(spark, conn, emu):
    sdf = frame(spark, n=10, distinct=10, extra=["broken #emulator:status=400"])
    out = by_n(sdf.foundry.prompt("Echo: {text}", connection=conn, batch=True, poll_interval=POLL, progress=False))
    bad = out[-1]
    assert bad.reply is None and "BadRequestError" in bad.foundry_error
    assert all(r.reply and r.foundry_error is None for r in out[:10])
    assert fm.last_run().failed == 1
    emu.reset_stats()
    job = sdf.foundry.prompt("Echo: {text}", connection=conn, batch=True, wait=False, poll_interval=POLL)
    assert job.counts.total == 1 and uploads(emu) == 1  # only the failed request again
    assert "BadRequestError" in by_n(job.result())[-1].foundry_error  # the emulator fails it again


def test_ctrl_c_while_waiting_is_one_line_and_the_job_keeps_running(spark, conn, emu, monkeypatch):
    from foundry_magics.batch_api import jobs as jobs_module

    emu.configure(batch_seconds=3.0)
    sdf = frame(spark, n=8, distinct=8)
    sleep = jobs_module._sleep

    def interrupt(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs_module, "_sleep", interrupt)
    with pytest.raises(BatchInterrupted) as info:
        sdf.foundry.summarize("text", connection=conn, batch=True, poll_interval=POLL, progress=False)
    text = str(info.value)
    assert "keeps running" in text and "run the same call again" in text and "\n" not in text
    row = fm.batch_jobs().to_dict("records")[0]
    assert row["status"] in ("validating", "in_progress") and row["requests"] == 8
    monkeypatch.setattr(jobs_module, "_sleep", sleep)  # (undo() would also undo this test's FOUNDRY_MAGICS_HOME)
    sent = uploads(emu)
    again = sdf.foundry.summarize("text", connection=conn, batch=True, poll_interval=POLL, progress=False)
    assert uploads(emu) == sent and fm.last_run().batch_jobs == [row["id"]]  # picked up, not resubmitted
    assert sum(1 for r in again.collect() if r.summary) == 8


def test_files_split_at_the_line_limit(spark, conn, emu, monkeypatch):
    from foundry_magics.frames import spark_batch

    monkeypatch.setattr(spark_batch, "BATCH_MAX_LINES", 7)
    sdf = frame(spark, n=30, distinct=30)
    job = sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, wait=False, poll_interval=POLL)
    parts = job._store.parts(job.id)
    assert sum(p["lines"] for p in parts) == 30 and max(p["lines"] for p in parts) <= 7 and len(parts) >= 5
    assert uploads(emu) == creates(emu) == len(parts) == len(job.batch_ids)
    assert sum(1 for r in job.result().collect() if r.reply) == 30


def test_options_and_connections_are_refused_before_anything_is_sent(spark, conn, emu):
    from foundry_magics.connections import Connection

    sdf = frame(spark, n=4, distinct=4)
    with pytest.raises(ConfigurationError, match="poll_interval"):
        sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, poll_interval=-1)
    with pytest.raises(ConfigurationError, match="already exists"):
        sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, output_col="n")
    models = Connection.from_url(emu.url + "/models", auth="none", model="gpt-4o-mini")
    with pytest.raises(ConfigurationError, match="Batch API is not available"):
        sdf.foundry.prompt("Summarize: {text}", connection=models, batch=True)
    assert emu.stats()["requests"] == 0


def test_executors_without_the_drivers_cache_get_the_replies_joined_as_data(spark, conn, emu, monkeypatch,
                                                                          tmp_path):
    """A cluster, simulated: the executors' FOUNDRY_MAGICS_HOME is an empty folder of their own,
    so the job's replies (collected into the driver's cache) can reach the rows only as data."""
    from foundry_magics.defaults import home
    from foundry_magics.frames import spark_job

    executors = tmp_path / "executor-home"
    executors.mkdir()
    monkeypatch.setattr(spark_job, "cache_home", lambda cluster: str(executors))
    assert str(home()) != str(executors)
    sdf = frame(spark, n=30, distinct=15, extra=["broken #emulator:status=400"])
    calls = [
        ("prompt", lambda s, **kw: s.foundry.prompt("Summarize: {text}", **kw)),
        ("extract", lambda s, **kw: s.foundry.extract("text", {"when": str, "count": int}, **kw)),
        ("embed", lambda s, **kw: s.foundry.embed("text", **kw)),
    ]
    for name, call in calls:
        online = by_n(call(sdf, connection=conn, cache=False))
        emu.reset_stats()
        out = call(sdf, connection=conn, batch=True, poll_interval=POLL, progress=False)
        got = by_n(out)
        assert got[:-1] == online[:-1], name  # the last row's line the emulator fails in a batch
        assert "BadRequestError" in got[-1].foundry_error and not any(got[-1][c] for c in out.columns[2:-1]), name
        assert got[-2].foundry_error.startswith("missing value"), name
        assert uploads(emu) >= 1 and not routes(emu).get("chat.completions") and not routes(emu).get("embeddings")
        assert "__foundry" not in " ".join(out.columns), name
        assert "BroadcastHashJoin" in out._jdf.queryExecution().executedPlan().toString(), name  # small: broadcast
    assert not (executors / "cache.sqlite").exists()  # nothing was read from (or written to) an executor cache
    # the re-run: the driver's cache answers what the executors' caches cannot: only the failed line goes again
    emu.reset_stats()
    job = sdf.foundry.prompt("Summarize: {text}", connection=conn, batch=True, wait=False, poll_interval=POLL)
    assert job.counts.total == 1 and uploads(emu) == 1
    again = by_n(job.result())
    assert again[:-1] == by_n(sdf.foundry.prompt("Summarize: {text}", connection=conn, cache=False))[:-1]
    assert fm.last_run().cache_hits == 15


def test_a_large_replies_frame_is_joined_without_a_broadcast(spark, conn, emu, monkeypatch):
    from foundry_magics.frames import spark_batch

    monkeypatch.setattr(spark_batch, "_BROADCAST", 0)
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    try:
        sdf = frame(spark, n=30, distinct=15)
        out = sdf.foundry.classify("text", ["late", "early"], connection=conn, batch=True, poll_interval=POLL,
                                   progress=False)
        assert "BroadcastHashJoin" not in out._jdf.queryExecution().executedPlan().toString()
        assert by_n(out) == by_n(sdf.foundry.classify("text", ["late", "early"], connection=conn, cache=False))
    finally:
        spark.conf.unset("spark.sql.autoBroadcastJoinThreshold")
