"""A run of chat / Responses prompts: fed in chunks, de-duplicated, cached, sent by workers.

* Requests are fed in chunks: each chunk is rendered, keyed (`store.cache.request_key`, the
  same request builders as every other path), looked up in the cache in bulk and
  de-duplicated against requests in flight, so memory stays bounded on millions of rows and
  identical requests are sent once.
* `concurrency` workers take requests from a bounded queue and send them through
  `Run.send` (adaptive limit, rpm/tpm budgets, the retry policy).
* Finished replies go into the cache (flushed every FLUSH_EVERY s and every FLUSH_AT
  replies), so a re-run after Ctrl-C, a crash or a restart sends only what is missing.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

from foundry_magics.defaults import FEED_AHEAD, FEED_CHUNK, FLUSH_AT, IMAGE_UNKNOWN_TOKENS
from foundry_magics.engine.run import Run, Weights
from foundry_magics.errors import describe

__all__ = ["RequestSpec", "Requests", "Batch", "PromptRun", "Prompt", "RequestKeys", "call_args", "estimate_tokens"]


@dataclass(frozen=True)
class RequestSpec:
    """What is the same for every request of a run; only the prompt varies."""

    op: str = "chat"  # "chat" or "responses"
    system: str | None = None
    model: str | None = None
    schema: Any = None
    temperature: float | None = None
    max_tokens: int | None = None

    def options(self) -> dict[str, Any]:
        return dict(system=self.system, model=self.model, schema=self.schema, temperature=self.temperature,
                    max_tokens=self.max_tokens)


class Prompt(NamedTuple):
    """A prompt with what only it carries: image URLs (`rest.images`) and its own output cap
    (summaries and translations are capped in proportion to their input)."""

    text: str
    images: tuple[str, ...] | None = None
    max_tokens: int | None = None


def call_args(prompt: Any, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(prompt text, keyword arguments) for the request builders and the client's chat/respond."""
    if not isinstance(prompt, Prompt):
        return prompt, options
    kw = dict(options)
    if prompt.images:
        kw["images"] = list(prompt.images)
    if prompt.max_tokens is not None:
        kw["max_tokens"] = prompt.max_tokens
    return prompt.text, kw


class RequestKeys:
    """How a run keys its requests - the request builders, the route's identity and
    `store.cache.request_key` - shared by the run and by `engine.estimate`, so that an
    estimate names exactly the requests the run then sends."""

    def __init__(self, client: Any, spec: "RequestSpec", conn: Any) -> None:
        from foundry_magics.store.cache import request_key

        self.client, self.spec, self.conn = client, spec, conn
        self.options = spec.options()
        self.route_id: str | None = None
        self.route: Any = None
        self.model: str | None = None
        self._key = request_key

    def keyed(self, prompt: Any) -> tuple[bytes, dict[str, Any]]:
        """(cache key, request body) of one prompt: the body is built once, for the key and
        for the wire (`self.route` is where it goes: the same for every request of a run)."""
        text, kw = call_args(prompt, self.options)
        route, body = self.client.build(self.spec.op, text, **kw)
        self.route = route
        if self.route_id is None:
            from foundry_magics.store.cache import route_identity

            self.route_id = route_identity(route.url, route.params, emulator=self.conn.is_emulator)
            self.model = body.get("model") or self.spec.model or self.conn.model
        return self._key(self.route_id, self.spec.op, body), body


@dataclass
class Requests:
    """`size` distinct requests. `render(indices)` gives their prompts (called chunk by chunk);
    `weights[i]` is how many rows request i answers (dedup), for progress and the report."""

    size: int
    render: Callable[[Sequence[int]], list[str]]
    weights: Weights | None = None
    rows: int | None = None  # rows in the frame, NA rows included
    na_rows: int = 0


Batch = Requests  # its old name ("batch" now means the Azure Batch API only)


def estimate_tokens(prompt: Any, spec: "RequestSpec") -> int:
    """For the tpm budget: the prompt's characters / 4 plus its output cap (a `Prompt` carries its own)."""
    text = prompt.text if not isinstance(prompt, str) else prompt
    cap = (None if isinstance(prompt, str) else prompt.max_tokens) or spec.max_tokens or 0
    images = 0 if isinstance(prompt, str) else len(prompt.images or ()) * IMAGE_UNKNOWN_TOKENS
    return len(text) // 4 + len(spec.system or "") // 4 + cap + images + 1


