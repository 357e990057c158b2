"""What both clients share: everything that does no I/O.

`BaseClient` validates settings, builds requests per endpoint kind (`build_chat`,
`build_respond`, `build_embed` - also used by dry-run and by the engine's cache keys), turns
response bodies into `Reply`s, maps HTTP and transport failures into the `FoundryError`
tree, scrubs secrets a server echoes back, and records finished calls. `StreamReader` turns
the text of a server-sent-events response into `Delta`s and, at the end, the `Reply`.

`FoundryClient` and `AsyncFoundryClient` (client.py) add only the sending and the waiting.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import httpx

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import (
    CONNECT_TIMEOUT,
    DEFAULT_EMBEDDING_MODEL,
    EMBED_BATCH,
    EMULATOR_MODEL,
    MAX_RETRIES,
    MIN_DEADLINE,
    REDACTED,
    TIMEOUT,
    USER_AGENT,
)
from foundry_magics.errors import (
    AuthError,
    ConfigurationError,
    ConnectionFailed,
    FoundryError,
    FoundryTimeoutError,
    HTTPStatusError,
    ResponseError,
    StreamError,
    describe,
    error_from_response,
    filtered_categories,
)
from foundry_magics.rest.agents import (
    Agent,
    ConversationItem,
    agent_from_object,
    agent_label,
    agent_reference,
    agents_from_listing,
    chat_citations,
    citations_of,
    conversation_id_of,
    conversations_route,
    items_from_listing,
    require_project,
    tool_calls_of,
)
from foundry_magics.rest.auth import EntraAuth, auth_for
from foundry_magics.rest.images import attach_chat, attach_responses, chat_content, image_urls
from foundry_magics.rest.models import Delta, Reply, Usage
from foundry_magics.rest.retry import RetryPolicy, gateway_memory, is_gateway, parse_retry_after, refused_on_loopback
from foundry_magics.rest.routes import Route, models_from_listing, route_for, uses_max_completion_tokens
from foundry_magics.rest.schemas import chat_response_format, responses_text_format
from foundry_magics.rest.sse import ChatStreamState, ResponsesStreamState, SSEDecoder, finish_reason_of

__all__ = ["BaseClient", "CallRecord", "StreamReader", "embed_body", "transport_error", "text_decoder",
           "pop_model_notice", "forget_models"]

log = logging.getLogger("foundry_magics.http")


class ResponseLike(Protocol):
    """What the client reads of a response: an httpx.Response, or the async client's AsyncResponse (rest.http)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def charset_encoding(self) -> str | None: ...


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
    counted: bool = False  # already in the session's usage (`fm.usage()`): the client counted it


def _number(value: Any, name: str, kind: type, example: str) -> Any:
    what = "a whole number, 0 or more" if kind is int else "a positive number of seconds"
    if isinstance(value, bool):
        value = None
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be {what}, got {value!r}.", hint=f"Use {example}.") from None
    if kind is int and isinstance(value, float) and value != out:
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}.", hint=f"Use {example}.")
    return out


_VERB = {"chat": "chat", "responses": "respond"}


def _checked(temperature: Any, max_tokens: Any) -> tuple[Any, Any]:
    """The request options every call shares, checked as every front-end checks them."""
    from foundry_magics.ops.options import check_value

    return check_value("temperature", temperature), check_value("max_tokens", max_tokens)


def refuse_unknown(unknown: Mapping[str, Any], builder: Callable[..., Any], where: str) -> None:
    """A keyword a single call does not take (a run's `concurrency`, a misspelt `temprature`):
    the same ConfigurationError as everywhere, with "did you mean"."""
    if unknown:
        _known_options(builder, unknown, where)


_PARAMS: dict[Any, tuple[str, ...]] = {}  # builder function -> its parameter names (asked per request)


def _known_options(builder: Callable[..., Any], kwargs: Mapping[str, Any], where: str) -> None:
    fn = getattr(builder, "__func__", builder)
    params = _PARAMS.get(fn)
    if params is None:  # inspect.signature costs ~0.1 ms: once per builder, not once per request
        import inspect

        params = _PARAMS[fn] = tuple(inspect.signature(builder).parameters)
    if all(name in params for name in kwargs):
        return
    from foundry_magics.ops.options import unknown_option

    for name in kwargs:
        if name not in params:
            raise unknown_option(name, [p for p in params if p not in ("prompt", "self")], where)


