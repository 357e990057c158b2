"""The concurrent runner behind DataFrame operations: dedup, cache, pacing (rate budgets and
an adaptive limit), retries, its own loop thread, and the run report.

    from foundry_magics.engine import Batch, RequestSpec, run_batch, last_run
"""

from __future__ import annotations

from foundry_magics.engine.report import BatchResult, RunReport, Snapshot, last_run
from foundry_magics.engine.runner import Batch, RequestSpec, embed_texts, run_batch, set_progress_factory

__all__ = ["Batch", "RequestSpec", "run_batch", "embed_texts", "BatchResult", "RunReport", "Snapshot", "last_run",
           "set_progress_factory"]