class PromptRun(Run):
    def __init__(self, batch: Requests, spec: RequestSpec, conn: Any, **options: Any) -> None:
        super().__init__(conn, size=batch.size, weights=batch.weights, rows=batch.rows, na_rows=batch.na_rows,
                         model=spec.model, **options)
        self.batch = batch
        self.spec = spec
        self.operation = spec.op
        self.inflight: dict[bytes, list[int]] = {}  # request key -> distinct requests waiting for it

    @property
    def texts(self) -> list[Any]:
        return self.values

    async def work(self) -> None:
        queue: asyncio.Queue = asyncio.Queue()  # bounded by the feeder (FEED_AHEAD + a chunk)
        await self.gather([self._feed(queue), *(self._worker(queue) for _ in range(self.concurrency))])

    # -- feeding -------------------------------------------------------------------------

    async def _feed(self, queue: asyncio.Queue) -> None:
        try:
            await self._feed_all(queue)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # rendering or keying failed: stop rather than wait forever
            self.stop(f"could not prepare the requests: {describe(exc)}", fatal=exc)

    async def _feed_all(self, queue: asyncio.Queue) -> None:
        spec = self.spec
        keys = RequestKeys(self.client, spec, self.conn)
        n = self.size
        start = 0
        # A small first chunk gets the workers going at once; later chunks are rendered while
        # the queue still holds a chunk's worth, so rendering overlaps with requests in flight.
        size = min(FEED_CHUNK, max(16, self.concurrency))
        first = True
        while start < n and self.stopped is None:
            if queue.qsize() >= FEED_AHEAD:
                await self._queue_below(queue, FEED_AHEAD)
            idx = range(start, min(n, start + size))
            start += size
            size = FEED_CHUNK
            keyed: dict[bytes, list[int]] = {}
            order: list[tuple[bytes, Any, dict[str, Any]]] = []
            for i, prompt in zip(idx, self.batch.render(idx)):
                first_key = keys.route_id is None
                key, body = keys.keyed(prompt)
                if first_key:
                    self.model = keys.model
                    self.route = keys.route
                waiting = self.inflight.get(key) or keyed.get(key)
                if waiting is not None:  # identical to one queued, in flight, or earlier in this chunk
                    waiting.append(i)
                    continue
                keyed[key] = [i]
                order.append((key, prompt, body))
            hits = self.cache.get_many([k for k, _, _ in order]) if order else {}
            for key, prompt, body in order:
                hit = hits.get(key)
                if hit is not None:
                    self.cache_hits += 1
                    self.replayed_in += hit.input_tokens  # what the cached answers cost when they were sent
                    self.replayed_out += hit.output_tokens
                    self.succeed(keyed[key], hit.text, cached=True)
                    continue
                self.inflight[key] = keyed[key]
                await self._enqueue(queue, key, prompt, body, keyed[key][0])
            if first and queue.qsize():
                # Let the first requests go out (connections open) before rendering more.
                first = False
                while queue.qsize():
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(0)  # replies that arrived meanwhile go first
        await self._end_feed(queue)
        for _ in range(self.concurrency):
            await queue.put(None)

    async def _enqueue(self, queue: asyncio.Queue, key: bytes, prompt: Any, body: dict[str, Any], i: int) -> None:
        """A request that missed the cache goes to the workers (`engine.packing` packs them instead)."""
        budget = self.budget
        bound = budget.bound(body) if budget is not None else None  # max_cost: its upper bound
        await queue.put((key, body, estimate_tokens(prompt, self.spec), bound))

    async def _end_feed(self, queue: asyncio.Queue) -> None:
        """Every request was fed (a packed run sends its last packs here)."""

    async def _queue_below(self, queue: asyncio.Queue, level: int) -> None:
        while queue.qsize() >= level and self.stopped is None:
            await asyncio.sleep(0.05)

    # -- sending -------------------------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue) -> None:
        op = self.spec.op
        send = self.client.send_built
        while True:
            item = await queue.get()
            if item is None or self.stopped is not None:
                return
            key, body, est, bound = item
            try:  # the body that was keyed is the body that is sent: built once
                reply = await self.send(functools.partial(send, op, self.route, body), est,
                                        self.inflight.get(key, ()), bound)
                if reply is not None:
                    self._finish_ok(key, reply)
                else:
                    self.inflight.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not a service error: fail this request, keep the run going
                self.fail(self.inflight.pop(key, ()), f"unexpected error: {describe(exc)}")

    def _finish_ok(self, key: bytes, reply: Any) -> None:
        from foundry_magics.store.cache import CachedReply

        usage = reply.usage
        self.in_tokens += usage.input_tokens
        self.out_tokens += usage.output_tokens
        self.cached_tokens += usage.cached_input_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        waiting = self.inflight.pop(key, ())
        if reply.finish_reason == "content_filter":
            cats = ", ".join(reply.filtered) if reply.filtered else "unspecified"
            self.fail(waiting, f"ContentFilter: the completion was filtered ({cats})")
            return
        self.cache.put(key, self.spec.op, CachedReply(reply.text, reply.finish_reason, usage.input_tokens,
                                                      usage.output_tokens, reply.model, usage.cached_input_tokens,
                                                      usage.reasoning_tokens))
        if self.cache.pending >= FLUSH_AT:
            self.flush()
        self.succeed(waiting, reply.text)
