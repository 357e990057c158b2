"""Spark: `sdf.foundry.prompt` on local[2] at 200 ms service latency, against the ceiling,
a plain one-request-per-row pandas UDF, and the pandas path, all in the same run.

Ceiling = tasks x concurrency / latency = 2 x 32 / 0.2 s = 320 rows/s. Rows are distinct
(nothing deduplicated, nothing cached: every contender gets its own prompts) and split
evenly over 2 partitions, so 2 tasks run at once. The emulator runs in its own process on
127.0.0.1. The Spark session is warmed up first (JVM, Python workers, imports: a small job
of its own), then each contender is timed from the action to its end, job scheduling
included: `out.filter(foundry_error IS NULL).count()` for ours, which also checks that
every row got its reply.

* ours: `sdf.foundry.prompt` (each task runs the engine over its partition, 32 in flight);
* the peer: a plain `pandas_udf` that sends one request per row with the OpenAI SDK
  (`httpx` when the SDK is not installed), what a Spark user writes first; it sends one row
  at a time per task, so it is timed on fewer rows (its rate does not depend on the count);
* the pandas path in the same process: `df.foundry.prompt` over the same number of rows at
  concurrency 64 (the same requests in flight as 2 tasks x 32), for scale.

    python benchmarks/bench_spark.py [--quick]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings

import pandas as pd  # at module level: pandas_udf reads its type hints from the module's globals

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LATENCY = 0.2
MODEL = "gpt-4o-mini"
TASKS = 2
CONCURRENCY = 32
CEILING = TASKS * CONCURRENCY / LATENCY

OURS = "Spark sdf.foundry.prompt, local[2], 2 tasks x 32"
UDF = "plain pandas UDF, one request per row"
PANDAS = "pandas df.foundry.prompt, concurrency 64"


def _skip(reason: str) -> list[dict]:
    return [{"name": f"{OURS}: skipped ({reason})", "value": None, "unit": "rows/s", "target": f">= {0.8 * CEILING:.0f}",
             "peer": None, "peer_value": None, "ratio": None, "ok": None, "note": reason}]


def session():
    """A local[2] Spark session for the benchmarks, its JVM start-up chatter kept out of the output."""
    from pyspark.sql import SparkSession

    os.environ.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
    # The JVM inherits stderr: its start-up chatter (log4j, JDK notices) would land in the table's output.
    devnull, kept = os.open(os.devnull, os.O_WRONLY), os.dup(2)
    os.dup2(devnull, 2)
    try:
        return _build(SparkSession)
    finally:
        os.dup2(kept, 2)
        os.close(kept)
        os.close(devnull)


def _build(SparkSession):  # noqa: N803 - the class
    spark = (SparkSession.builder.master(f"local[{TASKS}]").appName("foundry-magics-bench")
             .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", str(TASKS)).getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _texts(spark, tag: str, n: int):
    return spark.range(0, n, numPartitions=TASKS).selectExpr(
        f"concat('{tag} review ', id, ': the kettle boils fast and looks nice') as text")


def _ours(spark, conn, tag: str, n: int) -> tuple[float, int]:
    import foundry_magics  # noqa: F401  - sdf.foundry

    out = _texts(spark, tag, n).foundry.prompt("Summarize: {text}", connection=conn, concurrency=CONCURRENCY)
    t0 = time.perf_counter()
    ok = out.filter(out["foundry_error"].isNull()).count()
    return time.perf_counter() - t0, ok


def _udf(spark, url: str, tag: str, n: int) -> tuple[float, int, str]:
    from pyspark.sql.functions import pandas_udf

    endpoint = url + "/openai/v1"
    try:
        import openai  # noqa: F401

        how = "OpenAI SDK"

        @pandas_udf("string")
        def summarize(texts: pd.Series) -> pd.Series:
            from openai import OpenAI

            client = OpenAI(base_url=endpoint, api_key="unused", max_retries=2)
            return texts.map(lambda t: client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Summarize: {t}"}]).choices[0].message.content)
    except ImportError:
        how = "httpx"

        @pandas_udf("string")
        def summarize(texts: pd.Series) -> pd.Series:
            import httpx

            with httpx.Client(timeout=60) as client:
                return texts.map(lambda t: client.post(endpoint + "/chat/completions", json={
                    "model": MODEL, "messages": [{"role": "user", "content": f"Summarize: {t}"}]})
                    .json()["choices"][0]["message"]["content"])

    sdf = _texts(spark, tag, n)
    out = sdf.withColumn("summary", summarize("text"))
    t0 = time.perf_counter()
    ok = out.filter(out["summary"].isNotNull()).count()
    return time.perf_counter() - t0, ok, how


def _pandas(conn, tag: str, n: int) -> tuple[float, int]:
    import foundry_magics  # noqa: F401

    df = pd.DataFrame({"text": [f"{tag} review {i}: the kettle boils fast and looks nice" for i in range(n)]})
    t0 = time.perf_counter()
    out = df.foundry.prompt("Summarize: {text}", connection=conn, concurrency=TASKS * CONCURRENCY, progress=False)
    return time.perf_counter() - t0, int(out.notna().sum())


def run(quick: bool = False) -> list[dict]:
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        return _skip("pyspark / pyarrow not installed: pip install 'foundry-magics[spark]'")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return _skip("no Java: apt-get install openjdk-17-jre-headless")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from foundry_magics.connections import Connection
    from foundry_magics.emulator import Emulator

    os.environ["FOUNDRY_MAGICS_HOME"] = tempfile.mkdtemp(prefix="fm-bench-spark-")
    n = 1_280 if quick else 4_000  # quick: 20 rounds of 64, so the ~0.3 s a Spark job costs stays small
    n_udf = 2 * TASKS * 10 if quick else 200  # at ~10 rows/s
    spark = session()
    try:
        with Emulator(latency=LATENCY, process=True, lifetime=900) as emu:
            conn = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model=MODEL)
            _ours(spark, conn, "warm-up", 2 * TASKS * CONCURRENCY)  # JVM, Python workers, imports, the server
            _udf(spark, emu.url, "warm-up-udf", 2 * TASKS)
            emu.reset_stats()
            wall, ok = _ours(spark, conn, "ours", n)
            sent = emu.stats()["requests"]
            udf_wall, udf_ok, how = _udf(spark, emu.url, "udf", n_udf)
            pd_wall, pd_ok = _pandas(conn, "pandas", n)
    finally:
        spark.stop()
    rate, udf_rate, pd_rate = n / wall, n_udf / udf_wall, n / pd_wall
    target = 0.8 * CEILING
    name = f"{OURS}, {n:,} rows, {LATENCY * 1000:.0f} ms latency: rows/s"
    common = {"name": name, "value": round(rate, 1), "unit": "rows/s", "ratio": round(rate / CEILING, 3)}
    note = (f"{ok:,}/{n:,} rows with a reply, {sent:,} requests, {wall:.1f} s (job scheduling included); "
            f"ceiling {CEILING:.0f} rows/s; the UDF ({how}) timed on {n_udf} rows: {udf_ok}/{n_udf} replies, "
            f"{udf_wall:.1f} s; pandas: {pd_ok:,}/{n:,} in {pd_wall:.1f} s")
    return [
        {**common, "target": f">= {target:.0f} (80% of {CEILING:.0f}) and >= 10x the UDF", "peer": f"{UDF} ({how})",
         "peer_value": round(udf_rate, 1), "ok": rate >= target and rate >= 10 * udf_rate and ok == n, "note": note},
        {**common, "target": "(for scale: the pandas path on one process)", "peer": PANDAS,
         "peer_value": round(pd_rate, 1), "ok": None},
    ]


if __name__ == "__main__":
    import json

    for r in run(quick="--quick" in sys.argv):
        print(json.dumps(r))
