"""Spark DataFrames: sdf.foundry.* on local[2] against the emulator on 127.0.0.1.

One SparkSession for the module (`local[2,2]`: two task slots, and a failed task is tried
twice, so Spark's own retries are exercised). The JVM starts with:

* `FOUNDRY_SPARK_TEST_KEY` = the sentinel key in its environment, as a cluster sets a
  variable for its executors (the driver's os.environ no longer has it afterwards);
* `spark.executorEnv.FOUNDRY_SPARK_CONF_KEY` (not the sentinel), the other way to give
  executors a key, with `spark.redaction.regex` extended as the README says;
* its stdout/stderr (log4j, the Python workers' output) in a file: the driver log that the
  secret test greps;
* the Spark UI on 127.0.0.1 (random port), whose REST API the secret test reads.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SENTINEL_KEY

pytest.importorskip("pyspark", reason="pyspark is not installed: pip install 'foundry-magics[spark]'")
pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'foundry-magics[spark]'")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("Java is not installed (Spark needs it: apt-get install openjdk-17-jre-headless)",
                allow_module_level=True)

import foundry_magics as fm  # noqa: E402
from foundry_magics.connections import Connection  # noqa: E402
from foundry_magics.defaults import SERVICE_VARIABLES  # noqa: E402
from foundry_magics.emulator import Emulator  # noqa: E402
from foundry_magics.errors import ConfigurationError  # noqa: E402
from foundry_magics.frames import spark as fm_spark  # noqa: E402  (fm.spark once the facade exports it)
from foundry_magics.rest.client import FoundryClient  # noqa: E402

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

KEY_VAR = "FOUNDRY_SPARK_TEST_KEY"  # in the executors' environment: the sentinel
CONF_VAR = "FOUNDRY_SPARK_CONF_KEY"  # given by spark.executorEnv
CONF_KEY = "conf-key-0123456789"
REDACTION = r"(?i)secret|password|token|access[.]?key|api[_.]?key|credential|_key"
MODEL = "gpt-4o-mini"


@dataclass
class SparkRun:
    session: object
    log: Path


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession

    log = tmp_path_factory.mktemp("spark-log") / "driver.log"
    saved = dict(os.environ)
    os.environ.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
                      SPARK_LOCAL_IP="127.0.0.1")
    for var in SERVICE_VARIABLES:
        os.environ.pop(var, None)
    os.environ[KEY_VAR] = SENTINEL_KEY
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    keep = os.dup(1), os.dup(2)
    try:
        os.dup2(fd, 1)  # the JVM inherits these: its log and the Python workers' output go to the file
        os.dup2(fd, 2)
        session = (SparkSession.builder.master("local[2,2]").appName("foundry-magics-tests")
                   .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
                   .config("spark.ui.enabled", "true").config("spark.ui.port", "0")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.shuffle.partitions", "2").config("spark.default.parallelism", "2")
                   .config(f"spark.executorEnv.{CONF_VAR}", CONF_KEY)
                   .config("spark.redaction.regex", REDACTION)
                   .getOrCreate())
    finally:
        os.dup2(keep[0], 1)
        os.dup2(keep[1], 2)
        os.close(keep[0])
        os.close(keep[1])
        os.close(fd)
        os.environ.clear()
        os.environ.update(saved)
        # the driver keeps pointing workers at this Python (the JVM read it at start anyway)
        os.environ.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    session.sparkContext.setLogLevel("WARN")
    yield SparkRun(session, log)
    session.stop()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def emu():
    e = Emulator(lifetime=300)
    e.start()
    yield e
    e.stop()


def connection(emu, **fields):
    base = dict(kind="emulator", auth="none", model=MODEL)
    base.update(fields)
    return Connection.from_url(emu.url + "/openai/v1", **base)


def ask(conn, prompts, **kw):
    with FoundryClient(conn) as c:
        return [c.chat(p, **kw).text for p in prompts]


def requests_sent(emu) -> int:
    return emu.stats()["requests"]


REVIEWS = [
    ("I love this kettle, it boils fast", 1),
    ("Terrible, it broke after a day", 2),
    (None, 3),
    ("I love this kettle, it boils fast", 4),
    ("Fine for the price", None),
    ("#emulator:content_filter something nasty", 6),
]


def reviews(spark, rows=REVIEWS, partitions=2):
    return spark.session.createDataFrame(rows, "text string, n int").repartition(partitions)


def shipped_task(sdf):
    """The function Spark ships for the plan's MapInArrow node, as the executors unpickle it."""
    from pyspark.serializers import CloudPickleSerializer

    from foundry_magics.frames.spark_task import PartitionTask

    command = _command_bytes(sdf)
    loaded = CloudPickleSerializer().loads(command)
    stack = [loaded]
    while stack:
        x = stack.pop()
        if isinstance(x, PartitionTask):
            return x
        if isinstance(x, (tuple, list)):
            stack.extend(x)
        elif callable(x) and getattr(x, "__closure__", None):
            stack.extend(c.cell_contents for c in x.__closure__)
    raise AssertionError(f"no PartitionTask in the shipped command: {loaded!r}")


