"""Spark `sdf.foundry.mask` / `filter`: lazy, the emulator's judgement rule, failures kept in
foundry_error (mask) and left out (filter), the same option errors, estimate=True."""

from __future__ import annotations

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed: pip install 'foundry-magics[spark]'")
pytest.importorskip("pyarrow", reason="pyarrow is not installed: pip install 'foundry-magics[spark]'")

from test_spark import connection, emu, requests_sent, spark  # noqa: E402,F401 - fixtures

from foundry_magics.engine.estimate import Estimate  # noqa: E402
from foundry_magics.errors import ConfigurationError  # noqa: E402

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")]

ROWS = [
    ("I want a refund, it broke", 1),
    ("Lovely kettle", 2),
    (None, 3),
    ("Refunds are slow but I got mine", 4),
    ("I want a refund, it broke", 5),
    ("#emulator:status=400 a refund please", 6),
]
PRED = "The customer asks for a 'refund': {text}"


def frame(spark):
    return spark.session.createDataFrame(ROWS, "text string, n int").repartition(2)


def test_mask_is_lazy_boolean_with_failures_in_foundry_error(spark, emu):
    conn = connection(emu)
    out = frame(spark).foundry.mask(PRED, connection=conn)
    assert requests_sent(emu) == 0  # lazy: nothing sent until an action
    assert out.columns == ["text", "n", "mask", "foundry_error"]
    assert dict(out.dtypes)["mask"] == "boolean"
    rows = {r["n"]: r for r in out.collect()}
    assert rows[1]["mask"] is True and rows[5]["mask"] is True and rows[4]["mask"] is True
    assert rows[2]["mask"] is False and rows[2]["foundry_error"] is None
    assert rows[3]["mask"] is None and "missing value" in rows[3]["foundry_error"]
    assert rows[6]["mask"] is None and rows[6]["foundry_error"]


def test_filter_keeps_rows_judged_true_and_leaves_failures_out(spark, emu):
    conn = connection(emu)
    kept = frame(spark).foundry.filter(PRED, connection=conn)
    assert kept.columns == ["text", "n", "foundry_error"]
    got = sorted(r["n"] for r in kept.collect())
    assert got == [1, 4, 5]  # 3 (missing) and 6 (failed) are left out, 2 is judged false


def test_bad_option_and_estimate(spark, emu):
    conn = connection(emu)
    with pytest.raises(ConfigurationError, match="concurency"):
        frame(spark).foundry.filter(PRED, connection=conn, concurency=4)
    est = frame(spark).foundry.mask(PRED, connection=conn, estimate=True)
    assert isinstance(est, Estimate) and est.distinct == 4
    assert requests_sent(emu) == 0
