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
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from foundry_magics.defaults import CHARS_PER_TOKEN, EMBED_BATCH, FEED_CHUNK
from foundry_magics.engine.prompts import Batch, RequestKeys, RequestSpec
from foundry_magics.wording import counted

__all__ = ["Estimate", "estimate_batch", "estimate_embeddings", "tokenizer"]

_ENCODING = "o200k_base"  # gpt-4o, gpt-4.1, o-series
_TIKTOKEN_URL = f"https://openaipublic.blob.core.windows.net/encodings/{_ENCODING}.tiktoken"
_tokenizer: tuple[str, Callable[[str], int]] | None = None


@dataclass
class Estimate:
    """What a DataFrame run would send and cost. Nothing was sent to produce it."""

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
            ("rows", f"{self.rows:,}" + (f" ({self.na_rows:,} with a missing value: not sent)" if self.na_rows else "")),
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
        return "Estimate (nothing sent): " + " · ".join(bits)

    def __str__(self) -> str:
        return "\n".join([f"Estimate (nothing was sent) for {self.operation} on {self.model or '?'}"]
                         + [f"  {k}: {v}" for k, v in self._rows()])

    # Readable where there is no HTML (a terminal, IPython's console, a log, a list of estimates):
    # the dataclass's field dump was no use there. The fields stay attributes (`est.to_send`).
    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        out = ["| estimate (nothing sent) | |", "|---|---|"]
        out += [f"| {k} | {v.replace('|', '/')} |" for k, v in self._rows()]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td style='text-align:left'>{e(v)}</td></tr>"
                       for k, v in self._rows())
        return f"<b>Estimate</b> <i>(nothing was sent)</i><table>{rows}</table>"


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
                   batch_api: bool = False) -> Estimate:
    """The estimate of `run_batch(batch, spec, connection=..., cache=...)`: nothing is sent."""
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
    store = _open_cache(cache)
    try:
        for start in range(0, batch.size, FEED_CHUNK):
            idx = range(start, min(batch.size, start + FEED_CHUNK))
            order: list[tuple[bytes, dict[str, Any]]] = []
            for prompt in batch.render(idx):
                key, body = keys.keyed(prompt)
                if key in seen:  # identical to an earlier request: the run sends it once
                    continue
                seen.add(key)
                order.append((key, body))
            hits = store.get_many([k for k, _ in order]) if order else {}
            for key, body in order:
                if key in hits:
                    est.cached += 1
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
    return _price(est)


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
