"""Starting an engine run and waiting for it: what the DataFrame accessors and `%%foundry --df` call.

Jupyter already runs an event loop on the main thread, so a run's async work goes to the
engine's own loop in a background thread (`looper`); the caller's thread waits by polling,
so Ctrl-C ("interrupt kernel") reaches it within POLL seconds: the run is stopped, what
finished is flushed to the cache and returned, and the next run sends only what is missing.

Progress is whatever the caller passes: a factory `(total_rows, label) -> display` with
`update(Snapshot)` and `close(RunReport)`, such a display itself, or False. The engine has
no display of its own (the faces bring theirs), so `progress=True` here shows nothing.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from typing import Any, Callable, Protocol, Sequence

from foundry_magics.defaults import (
    CONCURRENCY,
    EMBED_CONCURRENCY,
    EMBED_TIMEOUT,
    MAX_RETRIES,
    POLL,
    PROGRESS_AFTER,
    TIMEOUT,
)
from foundry_magics.engine.embeddings import EmbedRun
from foundry_magics.engine.looper import stop_soon, submit
from foundry_magics.engine.prompts import PromptRun, Requests, RequestSpec
from foundry_magics.engine.report import RunReport, RunResult, Snapshot, set_last
from foundry_magics.engine.run import Run, Weights
from foundry_magics.errors import ConfigurationError
from foundry_magics.store.usage import record_run

__all__ = ["run_requests", "run_batch", "embed_texts", "shared_budget", "wait_for", "Requests", "RequestSpec"]

log = logging.getLogger("foundry_magics.engine")


def run_requests(batch: Requests, spec: RequestSpec = RequestSpec(), *, connection: Any = None,
              concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None,
              cache: bool = True, progress: Any = False, timeout: float = TIMEOUT, max_retries: int = MAX_RETRIES,
              transport: Any = None, label: str = "foundry", max_cost: float | None = None,
              pack: Any = None, budget: Any = None) -> RunResult:
    """Send `batch` (blocking the caller's thread, not its event loop) and return the replies.

    `max_cost`: the run stops before its spend could pass the amount (`engine.budget`): the
    rows that finished are kept, the others get the reason, `report.stopped` says so and the
    result is returned as usual. Without a price for the model nothing starts.

    `budget`: an `engine.budget.Budget` that several runs spend together (an operation's
    rounds, a join's embeddings and judgements: `shared_budget(max_cost)`); this run books
    on it at its own model's price, and stops when it is used up. It takes the place of
    `max_cost`.

    Ctrl-C stops the run; so does a fatal error (wrong key, unknown deployment, quota block,
    the first requests all failing alike). Either way what finished is cached and returned,
    `report.interrupted` / `result.error` say why it stopped, and `result.raise_if_stopped()`
    re-raises (Ctrl-C as `fm.RunInterrupted`: a KeyboardInterrupt shown as one line saying what
    was kept). `fm.last_run()` is the same report.

    `pack`: an `engine.packing.Packing`: the requests that miss the cache go out several rows to a
    request, each row's answer matched by its id and cached under the row's own key.
    """
    concurrency = CONCURRENCY if concurrency is None else concurrency
    _check_positive("concurrency", concurrency, allow_none=False)
    _check_positive("rpm", rpm)
    _check_positive("tpm", tpm)
    if spec.op not in ("chat", "responses"):
        raise ConfigurationError(f"Unknown API {spec.op!r}.", hint="Use 'chat' or 'responses'.")
    conn = _connection(connection)
    model = _check_first_request(conn, batch, spec)
    options = dict(concurrency=int(concurrency), rpm=rpm, tpm=tpm, cache=cache, timeout=timeout,
                   max_retries=max_retries, transport=transport, budget=_budget(max_cost, model, budget))
    if pack is not None:  # an engine.packing.Packing: N rows to a request, cached per row
        from foundry_magics.engine.packing import PackedRun

        run: Run = PackedRun(batch, spec, conn, pack, **options)
    else:
        run = PromptRun(batch, spec, conn, **options)
    return _finish(run, progress, label)


run_batch = run_requests  # its old name


def embed_texts(texts: Sequence[str], *, connection: Any = None, model: str | None = None,
                dimensions: int | None = None, cache: bool = True, progress: Any = False,
                timeout: float = EMBED_TIMEOUT, max_retries: int = MAX_RETRIES, concurrency: int = EMBED_CONCURRENCY,
                weights: Weights | None = None, rows: int | None = None, na_rows: int = 0,
                transport: Any = None, label: str = "embed", max_cost: float | None = None,
                budget: Any = None) -> RunResult:
    """Vectors (numpy float32) for distinct `texts`, EMBED_BATCH per request; cached per text.
    `max_cost` and `budget` as in `run_requests` (each request counted at a token per byte of its texts)."""
    conn = _connection(connection)
    from foundry_magics.rest.base import BaseClient

    probe = BaseClient(conn)  # a missing key fails here, before anything starts
    spend = None
    if max_cost is not None or budget is not None:
        _, embed_model = probe.build_embed(list(texts[:1]) or [""], model, dimensions)
        spend = _budget(max_cost, embed_model, budget)
    run = EmbedRun(texts, conn, model=model, dimensions=dimensions, cache=cache, timeout=timeout,
                   max_retries=max_retries, concurrency=max(1, int(concurrency)), weights=weights, rows=rows,
                   na_rows=na_rows, transport=transport, budget=spend)
    return _finish(run, progress, label)


def _connection(connection: Any) -> Any:
    from foundry_magics.connections.session import connection_for

    return connection_for(connection)


def _check_positive(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}.",
                                 hint=f"Pass {name}=N with N > 0, or leave it out.")


def _check_first_request(conn: Any, batch: Requests, spec: RequestSpec) -> str | None:
    """A missing key or model, a bad schema or option: fail here, before anything starts.
    Returns the model the requests name (as `RequestKeys.model`: the run's model)."""
    from foundry_magics.engine.prompts import call_args
    from foundry_magics.rest.base import BaseClient

    probe = BaseClient(conn)
    ensure_model(probe, spec)
    body: dict[str, Any] = {}
    if batch.size:
        text, kwargs = call_args(batch.render(range(1))[0], spec.options())
        _, body = probe.build(spec.op, text, **kwargs)
    return body.get("model") or spec.model or conn.model or probe.model_for(spec.model)


def _budget(max_cost: float | None, model: str | None, shared: Any = None) -> Any:
    """The run's budget under `max_cost` (None without), or its share of `shared`: refused here,
    before anything starts, when the model has no price."""
    from foundry_magics.engine.budget import Budget, BudgetShare, require_price

    if shared is not None:
        if shared.price is not None and shared.model == model:  # made for this model (a Spark task's share)
            return shared
        return BudgetShare(shared, require_price(model, shared.limit), model)
    if max_cost is None:
        return None
    _check_positive("max_cost", max_cost)
    return Budget(max_cost, require_price(model, max_cost), model=model)


def shared_budget(max_cost: float | None) -> Any:
    """One `Budget` for several runs (pass it as `budget=` to each), None without `max_cost`."""
    if max_cost is None:
        return None
    from foundry_magics.engine.budget import Budget

    _check_positive("max_cost", max_cost)
    return Budget(max_cost, None, model=None)


def ensure_model(probe: Any, spec: RequestSpec) -> None:
    """No model given anywhere: ask the server once, in the caller's thread (one that serves
    exactly one model is used; with several, building the first request lists them)."""
    if probe.needs_model_list(spec.model, spec.op):
        from foundry_magics.rest.client import FoundryClient

        with FoundryClient(probe.connection, timeout=probe.timeout, max_retries=1) as client:
            client.ensure_model(spec.model, spec.op)


def _finish(run: Run, progress: Any, label: str) -> RunResult:
    fut = submit(run.main())
    interrupted = False
    try:
        wait_for(run, fut, progress, label)
    except KeyboardInterrupt:
        interrupted = True
    report = run.report()
    report.interrupted = report.interrupted or interrupted
    report.cache = run.use_cache  # what an interruption kept: RunInterrupted's line says it
    set_last(report)
    record_run(report)  # %foundry usage / fm.usage() count every run
    exc = fut.exception() if fut.done() and not fut.cancelled() else None
    if exc is not None:  # a bug in the engine itself: never swallow it
        raise exc
    return RunResult(run.values, run.errors, report, error=run.fatal)


class Watched(Protocol):
    """What wait_for watches: a Run, or several as one (engine/together.py)."""

    started: float
    total_rows: int

    def stop(self, reason: str, *, interrupted: bool = False, fatal: BaseException | None = None) -> None: ...

    def snapshot(self, rates: deque) -> Snapshot: ...

    def report(self) -> RunReport: ...


def wait_for(run: Watched, fut: concurrent.futures.Future, progress: Any, label: str) -> None:
    """Wait in the caller's thread, showing progress; Ctrl-C stops the run and keeps what finished."""
    display = None
    rates: deque = deque()
    try:
        while True:
            try:
                fut.result(timeout=POLL)
                break
            except concurrent.futures.TimeoutError:
                pass
            if progress and display is None and time.monotonic() - run.started >= PROGRESS_AFTER:
                display = _quietly(_make_display, progress, run.total_rows, label)
            if display is not None:
                _quietly(display.update, run.snapshot(rates))
    except KeyboardInterrupt:
        stop_soon(lambda: run.stop("interrupted (Ctrl-C)", interrupted=True))
        try:
            fut.result(timeout=5.0)  # cancellation and the cache flush take well under a second
        except BaseException:  # noqa: BLE001 - we are already handling the interrupt
            pass
        _close(display, run, rates)
        raise
    _close(display, run, rates)


def _make_display(progress: Any, total: int, label: str) -> Any:
    if progress is True:  # no face passed a display: the core has none
        return None
    if callable(progress) and not hasattr(progress, "update"):
        return progress(total, label)
    return progress


def _close(display: Any, run: Watched, rates: deque) -> None:
    if display is not None:
        _quietly(display.update, run.snapshot(rates))
        _quietly(display.close, run.report())


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
    """A progress display must never break (or abandon) a run."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        log.debug("progress display failed", exc_info=True)
        return None


# the checks every run makes before anything starts, for the runs made together (engine.together)
check_first_request = _check_first_request
check_positive = _check_positive
connection_of = _connection