def _node(sdf):
    node = sdf._jdf.queryExecution().analyzed()
    while node.getClass().getSimpleName() != "MapInArrow":
        node = node.child()
    return node


def _command_bytes(sdf) -> bytes:
    jvm = sdf.sparkSession.sparkContext._jvm
    tag = getattr(getattr(jvm.scala.reflect, "ClassTag$"), "MODULE$").Byte()
    return bytes(_node(sdf).functionExpr().func().command().toArray(tag))


# ====================================================================== registration


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"})
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_loads_no_pyspark_and_the_accessor_appears_with_it():
    assert _python("""
        import sys
        import foundry_magics
        assert not any(m.split(".")[0] == "pyspark" for m in sys.modules)
        from pyspark.sql import DataFrame
        from foundry_magics.frames import hook
        from foundry_magics.frames.spark import FoundrySparkAccessor
        print(DataFrame.foundry is FoundrySparkAccessor, hook._spark_hook in sys.meta_path)
        import pyspark.errors.exceptions.base as b
        print(type(b.PythonException.__dict__["_render_traceback_"]).__name__)
    """) == ["True", "False", "_Drawing"]


def test_pyspark_imported_first_also_works():
    assert _python("""
        import pyspark.sql
        import foundry_magics
        from pyspark.sql.classic.dataframe import DataFrame as Classic
        print(isinstance(vars(pyspark.sql.dataframe.DataFrame)["foundry"], object), hasattr(Classic, "foundry"))
    """) == ["True", "True"]


def test_fm_spark_is_the_facade_export():
    if "spark" not in fm.__all__:
        pytest.skip("foundry_magics/__init__.py does not export fm.spark yet")
    assert fm.spark is fm_spark
    assert not any(m.split(".")[0] == "pyspark" for m in _python_modules_after("import foundry_magics as fm; fm.spark"))


def _python_modules_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()


def test_fm_spark_functions_are_the_accessors_and_register_is_idempotent(spark, emu):
    from foundry_magics.frames import spark as fs

    fs.register()
    fs.register()
    sdf = reviews(spark)
    assert isinstance(sdf.foundry, fs.FoundrySparkAccessor)
    for name in ("prompt", "classify", "extract", "embed", "summarize", "translate", "sentiment"):
        assert callable(getattr(sdf.foundry, name)) and callable(getattr(fs, name))


# ====================================================================== prompt: lazy, typed, complete


def test_prompt_is_lazy_keeps_every_row_and_matches_the_pandas_replies(spark, emu):
    conn = connection(emu)
    sdf = reviews(spark)
    out = sdf.foundry.prompt("Summarize ({n}): {text}", output_col="summary", connection=conn)
    assert requests_sent(emu) == 0  # a transformation: nothing sent yet
    assert [(f.name, f.dataType.simpleString()) for f in out.schema.fields] == [
        ("text", "string"), ("n", "int"), ("summary", "string"), ("foundry_error", "string")]
    rows = sorted(out.collect(), key=lambda r: (r.n is None, r.n))
    assert len(rows) == len(REVIEWS)
    by_n = {r.n: r for r in rows}
    sendable = [(t, n) for t, n in REVIEWS if t is not None and n is not None and "#emulator" not in t]
    expected = ask(conn, [f"Summarize ({n}): {t}" for t, n in sendable])
    assert [by_n[n].summary for _, n in sendable] == expected  # integers stay integers: "(1)", not "(1.0)"
    assert all(by_n[n].foundry_error is None for _, n in sendable)
    assert by_n[3].summary is None and by_n[3].foundry_error == "missing value in column 'text' (nothing was sent)"
    assert by_n[None].summary is None and "column 'n'" in by_n[None].foundry_error
    assert by_n[6].summary is None and by_n[6].foundry_error.startswith("ContentFilterError:")  # a row, not the job
    assert requests_sent(emu) == 3 + 1 + 3  # 4 distinct sendable prompts + the filtered one; ask() sent 3 more
    assert "foundry_prompt" in out._jdf.queryExecution().simpleString()


def test_the_same_call_again_is_answered_by_the_cache(spark, emu):
    conn = connection(emu)
    sdf = reviews(spark)
    first = sdf.foundry.prompt("Summarize: {text}", connection=conn).collect()
    sent = requests_sent(emu)
    again = sdf.foundry.prompt("Summarize: {text}", connection=conn).collect()
    assert requests_sent(emu) == sent + 1  # only the content-filtered row (failures are not cached)
    replies = lambda rows: sorted(((r.n, r.reply) for r in rows), key=repr)  # noqa: E731
    assert replies(first) == replies(again)


