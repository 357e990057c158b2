"""Spark `batch=True`: building and uploading the Batch API input of 1,000,000 rows from the
executors on local[2] (target: at least 20,000 rows/s), and the same call again submitting nothing.

Timed from the call to the `fm.BatchJob` it returns with wait=False: the executors plan each
Arrow batch, key every distinct request (the online keys: the cache is looked up), build its
JSONL line; Spark repartitions the lines by key (identical requests of different partitions once)
and joins the keys of pending jobs; each upload task writes its input files (split at 100,000
lines / 200 MB), uploads them and waits until they are processed; the driver records the job
with its keys and creates one batch per file. Rows are distinct (nothing deduplicated, nothing
cached). The emulator runs in its own process with a slow batch clock (the job stays pending),
so the second call must re-attach: no upload, no batch created (counted by the emulator). The
Spark session is warmed up first (a small batch call of its own).

    python benchmarks/bench_spark_batch.py [--quick]      # quick: 200,000 rows
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TASKS = 2
TARGET = 20_000  # rows/s
MODEL = "gpt-4o-mini"
NAME = "Spark batch=True, local[2]: build + upload the input"


def _skip(reason: str) -> list[dict]:
    return [{"name": f"{NAME}: skipped ({reason})", "value": None, "unit": "rows/s", "target": f">= {TARGET:,}",
             "peer": None, "peer_value": None, "ratio": None, "ok": None, "note": reason}]


def _texts(spark, tag: str, n: int):
    return spark.range(0, n, numPartitions=TASKS).selectExpr(
        f"concat('{tag} order ', id, ': the customer in city ', id % 977, ' says the parcel was late') as text")


def _uploads(emu) -> int:
    return sum(v for k, v in emu.stats()["by_route"].items() if k.endswith((":files", ":batches")))


def run(quick: bool = False) -> list[dict]:
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        return _skip("pyspark / pyarrow not installed: pip install 'foundry-magics[spark]'")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return _skip("no Java: apt-get install openjdk-17-jre-headless")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from bench_spark import session  # the same local[2] session as the online Spark bench

    import foundry_magics  # noqa: F401 - sdf.foundry
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-spark-batch-")
    n = 200_000 if quick else 1_000_000
    spark = session()
    try:
        with Emulator(process=True, lifetime=900, batch_seconds=3600.0, file_pending_seconds=0.0) as emu:
            conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model=MODEL)
            options = dict(connection=conn, batch=True, wait=False, progress=False)
            _texts(spark, "warm-up", 2_000).foundry.prompt("Summarize: {text}", **options)
            sdf = _texts(spark, "bench", n)
            before = _uploads(emu)
            t0 = time.perf_counter()
            job = sdf.foundry.prompt("Summarize: {text}", **options)
            seconds = time.perf_counter() - t0
            made = _uploads(emu) - before
            t1 = time.perf_counter()
            again = sdf.foundry.prompt("Summarize: {text}", **options)
            again_seconds = time.perf_counter() - t1
            again_made = _uploads(emu) - before - made
            lines, files = job.counts.total, len(job.batch_ids)
            reattached = again.ids == job.ids
    finally:
        spark.stop()
    rate = n / seconds
    return [
        {"name": f"{NAME} of {n:,} rows: rows/s", "value": round(rate, 1), "unit": "rows/s",
         "target": f">= {TARGET:,}", "peer": None, "peer_value": None, "ratio": round(rate / TARGET, 3),
         "ok": rate >= TARGET and lines == n,
         "note": f"{seconds:.1f} s for {lines:,} lines in {files} file(s) ({made} uploads + creates): keys and "
                 f"lines on the executors, repartitioned by key, written, uploaded and processed per task, job recorded, "
                 f"batches created; Spark job scheduling included"},
        {"name": f"{NAME}: the same call again while pending: files + batches created", "value": again_made,
         "unit": "requests", "target": "= 0", "peer": None, "peer_value": None, "ratio": None,
         "ok": again_made == 0 and reattached,
         "note": f"re-attached to the same job: {reattached}; {again_seconds:.1f} s (the keys are computed again "
                 f"on the executors and joined with the pending ones)"},
    ]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
