"""FoundryClient (sync, on httpx) and AsyncFoundryClient (async, on aiohttp).

Everything that does no I/O - building requests, parsing replies, mapping errors, decoding
streams, deciding retries - is in `base.py` and `retry.py`. The two classes below hold only
the sending, the reading and the waiting, each in its own style (the sync path never wraps
the async one):

    client = FoundryClient(conn, timeout=60, max_retries=6)   # conn=None: the current connection
    r = client.chat("Hello")                                   # -> Reply
    for delta in client.chat("Hello", stream=True): ...        # -> Stream of Deltas
    async with AsyncFoundryClient(conn) as client:             # the same methods, awaitable;
        r = await client.respond("Hello")                      # `async with` closes its pool
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence

import httpx

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import EMBED_BATCH, LIST_MAX_PAGES, MAX_RETRIES, TIMEOUT
from foundry_magics.errors import ConnectionFailed, FoundryError, FoundryTimeoutError
from foundry_magics.rest.agents import (
    Agent,
    ConversationItem,
    agent_route,
    agents_route,
    conversation_body,
    conversation_route,
    conversations_route,
)
from foundry_magics.rest.base import BaseClient, CallRecord, refuse_unknown, text_decoder, transport_error
from foundry_magics.rest.http import async_session
from foundry_magics.rest.models import Delta, Reply
from foundry_magics.rest.retry import RetryPolicy
from foundry_magics.rest.routes import Route, route_for

__all__ = ["FoundryClient", "AsyncFoundryClient", "Stream", "AsyncStream", "CallRecord", "EMBED_BATCH"]

_HTTPX_FAILURES = (httpx.TimeoutException, httpx.TransportError)
_CUT = (ConnectionFailed, FoundryTimeoutError)


def _whole(reply: Reply) -> Delta:
    """A server that ignored stream=True answered with the whole reply: one Delta."""
    return Delta(text=reply.text, finish_reason=reply.finish_reason, usage=reply.usage, model=reply.model)


# ====================================================================== synchronous


class _Streamed:
    """What both stream classes hold: the deltas' source, the text so far, the Reply at the end."""

    def __init__(self, start: Callable[[Any], Any]) -> None:
        self._deltas = start(self)
        self.reply: Reply | None = None
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)


class Stream(_Streamed):
    """Iterate for `Delta`s. `.text` is the text so far; `.reply` the Reply once finished."""

    def __iter__(self) -> Iterator[Delta]:
        for d in self._deltas:
            if d.text:
                self.parts.append(d.text)
            yield d

    def until_done(self) -> Reply:
        for _ in self:
            pass
        assert self.reply is not None
        return self.reply

    def close(self) -> None:
        close = getattr(self._deltas, "close", None)
        if close:
            close()