def test_a_missing_template_column_is_refused_before_the_job(spark, emu):
    conn = connection(emu)
    sdf = reviews(spark)
    with pytest.raises(ConfigurationError) as err:
        sdf.foundry.prompt("Summarize {txt} ({n})", connection=conn)
    msg = str(err.value)
    assert "{txt}" in msg and "'text'" in msg and "'n'" in msg
    with pytest.raises(ConfigurationError, match="(?s)no column 'body'.*'text'"):
        sdf.foundry.classify("body", ["a", "b"], connection=conn)
    with pytest.raises(ConfigurationError, match="only works on a Series"):
        sdf.foundry.prompt("Hi {}", connection=conn)
    with pytest.raises(ConfigurationError, match="already exists"):
        sdf.foundry.prompt("Summarize {text}", output_col="n", connection=conn)
    for bad in (dict(concurrency=0), dict(rpm=-1), dict(tpm="x"), dict(parallelism=1.5)):
        with pytest.raises(ConfigurationError):
            sdf.foundry.prompt("Summarize {text}", connection=conn, **bad)
    with pytest.raises(ConfigurationError, match="unknown option progres=") as err:
        sdf.foundry.summarize("text", connection=conn, progres=False)
    assert "Did you mean progress=?" in str(err.value)
    assert requests_sent(emu) == 0


def test_a_bad_option_is_the_same_configuration_error_as_with_pandas_before_any_job(spark, emu):
    import pandas as pd

    conn = connection(emu)
    sdf = reviews(spark)
    pdf = pd.DataFrame({"text": ["a"], "n": [1]})
    cases = [dict(temperature="hot"), dict(temperature=9), dict(max_tokens="lots"), dict(concurrency=0),
             dict(rpm=-1), dict(tpm="x"), dict(cache="yes"), dict(wait=False), dict(modle="gpt-4o")]
    for bad in cases:
        with pytest.raises(ConfigurationError) as ours:
            sdf.foundry.prompt("Summarize {text}", connection=conn, **bad)
        with pytest.raises(ConfigurationError) as theirs:
            pdf.foundry.prompt("Summarize {text}", connection=conn, progress=False, **bad)
        norm = lambda e: str(e.value).replace("sdf.foundry.", "").replace("df.foundry.", "")  # noqa: E731
        assert norm(ours) == norm(theirs), bad
    with pytest.raises(ConfigurationError, match="parallelism must be a positive whole number"):
        sdf.foundry.prompt("Summarize {text}", connection=conn, parallelism=1.5)
    assert "did you mean" in str(pytest.raises(ConfigurationError, sdf.foundry.classify, "text", ["a", "b"],
                                                connection=conn, temprature=0.1).value).lower()
    sdf.foundry.summarize("text", connection=conn, progress=False)  # every front-end takes progress=
    with pytest.raises(ConfigurationError, match="max_cost does not run with batch=True on Spark"):
        sdf.foundry.prompt("Summarize {text}", connection=conn, max_cost=0.5, batch=True)  # online: a share a task
    with pytest.raises(ConfigurationError, match="sample= does not run on Spark"):
        sdf.foundry.estimate("Summarize {text}", connection=conn, sample=5)
    assert requests_sent(emu) == 0
    assert spark.session.sparkContext.statusTracker().getActiveJobsIds() == []


# ====================================================================== typed results


def test_schema_extract_classify_embed_have_spark_types_and_the_pandas_values(spark, emu):
    import pandas as pd

    conn = connection(emu)
    rows = [("Anna, 34, loves the kettle", 1), ("Bob is 51 and hates it", 2), (None, 3),
            ("Anna, 34, loves the kettle", 4)]
    sdf = reviews(spark, rows)
    pdf = pd.DataFrame(rows, columns=["text", "n"])

    rated = sdf.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float}, connection=conn)
    fields = {"name": str, "age": int, "tags": list[str], "happy": bool}
    people = sdf.foundry.extract("text", fields, connection=conn)
    labels = sdf.foundry.classify("text", ["positive", "negative", "neutral"], output_col="mood", connection=conn)
    vectors = sdf.foundry.embed("text", connection=conn)
    types = lambda df: {f.name: f.dataType.simpleString() for f in df.schema.fields}  # noqa: E731
    assert types(rated) == {"text": "string", "n": "int", "label": "string", "score": "double",
                            "foundry_error": "string"}
    assert types(people) == {"text": "string", "n": "int", "name": "string", "age": "bigint",
                             "tags": "array<string>", "happy": "boolean", "foundry_error": "string"}
    assert types(labels)["mood"] == "string" and types(vectors)["vector"] == "array<float>"

    def by_n(df):
        return {r.n: r.asDict() for r in df.collect()}

    want = pdf.foundry.prompt("Rate: {text}", schema={"label": ["good", "bad"], "score": float},
                              connection=conn, progress=False)
    got = by_n(rated)
    for i, n in enumerate(pdf["n"]):
        if pd.isna(pdf["text"][i]):
            continue
        assert got[n]["label"] == want["label"][i] and got[n]["score"] == pytest.approx(float(want["score"][i]))

    want = pdf["text"].foundry.extract(fields, connection=conn, progress=False)
    got = by_n(people)
    for i, n in enumerate(pdf["n"]):
        if pd.isna(pdf["text"][i]):
            assert got[n]["name"] is None and "missing value" in got[n]["foundry_error"]
            continue
        assert got[n]["name"] == want["name"][i] and got[n]["age"] == int(want["age"][i])
        assert got[n]["tags"] == list(want["tags"][i]) and got[n]["happy"] == bool(want["happy"][i])

    want = pdf["text"].foundry.classify(["positive", "negative", "neutral"], connection=conn, progress=False)
    got = by_n(labels)
    assert [got[n]["mood"] for n in pdf["n"]] == [None if pd.isna(x) else x for x in want]

    want = pdf["text"].foundry.embed(connection=conn, progress=False)
    got = by_n(vectors)
    for i, n in enumerate(pdf["n"]):
        if want[i] is None:
            assert got[n]["vector"] is None
        else:
            assert got[n]["vector"] == pytest.approx(list(want[i]), rel=1e-6)


