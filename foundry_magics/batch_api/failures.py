"""How a Batch API call ends short: a job that answered nothing, and Ctrl-C (the job keeps running)."""

from __future__ import annotations

from foundry_magics.errors import FoundryError, RunInterrupted

__all__ = ["BatchFailedError", "BatchInterrupted"]


class BatchFailedError(FoundryError):
    """A batch job answered no request: the service refused it (validation) or it never ran."""


class BatchInterrupted(RunInterrupted):
    """Ctrl-C while a job was submitted or waited for. The job keeps running on the service;
    the message says what was kept and how to pick it up. IPython shows it as that one line
    (`errors.RunInterrupted`, so `%config FoundryMagics.tracebacks = True` shows the full
    traceback); it is still a KeyboardInterrupt for everyone else."""