class BaseClient:
    # Every finished chat / Responses call is counted in the session's usage (`fm.usage()`,
    # `%foundry usage`), whoever made it. The engine's clients set this False: a run is counted
    # once, as its report (rows, cache hits, tokens), not once per request as well.
    count_usage: bool = True

    def __init__(
        self,
        conn: Connection | str | None = None,
        *,
        timeout: float = TIMEOUT,
        max_retries: int = MAX_RETRIES,
        deadline: float | None = None,
        credential: Any = None,
        on_record: Callable[[CallRecord], None] | None = None,
    ) -> None:
        timeout = _number(timeout, "timeout", float, f"timeout={TIMEOUT:g}")
        max_retries = _number(max_retries, "max_retries", int, f"max_retries={MAX_RETRIES}")
        if deadline is not None:
            deadline = _number(deadline, "deadline", float, f"deadline={MIN_DEADLINE:g}")
        if timeout <= 0 or (deadline is not None and deadline <= 0):
            raise ConfigurationError(f"timeout and deadline must be positive, got {timeout!r} and {deadline!r}.",
                                     hint=f"Use a number of seconds, e.g. timeout={TIMEOUT:g}.")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {max_retries!r}.",
                                     hint="Use max_retries=0 to never retry.")
        from foundry_magics.connections.session import connection_for  # late: keeps `import foundry_magics` light

        self.connection = connection_for(conn)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.deadline = float(deadline) if deadline is not None else max(MIN_DEADLINE, self.timeout * 2)
        self.auth = auth_for(self.connection, credential)  # a missing key fails here, before sending
        self.on_record = on_record
        # An API Management gateway: its 403 after a success with this key is a token quota (retry.py).
        conn = self.connection
        self._gateway: str | None = None
        if is_gateway(conn.endpoint, conn.key_header if conn.auth == "key" else None):
            key = next(iter(self.auth.secrets()), conn.auth)  # type: ignore[attr-defined]
            self._gateway = gateway_memory.fingerprint(conn.endpoint, key)
        self._headers = {"user-agent": USER_AGENT, "accept": "application/json"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(connection={self.connection.label!r}, kind={self.connection.kind!r})"

    # ------------------------------------------------------------------ request building

    def _model(self, model: str | None) -> str | None:
        model = model or self.connection.model
        if not model and self.connection.kind == "emulator":
            model = EMULATOR_MODEL
        if not model:  # a server that lists exactly one model (Foundry Local, llama.cpp): that one
            listed = _listed.get(_server_of(self.connection))
            if listed is not None and len(listed) == 1:
                model = listed[0]
        return model

    def model_for(self, model: str | None = None) -> str | None:
        """The model a request would name: `model`, else the connection's, else the only one the
        server listed (known once `ensure_model` asked); None when none is known yet."""
        return self._model(model)

    def _require_model(self, model: str | None, route: Route) -> None:
        if route.model_in_body and not model:
            listed = _listed.get(_server_of(self.connection))
            if listed:
                shown = ", ".join(listed[:20]) + (f" (and {len(listed) - 20} more)" if len(listed) > 20 else "")
                raise ConfigurationError(
                    f"No model chosen for {self.connection.label}, which serves {len(listed)} models: {shown}.",
                    hint=f"Pick one: model='{listed[0]}' (or -m {listed[0]}, `%foundry use {listed[0]}`, "
                         f"`%foundry connect URL --model {listed[0]}`).",
                )
            raise ConfigurationError(
                f"No model chosen for {self.connection.label}.",
                hint="Pass model='NAME' (or -m NAME, or `%foundry use NAME`); `%foundry models` lists them.",
            )

    def needs_model_list(self, model: str | None, op: str = "chat") -> bool:
        """Whether a request would lack a model that asking the server could supply: none given
        and none in the connection, on a local OpenAI-compatible server (`_LISTS_ITS_MODEL`) not
        asked yet. The twins then call `models()` once and `remember_models` (the only I/O of it)."""
        if op not in ("chat", "responses") or self._model(model) or self.connection.kind not in _LISTS_ITS_MODEL:
            return False
        return _server_of(self.connection) not in _listed

    def remember_models(self, names: Sequence[str] | None) -> None:
        """What the server listed, for `_model` (exactly one: use it, and say so once) and for
        the error that lists them (several). None: the listing failed; ask again next time."""
        if names is None:
            return
        server = _server_of(self.connection)
        with _listed_lock:
            first = server not in _listed
            _listed[server] = list(names)
        if first and len(names) == 1:
            text = (f"No model was given for {self.connection.label}; it serves only {names[0]!r}, so that is used. "
                    f"(`%foundry use MODEL` or --model chooses another.)")
            log.info(text)
            with _listed_lock:
                _notices.append(text)

    def build_chat(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        schema: Any = None,
        stream: bool = False,
        extra_body: Mapping[str, Any] | None = None,
        images: Any = None,
    ) -> tuple[Route, dict[str, Any]]:
        """The route and JSON body of a chat completions request. Sends nothing.

        `images`: paths, http(s) URLs, bytes or PIL images attached to the prompt (rest.images)."""
        if messages is not None and (
                isinstance(messages, (str, bytes)) or not all(isinstance(m, dict) for m in messages)):
            raise ConfigurationError(
                "messages must be a list of {'role': ..., 'content': ...} dicts.",
                hint='For one prompt use chat("text"); '
                'for a history use messages=[{"role": "user", "content": "..."}].',
            )
        temperature, max_tokens = _checked(temperature, max_tokens)
        msgs = list(messages or [])
        if (prompt is None or not str(prompt).strip()) and not msgs:
            raise ConfigurationError("Nothing to send: the prompt is empty.", hint="Give a prompt or messages=[...].")
        if system and not (msgs and msgs[0].get("role") in ("system", "developer")):
            msgs.insert(0, {"role": "system", "content": system})
        urls = image_urls(images)
        if prompt is not None:
            msgs.append({"role": "user", "content": chat_content(prompt, urls) if urls else prompt})
        elif urls:
            copied = [dict(m) for m in msgs]  # attach_chat edits in place: never the caller's dicts
            attach_chat(copied, urls)
            msgs = list(copied)
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
            if self.connection.kind != "foundry-models":  # /models answers 422 to stream_options
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
        extra_body: Mapping[str, Any] | None = None,
        images: Any = None,
        agent: str | Mapping[str, Any] | None = None,
        conversation: str | None = None,
    ) -> tuple[Route, dict[str, Any]]:
        """The route and JSON body of a Responses API request. Sends nothing. `images` as for build_chat.

        `agent`: "NAME" or "NAME:VERSION" of a Foundry project's agent, sent as an agent reference
        (the agent brings its model; `model=` is sent only when given here). `conversation`: the id
        of a server-side conversation this turn continues (rest.agents)."""
        temperature, max_tokens = _checked(temperature, max_tokens)
        payload = input if input is not None else prompt
        if payload is None or (isinstance(payload, str) and not payload.strip()) or payload == []:
            raise ConfigurationError("Nothing to send: the prompt is empty.", hint="Give a prompt or input=[...].")
        urls = image_urls(images)
        if urls:
            payload = attach_responses(payload, urls)
        body: dict[str, Any]
        if agent is not None:
            ref = agent_reference(agent)
            require_project(self.connection)
            route = route_for(self.connection, "responses", model)
            body = {"agent_reference": ref, "input": payload}
            if model:
                body["model"] = model
        else:
            model = self._model(model)
            route = route_for(self.connection, "responses", model)
            self._require_model(model, route)
            body = {"model": model, "input": payload}
        if conversation is not None:
            if previous_response_id:
                raise ConfigurationError("A turn continues either a conversation or a previous response, not both.",
                                         hint="Pass conversation= or previous_response_id=, not both.")
            if not isinstance(conversation, str) or not conversation.strip():
                raise ConfigurationError(f"{conversation!r} is not a conversation id.",
                                         hint="Create one with client.create_conversation(); ids look like conv_....")
            conversations_route(self.connection)  # a route that serves conversations, or a readable error
            body["conversation"] = conversation.strip()
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

    def build(self, op: str, *args: Any, **kwargs: Any) -> tuple[Route, dict[str, Any]]:
        """`build_respond` for op "responses", else `build_chat`. An option the request does not
        take is refused like every other bad option (ConfigurationError, "did you mean")."""
        if op not in ("chat", "responses"):
            raise ConfigurationError(f"api must be 'chat' or 'responses', got {op!r}.",
                                     hint="chat: chat completions; responses: the Responses API.")
        builder = self.build_respond if op == "responses" else self.build_chat
        _known_options(builder, kwargs, "client.dry_run()" if op == "dry_run" else f"client.{_VERB[op]}()")
        return builder(*args, **kwargs)

    def dry_run(self, api: str = "chat", *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The exact request `chat`/`respond` would send, with secrets redacted. Sends nothing."""
        if api in ("chat", "responses"):
            _known_options(self.build_respond if api == "responses" else self.build_chat, kwargs, "client.dry_run()")
        route, body = self.build(api, *args, **kwargs)
        url = str(httpx.URL(route.url, params=route.params or None))
        headers = {"content-type": "application/json", **self._headers, **self.auth.describe()}  # type: ignore[attr-defined]
        return {"method": route.method, "url": url, "headers": headers, "json": body}

    def _policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.deadline)

    def _attempt_timeout(self, policy: RetryPolicy) -> float:
        """Seconds each read of this attempt may wait: the timeout, within what is left of the deadline."""
        return max(0.05, min(self.timeout, policy.remaining()))

    def _timeout(self, policy: RetryPolicy) -> httpx.Timeout:
        total = self._attempt_timeout(policy)
        return httpx.Timeout(total, connect=min(total, CONNECT_TIMEOUT))

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

    def _status_error(self, resp: ResponseLike, text: str) -> HTTPStatusError:
        retry_after = parse_retry_after(resp.headers)
        status = resp.status_code
        gateway_quota = status == 403 and self._gateway is not None and (
            retry_after is not None or gateway_memory.has_succeeded(self._gateway))
        exc = error_from_response(
            status,
            self._scrub(text),
            request_id=_request_id(resp),
            retry_after=retry_after,
            gateway_quota=gateway_quota,
        )
        if status == 401 and isinstance(exc, AuthError) and isinstance(self.auth, EntraAuth):
            # Entra ID: a token for the wrong audience gets one retry with the other scope (the
            # httpx flows already did it; the aiohttp path only refreshed), then the scope and role.
            if self.auth.wrong_audience(text, resp.headers) and self.auth.switch_scope():
                exc.scope_retry = True
            exc.hint = self.auth.failure_hint()
        if status == 404 and self.connection.kind == "foundry-project":
            low = exc.message.lower()
            if "agent" in low:
                exc.hint = ("Check the agent's name and version: `%foundry agents` (or fm.agents()) "
                            "lists the project's agents.")
            elif "conversation" in low:
                exc.hint = ("The conversation is gone from the service (deleted, or expired): "
                            "--new (or a new conversation) starts afresh.")
        return exc

    def _succeeded(self) -> None:
        if self._gateway is not None:
            gateway_memory.succeeded(self._gateway)
        accepted = getattr(self.auth, "accepted", None)  # Entra ID: this token works (rest/auth.py)
        if accepted is not None:
            accepted()

    def _body(self, resp: ResponseLike, raw: bytes) -> Any:
        """The parsed JSON of a complete response, or the FoundryError it stands for."""
        text = _decode(resp, raw)
        if resp.status_code >= 400:
            raise self._status_error(resp, text)
        self._succeeded()
        return self._json(resp, text)

    @staticmethod
    def _json(resp: ResponseLike, text: str) -> Any:
        ctype = resp.headers.get("content-type", "")
        if "json" not in ctype and text.lstrip()[:1] not in ("{", "["):
            raise ResponseError(
                f"Expected JSON from {_path(resp)}, got {ctype or 'no content-type'} "
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

    def _reply_common(self, resp: ResponseLike, latency: float) -> dict[str, Any]:
        return dict(
            latency=latency,
            emulated=resp.headers.get("x-foundry-emulator") == "1" or self.connection.kind == "emulator",
            request_id=_request_id(resp),
            connection=self.connection.label,
        )

    def _chat_reply(self, data: Any, resp: ResponseLike, latency: float) -> Reply:
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
            citations=chat_citations(message),
            **self._reply_common(resp, latency),
        )

    def _responses_reply(self, data: Any, resp: ResponseLike, latency: float, streamed_text: str = "",
                         streamed_output: list[Any] | None = None) -> Reply:
        if not isinstance(data, dict):
            raise ResponseError("The Responses API returned no response object.")
        if data.get("status") == "failed":
            err = data.get("error") or {}
            raise FoundryError(f"The response failed: {err.get('message') or 'no reason given'} ({err.get('code')})")
        output = data.get("output") if isinstance(data.get("output"), list) else []
        if not output and streamed_output:
            output = streamed_output
        return Reply(
            text=_output_text(data) or streamed_text,
            model=data.get("model"),
            finish_reason=finish_reason_of(data),
            usage=Usage.from_api(data.get("usage")),
            id=data.get("id"),
            raw=data,
            citations=citations_of(output),
            tool_calls=tool_calls_of(output),
            agent=agent_label(data),
            conversation=conversation_id_of(data.get("conversation")),
            **self._reply_common(resp, latency),
        )

    def _reply(self, op: str, data: Any, resp: ResponseLike, t0: float) -> Reply:
        latency = time.perf_counter() - t0
        if op == "chat":
            return self._chat_reply(data, resp, latency)
        return self._responses_reply(data, resp, latency)

    def _embeddings(self, data: Any, n: int) -> list[list[float]]:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != n:
            raise ResponseError(f"Expected {n} embeddings, got {len(items) if isinstance(items, list) else 'none'}.")
        ordered = sorted(items, key=lambda d: d.get("index", 0))
        return [list(map(float, d["embedding"])) for d in ordered]

    def _models(self, data: Any) -> list[str]:
        return models_from_listing(self.connection, data)

    # -- agents and server-side conversations (requests in rest/agents.py) -------------

    @staticmethod
    def _next_page(route: Route, data: Any) -> Route | None:
        """The next page of a `{"data", "has_more", "last_id"}` listing, or None (the twins
        follow at most LIST_MAX_PAGES)."""
        if not isinstance(data, dict) or not data.get("has_more") or not data.get("last_id"):
            return None
        return Route(route.method, route.url, {**route.params, "after": str(data["last_id"])})

    def _agents(self, data: Any) -> list[Agent]:
        return agents_from_listing(data)

    def _agent(self, data: Any, name: str) -> Agent:
        agent = agent_from_object(data)
        if agent is None:
            raise ResponseError(f"The project sent no agent object for {name!r}.",
                                hint="Check that the endpoint is a Foundry project (…/api/projects/P).")
        return agent

    @staticmethod
    def _conversation_id(data: Any) -> str:
        cid = data.get("id") if isinstance(data, dict) else None
        if not cid:
            raise ResponseError("The service created a conversation but sent no id.",
                                hint="Check that the endpoint serves the Responses API's conversations (/openai/v1).")
        return str(cid)

    @staticmethod
    def _items(data: Any) -> list[ConversationItem]:
        return items_from_listing(data)

    def _reader(self, op: str) -> "StreamReader":
        return StreamReader(self, op)

    # ------------------------------------------------------------------ bookkeeping

    @contextlib.contextmanager
    def _recording(self, op: str, body: dict[str, Any]) -> Iterator["_Outcome"]:
        """Around one call (or one stream): on_record gets the reply, the error, or "interrupted"."""
        out = _Outcome(time.perf_counter())
        try:
            yield out
        except FoundryError as exc:
            self._record(op, body, None, time.perf_counter() - out.t0, exc)
            raise
        except (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError):
            self._record(op, body, None, time.perf_counter() - out.t0, interrupted=True)
            raise
        self._record(op, body, out.reply, time.perf_counter() - out.t0)

    def _embed_requests(self, texts: Iterable[str] | str, model: str | None,
                        dimensions: int | None) -> Iterator[tuple[Route, dict[str, Any], int]]:
        """The embeddings requests for `texts`, EMBED_BATCH inputs each: (route, body, inputs)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        route, model = self.build_embed(items, model, dimensions)
        for start in range(0, len(items), EMBED_BATCH):
            batch = items[start : start + EMBED_BATCH]
            yield route, embed_body(route, model, batch, dimensions), len(batch)

    def _record(self, op: str, body: dict[str, Any], reply: Reply | None, latency: float,
                error: BaseException | None = None, interrupted: bool = False) -> None:
        if self.on_record is None and not self.count_usage:
            return
        rec = CallRecord(op, self.connection.label, (reply.model if reply else None) or body.get("model"),
                         body, reply, latency, error=describe(error) or None, interrupted=interrupted)
        if self.count_usage:
            from foundry_magics.store.usage import record_call  # the core's own count: no face needed

            record_call(rec)
            rec.counted = True
        if self.on_record is None:
            return
        try:
            self.on_record(rec)
        except Exception:  # a broken hook must never break a call
            log.exception("on_record hook failed")

    def _count_embeddings(self, body: dict[str, Any], data: Any, t0: float) -> None:
        """One embeddings request that answered: counted in the session's usage as a call (its
        input tokens from the reply's `usage`). The engine's clients do not (`count_usage`)."""
        if not self.count_usage:
            return
        usage = Usage.from_api(data.get("usage") if isinstance(data, dict) else None)
        model = (data.get("model") if isinstance(data, dict) else None) or body.get("model") or self.connection.model
        reply = Reply(text="", model=model, usage=usage, connection=self.connection.label)
        rec = CallRecord("embeddings", self.connection.label, model, {k: v for k, v in body.items() if k != "input"},
                         reply, time.perf_counter() - t0, counted=True)
        from foundry_magics.store.usage import record_call

        record_call(rec)

    def _check_deadline(self, policy: RetryPolicy, route: Route) -> None:
        if policy.remaining() <= 0:
            raise FoundryTimeoutError(
                f"The reply from {httpx.URL(route.url).host} was still arriving when the "
                f"{policy.deadline:g} s deadline passed.",
                hint="Raise deadline= (or the timeout), or check the network between you and the endpoint.",
            )

    def _log_request(self, route: Route, attempt: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            redacted = {**self._headers, **self.auth.describe()}  # type: ignore[attr-defined]
            log.debug("%s %s attempt=%d headers=%s", route.method, route.url, attempt, redacted)


# Models a server listed, by server (kind, endpoint): shared by every client of the process, so
# that the engine's clients, dry runs and cache keys see the model a cell's client found.
_listed: dict[tuple[str, str], list[str]] = {}
# Servers asked for their models when none is given: local OpenAI-compatible ones (Foundry
# Local, llama.cpp, vLLM, Ollama), which usually serve one. Azure endpoints are not asked.
_LISTS_ITS_MODEL = ("openai-compatible",)
_listed_lock = threading.Lock()
_notices: list[str] = []


def _server_of(conn: Connection) -> tuple[str, str]:
    return (conn.kind, conn.endpoint.rstrip("/"))


def pop_model_notice() -> str | None:
    """The once-per-server "using the only model it serves" notice, for a face to show."""
    with _listed_lock:
        return _notices.pop(0) if _notices else None


def forget_models() -> None:
    """Forget what servers listed (tests; a server that now serves another model)."""
    with _listed_lock:
        _listed.clear()
        _notices.clear()


@dataclass
class _Outcome:
    t0: float
    reply: Reply | None = None


def embed_body(route: Route, model: str | None, batch: list[str], dimensions: int | None) -> dict[str, Any]:
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


class StreamReader:
    """One streamed response, without I/O: feed it the text as it arrives (`feed`), then `end()`
    for what the last, unterminated piece holds, then `reply()` for the finished Reply.

    A stream that never said it was complete is a StreamError carrying the text so far.
    """

    def __init__(self, client: BaseClient, op: str) -> None:
        self.client = client
        self.op = op
        self.decoder = SSEDecoder()
        self.state: Any = ChatStreamState() if op == "chat" else ResponsesStreamState()

    @property
    def done(self) -> bool:
        return self.state.done

    @property
    def text(self) -> str:
        return self.state.text

    def feed(self, chunk: str) -> list[Delta]:
        out = []
        try:
            for ev in self.decoder.feed(chunk):
                d = self.state.feed(ev)
                if d is not None:
                    out.append(d)
                if self.state.done and self.op == "chat":
                    break  # Azure sends annotation chunks after [DONE]'s finish: ignore them
        except StreamError as exc:
            raise self.client._scrub_error(exc) from None
        return out

    def end(self) -> list[Delta]:
        """The bytes after the last complete event of a stream that ended early: a half-written
        event is not an error of its own; `reply()` reports the stream as unfinished."""
        if self.state.done:
            return []
        tail = self.decoder.flush()
        if tail is None:
            return []
        try:
            d = self.state.feed(tail)
        except ResponseError:
            return []
        except StreamError as exc:
            raise self.client._scrub_error(exc) from None
        return [d] if d is not None else []

    def cut(self, exc: BaseException) -> StreamError:
        why = exc.__cause__ if isinstance(exc, FoundryError) and exc.__cause__ is not None else exc
        return StreamError(
            f"The stream was cut after {len(self.text)} characters ({failure_name(why)}).",
            partial=self.text,
            hint="The text so far was kept and is incomplete; run it again to get the whole reply.",
        )

    def reply(self, resp: httpx.Response, t0: float) -> Reply:
        s, latency = self.state, time.perf_counter() - t0
        if not s.done:
            raise StreamError(
                f"The stream ended before the service said it was complete ({len(s.text)} characters received).",
                partial=s.text,
                hint="The text so far was kept and is incomplete; run it again to get the whole reply.",
            )
        if self.op == "chat":
            self.client._succeeded()
            return Reply(text=s.text, model=s.model, finish_reason=s.finish_reason, usage=s.usage or Usage(), id=s.id,
                         filtered=s.filtered, **self.client._reply_common(resp, latency))
        self.client._succeeded()
        return self.client._responses_reply(s.response, resp, latency, streamed_text=s.text,
                                            streamed_output=s.output())


def text_decoder(resp: Any) -> Any:
    """An incremental decoder for a streamed body (a multi-byte character may span chunks)."""
    try:
        return codecs.getincrementaldecoder(resp.charset_encoding or "utf-8")("replace")
    except LookupError:
        return codecs.getincrementaldecoder("utf-8")("replace")


def _decode(resp: ResponseLike, raw: bytes) -> str:
    try:
        return raw.decode(resp.charset_encoding or "utf-8", "replace")
    except LookupError:  # an unknown charset name
        return raw.decode("utf-8", "replace")


# One vocabulary for what went wrong below HTTP, whichever library saw it (httpx's names).
_FAILURE_NAMES = {
    "SocketTimeoutError": "ReadTimeout",
    "ServerTimeoutError": "ReadTimeout",
    "ConnectionTimeoutError": "ConnectTimeout",
    "ClientConnectorError": "ConnectError",
    "ClientConnectorDNSError": "ConnectError",
    "ClientConnectorCertificateError": "ConnectError",
    "ClientConnectorSSLError": "ConnectError",
    "ClientSSLError": "ConnectError",
    "ServerDisconnectedError": "RemoteProtocolError",
    "ClientPayloadError": "ReadError",
    "ClientOSError": "ReadError",
    "TimeoutError": "ReadTimeout",
}


def failure_name(exc: BaseException) -> str:
    name = type(exc).__name__
    return _FAILURE_NAMES.get(name, name)


def _path(resp: Any) -> str:
    """The URL path of a response: httpx's, or the async client's AsyncResponse."""
    path = getattr(resp, "path", None)
    return path if isinstance(path, str) else resp.request.url.path


def _request_id(resp: ResponseLike) -> str | None:
    return resp.headers.get("x-request-id") or resp.headers.get("apim-request-id")


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


def transport_error(exc: BaseException, url: str) -> FoundryError:
    """A failure below HTTP (no connection, a hang-up, a cut body, a timeout) as one of our
    errors, from httpx's exceptions (sync client) or aiohttp's (async client)."""
    import asyncio

    host = httpx.URL(url).host
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError)):  # aiohttp's timeouts subclass the latter
        return FoundryTimeoutError(
            f"No answer from {host} within the timeout ({failure_name(exc)}).",
            hint="Raise timeout= (or %config FoundryMagics.timeout), or check that the endpoint is up.",
        )
    err = ConnectionFailed(
        f"Could not reach {host}: {failure_name(exc)}: {str(exc) or 'connection failed'}.",
        hint="Check the endpoint URL and your network; for the local emulator run `%foundry emulator start`.",
    )
    err.refused_on_loopback = refused_on_loopback(exc, url)  # nothing listens there: not retried (retry.py)
    return err
