"""What a job's parts say, put together: one status, request counts, how often to poll."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

from foundry_magics.defaults import BATCH_EMULATOR_POLL_INTERVAL, BATCH_FILE_POLL, BATCH_POLL_INTERVAL
from foundry_magics.errors import ConfigurationError

__all__ = ["BatchCounts", "aggregate", "settle", "default_interval", "file_poll", "check_interval", "STOPPED"]

# A part whose submission stopped (Ctrl-C) between its upload and its batch: kept, picked up later.
STOPPED = "interrupted"
_ACTIVE_ORDER = ("submitting", STOPPED, "validating", "in_progress", "finalizing", "cancelling")
_END_ORDER = ("failed", "expired", "cancelled", "completed")  # a mixed job shows the worst


class BatchCounts(NamedTuple):
    """Requests of a job: how many, finished, failed (as the service counts them)."""

    total: int = 0
    completed: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.completed:,}/{self.total:,} done" + (f", {self.failed:,} failed" if self.failed else "")


def aggregate(statuses: Sequence[str]) -> str:
    """One status for a job of several parts: the least advanced active one, else the worst end."""
    live = [s for s in statuses if s != "abandoned"]
    if not live:
        return "failed" if statuses else "completed"
    for s in _ACTIVE_ORDER:
        if s in live:
            return s
    for s in _END_ORDER:
        if s in live:
            return s
    return live[0]


def settle(store: Any, job_id: str) -> None:
    """Record the job's status as its parts now say."""
    store.update_job(job_id, status=aggregate([p["status"] for p in store.parts(job_id)]))


def default_interval(client: Any) -> float:
    """60 s (as Azure asks), or the emulator's fast clock (its replies say they are emulated)."""
    return BATCH_EMULATOR_POLL_INTERVAL if getattr(client, "emulated", False) else BATCH_POLL_INTERVAL


def file_poll(client: Any, poll_interval: float | None = None) -> float:
    """Seconds between status checks of an uploaded input file."""
    return min(BATCH_FILE_POLL, poll_interval if poll_interval is not None else default_interval(client))


def check_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"poll_interval must be a positive number of seconds, got {value!r}.",
                                 hint=f"Pass poll_interval={BATCH_POLL_INTERVAL:g} (Azure asks for no more often "
                                      "than every 60 s), or leave it out.")
    return float(value)
