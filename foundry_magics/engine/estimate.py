"""A cost preview of a DataFrame run that sends nothing: `df.foundry.estimate(...)`,
`%%foundry --df df --estimate`, and `estimate=True` on every DataFrame operation.

The estimate goes through the requests exactly as the run would: the same rendering, the
same request builders, the same keys (`prompts.RequestKeys`, `embeddings.embed_keys`), the
same de-duplication and the same bulk cache lookup - so "to send" is the number of requests
the run then sends (on a service that answers every request the first time: retries come
on top). No prompt is sent; only when no model is known anywhere is the server asked once
for its model list (`GET /models`), as the run would.

Input tokens are counted with a tokenizer only when one works offline (tiktoken with its
encoding already on disk: at first use it downloads its tables, which fails without the
internet); otherwise with the rule of thumb of `CHARS_PER_TOKEN` characters per token.
`Estimate.tokenizer` says which. Images count by OpenAI's tile rule (`rest.images`).

`sample=N` is the one estimate that sends something, and says so (`Estimate.forecast`): it
answers N distinct requests not cached yet, picked at random among those the run would send,
online through the engine (so they are cached: the run does not pay for them again), then
forecasts the output tokens, cost and run time of the rest, each with a 90 % interval:

* output tokens: the sample is a simple random sample (without replacement) of the M requests
  to send; the R not sampled will produce R x mean, with the t-interval of a population total
  (`mean +- t(0.95, n-1) * sd * sqrt(R * M / n)`, the finite-population form). The sum of many
  replies is close to normal even when single reply lengths are skewed, and Student's t widens
  the interval for the uncertainty of the sample's own spread (a bootstrap would be narrower
  at n = 20, as it underestimates the spread of small samples). Clipped to [0, the output caps].
* cost: the model's price applied (when shown) to the input tokens, calibrated by the sample's
  real input counts, and to the forecast output tokens and its interval.
* run time: the requests go out in waves of `concurrency`, each taking the sample's mean
  latency; the interval allows for the mean latency's own uncertainty (its t-interval) and
  one wave more. Never less than the rpm and tpm budgets allow. It assumes the service answers
  as fast at that concurrency as it did the sample. The Batch API's time is not forecast.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import random
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from foundry_magics.defaults import CHARS_PER_TOKEN, CONCURRENCY, EMBED_BATCH, FEED_CHUNK
from foundry_magics.engine.prompts import Batch, PromptRun, RequestKeys, Requests, RequestSpec
from foundry_magics.wording import counted

__all__ = ["Estimate", "Forecast", "estimate_batch", "estimate_embeddings", "tokenizer", "t_quantile", "total_interval"]

_ENCODING = "o200k_base"  # gpt-4o, gpt-4.1, o-series
_TIKTOKEN_URL = f"https://openaipublic.blob.core.windows.net/encodings/{_ENCODING}.tiktoken"
_tokenizer: tuple[str, Callable[[str], int]] | None = None


CONFIDENCE = 0.90  # of the forecast's intervals
_SAMPLE_SEED = 20240611  # the same frame and cache pick the same sample (reproducible estimates)


@dataclass
class Forecast:
    """What `estimate(..., sample=N)` measured and forecasts (see the module doc for how).

    The sample: `answered` distinct requests (`sent` HTTP requests, retries included; `failed`
    without a reply), which used `sample_input_tokens` + `sample_output_tokens`. The forecast is
    for the `requests` the run still sends: `output_tokens` expected, `output_low`-`output_high`
    its 90 % interval; `input_tokens` the estimate's input count calibrated by the sample;
    `seconds` (`seconds_low`-`seconds_high`) the run time at `concurrency`, None with the Batch API.
    """

    answered: int = 0
    sent: int = 0
    failed: int = 0
    sample_input_tokens: int = 0
    sample_output_tokens: int = 0
    mean_output: float = 0.0  # output tokens per sampled reply
    sd_output: float = 0.0
    mean_latency: float | None = None  # seconds per sampled request
    requests: int = 0
    output_tokens: float = 0.0
    output_low: float = 0.0
    output_high: float = 0.0
    input_tokens: float = 0.0
    seconds: float | None = None
    seconds_low: float | None = None
    seconds_high: float | None = None
    concurrency: int | None = None
    bound_by: str | None = None  # "rpm" / "tpm" when a budget, not latency, sets the run time
    confidence: float = CONFIDENCE
    error: str | None = None  # why a sample request failed (the first reason)
    cached: bool = True  # the sampled replies are cached: the run does not send them again

    @property
    def ok(self) -> bool:
        return self.answered > 0


@dataclass
class Estimate:
    """What a DataFrame run would send and cost. Nothing is sent to produce it, except with
    `sample=N`: then N requests were answered (`forecast` says what they measured and forecast)."""

    rows: int = 0  # rows in the frame
    na_rows: int = 0  # rows with a missing value: no request
    distinct: int = 0  # distinct requests the rows need (identical ones are sent once)
    cached: int = 0  # of those, already answered in the cache
    to_send: int = 0  # requests the run would send
    input_tokens: int = 0  # estimated, of the requests to send
    output_cap: int | None = None  # max_tokens per request (the largest, when it varies); None: no cap
    output_cap_min: int | None = None  # the smallest, when it varies per request
    max_output_tokens: int | None = None  # the caps of the requests to send, summed; None: uncapped
    images: int = 0  # images in the requests to send
    tokenizer: str = f"chars/{CHARS_PER_TOKEN} rule"
    model: str | None = None
    connection: str | None = None
    operation: str = "chat"
    batch: bool = False  # priced for the Batch API
    notes: list[str] = field(default_factory=list)
    sample: int | None = None  # sample=N asked for
    forecast: Forecast | None = None  # what the sample measured and forecasts (sample=N only)

    @property
    def sent(self) -> int:
        """HTTP requests this estimate sent: 0, except with sample=N."""
        return self.forecast.sent if self.forecast is not None else 0

    def _forecast_cost(self, output_tokens: float) -> float | None:
        """The cost of the run's rest, with `output_tokens` of output, at the prices known now."""
        from foundry_magics.store.prices import cost

        f = self.forecast
        if f is None or not f.ok or self.model is None:
            return None
        try:
            return cost(self.model, f.input_tokens, output_tokens, batch=self.batch)
        except Exception:  # noqa: BLE001 - a broken prices.toml must not break the estimate
            return None

    @property
    def expected_cost(self) -> float | None:
        """The forecast cost of the run (sample=N), at the prices known now; None without a
        sample or a price."""
        return self._forecast_cost(self.forecast.output_tokens) if self.forecast is not None else None

    @property
    def cost_interval(self) -> tuple[float, float] | None:
        """The forecast cost's 90 % interval (sample=N), or None."""
        f = self.forecast
        low = self._forecast_cost(f.output_low) if f is not None else None
        high = self._forecast_cost(f.output_high) if f is not None and not math.isinf(f.output_high) else None
        return None if low is None or high is None else (low, high)

    def _said(self) -> str:
        """What producing this estimate sent."""
        if not self.sent:
            return "nothing was sent"
        cached = self.forecast is not None and self.forecast.cached and self.forecast.answered
        return f"sent {counted(self.sent, 'request')}: a sample" + (", now cached" if cached else "")

    def _forecast_rows(self) -> list[tuple[str, str]]:
        """The expected cost (always said: known, or why not) and, with a sample, what it
        measured and forecasts."""
        f = self.forecast
        rows: list[tuple[str, str]] = []
        if f is not None:
            rows.append(("sample", self._sample_said(f)))
        if self.operation == "embeddings":
            return rows
        pct = f"{round((f.confidence if f else CONFIDENCE) * 100)} %"
        if f is not None and f.ok:
            rows.append(("output tokens (forecast)",
                         f"~{f.output_tokens:,.0f} ({pct}: {_number(f.output_low)}–{_number(f.output_high)}) for "
                         f"{counted(f.requests, 'request')}; the sample's replies: {f.mean_output:,.1f} ± "
                         f"{f.sd_output:,.1f} tokens each"))
            if f.seconds is not None:
                why = {"rpm": "the rpm budget", "tpm": "the tpm budget"}.get(f.bound_by or "")
                span = f"{_duration(f.seconds_low)}–{_duration(f.seconds_high)}"
                rows.append(("run time (forecast)", f"~{_duration(f.seconds)} ({pct}: {span})"
                             + (f", set by {why}" if why else
                                f" at concurrency {f.concurrency}, {f.mean_latency:.2f} s per request in the sample")))
            elif self.batch:
                rows.append(("run time (forecast)", "not forecast: a Batch API job ends within 24 h"))
        if f is not None and f.ok:
            exp, interval = self.expected_cost, self.cost_interval
            if exp is None:
                rows.append(("expected cost", f"unknown: no price for {self.model or 'this model'}"))
            else:
                rows.append(("expected cost", self._cost(exp)
                             + (f" ({pct}: {self._cost(interval[0])}–{self._cost(interval[1])})" if interval else
                                " (no interval from a sample of 1)")
                             + (" at the Batch API price" if self.batch else "")))
        elif f is not None:
            rows.append(("expected cost", "unknown: no sampled request was answered"))
        else:
            rows.append(("expected cost", "unknown without a sample: estimate(..., sample=20) answers 20 requests "
                                          "(cached for the run) to forecast it"))
        return rows

    def _sample_said(self, f: Forecast) -> str:
        """What the sample sent, what came back, what it used, and what the run makes of it."""
        if not f.sent:
            return "nothing sent: no request left to send"
        asked = f.answered + f.failed
        said = f"{counted(f.sent, 'request')} sent" + (f" for {asked:,} distinct" if f.sent != asked else "")
        said += f", {f.answered:,} answered" + (f", {f.failed:,} failed ({f.error})" if f.failed else "")
        said += f"; they used {f.sample_input_tokens:,}+{f.sample_output_tokens:,} tokens"
        cost = self._sample_cost()
        if cost is not None:
            said += f" ({self._cost(cost)})"
        if f.answered and not f.cached:
            said += "; cache=False: the run sends them again"
        elif f.answered:
            which = "the answered ones" if f.failed else "it" if f.answered == 1 else "them"
            said += f"; cached: the run does not send {which} again"
        return said

    def _sample_cost(self) -> float | None:
        from foundry_magics.store.prices import cost

        f = self.forecast
        if f is None or self.model is None:
            return None
        try:
            return cost(self.model, f.sample_input_tokens, f.sample_output_tokens)
        except Exception:  # noqa: BLE001
            return None

    # The costs (input_cost, max_cost, online_max_cost) and the currency are properties, priced
    # when read or shown, from the prices known then: `fm.set_prices` after the estimate prices it.

    def _priced(self, input_tokens: int, output_tokens: int, *, batch: bool) -> float | None:
        from foundry_magics.store.prices import cost

        if self.model is None:
            return None
        try:
            return cost(self.model, input_tokens, output_tokens, batch=batch)
        except Exception:  # noqa: BLE001 - pricing never breaks an estimate
            return None

    @property
    def currency(self) -> str:
        from foundry_magics.store.prices import currency

        try:
            return currency()
        except Exception:  # noqa: BLE001
            return "USD"

    @property
    def input_cost(self) -> float | None:
        """Of the input tokens; None: no price known for the model."""
        return self._priced(self.input_tokens, 0, batch=self.batch)

    @property
    def max_cost(self) -> float | None:
        """Input + every output cap used up; None when uncapped or unpriced."""
        if self.max_output_tokens is None and self.operation != "embeddings":
            return None
        return self._priced(self.input_tokens, self.max_output_tokens or 0, batch=self.batch)

    @property
    def online_max_cost(self) -> float | None:
        """The same without the Batch API (batch=True only)."""
        if not self.batch or (self.max_output_tokens is None and self.operation != "embeddings"):
            return None
        return self._priced(self.input_tokens, self.max_output_tokens or 0, batch=False)

    @property
    def requests(self) -> int:
        """The requests the run would send (= to_send)."""
        return self.to_send

    @property
    def priced(self) -> bool:
        return self.input_cost is not None

    def _cost(self, value: float | None, cur: str | None = None) -> str:
        from foundry_magics.store.prices import format_cost

        return format_cost(value, cur or self.currency)

    def _unpriced(self) -> str:
        from foundry_magics.store.prices import problem

        why = problem(short=True)
        if why:
            return f"unknown: {why} (see the warning; fix or delete the file)"
        return f"unknown: no price for {self.model or 'this model'} (fm.set_prices({{...}}) or prices.toml)"

    def _rows(self) -> list[tuple[str, str]]:
        dedup = max(0, self.rows - self.na_rows - self.distinct)
        rows = [
            ("rows", f"{self.rows:,}"
             + (f" ({self.na_rows:,} with a missing value: not sent)" if self.na_rows else "")),
            ("distinct requests", f"{self.distinct:,}"
                                  + (f" ({counted(dedup, 'duplicate row')} sent once)" if dedup else "")),
            ("already cached", f"{self.cached:,}"),
            ("to send", counted(self.to_send, "request") + (" (Batch API)" if self.batch else "")),
            ("input tokens (est.)", f"{self.input_tokens:,} ({self.tokenizer})"),
        ]
        if self.images:
            rows.append(("images", f"{self.images:,} (85 + 170 tokens per 512 px tile)"))
        if self.operation != "embeddings":
            if self.output_cap is None:
                cap = "none (max_tokens not set: the output is not capped)"
            elif self.output_cap_min is not None and self.output_cap_min != self.output_cap:
                cap = (f"{self.output_cap_min:,}–{self.output_cap:,} per request (in proportion to the input), "
                       f"{self.max_output_tokens or 0:,} in all")
            else:
                cap = f"{self.output_cap:,} per request, {self.max_output_tokens or 0:,} in all"
            rows.append(("output cap", cap))
        rows.append(("model", f"{self.model or '?'}" + (f" on {self.connection}" if self.connection else "")))
        input_cost, max_cost, online_max_cost = self.input_cost, self.max_cost, self.online_max_cost  # priced now
        if input_cost is None:
            rows.append(("cost", self._unpriced()))
        else:
            label = "cost at the Batch API price" if self.batch else "cost"
            if self.operation == "embeddings" or max_cost is not None:
                top = max_cost if max_cost is not None else input_cost
                what = "input" if self.operation == "embeddings" else "input, at most (every output cap used up)"
                rows.append((label, f"{self._cost(top)} ({what}); input alone {self._cost(input_cost)}"
                             if self.operation != "embeddings" else f"{self._cost(top)} ({what})"))
            else:
                rows.append((label, f"{self._cost(input_cost)} for the input, plus the output (uncapped)"))
            if self.batch and online_max_cost is not None:
                rows.append(("without the Batch API", self._cost(online_max_cost)))
        rows += self._forecast_rows()
        for note in self.notes:
            rows.append(("note", note))
        return rows

    def summary(self) -> str:
        bits = [f"{counted(self.to_send, 'request')} to send", counted(self.rows, "row"), f"{self.distinct:,} distinct",
                f"{self.cached:,} cached", f"~{self.input_tokens:,} input tokens ({self.tokenizer})"]
        if self.max_output_tokens is not None:
            bits.append(f"≤{self.max_output_tokens:,} output tokens")
        input_cost, max_cost = self.input_cost, self.max_cost  # priced now
        if input_cost is not None:
            top = max_cost if max_cost is not None else input_cost
            bits.append(("≤" if max_cost is not None and self.operation != "embeddings" else "")
                        + self._cost(top) + (" (batch)" if self.batch else ""))
        f = self.forecast
        if f is not None and f.ok and self.operation != "embeddings":
            bits.append(f"forecast ~{f.output_tokens:,.0f} output tokens")
            if self.expected_cost is not None:
                bits.append(f"~{self._cost(self.expected_cost)} expected")
        return f"Estimate ({'nothing sent' if not self.sent else self._said()}): " + " · ".join(bits)

    def __str__(self) -> str:
        return "\n".join([f"Estimate ({self._said()}) for {self.operation} on {self.model or '?'}"]
                         + [f"  {k}: {v}" for k, v in self._rows()])

    # Readable where there is no HTML (a terminal, IPython's console, a log, a list of estimates):
    # the dataclass's field dump was no use there. The fields stay attributes (`est.to_send`).
    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        out = [f"| estimate ({'nothing sent' if not self.sent else self._said()}) | |", "|---|---|"]
        out += [f"| {k} | {v.replace('|', '/')} |" for k, v in self._rows()]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td style='text-align:left'>{e(v)}</td></tr>"
                       for k, v in self._rows())
        return f"<b>Estimate</b> <i>({e(self._said())})</i><table>{rows}</table>"