def test_unmatched_label_and_unparseable_field_are_row_errors(monkeypatch):
    import pyarrow as pa

    from foundry_magics import engine
    from foundry_magics.frames import spark_task
    from foundry_magics.frames.spark_task import coerce
    from foundry_magics.ops import operations as ops

    assert coerce("12", "long") == (12, None) and coerce(3.0, "long") == (3, None)
    assert coerce("twelve", "long")[0] is None and "integer" in coerce("twelve", "long")[1]
    assert coerce("yes", "boolean") == (True, None) and coerce([1, "a"], "array<long>")[0] is None
    assert coerce({"a": 1}, "json") == ('{"a": 1}', None)

    # The emulator always answers a label from the enum, so the replies are made up here.
    def fake_online(self, plan, conn, label):
        texts = ["alpha", "I would rather not say", '{"name": "Ann", "age": "old"}']
        report = engine.RunReport(rows=plan.n)
        return engine.BatchResult(texts[: plan.size], {}, report)

    batch = pa.RecordBatch.from_pydict({"text": ["a", "b", "c"]})
    conn = Connection.from_url("http://127.0.0.1:9/openai/v1", kind="emulator", auth="none", model=MODEL)
    common = dict(job="j", connection=conn.to_dict(), connection_name=None, column="text", columns=("text",))
    labels = spark_task.PartitionTask(spark_task.TaskSpec(
        label="classify", op=ops.Classify(["alpha", "beta"]), outputs=(spark_task.Output("label", "string"),),
        **common))
    fields = spark_task.PartitionTask(spark_task.TaskSpec(
        label="extract", op=ops.Extract({"name": str, "age": int}),
        outputs=(spark_task.Output("name", "string", "name"), spark_task.Output("age", "long", "age")), **common))
    monkeypatch.setattr(ops.Operation, "_online", fake_online)
    got = labels.run(batch).to_pydict()
    assert got["label"][:2] == ["alpha", None]
    assert got["foundry_error"][1].startswith("the reply is none of the labels: 'I would rather not say'")
    got = fields.run(batch).to_pydict()
    assert got["name"][2] == "Ann" and got["age"][2] is None
    assert got["foundry_error"][2] == "field 'age': expected an integer, got 'old'"
    assert got["foundry_error"][0].startswith("the reply is not a JSON object")


def test_chained_calls_keep_one_error_column(spark, emu):
    conn = connection(emu)
    sdf = reviews(spark)
    out = (sdf.foundry.summarize("text", connection=conn)
           .foundry.sentiment("summary", connection=conn))
    assert out.columns == ["text", "n", "summary", "sentiment", "foundry_error"]
    got = {r.n: r for r in out.collect()}
    assert got[1].sentiment in ("positive", "negative", "neutral") and got[1].foundry_error is None
    assert got[3].foundry_error == ("missing value in column 'text' (nothing was sent); "
                                    "sentiment: missing value in column 'summary' (nothing was sent)")


# ====================================================================== rates, retries, faults


def test_rpm_and_tpm_are_shared_out_across_the_tasks_that_run_at_once(spark, emu):
    conn = connection(emu)
    sdf = reviews(spark)
    task = shipped_task(sdf.foundry.prompt("Summarize {text}", connection=conn, rpm=600, tpm=60_000,
                                           concurrency=8))
    o = task.spec.op.options
    assert (o["rpm"], o["tpm"], o["concurrency"]) == (300, 30_000, 8)  # defaultParallelism 2
    task = shipped_task(sdf.foundry.prompt("Summarize {text}", connection=conn, rpm=600, parallelism=4))
    assert task.spec.op.options["rpm"] == 150 and task.spec.op.options.get("concurrency") is None  # the engine's 32


def test_rate_limited_service_loses_no_row(spark):
    with Emulator(rpm=600, rpm_window=2, lifetime=120) as emu:
        conn = connection(emu)
        rows = [(f"review number {i}", i) for i in range(60)]
        out = reviews(spark, rows).foundry.prompt("Summarize {text}", connection=conn, concurrency=16)
        got = out.collect()
        assert len(got) == 60 and all(r.reply and r.foundry_error is None for r in got)
        assert emu.stats()["by_status"].get("429", 0) >= 1  # it did push back, and we waited


