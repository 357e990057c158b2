"""Plans over Arrow arrays: codes, dedup in order of first appearance, NA, mixed and nested
cells, images checked once per distinct image, results spread back onto rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import Prompt, Rows
from foundry_magics.ops.operations import VALUE
from foundry_magics.ops.plan import Plan
from foundry_magics.ops.template import parse_template


def plan_of(template: str, **columns) -> Plan:
    n = len(next(iter(columns.values())))
    return Prompt(template).plan(Rows(names=list(columns), n=n, column=lambda k: columns[k]))


def test_identical_rows_share_a_request_in_order_of_first_appearance():
    p = plan_of("{a}-{b}", a=["x", "y", "x", "z", "y"], b=[1, 2, 1, 3, 2])
    assert p.size == 3 and p.codes.tolist() == [0, 1, 0, 2, 1]
    assert p.render(range(3)) == ["x-1", "y-2", "z-3"]
    assert p.weights.tolist() == [2, 2, 1]
    assert not p.identity


def test_missing_values_send_nothing_nan_included():
    p = plan_of("{a} / {b}", a=["x", None, "y", "w"], b=pa.array([1.0, 2.0, float("nan"), None]))
    assert p.codes.tolist() == [0, -1, -1, -1] and p.na_rows == 3
    assert p.render([0]) == ["x / 1.0"]  # str() of the value, as the column holds it


def test_mixed_and_nested_cells_render_as_str():
    p = plan_of("{v}", v=[1, "one", 1, {"k": 1}, [1, 2], [1, 2]])
    assert p.size == 4
    assert p.render(range(4)) == ["1", "one", "{'k': 1}", "[1, 2]"]


def test_spread_back_onto_rows():
    p = plan_of("{a}", a=["x", None, "x", "y"])
    assert p.spread(["X", "Y"]).tolist() == ["X", None, "X", "Y"]
    assert p.spread_arrow(["X", "Y"], pa.string()).to_pylist() == ["X", None, "X", "Y"]
    q = plan_of("{a}", a=["x", "y"])
    assert q.identity and q.spread_arrow(pa.array(["X", "Y"])).to_pylist() == ["X", "Y"]


def test_failures_are_by_row_position_with_skipped_rows(tmp_path):
    good = tmp_path / "ok.png"
    good.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rows = Rows(names=["q"], n=4, column=lambda k: ["a", "b", "c", "a"],
                images=[str(good), None, str(tmp_path / "gone.png"), str(good)])
    p = Prompt("{q}").plan(rows)
    assert p.codes.tolist()[1:3] == [-1, -1] and p.size == 1
    fails = dict(p.failures({0: "boom"}))
    assert set(fails) == {0, 1, 2, 3} and fails[0] == "boom" == fails[3]
    assert "no image" in fails[1] and "gone.png" in fails[2]


def test_series_form_and_template_names():
    op = Prompt("{}!")
    p = op.plan(Rows(names=["t"], n=2, column=lambda k: ["a", "b"], series=True, series_name="t"))
    assert p.render(range(2)) == ["a!", "b!"] and p.series_col == VALUE
    assert parse_template("{t} and {}").positional


def test_a_million_distinct_rows_plan_without_python_objects_per_row():
    n = 1_000_000
    col = pa.array(np.char.add("row ", np.arange(n).astype(str)).astype(object))
    p = plan_of("{a}", a=col)
    assert p.size == n and p.identity and p.codes.dtype == np.int64
    with pytest.raises(ConfigurationError):
        plan_of("{nope}", a=col)