# ---------------------------------------------------------------------- counting tokens


def tokenizer() -> tuple[str, Callable[[str], int]]:
    """(name, count) of the token counter: tiktoken's o200k_base when installed *and* its table
    is already on disk (so nothing is downloaded), else the characters-per-token rule."""
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = _offline_tiktoken() or (f"chars/{CHARS_PER_TOKEN} rule", _by_chars)
    return _tokenizer


def _by_chars(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _offline_tiktoken() -> tuple[str, Callable[[str], int]] | None:
    try:
        import tiktoken  # optional; never a dependency
    except ImportError:
        return None
    cache_dir = (os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
                 or os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    if not os.path.exists(os.path.join(cache_dir, hashlib.sha1(_TIKTOKEN_URL.encode()).hexdigest())):
        return None  # tiktoken would download it now
    try:
        enc = tiktoken.get_encoding(_ENCODING)
    except Exception:  # noqa: BLE001 - a damaged cache, an old tiktoken
        return None
    return f"tiktoken {_ENCODING}", lambda text: len(enc.encode(text, disallowed_special=()))


def _texts(value: Any, out: list[str]) -> int:
    """Collect the text of a content value; return how many images it holds."""
    if isinstance(value, str):
        out.append(value)
        return 0
    images = 0
    if isinstance(value, list):
        for part in value:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                if part.get("type") in ("image_url", "input_image"):
                    images += 1
                elif isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif "content" in part:
                    images += _texts(part.get("content"), out)
    return images


def body_tokens(body: dict[str, Any], count: Callable[[str], int]) -> tuple[int, int]:
    """(estimated input tokens, images) of a chat or Responses request body: the text of every
    message, the instructions and the schema, 3 tokens per message, and each image's tiles."""
    from foundry_magics.rest.images import image_tokens, urls_in

    texts: list[str] = []
    messages = body.get("messages")
    n_msgs = 0
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                n_msgs += 1
                _texts(m.get("content"), texts)
    inp = body.get("input")
    if isinstance(inp, str):
        texts.append(inp)
        n_msgs += 1
    elif isinstance(inp, list):
        for item in inp:
            n_msgs += 1
            _texts(item.get("content") if isinstance(item, dict) else item, texts)
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
        n_msgs += 1
    for k in ("response_format", "text"):
        if isinstance(body.get(k), dict):
            texts.append(json.dumps(body[k], separators=(",", ":")))
    urls = list(urls_in(body.get("messages") or body.get("input") or []))
    tokens = sum(count(t) for t in texts if t) + 3 * n_msgs + 3 + sum(image_tokens(u) for u in urls)
    return tokens, len(urls)


def _cap_of(body: dict[str, Any]) -> int | None:
    for k in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if isinstance(body.get(k), int):
            return body[k]
    return None


# ---------------------------------------------------------------------- estimating


def _open_cache(cache: bool) -> Any:
    from foundry_magics.store.cache import MemoryCache, ResponseCache

    return ResponseCache() if cache else MemoryCache()


def _price(est: Estimate) -> Estimate:
    """Nothing to do: an Estimate prices itself when read or shown (its cost properties), so
    prices set after it was made still price it."""
    return est


def _batch_api_available(conn: Any, batch_api: bool) -> None:
    """An estimate with batch=True refuses what the run refuses: a connection without the Batch API."""
    if batch_api:
        from foundry_magics.rest.batches import batch_routes

        batch_routes(conn)


def estimate_batch(batch: Batch, spec: RequestSpec = RequestSpec(), *, connection: Any = None, cache: bool = True,
                   batch_api: bool = False, sample: int | None = None, concurrency: int | None = None,
                   rpm: float | None = None, tpm: float | None = None, progress: Any = False,
                   pack: Any = None) -> Estimate:
    """The estimate of `run_batch(batch, spec, connection=..., cache=...)`: nothing is sent,
    except with `sample=N`: N of the requests to send, picked at random, are answered online
    (at `concurrency`, within `rpm` / `tpm`) and the rest of the run is forecast from them
    (`Estimate.forecast`); the estimate then describes what the run still sends."""
    from foundry_magics.connections.session import connection_for
    from foundry_magics.engine.runner import ensure_model
    from foundry_magics.rest.base import BaseClient

    conn = connection_for(connection)
    probe = BaseClient(conn)  # a missing key is the same error as the run's, here too
    _batch_api_available(conn, batch_api)
    ensure_model(probe, spec)
    keys = RequestKeys(probe, spec, conn)
    name, count = tokenizer()
    est = Estimate(rows=batch.rows if batch.rows is not None else batch.size, na_rows=batch.na_rows,
                   tokenizer=name, connection=conn.label, operation=spec.op, batch=batch_api)
    seen: set[bytes] = set()
    caps: list[int] = []
    uncapped = False
    picked = _Reservoir(sample) if sample else None
    packer = _Packer(pack, probe, spec, count) if pack is not None else None
    store = _open_cache(cache)
    try:
        for start in range(0, batch.size, FEED_CHUNK):
            idx = range(start, min(batch.size, start + FEED_CHUNK))
            order: list[tuple[int, bytes, dict[str, Any]]] = []
            for i, prompt in zip(idx, batch.render(idx)):
                key, body = keys.keyed(prompt)
                if key in seen:  # identical to an earlier request: the run sends it once
                    continue
                seen.add(key)
                order.append((i, key, body))
            hits = store.get_many([k for _, k, _ in order]) if order else {}
            for i, key, body in order:
                if key in hits:
                    est.cached += 1
                    continue
                if packer is not None:  # counted as the packed run sends it, below
                    packer.add(i, key, None, body)
                    continue
                est.to_send += 1
                tokens, images = body_tokens(body, count)
                est.input_tokens += tokens
                est.images += images
                cap = _cap_of(body)
                if cap is None:
                    uncapped = True
                else:
                    caps.append(cap)
                if picked is not None:
                    picked.offer(_Picked(i, tokens, images, cap))
            if packer is not None:
                packer.flush(batch, final=False)
        if packer is not None:
            packer.flush(batch, final=True)
            packer.into(est, caps)
            uncapped = packer.uncapped
    finally:
        store.close()
    est.distinct = len(seen)
    est.model = keys.model or spec.model or conn.model
    if caps and not uncapped:
        est.output_cap, est.output_cap_min = max(caps), min(caps)
        est.max_output_tokens = sum(caps)
    elif not est.to_send and spec.max_tokens is not None:
        est.output_cap = est.output_cap_min = spec.max_tokens
        est.max_output_tokens = 0
    if not cache:
        est.notes.append("cache=False: cached replies are not used, so every distinct request is sent")
    if picked is not None:
        est.sample = sample
        _sample(est, batch, spec, conn, picked.items, cache=cache, concurrency=concurrency, rpm=rpm, tpm=tpm,
                progress=progress)
    return _price(est)


class _Packer:
    """pack=N: the requests to send grouped as `engine.packing.PackedRun` groups them; each pack
    counted as the packed request it becomes (its rows' answers matched, none sent again)."""

    def __init__(self, packing: Any, probe: Any, spec: RequestSpec, count: Callable[[str], int]) -> None:
        from foundry_magics.engine.packing import pack_prompt

        self.packing, self.probe, self.spec, self.count = packing, probe, spec, count
        self.buffer: list[Any] = []
        self.requests = self.tokens = self.rows = self.alone_tokens = 0
        self.caps: list[int] = []
        self.uncapped = False
        self.task_tokens = len(pack_prompt(packing.task, [])) // 4 + len(spec.system or "") // 4 + 8
        self.options = dict(spec.options(), schema=packing.schema())

    def add(self, i: int, key: bytes, prompt: Any, body: dict[str, Any]) -> None:
        from foundry_magics.engine.packing import Entry

        self.buffer.append(Entry(i, key, None, {}, _cap_of(body), body_tokens(body, self.count)[0]))

    def flush(self, batch: Any, final: bool) -> None:
        from foundry_magics.engine.packing import group, item_id, pack_prompt, packed_cap

        if not final and len(self.buffer) < self.packing.max_rows * 4:
            return
        todo = [e for e in self.buffer if e.item is None]
        if todo:
            for e, item in zip(todo, self.packing.items([e.i for e in todo])):
                e.item = item
        packs, self.buffer = group(self.buffer, self.packing, self.task_tokens, final=final)
        for pack in packs:
            self.rows += len(pack)
            self.alone_tokens += sum(e.tokens for e in pack)
            if len(pack) == 1:  # a pack of one is the row's own request
                tokens, cap = pack[0].tokens, pack[0].cap
            else:
                taken: set[str] = set()
                text = pack_prompt(self.packing.task, [{"id": item_id(e.key, taken), **(e.item or {})} for e in pack])
                cap = packed_cap(pack)
                _, body = self.probe.build(self.spec.op, text, **dict(self.options, max_tokens=cap))
                tokens = body_tokens(body, self.count)[0]
            self.requests += 1
            self.tokens += tokens
            if cap is None:
                self.uncapped = True
            else:
                self.caps.append(cap)

    def into(self, est: Estimate, caps: list[int]) -> None:
        est.to_send += self.requests
        est.input_tokens += self.tokens
        caps.extend(self.caps)
        if self.rows:
            est.notes.append(f"pack={self.packing.size}: {self.rows:,} rows in {self.requests:,} requests "
                             f"(~{self.rows / self.requests:,.1f} rows each); ~{self.tokens:,} input tokens instead of "
                             f"~{self.alone_tokens:,} one row to a request. Rows whose answers come back unusable "
                             "are sent again, so the run may send a few more.")


# ---------------------------------------------------------------------- sample=N: a forecast


class _Picked(NamedTuple):
    request: int  # the distinct request's index in the batch
    tokens: int  # its estimated input tokens
    images: int
    cap: int | None  # its output cap


class _Reservoir:
    """A uniform random sample of `n` items of a stream of unknown length (Algorithm R), so
    the sample is spread over the whole frame, not its first rows (which may be sorted)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.items: list[Any] = []
        self.rng = random.Random(_SAMPLE_SEED)

    def offer(self, item: Any) -> None:
        if len(self.items) < self.n:
            self.items.append(item)
        else:
            j = self.rng.randrange(self.seen + 1)
            if j < self.n:
                self.items[j] = item
        self.seen += 1


class _SampleRun(PromptRun):
    """An engine run that keeps what each reply measured: (input tokens, output tokens, latency)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.measured: list[tuple[int, int, float]] = []

    async def send(self, call: Any, est: int, indices: Any, bound: float | None = None) -> Any:
        reply = await super().send(call, est, indices, bound)
        if reply is not None:
            usage = reply.usage
            self.measured.append((usage.input_tokens, usage.output_tokens, float(reply.latency or 0.0)))
        return reply


def _sample(est: Estimate, batch: Batch, spec: RequestSpec, conn: Any, items: list[_Picked], *, cache: bool,
            concurrency: int | None, rpm: float | None, tpm: float | None, progress: Any) -> None:
    """Answer `items` online (through the engine, so cached), then put the forecast into `est`."""
    from foundry_magics.engine.looper import submit
    from foundry_magics.engine.runner import wait_for
    from foundry_magics.errors import RunInterrupted
    from foundry_magics.store.usage import record_run

    population = est.to_send
    workers = max(1, int(concurrency or CONCURRENCY))
    f = Forecast(cached=cache, concurrency=workers)
    est.forecast = f
    if not items:
        return
    requests = Requests(size=len(items), render=lambda ids: batch.render([items[j].request for j in ids]))
    run = _SampleRun(requests, spec, conn, concurrency=max(1, min(workers, len(items))), rpm=rpm, tpm=tpm,
                     cache=cache)
    fut = submit(run.main())
    try:
        wait_for(run, fut, progress, "sample")
    except KeyboardInterrupt:
        raise RunInterrupted("Interrupted while sampling: no estimate was made; the sampled replies that "
                             "finished are cached.", report=run.report()) from None
    finally:
        record_run(run.report())  # the sample's spend is in fm.usage() / %foundry usage
    exc = fut.exception() if fut.done() and not fut.cancelled() else None
    if exc is not None:  # a bug in the engine itself: never swallow it
        raise exc
    answered = [j for j in range(len(items)) if j not in run.errors and run.values[j] is not None]
    f.sent, f.answered, f.failed = run.sent, len(answered), len(items) - len(answered)
    reason = next(iter(run.errors.values()), None) or (run.stopped if f.failed else None)
    f.error = reason if reason is None or len(reason) <= 100 else reason[:99] + "…"
    if not run.measured:
        if run.fatal is not None:  # wrong key, unknown deployment, quota: the run would hit it too
            raise run.fatal
        return
    ins = [m[0] for m in run.measured]
    outs = [m[1] for m in run.measured]
    latencies = [m[2] for m in run.measured]
    f.sample_input_tokens, f.sample_output_tokens = sum(ins), sum(outs)
    if cache:  # the run finds these in the cache: the estimate is of what it still sends
        for j in answered:
            it = items[j]
            est.to_send -= 1
            est.cached += 1
            est.input_tokens -= it.tokens
            est.images -= it.images
            if it.cap is not None and est.max_output_tokens is not None:
                est.max_output_tokens -= it.cap
    guessed = sum(items[j].tokens for j in answered)  # the estimate's count for the answered ones
    _forecast(est, f, population, outs, latencies, calibration=sum(ins) / guessed if guessed else 1.0,
              known=0 if cache else sum(outs), rpm=rpm, tpm=tpm)


def _forecast(est: Estimate, f: Forecast, population: int, outs: list[int], latencies: list[float], *,
              calibration: float, known: int, rpm: float | None, tpm: float | None) -> None:
    """The forecast of the run's output tokens and time (see the module doc for the method).

    `population`: the M requests to send before the sample; `outs` / `latencies`: what the n
    answered ones measured; `known`: output tokens of sampled requests the run sends again
    (cache=False); `calibration`: real / estimated input tokens in the sample."""
    n = len(outs)
    f.requests = est.to_send
    f.mean_output = statistics.fmean(outs)
    f.sd_output = statistics.stdev(outs) if n > 1 else 0.0
    t = t_quantile(n - 1) if n > 1 else math.inf
    expected, low, high = total_interval(outs, population, population - f.answered)
    f.output_tokens, f.output_low, f.output_high = known + expected, known + low, known + high
    if est.max_output_tokens is not None:  # the output caps are a hard bound
        f.output_high = min(f.output_high, float(est.max_output_tokens))
        f.output_tokens = min(f.output_tokens, f.output_high)
    f.input_tokens = est.input_tokens * calibration
    if est.batch:
        return  # a Batch API job's time is the service's (within 24 h)
    f.mean_latency = statistics.fmean(latencies)
    sd = statistics.stdev(latencies) if n > 1 else 0.0
    todo = f.requests
    conc = max(1, min(f.concurrency or 1, todo or 1))
    # `conc` workers take the requests in waves: ceil(todo / conc) latencies end to end. The
    # interval is the mean latency's, from a full pipeline (todo / conc) to one wave more
    # (the last one's slowest request, the connections opening).
    rounds = math.ceil(todo / conc) if todo else 0
    spread = t * sd * math.sqrt(1 / n + (1 / todo if todo else 0.0)) if n > 1 else 0.0
    low, mid, high = ((todo / conc) * max(0.0, f.mean_latency - spread), rounds * f.mean_latency,
                      (rounds + 1) * (f.mean_latency + spread) if todo else 0.0)
    floors = {"rpm": 60.0 * todo / rpm if rpm else 0.0,
              "tpm": 60.0 * (est.input_tokens + (est.max_output_tokens or 0)) / tpm if tpm and todo else 0.0}
    budget, floor = max(floors.items(), key=lambda kv: kv[1])
    if floor > mid:
        f.bound_by = budget
    f.seconds, f.seconds_low, f.seconds_high = max(mid, floor), max(low, floor), max(high, floor)
    f.concurrency = conc


def total_interval(sample: Sequence[float], population: int, unseen: int) -> tuple[float, float, float]:
    """(expected, low, high): the sum of the `unseen` values of a population of `population`
    values, of which `sample` is a simple random sample (without replacement), with its 90 %
    interval: `unseen * mean +- t(0.95, n-1) * sd * sqrt(unseen * population / n)`.

    Why this form: the error of `unseen * mean` is `population * (mean - population mean)`, whose
    variance under sampling without replacement is `population * unseen * S^2 / n`; the sum of
    many values is close to normal even when single values are skewed, and Student's t allows
    for `sd` being itself estimated from n values. Low is never below 0; one value gives no
    spread (an infinite half-width)."""
    n = len(sample)
    unseen = max(0, unseen)
    if not n or not unseen:
        return 0.0, 0.0, 0.0
    mean = statistics.fmean(sample)
    expected = unseen * mean
    if n == 1:
        return expected, 0.0, math.inf
    half = t_quantile(n - 1) * statistics.stdev(sample) * math.sqrt(unseen * population / n)
    return expected, max(0.0, expected - half), expected + half


# Student's t, 0.95 quantile (two-sided 90 %), for 1-29 degrees of freedom; from 30 on the
# Cornish-Fisher expansion is within 0.001 of it.
_T95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761, 1.753,
        1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701, 1.699)
_Z95 = 1.6448536269514722


def t_quantile(df: int) -> float:
    """Student's t 0.95 quantile with `df` degrees of freedom (the half-width factor of a 90 % interval)."""
    if df < 1:
        return math.inf
    if df < 30:
        return _T95[df - 1]
    z = _Z95
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def _number(value: float) -> str:
    return "no bound (a sample of 1 gives no spread)" if math.isinf(value) else f"{value:,.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if math.isinf(seconds):
        return "∞"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_embeddings(texts: Sequence[str], *, connection: Any = None, model: str | None = None,
                        dimensions: int | None = None, cache: bool = True, rows: int | None = None,
                        na_rows: int = 0, batch_api: bool = False) -> Estimate:
    """The estimate of `embed_texts(texts, ...)`: EMBED_BATCH texts per request; nothing is sent."""
    from foundry_magics.connections.session import connection_for
    from foundry_magics.engine.embeddings import embed_keys
    from foundry_magics.rest.base import BaseClient

    conn = connection_for(connection)
    probe = BaseClient(conn)
    _batch_api_available(conn, batch_api)
    model, keys = embed_keys(probe, conn, texts, model, dimensions)
    name, count = tokenizer()
    est = Estimate(rows=rows if rows is not None else len(texts), na_rows=na_rows, distinct=len(texts),
                   tokenizer=name, connection=conn.label, operation="embeddings", model=model, batch=batch_api)
    store = _open_cache(cache)
    missing = 0
    try:
        for start in range(0, len(keys), 5000):
            part = keys[start:start + 5000]
            found = store.get_vectors(part)
            for off, k in enumerate(part):
                if k in found:
                    est.cached += 1
                else:
                    missing += 1
                    est.input_tokens += count(texts[start + off])
    finally:
        store.close()
    est.to_send = math.ceil(missing / EMBED_BATCH)
    est.notes.append(f"{counted(missing, 'text')} to embed, {EMBED_BATCH:,} per request")
    return _price(est)
