"""The REST layer: request building per endpoint kind (no I/O), auth, SSE, retries, and the
clients that do the I/O (`FoundryClient` on httpx, `AsyncFoundryClient` on aiohttp).

Importing it loads no IPython, ipywidgets, pandas or pyspark.
"""

from __future__ import annotations

from foundry_magics.rest.client import AsyncFoundryClient, AsyncStream, CallRecord, FoundryClient, Stream
from foundry_magics.rest.models import Delta, Reply, Usage

__all__ = ["FoundryClient", "AsyncFoundryClient", "Stream", "AsyncStream", "CallRecord", "Reply", "Delta", "Usage"]
