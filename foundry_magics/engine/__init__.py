"""Executes plans online: the concurrent runner behind every DataFrame operation - dedup,
cache, pacing (rate budgets and an adaptive limit), retries (the policy of `rest.retry`), its
own loop thread, and the run report.

    from foundry_magics.engine import Requests, RequestSpec, run_requests, last_run

(`Batch`, `run_batch` and `BatchResult` are the old names of `Requests`, `run_requests` and
`RunResult`: "batch" now means the Azure Batch API only, in `batch_api/`.)
"""

from __future__ import annotations

from foundry_magics.engine.prompts import Batch, Requests, RequestSpec
from foundry_magics.engine.report import BatchResult, RunReport, RunResult, Snapshot, last_run
from foundry_magics.engine.runner import embed_texts, run_batch, run_requests

__all__ = ["Requests", "RequestSpec", "run_requests", "embed_texts", "RunResult", "RunReport", "Snapshot",
           "last_run", "Batch", "run_batch", "BatchResult"]
