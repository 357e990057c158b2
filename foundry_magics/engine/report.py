"""What a DataFrame run did: progress snapshots, the run report, and `fm.last_run()`."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from foundry_magics.errors import RunInterrupted
from foundry_magics.wording import counted

__all__ = ["Snapshot", "RunReport", "RunResult", "BatchResult", "last_run"]


@dataclass
class Snapshot:
    """The state of a run, for progress displays."""

    rows: int
    done: int
    failed: int
    cached: int
    elapsed: float
    rate: float  # rows per second, recent
    eta: float | None
    rate_limited: int
    retries: int
    concurrency: int
    finished: bool = False


@dataclass
class RunReport:
    """What a run did: shown after `%%foundry --df` and returned by `fm.last_run()`."""

    rows: int = 0  # rows in the frame
    done: int = 0  # rows with a result (sent or cached)
    na_rows: int = 0  # rows skipped because a used value was missing
    unique: int = 0  # distinct requests needed
    dedup_saved: int = 0  # rows answered by another row's identical request
    cache_hits: int = 0  # distinct requests answered from the cache
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # a part of input_tokens: the service had the prompt's prefix cached
    reasoning_tokens: int = 0  # a part of output_tokens: a reasoning model's hidden thinking
    seconds: float = 0.0
    failures: list[tuple[Any, str]] = field(default_factory=list)
    failed: int = 0  # rows that failed
    not_sent: int = 0  # rows never tried (stopped or interrupted)
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped early, if it did
    concurrency: int = 0  # the adaptive limit at the end
    model: str | None = None
    connection: str | None = None
    operation: str = "chat"
    cache: bool = True  # finished rows went to the response cache: a re-run sends only the rest
    p50_s: float | None = None  # per-request latency of the answered requests (None: none was sent)
    p95_s: float | None = None
    replayed_input_tokens: int = 0  # tokens of the cache hits' replies when they were first sent (not spent now)
    replayed_output_tokens: int = 0
    pack: Any = None  # pack=N / "auto" (engine.packing); None: one row per request
    rows_per_request: float = 0.0  # packed runs: rows answered per request sent
    pack_retried: int = 0  # packed runs: rows sent again after a pack did not answer them
    pack_saved_tokens: int = 0  # packed runs: input tokens saved against sending those rows alone (estimated)
    batch: bool = False  # answered through the Batch API: priced at its rate
    batch_jobs: list[str] = field(default_factory=list)  # the Batch API jobs that answered it

    @property
    def rows_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.stopped

    @property
    def cost(self) -> float | None:
        """What the run's tokens cost, priced now (fm.set_prices / prices.toml): prices set after
        the run price it. None where the model's price is unknown (or prices.toml is broken)."""
        from foundry_magics.store.prices import cost

        try:
            return cost(self.model, self.input_tokens, self.output_tokens, batch=self.batch,
                        cached_input_tokens=self.cached_input_tokens)
        except Exception:  # noqa: BLE001 - pricing must never break the report
            return None

    def _cost_text(self) -> str:
        """The cost, with what it assumed; "cost unknown: WHY" when prices.toml is broken; "" when
        no price is set (nothing to say) or nothing was spent."""
        from foundry_magics.store.prices import cached_note, format_cost, problem

        if not (self.input_tokens or self.output_tokens):
            return ""
        try:
            value = self.cost
            if value is None:
                why = problem(short=True)
                return f"cost unknown: {why}" if why else ""
            note = cached_note(self.model, self.cached_input_tokens)
        except Exception:  # noqa: BLE001
            return ""
        return format_cost(value) + (f" ({note})" if note else "")

    def _tokens_text(self, sep: str = "+") -> str:
        text = f"{self.input_tokens:,}{sep}{self.output_tokens:,}"
        parts = [f"{n:,} {what}" for n, what in ((self.cached_input_tokens, "cached"),
                                                 (self.reasoning_tokens, "reasoning")) if n]
        return text + (f" ({', '.join(parts)})" if parts else "")

    def _pack_text(self) -> str:
        text = f"pack={self.pack}: " + (
            f"{self.rows_per_request:,.1f} rows/request" if self.requests else "nothing sent")
        if self.pack_retried:
            text += f", {self.pack_retried:,} rows sent again"
        if self.pack_saved_tokens:
            text += f", ~{self.pack_saved_tokens:,} input tokens saved"
        return text

    def kept(self) -> str:
        """One line for an interrupted run: what was kept, and how to go on."""
        if not self.done:
            return "Interrupted before any row finished: nothing was kept."
        head = f"Interrupted: {self.done:,} of {self.rows:,} rows finished"
        if self.cache:
            return head + " and cached; run the same call again to send only the rest."
        return head + "; they are not cached (cache=False): running it again sends every row."

    def summary(self) -> str:
        bits = [f"{self.done:,}/{self.rows:,} rows"]
        if self.failed:
            bits.append(f"{self.failed:,} failed")
        if self.na_rows:
            bits.append(f"{self.na_rows:,} NA skipped")
        bits.append(counted(self.requests, "request"))
        if self.cache_hits:
            bits.append(f"{self.cache_hits:,} cache hits")
        if self.dedup_saved:
            bits.append(f"{self.dedup_saved:,} deduplicated")
        if self.retries:
            bits.append(counted(self.retries, "retry"))
        if self.rate_limited:
            bits.append(f"{self.rate_limited:,}×429")
        if self.pack is not None:
            bits.append(self._pack_text())
        if self.input_tokens or self.output_tokens:
            bits.append(f"{self._tokens_text()} tokens")
        cost_text = self._cost_text()
        if cost_text:
            bits.append(cost_text)
        bits.append(f"{self.seconds:.1f} s ({self.rows_per_s:,.0f} rows/s)")
        if self.interrupted:
            bits.append("INTERRUPTED")
        if self.stopped:
            bits.append(f"stopped: {self.stopped}")
        return " · ".join(bits)

    def __str__(self) -> str:
        lines = [self.summary()]
        for label, reason in self.failures[:10]:
            lines.append(f"  row {label!r}: {reason}")
        if len(self.failures) > 10:
            lines.append(f"  … and {len(self.failures) - 10:,} more (fm.last_run().failures)")
        return "\n".join(lines)

    def _rows(self) -> list[tuple[str, str]]:
        rows = [
            ("rows", f"{self.done:,} of {self.rows:,} done"),
            ("requests sent", f"{self.requests:,} ({self.unique:,} distinct needed)"),
            ("cache hits", f"{self.cache_hits:,}"),
            ("deduplicated rows", f"{self.dedup_saved:,}"),
            ("retries / 429s", f"{self.retries:,} / {self.rate_limited:,}"),
            ("tokens in / out", self._tokens_text(" / ")),
            *([("cost", cost_text)] if (cost_text := self._cost_text()) else []),
            ("time", f"{self.seconds:.1f} s · {self.rows_per_s:,.1f} rows/s"),
        ]
        if self.pack is not None:
            rows.append(("packing", self._pack_text()))
        if self.na_rows:
            rows.append(("NA rows (not sent)", f"{self.na_rows:,}"))
        if self.failed:
            rows.append(("failed rows", f"{self.failed:,}"))
        if self.not_sent:
            rows.append(("rows not sent", f"{self.not_sent:,}"))
        if self.interrupted:
            rows.append(("interrupted", "yes: finished rows are cached; run it again to send only the rest"))
        if self.stopped:
            rows.append(("stopped", self.stopped))
        return rows

    def _repr_markdown_(self) -> str:
        out = ["| run | |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self._rows()]
        if self.failures:
            out.append("")
            out.append("**Failures**")
            out.append("")
            out += [f"- row `{label!r}`: {reason}" for label, reason in self.failures[:10]]
            if len(self.failures) > 10:
                out.append(f"- … and {len(self.failures) - 10:,} more (`fm.last_run().failures`)")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td style='text-align:left'>{e(v)}</td></tr>"
                       for k, v in self._rows())
        out = f"<table>{rows}</table>"
        if self.failures:
            items = "".join(f"<li>row <code>{e(repr(label))}</code>: {e(reason)}</li>"
                            for label, reason in self.failures[:10])
            more = (f"<li>… and {len(self.failures) - 10:,} more (<code>fm.last_run().failures</code>)</li>"
                    if len(self.failures) > 10 else "")
            out += (f"<details open><summary>{len(self.failures):,} failed rows</summary>"
                    f"<ul>{items}{more}</ul></details>")
        return out


@dataclass
class RunResult:
    texts: list[Any]  # one per distinct request: reply text (vector), or None when failed / not sent
    errors: dict[int, str]  # distinct request index -> reason
    report: RunReport
    error: BaseException | None = None  # what stopped the run (wrong key, quota block, ...)

    def raise_if_stopped(self) -> None:
        """Re-raise what stopped the run: RunInterrupted (a KeyboardInterrupt whose one line
        says what was kept), or the fatal error."""
        if self.report.interrupted:
            raise RunInterrupted(self.report.kept(), report=self.report)
        if self.error is not None:
            raise self.error


BatchResult = RunResult  # its old name ("batch" now means the Azure Batch API only)

_last: RunReport | None = None


def last_run() -> RunReport | None:
    """The report of the last DataFrame run in this process (None before the first)."""
    return _last


def set_last(report: RunReport) -> None:
    global _last
    _last = report
