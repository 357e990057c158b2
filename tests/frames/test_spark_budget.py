"""`max_cost` on Spark (local[2], the emulator on 127.0.0.1): each task spends at most its share
(`max_cost / partitions`), so the job's total never passes the amount; the rows a task could not
afford carry the reason in foundry_error; the same call with a larger budget sends only the rest."""

from __future__ import annotations

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed: pip install 'foundry-magics[spark]'")
pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'foundry-magics[spark]'")

from test_spark import spark  # noqa: E402,F401 - the Spark session fixture, shared with the other Spark tests

from foundry_magics.connections import Connection  # noqa: E402
from foundry_magics.emulator import Emulator  # noqa: E402
from foundry_magics.errors import ConfigurationError  # noqa: E402
from foundry_magics.frames import spark as fm_spark  # noqa: E402,F401  (registers sdf.foundry)
from foundry_magics.store.prices import set_prices  # noqa: E402

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

PRICE = (0.0, 1_000_000.0)  # input free, output 1 per token: a request's bound is its output cap


@pytest.fixture
def emu():
    e = Emulator(lifetime=300)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(emu):
    set_prices(None)
    yield Connection.from_url(emu.url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
    set_prices(None)


def test_each_task_spends_its_share_the_job_never_passes_max_cost_and_a_rerun_sends_only_the_rest(spark, emu,
                                                                                                  conn):
    set_prices({"gpt-4o-mini": PRICE})
    rows = [(f"spark budget review {i}: the kettle was fine",) for i in range(200)]
    sdf = spark.session.createDataFrame(rows, "text string").repartition(2)
    assert sdf.rdd.getNumPartitions() == 2
    # a cap of 16 output tokens: each task's share (160) buys at least 10 of its ~100 rows
    out = sdf.foundry.prompt("Summarize {text}", connection=conn, max_tokens=16, max_cost=320, concurrency=1,
                             progress=False).collect()
    stats = emu.stats()
    first = stats["requests"]
    assert stats["tokens"]["completion"] <= 320  # what the job cost, at 1 per output token
    done = [r for r in out if r["reply"] is not None]
    stopped = [r for r in out if r["reply"] is None]
    assert 20 <= len(done) == first < 200
    assert all(r["foundry_error"].startswith("not sent: max_cost=160 reached") for r in stopped), \
        stopped[0]["foundry_error"]

    again = sdf.foundry.prompt("Summarize {text}", connection=conn, max_tokens=16, max_cost=100_000,
                               progress=False).collect()
    assert emu.stats()["requests"] - first == 200 - first  # the replies paid for came from the cache
    assert all(r["reply"] is not None for r in again)


def test_without_a_price_or_with_batch_nothing_is_sent(spark, emu, conn):
    sdf = spark.session.createDataFrame([("a",), ("b",)], "text string")
    with pytest.raises(ConfigurationError, match="needs the price of 'gpt-4o-mini'"):
        sdf.foundry.prompt("Summarize {text}", connection=conn, max_cost=1.0)
    set_prices({"gpt-4o-mini": PRICE})
    with pytest.raises(ConfigurationError, match="max_cost does not run with batch=True on Spark"):
        sdf.foundry.prompt("Summarize {text}", connection=conn, max_cost=1.0, batch=True)
    assert emu.stats()["requests"] == 0
