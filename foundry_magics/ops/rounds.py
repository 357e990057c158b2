"""Operators that take several rounds of requests (topk's head, agg's folds).

A round is a list of prompts sent through the engine like any run (the operation's options:
model, system, temperature, concurrency, rpm/tpm, cache, progress; dedup and retries), with a
schema and an output cap of its own. With `max_cost`, the operation makes one budget
(`budget_of`) and every round books on it: the whole call never spends more than the amount,
and a round the budget stops leaves its rest "not sent: max_cost=... reached". `Tally` adds
the rounds' reports into the one report of the operation, which becomes `fm.last_run()`.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

__all__ = ["send", "Tally", "budget_of", "is_budget_stop"]


def send(op: Any, conn: Any, prompts: Sequence[str], *, schema: Any = None, max_tokens: Any = None,
         label: str, progress: bool = True, budget: Any = None) -> Any:
    """The engine's `RunResult` of `prompts` (one distinct request each; identical ones sent once)."""
    from foundry_magics import engine
    from foundry_magics.engine.prompts import Requests, RequestSpec

    o = op.options
    api = o.get("api") or getattr(conn, "api", None) or "chat"
    cap = o["max_tokens"] if "max_tokens" in o else max_tokens
    spec = RequestSpec(op=api, system=o.get("system"), model=o.get("model"), schema=schema,
                       temperature=o.get("temperature"), max_tokens=cap)
    items = list(prompts)
    requests = Requests(len(items), lambda idx: [items[i] for i in idx])
    return engine.run_requests(requests, spec, connection=conn, concurrency=o.get("concurrency"), rpm=o.get("rpm"),
                               tpm=o.get("tpm"), cache=o.get("cache", True),
                               progress=op._progress() if progress else False, label=label, budget=budget)


def budget_of(op: Any) -> Any:
    """The one budget of an operation's rounds under its `max_cost` (None without)."""
    from foundry_magics.engine.runner import shared_budget

    return shared_budget(op.options.get("max_cost"))


def is_budget_stop(reason: Any) -> bool:
    """A request's reason says the budget kept it from being sent."""
    return isinstance(reason, str) and reason.startswith("not sent: max_cost=")


class Tally:
    """The rounds of one operation, added up."""

    def __init__(self, operation: str = "chat") -> None:
        self.started = time.monotonic()
        self.requests = self.retries = self.rate_limited = self.cache_hits = 0
        self.input_tokens = self.output_tokens = 0
        self.model: str | None = None
        self.connection: str | None = None
        self.concurrency = 0
        self.operation = operation
        self.cache = True
        self.interrupted = False
        self.stopped: str | None = None

    def add(self, report: Any) -> None:
        self.requests += report.requests
        self.retries += report.retries
        self.rate_limited += report.rate_limited
        self.cache_hits += report.cache_hits
        self.input_tokens += report.input_tokens
        self.output_tokens += report.output_tokens
        self.model = self.model or report.model
        self.connection = self.connection or report.connection
        self.concurrency = report.concurrency or self.concurrency
        self.operation = report.operation or self.operation
        self.cache = report.cache
        self.interrupted = self.interrupted or report.interrupted
        self.stopped = self.stopped or report.stopped

    def report(self, *, rows: int, done: int, failed: int, na_rows: int = 0, unique: int = 0,
               failures: list | None = None) -> Any:
        """The operation's `RunReport`, made `fm.last_run()`."""
        from foundry_magics.engine.report import RunReport, set_last

        report = RunReport(
            rows=rows, done=done, na_rows=na_rows, unique=unique, dedup_saved=max(0, rows - na_rows - unique),
            cache_hits=self.cache_hits, requests=self.requests, retries=self.retries,
            rate_limited=self.rate_limited, input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            seconds=time.monotonic() - self.started, failures=list(failures or []), failed=failed,
            not_sent=max(0, rows - na_rows - done - failed), interrupted=self.interrupted, stopped=self.stopped,
            concurrency=self.concurrency, model=self.model, connection=self.connection, operation=self.operation,
            cache=self.cache)
        set_last(report)
        return report
