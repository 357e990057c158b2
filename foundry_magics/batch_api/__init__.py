"""The Azure Batch API: DataFrame calls at half the price, within 24 hours, resumable across restarts.

    job = submit(batch, spec, connection=conn)    # what `df.foundry.prompt(..., batch=True, wait=False)` calls
    job.id, job.status, job.counts; job.wait(); job.result(); job.cancel()
    BatchJob.attach("fmb-..."), job_rows()        # after a restart, from the jobs table

    inputs     a call's distinct requests, keyed as online, written to JSONL input files
    submit     one call: scan (cache, re-attach, dedup), hand each full file to `parts`
    parts      one file's upload, wait and batch creation; stopped submissions picked up
    jobs       BatchJob: status, counts, wait (Ctrl-C keeps the job), result, cancel, attach
    results    a finished batch into the cache; the call's result assembled from it
    state      one status from a job's parts, request counts, poll intervals
    table      the jobs table as `fm.batch_jobs()` shows it (its rows: store/batches.py)
    failures   BatchFailedError, BatchInterrupted

Every Files / Batches request goes through `rest.batches.BatchClient`, a `FoundryClient`: one
auth, retry policy and error mapping with the online calls.
"""

from __future__ import annotations

from foundry_magics.batch_api.failures import BatchFailedError, BatchInterrupted
from foundry_magics.batch_api.jobs import BatchJob, BatchSnapshot
from foundry_magics.batch_api.parts import resume as reap_stale  # noqa: F401 - its name in engine.batch
from foundry_magics.batch_api.state import BatchCounts, aggregate, default_interval  # noqa: F401
from foundry_magics.batch_api.submit import submit, submit_embeddings
from foundry_magics.batch_api.table import JOB_COLUMNS, job_rows

__all__ = ["BatchJob", "BatchCounts", "BatchSnapshot", "BatchFailedError", "BatchInterrupted", "submit",
           "submit_embeddings", "job_rows", "JOB_COLUMNS"]