class FoundryClient(BaseClient):
    """Synchronous client. `conn=None` uses the current connection (`fm.current_connection()`)."""

    def __init__(self, conn: Connection | str | None = None, *, timeout: float = TIMEOUT,
                 max_retries: int = MAX_RETRIES, deadline: float | None = None, credential: Any = None,
                 transport: httpx.BaseTransport | None = None,
                 on_record: Callable[[CallRecord], None] | None = None) -> None:
        super().__init__(conn, timeout=timeout, max_retries=max_retries, deadline=deadline,
                         credential=credential, on_record=on_record)
        self._http = httpx.Client(auth=self.auth, headers=self._headers, transport=transport,
                                  timeout=self.timeout, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "FoundryClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------

    def chat(self, prompt: str | None = None, *, messages: Sequence[Mapping[str, Any]] | None = None,
             system: str | None = None, model: str | None = None, temperature: float | None = None,
             max_tokens: int | None = None, schema: Any = None, stream: bool = False,
             extra_body: Mapping[str, Any] | None = None, images: Any = None, **unknown: Any) -> Reply | Stream:
        """Chat completions -> Reply; with stream=True -> Stream of Deltas. `images`: paths,
        http(s) URLs, bytes or PIL images attached to the prompt."""
        refuse_unknown(unknown, self.build_chat, "client.chat()")
        self.ensure_model(model, "chat")
        route, body = self.build_chat(prompt, messages=messages, system=system, model=model, temperature=temperature,
                                      max_tokens=max_tokens, schema=schema, stream=stream, extra_body=extra_body,
                                      images=images)
        return self._call("chat", route, body, stream)

    def respond(self, prompt: str | None = None, *, input: Any = None, system: str | None = None,  # noqa: A002
                model: str | None = None, previous_response_id: str | None = None,
                temperature: float | None = None, max_tokens: int | None = None, schema: Any = None,
                stream: bool = False, extra_body: Mapping[str, Any] | None = None,
                images: Any = None, agent: str | Mapping[str, Any] | None = None,
                conversation: str | None = None, **unknown: Any) -> Reply | Stream:
        """Responses API -> Reply (with `.id` for previous_response_id); stream=True -> Stream.
        `agent`: "NAME[:VERSION]" of a project's agent; `conversation`: a server-side conversation id."""
        refuse_unknown(unknown, self.build_respond, "client.respond()")
        if agent is None:
            self.ensure_model(model, "responses")
        route, body = self.build_respond(prompt, input=input, system=system, model=model,
                                         previous_response_id=previous_response_id, temperature=temperature,
                                         max_tokens=max_tokens, schema=schema, stream=stream, extra_body=extra_body,
                                         images=images, agent=agent, conversation=conversation)
        return self._call("responses", route, body, stream)

    def embed(self, texts: Iterable[str] | str, *, model: str | None = None,
              dimensions: int | None = None) -> list[list[float]]:
        """Embeddings in input order, batched at EMBED_BATCH (2048) inputs per request."""
        out: list[list[float]] = []
        for route, body, n in self._embed_requests(texts, model, dimensions):
            t0 = time.perf_counter()
            _, data = self._send(route, body)
            out.extend(self._embeddings(data, n))
            self._count_embeddings(body, data, t0)  # fm.usage() counts direct calls too
        return out

    def models(self) -> list[str]:
        """Deployment / model names, where the endpoint kind can list them."""
        _, data = self._send(route_for(self.connection, "models", None), None)
        return self._models(data)

    def agents(self) -> list[Agent]:
        """The agents of a Foundry project (name, latest version, model, instructions, tools)."""
        route: Route | None = agents_route(self.connection)
        out: list[Agent] = []
        for _ in range(LIST_MAX_PAGES):
            if route is None:
                break
            _, data = self._send(route, None)
            out.extend(self._agents(data))
            route = self._next_page(route, data)
        return out

    def agent(self, name: str) -> Agent:
        """One agent of the project, by name (its latest version)."""
        _, data = self._send(agent_route(self.connection, name), None)
        return self._agent(data, name)

    def create_conversation(self, items: Sequence[Any] | None = None,
                            metadata: Mapping[str, str] | None = None) -> str:
        """A new server-side conversation; returns its id (for respond(conversation=...))."""
        _, data = self._send(conversations_route(self.connection), conversation_body(items, metadata))
        return self._conversation_id(data)

    def conversation_items(self, conversation_id: str) -> list[ConversationItem]:
        """The items of a server-side conversation, oldest first (messages and tool items)."""
        route: Route | None = conversation_route(self.connection, conversation_id, "items")
        out: list[ConversationItem] = []
        for _ in range(LIST_MAX_PAGES):
            if route is None:
                break
            _, data = self._send(route, None)
            out.extend(self._items(data))
            route = self._next_page(route, data)
        return out

    def delete_conversation(self, conversation_id: str) -> None:
        self._send(conversation_route(self.connection, conversation_id, method="DELETE"), None)

    def ensure_model(self, model: str | None = None, op: str = "chat") -> None:
        """No model given anywhere: ask the server once (a server serving exactly one is used)."""
        if self.needs_model_list(model, op):
            try:
                self.remember_models(self.models())
            except FoundryError:
                pass  # the request itself then says "No model chosen"

    # -- I/O -------------------------------------------------------------------------

    def _call(self, op: str, route: Route, body: dict[str, Any], stream: bool) -> Reply | Stream:
        if stream:
            return Stream(lambda sink: self._stream(route, body, op, sink))
        with self._recording(op, body) as call:
            resp, data = self._send(route, body)
            call.reply = self._reply(op, data, resp, call.t0)
        return call.reply

    def _send(self, route: Route, body: Any, *, stream: bool = False,
              policy: RetryPolicy | None = None) -> tuple[httpx.Response, Any]:
        """One request with retries (`policy`: the client's by default). With stream=True a 2xx
        comes back unread (the caller closes it)."""
        policy = policy or self._policy()
        while True:
            try:
                return self._attempt(route, body, policy, stream)
            except FoundryError as err:
                delay = policy.next_delay(err)
                if delay is None:
                    raise
            time.sleep(delay)

    def _attempt(self, route: Route, body: Any, policy: RetryPolicy, stream: bool) -> tuple[httpx.Response, Any]:
        self._log_request(route, policy.attempts)
        try:
            resp = self._http.send(self._request(route, body, policy), stream=True)
        except _HTTPX_FAILURES as exc:
            raise transport_error(exc, route.url) from exc
        try:
            if resp.status_code < 400 and stream:
                return resp, None
            return resp, self._body(resp, self._read(resp, policy, route))
        finally:
            if not stream or resp.status_code >= 400:
                resp.close()

    def _request(self, route: Route, body: Any, policy: RetryPolicy) -> httpx.Request:
        """The request of one attempt: a JSON body (the Files API's client sends a file, rest/batches.py)."""
        return self._http.build_request(route.method, route.url, params=route.params or None, json=body,
                                        timeout=self._timeout(policy))

    def _read(self, resp: httpx.Response, policy: RetryPolicy, route: Route) -> bytes:
        chunks = []
        try:
            for chunk in resp.iter_bytes():  # each read is bounded by the timeout...
                chunks.append(chunk)
                self._check_deadline(policy, route)  # ...and the whole body by the deadline
        except _HTTPX_FAILURES as exc:
            raise transport_error(exc, route.url) from exc
        return b"".join(chunks)

    def _stream(self, route: Route, body: dict[str, Any], op: str, sink: Stream) -> Iterator[Delta]:
        reader = self._reader(op)
        with self._recording(op, body) as call:
            resp, _ = self._send(route, body, stream=True)
            try:
                if "event-stream" not in resp.headers.get("content-type", ""):
                    call.reply = self._reply(op, self._body(resp, self._read(resp, self._policy(), route)), resp,
                                             call.t0)
                    yield _whole(call.reply)
                else:
                    try:
                        for chunk in resp.iter_text():
                            yield from reader.feed(chunk)
                            if reader.done:
                                break
                        yield from reader.end()
                    except _HTTPX_FAILURES as exc:
                        raise reader.cut(exc) from None
                    call.reply = reader.reply(resp, call.t0)
            finally:
                resp.close()
            sink.reply = call.reply


# ====================================================================== asynchronous


class AsyncStream(_Streamed):
    """`async for delta in stream`; `.text` so far; `.reply` once finished."""

    async def __aiter__(self) -> AsyncIterator[Delta]:
        async for d in self._deltas:
            if d.text:
                self.parts.append(d.text)
            yield d

    async def until_done(self) -> Reply:
        async for _ in self:
            pass
        assert self.reply is not None
        return self.reply

    async def aclose(self) -> None:
        close = getattr(self._deltas, "aclose", None)
        if close:
            await close()


class AsyncFoundryClient(BaseClient):
    """The same methods as FoundryClient, awaitable. Create and use it on one event loop.

    HTTP goes over one aiohttp pool of `max_connections` (see rest/http.py for why); pass an
    httpx async `transport` (e.g. `httpx.MockTransport`) to go through httpx instead.
    """

    def __init__(self, conn: Connection | str | None = None, *, timeout: float = TIMEOUT,
                 max_retries: int = MAX_RETRIES, deadline: float | None = None, credential: Any = None,
                 transport: httpx.AsyncBaseTransport | None = None, max_connections: int = 256,
                 limits: httpx.Limits | None = None,
                 on_record: Callable[[CallRecord], None] | None = None) -> None:
        super().__init__(conn, timeout=timeout, max_retries=max_retries, deadline=deadline,
                         credential=credential, on_record=on_record)
        if limits is not None and limits.max_connections:  # httpx's spelling, kept for old callers
            max_connections = limits.max_connections
        self._io = async_session(self.auth, self._headers, transport=transport, max_connections=max_connections,
                                 timeout=self.timeout)

    async def aclose(self) -> None:
        await self._io.aclose()

    async def __aenter__(self) -> "AsyncFoundryClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- public API ------------------------------------------------------------------

    async def chat(self, prompt: str | None = None, *, messages: Sequence[Mapping[str, Any]] | None = None,
                   system: str | None = None, model: str | None = None, temperature: float | None = None,
                   max_tokens: int | None = None, schema: Any = None, stream: bool = False,
                   extra_body: Mapping[str, Any] | None = None, images: Any = None,
                   **unknown: Any) -> Reply | AsyncStream:
        refuse_unknown(unknown, self.build_chat, "client.chat()")
        await self.ensure_model(model, "chat")
        route, body = self.build_chat(prompt, messages=messages, system=system, model=model, temperature=temperature,
                                      max_tokens=max_tokens, schema=schema, stream=stream, extra_body=extra_body,
                                      images=images)
        return await self._call("chat", route, body, stream)

    async def respond(self, prompt: str | None = None, *, input: Any = None,  # noqa: A002
                      system: str | None = None, model: str | None = None, previous_response_id: str | None = None,
                      temperature: float | None = None, max_tokens: int | None = None, schema: Any = None,
                      stream: bool = False, extra_body: Mapping[str, Any] | None = None,
                      images: Any = None, agent: str | Mapping[str, Any] | None = None,
                      conversation: str | None = None, **unknown: Any) -> Reply | AsyncStream:
        refuse_unknown(unknown, self.build_respond, "client.respond()")
        if agent is None:
            await self.ensure_model(model, "responses")
        route, body = self.build_respond(prompt, input=input, system=system, model=model,
                                         previous_response_id=previous_response_id, temperature=temperature,
                                         max_tokens=max_tokens, schema=schema, stream=stream, extra_body=extra_body,
                                         images=images, agent=agent, conversation=conversation)
        return await self._call("responses", route, body, stream)

    async def embed(self, texts: Iterable[str] | str, *, model: str | None = None,
                    dimensions: int | None = None) -> list[list[float]]:
        out: list[list[float]] = []
        for route, body, n in self._embed_requests(texts, model, dimensions):
            t0 = time.perf_counter()
            _, data = await self._send(route, body)
            out.extend(self._embeddings(data, n))
            self._count_embeddings(body, data, t0)  # fm.usage() counts direct calls too
        return out

    async def models(self) -> list[str]:
        _, data = await self._send(route_for(self.connection, "models", None), None)
        return self._models(data)

    async def agents(self) -> list[Agent]:
        route: Route | None = agents_route(self.connection)
        out: list[Agent] = []
        for _ in range(LIST_MAX_PAGES):
            if route is None:
                break
            _, data = await self._send(route, None)
            out.extend(self._agents(data))
            route = self._next_page(route, data)
        return out

    async def agent(self, name: str) -> Agent:
        _, data = await self._send(agent_route(self.connection, name), None)
        return self._agent(data, name)

    async def create_conversation(self, items: Sequence[Any] | None = None,
                                  metadata: Mapping[str, str] | None = None) -> str:
        _, data = await self._send(conversations_route(self.connection), conversation_body(items, metadata))
        return self._conversation_id(data)

    async def conversation_items(self, conversation_id: str) -> list[ConversationItem]:
        route: Route | None = conversation_route(self.connection, conversation_id, "items")
        out: list[ConversationItem] = []
        for _ in range(LIST_MAX_PAGES):
            if route is None:
                break
            _, data = await self._send(route, None)
            out.extend(self._items(data))
            route = self._next_page(route, data)
        return out

    async def delete_conversation(self, conversation_id: str) -> None:
        await self._send(conversation_route(self.connection, conversation_id, method="DELETE"), None)

    async def ensure_model(self, model: str | None = None, op: str = "chat") -> None:
        if self.needs_model_list(model, op):
            try:
                self.remember_models(await self.models())
            except FoundryError:
                pass

    async def send_built(self, op: str, route: Route, body: dict[str, Any]) -> Reply:
        """Send a request already built by `build` ("chat" or "responses"), not streamed: what
        the engine does with the body it built once for the cache key and the wire."""
        return await self._call(op, route, body, False)  # type: ignore[return-value]

    # -- I/O -------------------------------------------------------------------------

    async def _call(self, op: str, route: Route, body: dict[str, Any], stream: bool) -> Reply | AsyncStream:
        if stream:
            return AsyncStream(lambda sink: self._stream(route, body, op, sink))
        with self._recording(op, body) as call:
            resp, data = await self._send(route, body)
            call.reply = self._reply(op, data, resp, call.t0)
        return call.reply

    async def _send(self, route: Route, body: dict[str, Any] | None, *, stream: bool = False) -> tuple[Any, Any]:
        policy = self._policy()
        content = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        while True:
            try:
                return await self._attempt(route, content, policy, stream)
            except FoundryError as err:
                delay = policy.next_delay(err)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    async def _attempt(self, route: Route, content: bytes | None, policy: RetryPolicy, stream: bool) -> tuple[Any, Any]:
        self._log_request(route, policy.attempts)
        resp = await self._io.send(route, content, self._attempt_timeout(policy))
        try:
            if resp.status_code < 400 and stream:
                return resp, None
            return resp, self._body(resp, await self._read(resp, policy, route))
        finally:
            if not stream or resp.status_code >= 400:
                await resp.aclose()

    async def _read(self, resp: Any, policy: RetryPolicy, route: Route) -> bytes:
        chunks = []
        async for chunk in resp.aiter_bytes():
            chunks.append(chunk)
            self._check_deadline(policy, route)
        return b"".join(chunks)

    async def _stream(self, route: Route, body: dict[str, Any], op: str, sink: AsyncStream) -> AsyncIterator[Delta]:
        reader = self._reader(op)
        with self._recording(op, body) as call:
            resp, _ = await self._send(route, body, stream=True)
            try:
                if "event-stream" not in resp.headers.get("content-type", ""):
                    call.reply = self._reply(op, self._body(resp, await self._read(resp, self._policy(), route)),
                                             resp, call.t0)
                    yield _whole(call.reply)
                else:
                    decode = text_decoder(resp).decode
                    try:
                        async for chunk in resp.aiter_bytes():
                            for d in reader.feed(decode(chunk)):
                                yield d
                            if reader.done:
                                break
                        if not reader.done:
                            for d in [*reader.feed(decode(b"", final=True)), *reader.end()]:
                                yield d
                    except _CUT as exc:
                        raise reader.cut(exc) from None
                    call.reply = reader.reply(resp, call.t0)
            finally:
                await resp.aclose()
            sink.reply = call.reply