def test_a_task_retried_by_spark_does_not_resend_finished_rows(spark, emu):
    """The first attempt finishes the partition, then the task fails downstream of us; Spark
    runs the task again (local[2,2]); the second attempt is answered by the cache."""
    conn = connection(emu)
    rows = [(f"review {i}: the lid is loose", i) for i in range(100)]
    spark.session.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "20")
    try:
        enriched = reviews(spark, rows, partitions=1).foundry.prompt("Summarize {text}", connection=conn)

        def fail_first_attempt(batches):
            from pyspark import TaskContext

            out = list(batches)
            if TaskContext.get().attemptNumber() == 0:
                raise RuntimeError("simulated executor loss after the partition finished")
            yield from out

        out = enriched.mapInPandas(fail_first_attempt, enriched.schema)
        got = out.collect()
    finally:
        spark.session.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert len(got) == 100 and all(r.reply and r.foundry_error is None for r in got)
    assert requests_sent(emu) == 100  # each distinct prompt once, over both attempts


@pytest.mark.parametrize("fault", ["wrong key", "quota block", "unknown deployment"])
def test_a_fatal_error_fails_the_job_once_with_our_message(spark, fault):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    kw, expect = {
        "wrong key": (dict(api_key="the-right-key"), fm.AuthError),
        "quota block": (dict(quota_block_seconds=86_400), fm.RateLimitError),
        "unknown deployment": (dict(deployments=(MODEL,), strict_models=True), fm.NotFoundError),
    }[fault]
    with Emulator(lifetime=120, **kw) as emu:
        conn = connection(emu, auth="key", api_key_env=KEY_VAR,
                          model="no-such-deployment" if fault == "unknown deployment" else MODEL)
        rows = [(f"review {i}", i) for i in range(200)]
        out = reviews(spark, rows).foundry.prompt("Summarize {text}", connection=conn, concurrency=4)
        shell = InteractiveShell.instance()
        shell.user_ns["out"] = out
        with capture_output() as cap:
            result = shell.run_cell("out.write.format('noop').mode('overwrite').save()")
        spark_exc = result.error_in_exec
        assert type(spark_exc).__name__ == "PythonException"
        shown = cap.stdout + cap.stderr
        assert shown.splitlines()[0].startswith(("Not authorized:", "Rate limited:", "Not found:")), shown
        assert "Fix: " in shown and "Traceback" not in shown and "py4j" not in shown, shown
        # Each task stops at its first answer (4 in flight); Spark's retry of it sends nothing.
        assert requests_sent(emu) <= 2 * 4

        ours = fm_spark.foundry_error(spark_exc)
        assert isinstance(ours, expect) and ours.hint and ours.status
        with pytest.raises(expect) as readable:
            with fm_spark.readable_errors():
                raise spark_exc
        assert str(readable.value) == str(ours) and readable.value.__suppress_context__
        for text in (shown, str(spark_exc), repr(vars(ours))):
            assert SENTINEL_KEY not in text


def test_other_spark_errors_are_drawn_as_usual(spark):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    def boom(batches):
        raise ZeroDivisionError("not ours")
        yield  # pragma: no cover

    out = reviews(spark).mapInArrow(boom, "text string, n int")
    shell = InteractiveShell.instance()
    shell.user_ns["out"] = out
    with capture_output() as cap:
        result = shell.run_cell("out.collect()")
    assert fm_spark.foundry_error(result.error_in_exec) is None
    assert "ZeroDivisionError" in cap.stdout + cap.stderr and "Traceback" in cap.stdout + cap.stderr


# ====================================================================== secrets


def test_a_key_only_in_driver_memory_is_refused_before_the_job(spark, emu):
    from foundry_magics.connections import keys

    sdf = reviews(spark)
    pasted = connection(emu, auth="key", api_key=SENTINEL_KEY, api_key_env="FOUNDRY_SPARK_NOWHERE")
    with pytest.raises(ConfigurationError) as err:
        sdf.foundry.prompt("Summarize {text}", connection=pasted)
    text = str(err.value)
    assert "only in this notebook's memory" in text and "spark.executorEnv.FOUNDRY_SPARK_NOWHERE" in text
    assert SENTINEL_KEY not in text

    # pasted into the picker and made current (Use): the current connection is refused the same way
    keys.remember("pasted-one", SENTINEL_KEY)
    fm.connect(connection(emu, auth="key", name="pasted-one", api_key=keys.lookup("pasted-one"),
                          api_key_env="AZURE_OPENAI_API_KEY"))
    with pytest.raises(ConfigurationError, match="memory") as err:
        fm_spark.prompt(sdf, "Summarize {text}")
    assert "spark.executorEnv.AZURE_OPENAI_API_KEY" in str(err.value)

    no_var = Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="key", api_key=SENTINEL_KEY)
    with pytest.raises(ConfigurationError, match="environment variable"):
        sdf.foundry.prompt("Summarize {text}", connection=no_var)

    # local master: a variable set in this process after the JVM started never reaches the workers
    os.environ["FOUNDRY_SPARK_LATE_KEY"] = "late-key"
    try:
        late = connection(emu, auth="key", api_key_env="FOUNDRY_SPARK_LATE_KEY")
        with pytest.raises(ConfigurationError, match="after the Spark session started"):
            sdf.foundry.prompt("Summarize {text}", connection=late)
    finally:
        del os.environ["FOUNDRY_SPARK_LATE_KEY"]
    assert requests_sent(emu) == 0


