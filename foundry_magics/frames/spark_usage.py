"""Spark runs in `fm.usage()`: the tasks report their usage back to the driver.

Each Spark transformation built by `frames.spark_job` carries a Spark accumulator (a dict
(connection, model) -> counts, merged by `UsageParam`). Every Arrow batch a task runs adds
its run report to it (`report_usage`, on the executor); Spark sends a task's additions to
the driver when the task ends, on a cluster as on a local master.

Spark is lazy: the requests are sent when the user's action runs (`collect`, `write`, a
streaming micro-batch), not when `sdf.foundry.prompt(...)` returns. So the driver does not
record anything when the transformation is built; it registers the accumulator as a source
of the session's usage (`store.usage.SessionUsage.add_source`), and whenever the usage is read
(`fm.usage()`, `%foundry usage`) what each accumulator gained since the last read is added,
as one run per (transformation, connection, model) per read that found new work.

Accumulator semantics (Spark's): additions from a task that failed are dropped, and a stage
that Spark recomputes counts again, which is right here: its requests were sent again (or
answered by the cache, which `cache_hits` shows). Spark Connect sessions have no
SparkContext and so no accumulators: their runs are not counted (documented limitation).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["UsageParam", "accumulator", "report_usage", "FIELDS"]

# What a task adds per (connection, model), in this order.
FIELDS = ("rows", "requests", "cache_hits", "failed", "interrupted", "input_tokens", "output_tokens", "seconds")


try:  # pyspark is there whenever a Spark DataFrame is; this module is imported only then
    from pyspark.accumulators import AccumulatorParam as _Base
except ImportError:  # pragma: no cover
    _Base = object  # type: ignore[assignment,misc]


class UsageParam(_Base):
    """Adds dicts (connection, model) -> list of FIELDS counts."""

    def zero(self, value: Any) -> dict:
        return {}

    def addInPlace(self, a: dict, b: dict) -> dict:  # noqa: N802 - Spark's name
        for key, counts in b.items():
            have = a.get(key)
            a[key] = list(counts) if have is None else [x + y for x, y in zip(have, counts)]
        return a


def report_usage(acc: Any, report: Any) -> None:
    """On the executor: add one run report to the job's accumulator (None: nothing to do)."""
    if acc is None or report is None:
        return
    key = (str(getattr(report, "connection", None) or "?"), str(getattr(report, "model", None) or "?"))
    counts = [int(getattr(report, f, 0) or 0) if f != "seconds" else float(report.seconds or 0.0) for f in FIELDS]
    counts[FIELDS.index("interrupted")] = 1 if getattr(report, "interrupted", False) else 0
    try:
        acc.add({key: counts})
    except Exception:  # noqa: BLE001 - counting must never break a task
        pass


@dataclass
class _Tracked:
    acc: Any
    folded: dict


_lock = threading.Lock()
_tracked: list[_Tracked] = []
_registered = False


def accumulator(session: Any) -> Any:
    """A new usage accumulator for one transformation, tracked by the driver; None on Spark Connect."""
    global _registered
    try:
        sc = session.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect: no SparkContext, no accumulators
        return None
    acc = sc.accumulator({}, UsageParam())
    with _lock:
        _tracked.append(_Tracked(acc, {}))
        if not _registered:
            from foundry_magics.store.usage import session_usage

            session_usage().add_source(fold)
            _registered = True
    return acc


@dataclass
class _Report:
    """What `SessionUsage.add_run` reads of a run report."""

    connection: str
    model: str
    rows: int = 0
    requests: int = 0
    cache_hits: int = 0
    failed: int = 0
    interrupted: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


def fold(usage: Any) -> None:
    """On the driver: add to `usage` what every tracked accumulator gained since the last fold."""
    with _lock:
        for t in _tracked:
            try:
                value = dict(t.acc.value)
            except Exception:  # noqa: BLE001 - a stopped SparkContext
                continue
            for key, counts in value.items():
                before = t.folded.get(key) or [0] * len(FIELDS)
                delta = [x - y for x, y in zip(counts, before)]
                if not any(delta):
                    continue
                t.folded[key] = list(counts)
                d = dict(zip(FIELDS, delta))
                d["interrupted"] = bool(d["interrupted"])
                usage.add_run(_Report(connection=key[0], model=key[1], **d))
