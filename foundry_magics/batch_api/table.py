"""The jobs table as users see it: `fm.batch_jobs()` and `%foundry batches` (the rows are in store/batches.py)."""

from __future__ import annotations

from typing import Any

from foundry_magics.batch_api.state import aggregate

__all__ = ["JOB_COLUMNS", "job_rows", "row"]

JOB_COLUMNS = ("id", "status", "created", "rows", "requests", "completed", "failed", "connection", "model", "op",
               "batches", "collected")


def job_rows(limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded jobs, newest first: id, status, created, rows, requests, connection, model, op, batches."""
    from foundry_magics.store.batches import JobStore

    with JobStore() as store:
        return [row(job, store.parts(job["id"])) for job in store.jobs(limit)]


def row(job: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One job and its parts as one row of JOB_COLUMNS."""
    import datetime as dt

    live = [p for p in parts if p["status"] != "abandoned"]
    created = job.get("created")
    return {
        "id": job.get("id"),
        "status": aggregate([p["status"] for p in parts]) if parts else job.get("status"),
        "created": dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M:%S") if created else None,
        "rows": job.get("rows"),
        "requests": sum(p["lines"] for p in live),
        "completed": sum(p["completed"] for p in live),
        "failed": sum(p["failed"] for p in live),
        "connection": job.get("connection"),
        "model": job.get("model"),
        "op": job.get("op"),
        "batches": ", ".join(p["batch_id"] for p in parts if p.get("batch_id")),
        "collected": bool(job.get("collected")),
    }
