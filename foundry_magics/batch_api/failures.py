"""How a Batch API call ends short: a job that answered nothing, and Ctrl-C (the job keeps running)."""

from __future__ import annotations

from foundry_magics.errors import FoundryError

__all__ = ["BatchFailedError", "BatchInterrupted"]


class BatchFailedError(FoundryError):
    """A batch job answered no request: the service refused it (validation) or it never ran."""


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C while a job was submitted or waited for. The job keeps running on the service;
    the message says what was kept and how to pick it up. IPython shows it as that one line,
    without a traceback (`_render_traceback_`); it is still a KeyboardInterrupt for everyone else.

    (Local to the Batch API until errors.py has the package-wide interrupt class.)"""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        return [self.message]