def test_spark_executor_env_delivers_the_key(spark):
    with Emulator(api_key=CONF_KEY, lifetime=120) as emu:
        conn = connection(emu, auth="key", api_key_env=CONF_VAR)
        got = reviews(spark).foundry.prompt("Summarize {text}", connection=conn).collect()
        assert sum(1 for r in got if r.reply) == 4


def _traces(secret: str) -> list[str]:
    middle = secret[len(secret) // 3: 2 * len(secret) // 3]
    return [secret, base64.b64encode(secret.encode()).decode(), middle]


def _assert_clean(name: str, blob: bytes | str) -> None:
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    for trace in _traces(SENTINEL_KEY):
        assert trace.encode() not in data, f"{name} holds a trace of the key ({trace!r})"


def test_the_env_key_works_and_leaves_no_trace_in_closure_plan_ui_or_logs(spark, capsys, caplog, fm_home):
    import logging

    from pyspark import cloudpickle

    with Emulator(api_key=SENTINEL_KEY, lifetime=120) as emu:  # accepts the sentinel key only
        conn = connection(emu, auth="key", api_key_env=KEY_VAR)
        assert KEY_VAR not in os.environ  # the driver does not have it: only the executors do
        out = reviews(spark).foundry.prompt("Summarize {text}", output_col="summary", connection=conn)
        sc = spark.session.sparkContext
        caplog.set_level(logging.DEBUG, logger="foundry_magics")
        sc.setLogLevel("INFO")
        try:
            got = out.collect()
            out.explain(extended=True)
        finally:
            sc.setLogLevel("WARN")
        assert sum(1 for r in got if r.summary and r.foundry_error is None) == 4  # the key reached the service

        task = shipped_task(out)
        _assert_clean("the pickled task (cloudpickle.dumps)", cloudpickle.dumps(task))
        _assert_clean("the serialized command in the plan", _command_bytes(out))
        func = _node(out).functionExpr().func()
        _assert_clean("the task's environment variables", str(func.envVars()))
        assert "api_key" not in task.spec.connection and task.spec.connection["api_key_env"] == KEY_VAR
        _assert_clean("explain()", capsys.readouterr().out)
        _assert_clean("the plan", out._jdf.queryExecution().toString())
        driver_log = spark.log.read_bytes()
        assert b" INFO " in driver_log and b"Finished task" in driver_log  # the log was really captured
        _assert_clean("the driver log", driver_log)
        _assert_clean("foundry_magics' log", caplog.text)
        base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
        for page in ("environment", "jobs", "stages", "sql", "executors"):
            with urllib.request.urlopen(f"{base}/{page}", timeout=30) as r:
                _assert_clean(f"the Spark UI ({page})", r.read())
        with urllib.request.urlopen(f"{base}/environment", timeout=30) as r:
            env = json.loads(r.read())
        shown = dict(env["sparkProperties"])
        assert shown[f"spark.executorEnv.{CONF_VAR}"] != CONF_KEY  # redacted, as the README says to do
        for path in fm_home.rglob("*"):
            if path.is_file():
                _assert_clean(str(path), path.read_bytes())


def test_unredacted_executor_env_key_is_warned_about(caplog, monkeypatch):
    from foundry_magics.frames import spark_job
    from foundry_magics.frames.spark_job import Cluster, _check_key

    monkeypatch.setattr(spark_job, "_WARNED", set())  # not yet warned in this process
    conn = Connection.from_url("https://r.openai.azure.com/openai/v1", api_key_env="AZURE_OPENAI_API_KEY")
    cluster = Cluster(local=False, parallelism=8, executor_env={"AZURE_OPENAI_API_KEY"})
    cluster.redaction = REDACTION
    _check_key(conn, cluster)
    assert "redaction" not in caplog.text
    cluster.redaction = None
    _check_key(conn, cluster)
    assert "spark.redaction.regex" in caplog.text


def test_the_executor_env_warning_is_said_once_per_process_not_per_call(caplog, monkeypatch):
    """Each Spark call checks the key; six calls in one run once printed the warning six times."""
    from foundry_magics.frames import spark_job
    from foundry_magics.frames.spark_job import Cluster, _check_key

    monkeypatch.setattr(spark_job, "_WARNED", set())
    conn = Connection.from_url("https://r.openai.azure.com/openai/v1", api_key_env="AZURE_OPENAI_API_KEY")
    cluster = Cluster(local=False, parallelism=8, executor_env={"AZURE_OPENAI_API_KEY", "OTHER_KEY"})
    for _ in range(6):
        _check_key(conn, cluster)
    assert caplog.text.count("spark.executorEnv.AZURE_OPENAI_API_KEY is shown in clear") == 1
    _check_key(conn.replace(api_key_env="OTHER_KEY"), cluster)  # another variable is another warning
    assert caplog.text.count("is shown in clear") == 2


def test_a_key_variable_missing_on_an_executor_is_one_readable_error(fm_home):
    """On a cluster the driver cannot always tell; then the executor says it, in Spark's terms."""
    import pyarrow as pa

    from foundry_magics.errors import MissingKeyError
    from foundry_magics.frames.spark_task import Output, PartitionTask, TaskSpec
    from foundry_magics.ops.operations import Prompt

    conn = Connection.from_url("https://r.openai.azure.com/openai/v1", model=MODEL, api_key_env="FOUNDRY_SPARK_NOWHERE")
    task = PartitionTask(TaskSpec(job="j", label="prompt", connection=conn.to_dict(), connection_name=None,
                                  op=Prompt("Summarize {text}"), column=None, columns=("text",),
                                  outputs=(Output("reply", "string"),)))
    with pytest.raises(MissingKeyError) as err:
        task.run(pa.RecordBatch.from_pydict({"text": ["a"]}))
    assert "on the Spark executor" in str(err.value) and "spark.executorEnv.FOUNDRY_SPARK_NOWHERE" in str(err.value)


def test_a_task_of_a_stage_that_met_a_fatal_error_fails_at_once(monkeypatch):
    """PySpark ends a worker that raised, so the note is a file: a retry (new worker) reads it."""
    import pyarrow as pa

    from foundry_magics.errors import AuthError
    from foundry_magics.frames import spark_task
    from foundry_magics.ops.operations import Prompt

    spec = spark_task.TaskSpec(job=os.urandom(8).hex(), label="prompt", connection={"endpoint": "http://127.0.0.1:9"},
                               connection_name=None, op=Prompt("{text}"), column=None, columns=("text",),
                               outputs=(spark_task.Output("reply", "string"),))
    task = spark_task.PartitionTask(spec)
    monkeypatch.setattr(spark_task.PartitionTask, "_send", lambda *a: pytest.fail("sent a request"))
    spark_task._remember(spec.job, 7, AuthError("Access denied.", status=401, hint="Check the key."))
    try:
        with pytest.raises(AuthError) as err:
            task.run(pa.RecordBatch.from_pydict({"text": ["a"]}), stage=7)
        assert str(err.value) == "HTTP 401: Access denied.\nCheck the key."
    finally:
        spark_task._memo_path(spec.job, 7).unlink()


def test_a_loopback_endpoint_is_refused_on_a_cluster():
    from foundry_magics.frames.spark_job import Cluster, _check_reachable

    conn = Connection.from_url("http://127.0.0.1:9/openai/v1", kind="emulator", auth="none", model=MODEL)
    with pytest.raises(ConfigurationError, match="loopback"):
        _check_reachable(conn, Cluster(local=False, parallelism=8))
    _check_reachable(conn, Cluster(local=True, parallelism=2))


def test_field_kinds():
    from foundry_magics.frames.spark_job import field_kind
    from foundry_magics.rest.schemas import to_json_schema

    props = to_json_schema({"a": str, "b": int, "c": float, "d": bool, "e": ["x", "y"], "f": list[str],
                            "g": {"h": int}, "i": list[int]})["properties"]
    assert {k: field_kind(v) for k, v in props.items()} == {
        "a": "string", "b": "long", "c": "double", "d": "boolean", "e": "string", "f": "array<string>",
        "g": "json", "i": "array<long>"}
    assert field_kind({"type": ["integer", "null"]}) == "long"


# ====================================================================== estimate


def _same_estimate(ours, theirs):
    keys = ("rows", "na_rows", "distinct", "cached", "to_send", "input_tokens", "output_cap", "output_cap_min",
            "max_output_tokens", "images", "model", "operation", "batch", "input_cost", "max_cost")
    assert {k: getattr(ours, k) for k in keys} == {k: getattr(theirs, k) for k in keys}


def test_estimate_is_the_pandas_estimate_counted_by_spark_and_sends_nothing(spark, emu):
    import pandas as pd

    conn = connection(emu)
    rows = [(f"review {i % 7}: the lid is loose", i) for i in range(40)] + [(None, 99)]
    sdf = reviews(spark, rows, partitions=3)  # duplicates across partitions count once
    pdf = pd.DataFrame(rows, columns=["text", "n"])
    est = sdf.foundry.estimate("Summarize: {text}", connection=conn, max_tokens=50)
    assert isinstance(est, fm.Estimate) and requests_sent(emu) == 0
    assert (est.rows, est.na_rows, est.distinct, est.cached, est.to_send) == (41, 1, 7, 0, 7)
    _same_estimate(est, pdf.foundry.estimate("Summarize: {text}", connection=conn, max_tokens=50))
    assert "counted by Spark" in " ".join(est.notes)

    sdf.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=50).limit(1).collect()  # caches a few
    sdf.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=50).collect()
    sent = requests_sent(emu)
    again = sdf.foundry.prompt("Summarize: {text}", connection=conn, max_tokens=50, estimate=True)
    assert (again.cached, again.to_send) == (7, 0) and requests_sent(emu) == sent

    # every operation takes estimate=True: default caps, labels, the Batch API price, embeddings
    for spark_est, pandas_est in [
        (sdf.foundry.summarize("text", connection=conn, estimate=True),
         pdf["text"].foundry.summarize(connection=conn, estimate=True)),
        (sdf.foundry.classify("text", ["good", "bad"], connection=conn, estimate=True, batch=True),
         pdf["text"].foundry.classify(["good", "bad"], connection=conn, estimate=True, batch=True)),
        (sdf.foundry.embed("text", connection=conn, estimate=True),
         pdf["text"].foundry.embed(connection=conn, estimate=True)),
    ]:
        _same_estimate(spark_est, pandas_est)
    assert requests_sent(emu) == sent
    with pytest.raises(ConfigurationError, match="temperature"):
        sdf.foundry.estimate("Summarize: {text}", connection=conn, temperature="hot")


