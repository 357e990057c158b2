"""FoundryClient and AsyncFoundryClient.

`_BaseClient` holds everything that does no I/O: building requests per endpoint kind,
parsing replies, mapping errors. The two clients each do their own I/O (the sync path never
wraps the async one) with the same retry policy: 408/409/429/5xx, connection errors and
unparseable bodies are retried with `retry-after(-ms)` or exponential backoff with jitter,
bounded by `max_retries` and a total `deadline`; a quota block fails at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Sequence

import httpx

from foundry_magics import __version__
from foundry_magics.rest.auth import REDACTED, auth_for
from foundry_magics.connections.connection import Connection
from foundry_magics.errors import (
    ConfigurationError,
    ConnectionFailed,
    FoundryError,
    HTTPStatusError,
    ResponseError,
    StreamError,
    TimeoutError,
    error_from_response,
    filtered_categories,
)
from foundry_magics.rest.models import Delta, Reply, Usage
from foundry_magics.rest.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from foundry_magics.rest.routes import (
    DEFAULT_EMBEDDING_MODEL,
    EMULATOR_DEFAULT_MODEL,
    Route,
    models_from_listing,
    route_for,
    uses_max_completion_tokens,
)
from foundry_magics.rest.schemas import chat_response_format, responses_text_format
from foundry_magics.rest.sse import ChatStreamState, ResponsesStreamState, SSEDecoder, finish_reason_of

__all__ = ["FoundryClient", "AsyncFoundryClient", "Stream", "AsyncStream", "CallRecord", "EMBED_BATCH"]

log = logging.getLogger("foundry_magics.http")
EMBED_BATCH = 2048
_DEFAULT_DEADLINE = 600.0


@dataclass
class CallRecord:
    """What one finished call cost; passed to `on_record` hooks (history, usage). No secrets."""

    op: str
    connection: str
    model: str | None
    request: dict[str, Any]
    reply: Reply | None
    latency: float
    error: str | None = None
    interrupted: bool = False
    started: float = field(default_factory=time.time)


def _number(value: Any, name: str, kind: type, expected: str) -> Any:
    if isinstance(value, bool):
        value = None
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be {expected.split(', e.g.')[0]}, got {value!r}.",
                                 hint=f"Use {expected.split('e.g. ')[-1]}.") from None
    if kind is int and isinstance(value, float) and value != out:
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}.", hint=f"Use {expected.split('e.g. ')[-1]}.")
    return out


def _resolve_connection(conn: Connection | str | None) -> Connection:
    if isinstance(conn, Connection):
        return conn
    from foundry_magics.connections import session# core module; imported late to keep `import foundry_magics` light

    if conn is None:
        return session.current_connection()
    return session.resolve(conn)


class _BaseClient:
    def __init__(
        self,
        conn: Connection | str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 6,
        deadline: float | None = None,
        credential: Any = None,
        on_record: Callable[[CallRecord], None] | None = None,
    ) -> None:
        timeout = _number(timeout, "timeout", float, "a positive number of seconds, e.g. timeout=60")
        max_retries = _number(max_retries, "max_retries", int, "a whole number, 0 or more, e.g. max_retries=6")
        if deadline is not None:
            deadline = _number(deadline, "deadline", float, "a positive number of seconds, e.g. deadline=600")
        if timeout <= 0 or (deadline is not None and deadline <= 0):
            raise ConfigurationError(f"timeout and deadline must be positive, got {timeout!r} and {deadline!r}.",
                                     hint="Use a number of seconds, e.g. timeout=60.")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {max_retries!r}.",
                                     hint="Use max_retries=0 to never retry.")
        self.connection = _resolve_connection(conn)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.deadline = float(deadline) if deadline is not None else max(_DEFAULT_DEADLINE, self.timeout * 2)
        self.auth = auth_for(self.connection, credential)  # a missing key fails here, before sending
        self.on_record = on_record
        self._headers = {"user-agent": f"foundry-magics/{__version__}", "accept": "application/json"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(connection={self.connection.label!r}, kind={self.connection.kind!r})"

    # ------------------------------------------------------------------ request building

    def _model(self, model: str | None) -> str | None:
        model = model or self.connection.model
        if not model and self.connection.kind == "emulator":
            model = EMULATOR_DEFAULT_MODEL
        return model

    def _require_model(self, model: str | None, route: Route) -> None:
        if route.model_in_body and not model:
            raise ConfigurationError(
                f"No model chosen for {self.connection.label}.",
                hint="Pass model='NAME' (or -m NAME, or `%foundry use NAME`); `%foundry models` lists them.",
            )

    def build_chat(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[dict[str, Any]] | None = None,
        system: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        schema: Any = None,
        stream: bool = False,
        extra_body: dict[str, Any] | None = None,
    ) -> tuple[Route, dict[str, Any]]:
        if messages is not None and (isinstance(messages, (str, bytes)) or not all(isinstance(m, dict) for m in messages)):
            raise ConfigurationError(
                "messages must be a list of {'role': ..., 'content': ...} dicts.",
                hint='For one prompt use chat("text"); for a history use messages=[{"role": "user", "content": "..."}].',
            )
        msgs = list(messages or [])
        if (prompt is None or not str(prompt).strip()) and not msgs:
            raise ConfigurationError("Nothing to send: the prompt is empty.", hint="Give a prompt or messages=[...].")
        if system and not (msgs and msgs[0].get("role") in ("system", "developer")):
            msgs.insert(0, {"role": "system", "content": system})
        if prompt is not None:
            msgs.append({"role": "user", "content": prompt})
        model = self._model(model)
        route = route_for(self.connection, "chat", model)
        self._require_model(model, route)
        body: dict[str, Any] = {"messages": msgs}
        if route.model_in_body:
            body["model"] = model
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_completion_tokens" if uses_max_completion_tokens(model) else "max_tokens"] = max_tokens
        if schema is not None:
            body["response_format"] = chat_response_format(schema)
        if stream:
            body["stream"] = True
            if self.connection.kind != "foundry-models":
                body["stream_options"] = {"include_usage": True}
        if extra_body:
            body.update(extra_body)
        return route, body

    def build_respond(
        self,
        prompt: str | None = None,
        *,
        input: Any = None,  # noqa: A002 - the API's own name
        system: str | None = None,
        model: str | None = None,
        previous_response_id: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        schema: Any = None,
        stream: bool = False,
        extra_body: dict[str, Any] | None = None,
    ) -> tuple[Route, dict[str, Any]]:
        payload = input if input is not None else prompt
        if payload is None or (isinstance(payload, str) and not payload.strip()) or payload == []:
            raise ConfigurationError("Nothing to send: the prompt is empty.", hint="Give a prompt or input=[...].")
        model = self._model(model)
        route = route_for(self.connection, "responses", model)
        self._require_model(model, route)
        body: dict[str, Any] = {"model": model, "input": payload}
        if system:
            body["instructions"] = system
        if previous_response_id:
            body["previous_response_id"] = previous_response_id
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_output_tokens"] = max_tokens
        if schema is not None:
            body["text"] = responses_text_format(schema)
        if stream:
            body["stream"] = True
        if extra_body:
            body.update(extra_body)
        return route, body

    def build_embed(self, texts: Sequence[str], model: str | None, dimensions: int | None) -> tuple[Route, str | None]:
        model = model or (self.connection.model if self.connection.kind == "foundry-models" else None)
        model = model or DEFAULT_EMBEDDING_MODEL
        return route_for(self.connection, "embeddings", model), model

    def dry_run(self, api: str = "chat", *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The exact request `chat`/`respond` would send, with secrets redacted. Sends nothing."""
        build = self.build_respond if api == "responses" else self.build_chat
        route, body = build(*args, **kwargs)
        url = str(httpx.URL(route.url, params=route.params or None))
        headers = {"content-type": "application/json", **self._headers, **self.auth.describe()}  # type: ignore[attr-defined]
        return {"method": route.method, "url": url, "headers": headers, "json": body}

    # ------------------------------------------------------------------ parsing

    def _scrub(self, text: str) -> str:
        """Remove the live key or token from text the service sent back (some echo it)."""
        for secret in self.auth.secrets():  # type: ignore[attr-defined]
            if secret and secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _scrub_error(self, exc: FoundryError) -> FoundryError:
        exc.message = self._scrub(exc.message)
        exc.args = (exc.message,)
        return exc

    def _status_error(self, resp: httpx.Response, text: str) -> HTTPStatusError:
        return error_from_response(
            resp.status_code,
            self._scrub(text),
            request_id=_request_id(resp),
            retry_after=parse_retry_after(resp.headers),
        )

    @staticmethod
    def _json(resp: httpx.Response, text: str) -> Any:
        ctype = resp.headers.get("content-type", "")
        if "json" not in ctype and text.lstrip()[:1] not in ("{", "["):
            raise ResponseError(
                f"Expected JSON from {resp.request.url.path}, got {ctype or 'no content-type'} "
                f"({len(text)} bytes).",
                hint="The URL may point at a web page or a proxy rather than the API: check the endpoint.",
            )
        try:
            return json.loads(text)
        except ValueError:
            raise ResponseError(
                f"The service sent a body that is not valid JSON ({len(text)} bytes).",
                hint="This is usually a transient proxy fault: run it again.",
            ) from None

    def _reply_common(self, resp: httpx.Response, latency: float) -> dict[str, Any]:
        return dict(
            latency=latency,
            emulated=resp.headers.get("x-foundry-emulator") == "1" or self.connection.kind == "emulator",
            request_id=_request_id(resp),
            connection=self.connection.label,
        )

    def _chat_reply(self, data: Any, resp: httpx.Response, latency: float) -> Reply:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise ResponseError("The reply has no choices.", hint="Check that the endpoint is a chat completions API.")
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), choices[0])
        message = choice.get("message") or {}
        text = message.get("content") or message.get("refusal") or ""
        if isinstance(text, list):  # some servers return content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        finish = choice.get("finish_reason")
        return Reply(
            text=text,
            model=data.get("model"),
            finish_reason=finish,
            usage=Usage.from_api(data.get("usage")),
            id=data.get("id"),
            raw=data,
            filtered=filtered_categories(choice.get("content_filter_results")) if finish == "content_filter" else {},
            **self._reply_common(resp, latency),
        )

    def _responses_reply(self, data: Any, resp: httpx.Response, latency: float, streamed_text: str = "") -> Reply:
        if not isinstance(data, dict):
            raise ResponseError("The Responses API returned no response object.")
        if data.get("status") == "failed":
            err = data.get("error") or {}
            raise FoundryError(f"The response failed: {err.get('message') or 'no reason given'} ({err.get('code')})")
        text = _output_text(data) or streamed_text
        return Reply(
            text=text,
            model=data.get("model"),
            finish_reason=finish_reason_of(data),
            usage=Usage.from_api(data.get("usage")),
            id=data.get("id"),
            raw=data,
            **self._reply_common(resp, latency),
        )

    def _finish_nonstream(self, op: str, data: Any, resp: httpx.Response, t0: float) -> Reply:
        if op == "chat":
            return self._chat_reply(data, resp, time.perf_counter() - t0)
        return self._responses_reply(data, resp, time.perf_counter() - t0)

    def _finish_stream(self, op: str, state: Any, resp: httpx.Response, t0: float) -> Reply:
        latency = time.perf_counter() - t0
        if op == "chat":
            return Reply(text=state.text, model=state.model, finish_reason=state.finish_reason,
                         usage=state.usage or Usage(), id=state.id, filtered=state.filtered,
                         **self._reply_common(resp, latency))
        return self._responses_reply(state.response, resp, latency, streamed_text=state.text)

    def _embeddings(self, data: Any, n: int) -> list[list[float]]:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != n:
            raise ResponseError(f"Expected {n} embeddings, got {len(items) if isinstance(items, list) else 'none'}.")
        ordered = sorted(items, key=lambda d: d.get("index", 0))
        return [list(map(float, d["embedding"])) for d in ordered]

    def _record(self, op: str, body: dict[str, Any], reply: Reply | None, latency: float,
                error: BaseException | None = None, interrupted: bool = False) -> None:
        if self.on_record is None:
            return
        rec = CallRecord(op, self.connection.label, (reply.model if reply else None) or body.get("model"),
                         body, reply, latency, error=_short(error), interrupted=interrupted)
        try:
            self.on_record(rec)
        except Exception:  # a broken hook must never break a call
            log.exception("on_record hook failed")

    def _check_deadline(self, policy: RetryPolicy, route: Route) -> None:
        if policy.remaining() <= 0:
            raise TimeoutError(
                f"The reply from {httpx.URL(route.url).host} was still arriving when the "
                f"{policy.deadline:g} s deadline passed.",
                hint="Raise deadline= (or the timeout), or check the network between you and the endpoint.",
            )

    def _timeout(self, policy: RetryPolicy) -> httpx.Timeout:
        total = max(0.05, min(self.timeout, policy.remaining()))
        return httpx.Timeout(total, connect=min(total, 10.0))

    def _log_request(self, route: Route, attempt: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            redacted = {**self._headers, **self.auth.describe()}  # type: ignore[attr-defined]
            log.debug("%s %s attempt=%d headers=%s", route.method, route.url, attempt, redacted)


def _decode(resp: httpx.Response, raw: bytes) -> str:
    try:
        return raw.decode(resp.charset_encoding or "utf-8", "replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", "replace")


def _request_id(resp: httpx.Response) -> str | None:
    return resp.headers.get("x-request-id") or resp.headers.get("apim-request-id")


def _short(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _output_text(data: dict[str, Any]) -> str:
    if isinstance(data.get("output_text"), str):
        return data["output_text"]
    parts = []
    for item in data.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            for c in item.get("content") or []:
                if isinstance(c, dict) and c.get("type") == "output_text":
                    parts.append(c.get("text") or "")
    return "".join(parts)


def _transport_error(exc: Exception, url: str) -> FoundryError:
    host = httpx.URL(url).host
    if isinstance(exc, httpx.TimeoutException):
        return TimeoutError(
            f"No answer from {host} within the timeout ({type(exc).__name__}).",
            hint="Raise timeout= (or %config FoundryMagics.timeout), or check that the endpoint is up.",
        )
    return ConnectionFailed(
        f"Could not reach {host}: {type(exc).__name__}: {str(exc) or 'connection failed'}.",
        hint="Check the endpoint URL and your network; for the local emulator run `%foundry emulator start`.",
    )


def _feed_tail(state: Any, tail: Any) -> Delta | None:
    """The bytes after the last complete event of a stream that ended early: a half-written
    event is not an error of its own; the caller reports the stream as unfinished."""
    if tail is None:
        return None
    try:
        return state.feed(tail)
    except ResponseError:
        return None


def _stream_cut(exc: Exception, partial: str) -> StreamError:
    return StreamError(
        f"The stream was cut after {len(partial)} characters ({type(exc).__name__}).",
        partial=partial,
        hint="The text so far was kept and is incomplete; run it again to get the whole reply.",
    )


def _stream_unfinished(partial: str) -> StreamError:
    return StreamError(
        f"The stream ended before the service said it was complete ({len(partial)} characters received).",
        partial=partial,
        hint="The text so far was kept and is incomplete; run it again to get the whole reply.",
    )


# ====================================================================== synchronous


class Stream:
    """Iterate for `Delta`s. `.text` is the text so far; `.reply` the Reply once finished."""

    def __init__(self, start: Callable[["Stream"], Iterator[Delta]]) -> None:
        self._deltas = start(self)
        self.reply: Reply | None = None
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

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


class FoundryClient(_BaseClient):
    """Synchronous client. `conn=None` uses the current connection (`fm.current_connection()`)."""

    def __init__(self, conn: Connection | str | None = None, *, timeout: float = 60.0, max_retries: int = 6,
                 deadline: float | None = None, credential: Any = None, transport: httpx.BaseTransport | None = None,
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

    # -- transport with retries ------------------------------------------------------

    def _send(self, route: Route, body: dict[str, Any] | None, *, stream: bool = False) -> tuple[httpx.Response, Any]:
        policy = RetryPolicy(self.max_retries, self.deadline)
        while True:
            err: FoundryError
            self._log_request(route, policy.attempts)
            try:
                req = self._http.build_request(route.method, route.url, params=route.params or None, json=body,
                                               timeout=self._timeout(policy))
                resp = self._http.send(req, stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                err = _transport_error(exc, route.url)
            else:
                try:
                    if resp.status_code < 400 and stream:
                        return resp, None
                    chunks = []
                    for chunk in resp.iter_bytes():  # each read is bounded by the timeout...
                        chunks.append(chunk)
                        self._check_deadline(policy, route)  # ...and the whole body by the deadline
                    text = _decode(resp, b"".join(chunks))
                    if resp.status_code < 400:
                        return resp, self._json(resp, text)
                    err = self._status_error(resp, text)
                    if resp.status_code not in RETRY_STATUSES:
                        raise err
                except ResponseError as exc:
                    err = exc
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    err = _transport_error(exc, route.url)
                finally:
                    if not stream or resp.status_code >= 400:
                        resp.close()
            delay = policy.next_delay(getattr(err, "retry_after", None))
            if delay is None:
                raise err
            time.sleep(delay)

    # -- public API ------------------------------------------------------------------

    def chat(self, prompt: str | None = None, *, stream: bool = False, **kwargs: Any) -> Any:
        """Chat completions -> Reply; with stream=True -> Stream of Deltas."""
        route, body = self.build_chat(prompt, stream=stream, **kwargs)
        if stream:
            return Stream(lambda sink: self._stream(route, body, "chat", sink))
        t0 = time.perf_counter()
        try:
            resp, data = self._send(route, body)
            reply = self._chat_reply(data, resp, time.perf_counter() - t0)
        except FoundryError as exc:
            self._record("chat", body, None, time.perf_counter() - t0, exc)
            raise
        self._record("chat", body, reply, reply.latency or 0.0)
        return reply

    def respond(self, prompt: str | None = None, *, stream: bool = False, **kwargs: Any) -> Any:
        """Responses API -> Reply (with `.id` for previous_response_id); stream=True -> Stream."""
        route, body = self.build_respond(prompt, stream=stream, **kwargs)
        if stream:
            return Stream(lambda sink: self._stream(route, body, "responses", sink))
        t0 = time.perf_counter()
        try:
            resp, data = self._send(route, body)
            reply = self._responses_reply(data, resp, time.perf_counter() - t0)
        except FoundryError as exc:
            self._record("responses", body, None, time.perf_counter() - t0, exc)
            raise
        self._record("responses", body, reply, reply.latency or 0.0)
        return reply

    def embed(self, texts: Iterable[str] | str, *, model: str | None = None, dimensions: int | None = None) -> list[list[float]]:
        """Embeddings in input order, batched at 2048 inputs per request."""
        items = [texts] if isinstance(texts, str) else list(texts)
        route, model = self.build_embed(items, model, dimensions)
        out: list[list[float]] = []
        for start in range(0, len(items), EMBED_BATCH):
            batch = items[start : start + EMBED_BATCH]
            body = _embed_body(route, model, batch, dimensions)
            _, data = self._send(route, body)
            out.extend(self._embeddings(data, len(batch)))
        return out

    def models(self) -> list[str]:
        """Deployment / model names, where the endpoint kind can list them."""
        route = route_for(self.connection, "models", None)
        _, data = self._send(route, None)
        return models_from_listing(self.connection, data)

    # -- streaming ------------------------------------------------------------------

    def _stream(self, route: Route, body: dict[str, Any], op: str, sink: "Stream") -> Iterator[Delta]:
        t0 = time.perf_counter()
        state: Any = ChatStreamState() if op == "chat" else ResponsesStreamState()
        reply: Reply | None = None
        try:
            resp, _ = self._send(route, body, stream=True)
            try:
                ctype = resp.headers.get("content-type", "")
                if "event-stream" not in ctype:  # a server that ignored stream=True
                    text = resp.read().decode("utf-8", "replace")
                    data = self._json(resp, text)
                    reply = self._finish_nonstream(op, data, resp, t0)
                    yield Delta(text=reply.text, finish_reason=reply.finish_reason, usage=reply.usage, model=reply.model)
                else:
                    decoder = SSEDecoder()
                    try:
                        for chunk in resp.iter_text():
                            for ev in decoder.feed(chunk):
                                d = state.feed(ev)
                                if d is not None:
                                    yield d
                                if state.done and op == "chat":
                                    break
                            if state.done:
                                break
                        if not state.done:
                            tail = decoder.flush()
                            d = _feed_tail(state, tail)
                            if d is not None:
                                yield d
                    except (httpx.TimeoutException, httpx.TransportError) as exc:
                        raise _stream_cut(exc, state.text) from None
                    except StreamError as exc:
                        raise self._scrub_error(exc) from None
                    if not state.done:
                        raise _stream_unfinished(state.text)
                    reply = self._finish_stream(op, state, resp, t0)
            finally:
                resp.close()
        except GeneratorExit:
            self._record(op, body, None, time.perf_counter() - t0, interrupted=True)
            raise
        except FoundryError as exc:
            self._record(op, body, None, time.perf_counter() - t0, exc)
            raise
        sink.reply = reply
        self._record(op, body, reply, time.perf_counter() - t0)



def _embed_body(route: Route, model: str | None, batch: list[str], dimensions: int | None) -> dict[str, Any]:
    if not all(isinstance(t, str) for t in batch):
        bad = next(t for t in batch if not isinstance(t, str))
        raise ConfigurationError(f"Embeddings need strings, got {type(bad).__name__}: {bad!r:.60}.",
                                 hint="Convert the values with str() or drop missing values first.")
    body: dict[str, Any] = {"input": batch}
    if route.model_in_body:
        body["model"] = model
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


# ====================================================================== asynchronous


class AsyncStream:
    """`async for delta in stream`; `.text` so far; `.reply` once finished."""

    def __init__(self, start: Callable[["AsyncStream"], AsyncIterator[Delta]]) -> None:
        self._deltas = start(self)
        self.reply: Reply | None = None
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

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


class AsyncFoundryClient(_BaseClient):
    """The same methods as FoundryClient, awaitable. Create and use it on one event loop."""

    def __init__(self, conn: Connection | str | None = None, *, timeout: float = 60.0, max_retries: int = 6,
                 deadline: float | None = None, credential: Any = None,
                 transport: httpx.AsyncBaseTransport | None = None, limits: httpx.Limits | None = None,
                 on_record: Callable[[CallRecord], None] | None = None) -> None:
        super().__init__(conn, timeout=timeout, max_retries=max_retries, deadline=deadline,
                         credential=credential, on_record=on_record)
        self._http = httpx.AsyncClient(auth=self.auth, headers=self._headers, transport=transport,
                                       timeout=self.timeout, follow_redirects=False,
                                       limits=limits or httpx.Limits(max_connections=256, max_keepalive_connections=256))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncFoundryClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _send(self, route: Route, body: dict[str, Any] | None, *, stream: bool = False) -> tuple[httpx.Response, Any]:
        policy = RetryPolicy(self.max_retries, self.deadline)
        while True:
            err: FoundryError
            self._log_request(route, policy.attempts)
            try:
                req = self._http.build_request(route.method, route.url, params=route.params or None, json=body,
                                               timeout=self._timeout(policy))
                resp = await self._http.send(req, stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                err = _transport_error(exc, route.url)
            else:
                try:
                    if resp.status_code < 400 and stream:
                        return resp, None
                    chunks = []
                    async for chunk in resp.aiter_bytes():
                        chunks.append(chunk)
                        self._check_deadline(policy, route)
                    text = _decode(resp, b"".join(chunks))
                    if resp.status_code < 400:
                        return resp, self._json(resp, text)
                    err = self._status_error(resp, text)
                    if resp.status_code not in RETRY_STATUSES:
                        raise err
                except ResponseError as exc:
                    err = exc
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    err = _transport_error(exc, route.url)
                finally:
                    if not stream or resp.status_code >= 400:
                        await resp.aclose()
            delay = policy.next_delay(getattr(err, "retry_after", None))
            if delay is None:
                raise err
            await asyncio.sleep(delay)

    async def chat(self, prompt: str | None = None, *, stream: bool = False, **kwargs: Any) -> Any:
        route, body = self.build_chat(prompt, stream=stream, **kwargs)
        if stream:
            return AsyncStream(lambda sink: self._stream(route, body, "chat", sink))
        t0 = time.perf_counter()
        try:
            resp, data = await self._send(route, body)
            reply = self._chat_reply(data, resp, time.perf_counter() - t0)
        except FoundryError as exc:
            self._record("chat", body, None, time.perf_counter() - t0, exc)
            raise
        self._record("chat", body, reply, reply.latency or 0.0)
        return reply

    async def respond(self, prompt: str | None = None, *, stream: bool = False, **kwargs: Any) -> Any:
        route, body = self.build_respond(prompt, stream=stream, **kwargs)
        if stream:
            return AsyncStream(lambda sink: self._stream(route, body, "responses", sink))
        t0 = time.perf_counter()
        try:
            resp, data = await self._send(route, body)
            reply = self._responses_reply(data, resp, time.perf_counter() - t0)
        except FoundryError as exc:
            self._record("responses", body, None, time.perf_counter() - t0, exc)
            raise
        self._record("responses", body, reply, reply.latency or 0.0)
        return reply

    async def embed(self, texts: Iterable[str] | str, *, model: str | None = None,
                    dimensions: int | None = None) -> list[list[float]]:
        items = [texts] if isinstance(texts, str) else list(texts)
        route, model = self.build_embed(items, model, dimensions)
        out: list[list[float]] = []
        for start in range(0, len(items), EMBED_BATCH):
            batch = items[start : start + EMBED_BATCH]
            _, data = await self._send(route, _embed_body(route, model, batch, dimensions))
            out.extend(self._embeddings(data, len(batch)))
        return out

    async def models(self) -> list[str]:
        route = route_for(self.connection, "models", None)
        _, data = await self._send(route, None)
        return models_from_listing(self.connection, data)

    async def _stream(self, route: Route, body: dict[str, Any], op: str, sink: "AsyncStream") -> AsyncIterator[Delta]:
        t0 = time.perf_counter()
        state: Any = ChatStreamState() if op == "chat" else ResponsesStreamState()
        reply: Reply | None = None
        try:
            resp, _ = await self._send(route, body, stream=True)
            try:
                if "event-stream" not in resp.headers.get("content-type", ""):
                    text = (await resp.aread()).decode("utf-8", "replace")
                    reply = self._finish_nonstream(op, self._json(resp, text), resp, t0)
                    yield Delta(text=reply.text, finish_reason=reply.finish_reason, usage=reply.usage, model=reply.model)
                else:
                    decoder = SSEDecoder()
                    try:
                        async for chunk in resp.aiter_text():
                            for ev in decoder.feed(chunk):
                                d = state.feed(ev)
                                if d is not None:
                                    yield d
                                if state.done and op == "chat":
                                    break
                            if state.done:
                                break
                        if not state.done:
                            tail = decoder.flush()
                            d = _feed_tail(state, tail)
                            if d is not None:
                                yield d
                    except (httpx.TimeoutException, httpx.TransportError) as exc:
                        raise _stream_cut(exc, state.text) from None
                    except StreamError as exc:
                        raise self._scrub_error(exc) from None
                    if not state.done:
                        raise _stream_unfinished(state.text)
                    reply = self._finish_stream(op, state, resp, t0)
            finally:
                await resp.aclose()
        except (GeneratorExit, asyncio.CancelledError):
            self._record(op, body, None, time.perf_counter() - t0, interrupted=True)
            raise
        except FoundryError as exc:
            self._record(op, body, None, time.perf_counter() - t0, exc)
            raise
        sink.reply = reply
        self._record(op, body, reply, time.perf_counter() - t0)
