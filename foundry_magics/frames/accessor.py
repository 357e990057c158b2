"""Old home of the pandas accessors, kept so imports users may have typed keep working:
they live in `foundry_magics.frames.pandas` now."""

from __future__ import annotations

from foundry_magics.engine import last_run
from foundry_magics.frames.pandas import (
    FoundryDataFrameAccessor,
    FoundrySeriesAccessor,
    batch_jobs,
    register,
    run_frame,
)

__all__ = ["FoundryDataFrameAccessor", "FoundrySeriesAccessor", "register", "run_frame", "last_run", "batch_jobs"]
