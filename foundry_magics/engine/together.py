"""Several prompt runs at once on the engine's loop: what an evaluation of prompts x models sends.

    results = run_together([Job(requests, spec, "short / gpt-4o"), ...], connection=conn, concurrency=32)

Every job is a `PromptRun` of its own (its requests, its model, its report), and all of them
run concurrently on the engine's one loop, waited for together in the caller's thread (one
progress display, one Ctrl-C). What they share:

* the response cache (a re-run of the whole evaluation sends nothing);
* `max_cost`: one `Budget` for all of them, each run booking at its own model's price
  (`BudgetShare`); a model without a price refuses the whole call before anything is sent;
* `rpm` / `tpm`: the budgets of a deployment, shared by the runs of the same model.

`concurrency` is per job (each model's deployment has its own quota, so the jobs take about
as long together as the slowest of them alone). A job that cannot start (a bad template for
that model, a missing model) or that stops (an unknown deployment, all requests failing)
gives its exception or its stopped result in its place; the others are not affected.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from foundry_magics.defaults import CONCURRENCY, MAX_RETRIES, TIMEOUT
from foundry_magics.engine.looper import submit
from foundry_magics.engine.prompts import PromptRun, Requests, RequestSpec
from foundry_magics.engine.report import RunReport, RunResult, Snapshot, set_last
from foundry_magics.errors import FoundryError

__all__ = ["Job", "run_together"]


@dataclass
class Job:
    requests: Requests
    spec: RequestSpec
    label: str = "foundry"
    pack: Any = None  # an engine.packing.Packing: this job's rows go out N to a request


class _Group:
    """The runs as one, for `runner.wait_for`: progress, Ctrl-C and the combined report."""

    def __init__(self, runs: Sequence[PromptRun]) -> None:
        self.runs = list(runs)
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.total_rows = sum(r.total_rows for r in self.runs)

    async def main(self) -> None:
        self.started = time.monotonic()
        try:
            results = await asyncio.gather(*(r.main() for r in self.runs), return_exceptions=True)
            self.errors = [x if isinstance(x, BaseException) else None for x in results]
        finally:
            self.finished_at = time.monotonic()

    def stop(self, reason: str, *, interrupted: bool = False, fatal: BaseException | None = None) -> None:
        for r in self.runs:
            r.stop(reason, interrupted=interrupted, fatal=fatal)

    def snapshot(self, rates: deque) -> Snapshot:
        snaps = [r.snapshot(deque()) for r in self.runs]
        now = time.monotonic()
        elapsed = (self.finished_at or now) - self.started
        done = sum(s.done + s.failed for s in snaps)
        rates.append((now, done))
        while len(rates) > 2 and now - rates[0][0] > 5.0:
            rates.popleft()
        t0, d0 = rates[0]
        rate = (done - d0) / (now - t0) if now - t0 > 0.2 else (done / elapsed if elapsed > 0 else 0.0)
        todo = self.total_rows - sum(r.na_rows for r in self.runs) - done
        return Snapshot(rows=self.total_rows, done=sum(s.done for s in snaps), failed=sum(s.failed for s in snaps),
                        cached=sum(s.cached for s in snaps), elapsed=elapsed, rate=rate,
                        eta=todo / rate if rate > 0 else None, rate_limited=sum(s.rate_limited for s in snaps),
                        retries=sum(s.retries for s in snaps), concurrency=sum(s.concurrency for s in snaps),
                        finished=self.finished_at is not None)

    def report(self) -> RunReport:
        return combined([r.report() for r in self.runs], seconds=(self.finished_at or time.monotonic()) - self.started)


def combined(reports: Sequence[RunReport], *, seconds: float) -> RunReport:
    """The reports of runs made together, as one (no model: its cost is each run's, not this one's)."""
    out = RunReport(seconds=seconds)
    for name in ("rows", "done", "na_rows", "unique", "dedup_saved", "cache_hits", "requests", "retries",
                 "rate_limited", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
                 "failed", "not_sent", "concurrency"):
        setattr(out, name, sum(getattr(r, name) for r in reports))
    out.interrupted = any(r.interrupted for r in reports)
    packed = [r for r in reports if r.pack is not None]
    if packed:
        out.pack = packed[0].pack
        out.pack_retried = sum(r.pack_retried for r in packed)
        out.pack_saved_tokens = sum(r.pack_saved_tokens for r in packed)
        sent = sum(r.requests for r in reports)
        out.rows_per_request = sum(r.rows_per_request * r.requests for r in reports) / sent if sent else 0.0
    stops = [r.stopped for r in reports if r.stopped]
    out.stopped = "; ".join(dict.fromkeys(stops)) if stops and all(r.stopped for r in reports) else None
    return out


def run_together(jobs: Sequence[Job], *, connection: Any = None, concurrency: int | None = None,
                 rpm: float | None = None, tpm: float | None = None, cache: bool = True, progress: Any = False,
                 timeout: float = TIMEOUT, max_retries: int = MAX_RETRIES, transport: Any = None,
                 label: str = "evaluate", max_cost: float | None = None) -> list[RunResult | BaseException]:
    """Run every job at once; one `RunResult` per job (or the exception that kept it from
    starting), in the order of `jobs`. Ctrl-C stops them all, keeping what finished (cached)."""
    from foundry_magics.engine.budget import Budget, BudgetShare, require_price
    from foundry_magics.engine.runner import (
        check_first_request as _check_first_request,
        check_positive as _check_positive,
        connection_of as _connection,
        wait_for,
    )
    from foundry_magics.store.usage import record_run

    concurrency = CONCURRENCY if concurrency is None else concurrency
    _check_positive("concurrency", concurrency, allow_none=False)
    _check_positive("rpm", rpm)
    _check_positive("tpm", tpm)
    _check_positive("max_cost", max_cost)
    conn = _connection(connection)
    out: list[Any] = [None] * len(jobs)
    models: dict[int, Any] = {}
    for i, job in enumerate(jobs):
        try:
            models[i] = _check_first_request(conn, job.requests, job.spec)
        except FoundryError as exc:  # this job cannot start; the others can
            out[i] = exc
    shared = prices = None
    if max_cost is not None:  # every model needs its price before anything is sent
        prices = {i: require_price(m, max_cost) for i, m in models.items()}
        shared = Budget(max_cost, None, model=None)
    runs: dict[int, PromptRun] = {}
    buckets: dict[Any, tuple[Any, Any]] = {}
    for i, model in models.items():
        budget = BudgetShare(shared, prices[i], model) if shared is not None and prices is not None else None
        options = {"concurrency": int(concurrency), "rpm": rpm, "tpm": tpm, "cache": cache, "timeout": timeout,
                   "max_retries": max_retries, "transport": transport, "budget": budget}
        if jobs[i].pack is not None:
            from foundry_magics.engine.packing import PackedRun

            run: PromptRun = PackedRun(jobs[i].requests, jobs[i].spec, conn, jobs[i].pack, **options)
        else:
            run = PromptRun(jobs[i].requests, jobs[i].spec, conn, **options)
        run.rpm_bucket, run.tpm_bucket = buckets.setdefault(model, (run.rpm_bucket, run.tpm_bucket))
        runs[i] = run
    if not runs:
        return out
    group = _Group(list(runs.values()))
    fut = submit(group.main())
    interrupted = False
    try:
        wait_for(group, fut, progress, label)
    except KeyboardInterrupt:
        interrupted = True
    bug = fut.exception() if fut.done() and not fut.cancelled() else None
    if bug is not None:  # a bug in the engine itself: never swallow it
        raise bug
    for (i, run), err in zip(runs.items(), getattr(group, "errors", [None] * len(runs))):
        report = run.report()
        report.interrupted = report.interrupted or interrupted
        report.cache = run.use_cache
        record_run(report)  # fm.usage() counts each model at its own price
        out[i] = err if err is not None else RunResult(run.values, run.errors, report, error=run.fatal)
    set_last(group.report())
    return out
