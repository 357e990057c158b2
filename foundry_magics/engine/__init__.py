"""The concurrent runner behind DataFrame operations: dedup, cache, pacing (rate budgets and
an adaptive limit), retries (the policy of `rest.retry`), its own loop thread, and the run report.

    from foundry_magics.engine import Batch, RequestSpec, run_batch, last_run
"""

from __future__ import annotations

from foundry_magics.engine.prompts import Batch, RequestSpec
from foundry_magics.engine.report import BatchResult, RunReport, Snapshot, last_run
from foundry_magics.engine.runner import embed_texts, run_batch

__all__ = ["Batch", "RequestSpec", "run_batch", "embed_texts", "BatchResult", "RunReport", "Snapshot", "last_run"]