# ====================================================================== usage


def test_spark_runs_count_in_fm_usage_once_the_action_ran(spark, emu):
    from foundry_magics.store.usage import session_usage

    conn = connection(emu)
    session_usage().reset()
    rows = [(f"usage row {i}", i) for i in range(30)]
    out = reviews(spark, rows, partitions=3).foundry.prompt("Summarize: {text}", connection=conn)
    assert fm.usage()["requests"].sum() == 0  # lazy: nothing ran yet
    out.collect()
    u = fm.usage()
    assert u["requests"].sum() == requests_sent(emu) == 30
    assert u["rows"].sum() == 30 and u["input_tokens"].sum() > 0 and u["output_tokens"].sum() > 0
    assert list(u["model"]) == [MODEL] and u["runs"].sum() == 1
    assert fm.usage()["requests"].sum() == 30  # read twice: counted once
    out.collect()  # the same job again: answered by the cache, counted as such
    u = fm.usage()
    assert u["requests"].sum() == 30 and u["cache_hits"].sum() == 30 and u["rows"].sum() == 60


# ====================================================================== Structured Streaming


def test_streaming_enrichment_to_parquet_restarts_from_its_checkpoint_sending_only_new_rows(spark, emu, tmp_path):
    conn = connection(emu)
    source, sink, checkpoint = tmp_path / "in", tmp_path / "out", tmp_path / "checkpoint"
    source.mkdir()

    def write_files(start, count, per_file):
        for f in range(start, start + count):
            lines = [json.dumps({"id": f * 100 + i, "text": f"stream review {f}-{i}"}) for i in range(per_file)]
            (source / f"part-{f:03}.json").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def run_once():
        stream = (spark.session.readStream.schema("id long, text string").option("maxFilesPerTrigger", 3)
                  .json(str(source)))
        enriched = stream.foundry.prompt("Summarize: {text}", output_col="summary", connection=conn)
        query = (enriched.writeStream.format("parquet").option("path", str(sink))
                 .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
        assert query.awaitTermination(180), "the streaming query did not finish"
        assert query.exception() is None

    write_files(0, 5, 4)
    run_once()
    got = spark.session.read.parquet(str(sink)).collect()
    assert len(got) == 20 and requests_sent(emu) == 20
    expected = dict(zip([r.id for r in got], ask(conn, [f"Summarize: {r.text}" for r in got])))
    assert all(r.summary == expected[r.id] and r.foundry_error is None for r in got)
    assert requests_sent(emu) == 40  # ask() sent 20 more (the emulator answers deterministically)

    write_files(5, 10, 1)  # ten new files, one new row each; then a restart from the checkpoint
    run_once()
    got = spark.session.read.parquet(str(sink)).collect()
    assert len(got) == 30 and len({r.id for r in got}) == 30
    assert requests_sent(emu) == 40 + 10  # only the new rows were sent
    new = [r for r in got if r.id >= 500]
    assert all(r.summary and r.foundry_error is None for r in new)
    assert [r.summary for r in new] == ask(conn, [f"Summarize: {r.text}" for r in new])


# ====================================================================== similarity (semantic operators)


def test_similarity_is_lazy_a_double_per_row_and_matches_pandas(spark, emu):
    import math

    import pandas as pd

    conn = connection(emu)
    rows = [("the zipper broke on my bag", "bag zipper", 1), ("delivery was late", "late delivery", 2),
            (None, "x", 3), ("great kettle", "garden hose", 4)]
    sdf = spark.session.createDataFrame(rows, "text string, title string, n int").repartition(2)
    out = sdf.foundry.similarity("text", "title", connection=conn)
    one = sdf.foundry.similarity("text", "delivery was late", output_col="late", connection=conn)
    assert requests_sent(emu) == 0  # transformations: nothing sent yet
    assert [(f.name, f.dataType.simpleString()) for f in out.schema.fields] == [
        ("text", "string"), ("title", "string"), ("n", "int"), ("similarity", "double"), ("foundry_error", "string")]
    got = {r.n: r for r in out.collect()}
    pdf = pd.DataFrame(rows, columns=["text", "title", "n"])
    want = pdf.foundry.similarity("text", "title", connection=conn, progress=False)
    for i, n in enumerate(pdf["n"]):
        if math.isnan(want[i]):
            assert got[n].similarity is None and "missing value in column 'text'" in got[n].foundry_error
        else:
            assert got[n].similarity == pytest.approx(want[i], abs=1e-6) and got[n].foundry_error is None
    assert got[1].similarity > 0.5 and abs(got[4].similarity) < 0.5
    late = {r.n: r.late for r in one.collect()}
    assert late[2] == pytest.approx(1.0, abs=1e-6) and late[3] is None
    assert all(route.endswith("embeddings") for route in emu.stats()["by_route"])  # no chat request
