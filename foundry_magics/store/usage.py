"""What this session (this process) sent, by connection and model: `%foundry usage`, `fm.usage()`.

Everything is counted in one place: every call a `FoundryClient` / `AsyncFoundryClient` sends
one at a time (`%%foundry` cells, comparisons, a probe's tiny chat, and calls made directly on a
client) arrives as a `CallRecord` from the client itself (`record_call`, in rest/base.py: the
core records without any face); DataFrame runs, embeddings runs and Batch API jobs arrive as
their `RunReport` through the engine's hook (`record_run`; the engine's own clients do not count
their calls, so nothing is counted twice; Spark tasks report to the driver the same way).
Costs are computed when asked, from the tokens and the prices known then (`store.prices`), so
prices set after the work still price it; the total sums what is priced and names what is not.

    from foundry_magics.store.usage import session_usage
    session_usage().rows()      # one dict per (connection, model), then the total
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

__all__ = ["SessionUsage", "session_usage", "record_run", "record_call", "COLUMNS"]

# What `rows()` gives per (connection, model), in display order (then "cost").
# cached_input_tokens are a part of input_tokens, reasoning_tokens a part of output_tokens.
COLUMNS = ("connection", "model", "calls", "runs", "rows", "requests", "cache_hits", "errors", "interrupted",
           "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "seconds", "cost")


@dataclass
class _Tally:
    calls: int = 0  # requests sent one at a time (cells, comparisons)
    runs: int = 0  # DataFrame runs, embeddings runs, batch jobs
    rows: int = 0  # rows those runs covered
    requests: int = 0  # HTTP requests sent: calls + the runs' requests (retries included)
    cache_hits: int = 0  # distinct requests the runs answered from the cache
    errors: int = 0  # failed calls + failed rows
    interrupted: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # a part of input_tokens
    reasoning_tokens: int = 0  # a part of output_tokens
    seconds: float = 0.0
    # tokens billed at the Batch API's price (a part of input_tokens / output_tokens / cached_input_tokens)
    batch_input_tokens: int = 0
    batch_output_tokens: int = 0
    batch_cached_tokens: int = 0

    def add(self, rec: Any) -> None:
        self.calls += 1
        self.requests += 1
        reply = getattr(rec, "reply", None)
        if reply is None:
            if getattr(rec, "interrupted", False):
                self.interrupted += 1
            else:
                self.errors += 1
        else:
            u = reply.usage
            self.input_tokens += u.input_tokens
            self.output_tokens += u.output_tokens
            self.cached_input_tokens += getattr(u, "cached_input_tokens", 0) or 0
            self.reasoning_tokens += getattr(u, "reasoning_tokens", 0) or 0
        self.seconds += float(getattr(rec, "latency", 0.0) or 0.0)

    def add_run(self, report: Any, batch: bool) -> None:
        self.runs += 1
        self.rows += int(getattr(report, "rows", 0) or 0)
        self.requests += int(getattr(report, "requests", 0) or 0)
        self.cache_hits += int(getattr(report, "cache_hits", 0) or 0)
        self.errors += int(getattr(report, "failed", 0) or 0)
        self.interrupted += 1 if getattr(report, "interrupted", False) else 0
        tin, tout = int(getattr(report, "input_tokens", 0) or 0), int(getattr(report, "output_tokens", 0) or 0)
        tcached = int(getattr(report, "cached_input_tokens", 0) or 0)
        self.input_tokens += tin
        self.output_tokens += tout
        self.cached_input_tokens += tcached
        self.reasoning_tokens += int(getattr(report, "reasoning_tokens", 0) or 0)
        if batch:
            self.batch_input_tokens += tin
            self.batch_output_tokens += tout
            self.batch_cached_tokens += tcached
        self.seconds += float(getattr(report, "seconds", 0.0) or 0.0)

    def merge(self, other: "_Tally") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def cost(self, model: str | None, prices: Any) -> float | None:
        from foundry_magics.store.prices import cost

        online_in = self.input_tokens - self.batch_input_tokens
        online_out = self.output_tokens - self.batch_output_tokens
        online_cached = self.cached_input_tokens - self.batch_cached_tokens
        if not (self.input_tokens or self.output_tokens):
            return 0.0 if cost(model, 0, 0, prices=prices) is not None else None
        a = cost(model, online_in, online_out, prices=prices, cached_input_tokens=online_cached)
        b = cost(model, self.batch_input_tokens, self.batch_output_tokens, batch=True, prices=prices,
                 cached_input_tokens=self.batch_cached_tokens)
        return None if a is None or b is None else a + b

    def public(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("batch_input_tokens", "batch_output_tokens", "batch_cached_tokens"):
            d.pop(k)
        return d


@dataclass
class SessionUsage:
    """Calls, runs, rows, requests, cache hits, tokens, time and cost, per (connection, model)."""

    total: _Tally = field(default_factory=_Tally)
    by_model: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Any] = []

    def add_source(self, source: Any) -> None:
        """`source(self)` is called before usage is read (and before a reset): it adds what
        arrived since (runs reported from elsewhere, e.g. Spark tasks through an accumulator)."""
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def collect(self) -> None:
        """Fold in what the sources hold now."""
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            try:
                source(self)
            except Exception:  # noqa: BLE001 - counting must never break reading
                import logging

                logging.getLogger("foundry_magics").debug("usage: a source failed", exc_info=True)

    def add(self, rec: Any) -> None:
        """One call (a `rest.base.CallRecord`)."""
        reply = getattr(rec, "reply", None)
        key = (str(rec.connection), str((getattr(reply, "model", None) or rec.model) or "?"))
        with self._lock:
            self.total.add(rec)
            self.by_model.setdefault(key, _Tally()).add(rec)

    def add_run(self, report: Any, *, batch: bool = False) -> None:
        """One DataFrame / embeddings run or batch job (an `engine.RunReport`)."""
        key = (str(getattr(report, "connection", None) or "?"), str(getattr(report, "model", None) or "?"))
        with self._lock:
            self.total.add_run(report, batch)
            self.by_model.setdefault(key, _Tally()).add_run(report, batch)

    def rows(self, *, total: bool = True) -> list[dict[str, Any]]:
        """One dict per (connection, model) with the COLUMNS, then (total=True) the total row,
        connection "total". `cost` is None where a model's price is unknown. The total's cost
        sums what is priced (None when nothing with tokens is); its `unpriced` lists the models
        with tokens but no price (their cost is not in the sum), `cached_at_input_price` those
        whose cached input tokens cost the input price (no `cached_input` price)."""
        from foundry_magics.store.prices import get_prices, price_of

        self.collect()
        prices = get_prices()
        with self._lock:
            items: Iterable[tuple[tuple[str, str], _Tally]] = [(k, _copy(t)) for k, t in self.by_model.items()]
        out = []
        known: list[float] = []
        unpriced: list[str] = []
        plain_cached: list[str] = []
        for (c, m), t in items:
            cst = t.cost(m, prices)
            if cst is not None:
                known.append(cst)
                p = price_of(m, prices)
                if t.cached_input_tokens and p is not None and p.cached_input is None and m not in plain_cached:
                    plain_cached.append(m)
            elif (t.input_tokens or t.output_tokens) and m not in unpriced:
                unpriced.append(m)
            out.append(dict(connection=c, model=m, **t.public(), cost=cst))
        if total:
            whole = _Tally()
            for _, t in items:
                whole.merge(t)
            tc = sum(known) if known else (None if unpriced else 0.0 if items else None)
            out.append(dict(connection="total", model="", **whole.public(), cost=tc, unpriced=unpriced,
                            cached_at_input_price=plain_cached))
        return out

    def reset(self) -> None:
        self.collect()  # what arrived before the reset is not counted after it
        with self._lock:
            self.total = _Tally()
            self.by_model.clear()
            self.started = time.time()


def _copy(t: _Tally) -> _Tally:
    c = _Tally()
    c.merge(t)
    return c


_session = SessionUsage()


def session_usage() -> SessionUsage:
    """This process's usage: what `%foundry usage` and `fm.usage()` show."""
    return _session


def record_call(rec: Any) -> None:
    """The clients' hook (rest/base.py): count one finished call (a `CallRecord`)."""
    try:
        _session.add(rec)
    except Exception:  # noqa: BLE001 - counting must never break a call
        import logging

        logging.getLogger("foundry_magics").debug("usage: could not count a call", exc_info=True)


def record_run(report: Any, *, batch: bool = False) -> None:
    """The engine's hook: count a finished run (prompts, embeddings; `batch=True` for a Batch API job)."""
    try:
        _session.add_run(report, batch=batch)
    except Exception:  # noqa: BLE001 - counting must never break a run
        import logging

        logging.getLogger("foundry_magics").debug("usage: could not count a run", exc_info=True)
