"""`pack=N` on Spark (local[2], the emulator on 127.0.0.1): each task packs its partition's
distinct rows through the same core as pandas: the same answers as one row per request, in far
fewer requests; `pack=` with `batch=True` is refused before anything is sent."""

from __future__ import annotations

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed: pip install 'foundry-magics[spark]'")
pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'foundry-magics[spark]'")

from test_spark import connection, emu, spark  # noqa: E402,F401 - fixtures (one Spark session per module)

from foundry_magics.errors import ConfigurationError  # noqa: E402

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

LABELS = ["shipping", "quality", "price"]


def test_packed_spark_rows_get_the_answers_they_get_alone_in_fewer_requests(spark, emu):
    conn = connection(emu)
    words = ["late parcel", "broken lid", "too expensive", "arrived damaged", "great value", "slow courier"]
    rows = [(i, f"review {i}: {words[i % len(words)]} number {i}") for i in range(120)]
    sdf = spark.session.createDataFrame(rows, "id long, text string").repartition(2)

    packed = {r["id"]: r["label"] for r in
              sdf.foundry.classify("text", LABELS, pack=10, connection=conn, progress=False).collect()}
    sent_packed = emu.stats()["requests"]
    alone = {r["id"]: r["label"] for r in
             sdf.foundry.classify("text", LABELS, connection=conn, cache=False, progress=False).collect()}
    sent_alone = emu.stats()["requests"] - sent_packed

    assert packed == alone and all(v in LABELS for v in packed.values())  # no row got another row's answer
    assert sent_alone == 120
    assert sent_packed <= 120 // 10 + 2  # each task packs its ~60 rows ten at a time


def test_pack_with_batch_is_refused_on_spark_before_anything_is_sent(spark, emu):
    sdf = spark.session.createDataFrame([(1, "a")], "id long, text string")
    with pytest.raises(ConfigurationError):
        sdf.foundry.classify("text", LABELS, pack=10, batch=True, connection=connection(emu), progress=False)
    assert emu.stats()["requests"] == 0
