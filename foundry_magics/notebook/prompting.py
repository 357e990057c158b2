"""The service behind `%%foundry`: from parsed options and a namespace to a sent request.

`Prompter` owns the state a notebook session needs: one client per connection (reused
across cells), named conversations, the session's default model (`%foundry use`), the
history log and the usage counters. It does no display: faces call `prepare`, then `send`
or `start_stream`, then `finish` (or `interrupted`), and render what they get back.

Everything here is synchronous and runs in the caller's thread: no event loop is needed,
so it works the same in a Jupyter kernel (which runs one) and in a plain script.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, cast

from foundry_magics.connections import session
from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import MAX_RETRIES, TIMEOUT
from foundry_magics.errors import ConfigurationError
from foundry_magics.notebook.agents import ServerConversations
from foundry_magics.notebook.conversations import Conversations
from foundry_magics.notebook.interpolate import interpolate
from foundry_magics.rest.client import CallRecord, FoundryClient, Stream
from foundry_magics.rest.models import Reply
from foundry_magics.rest.schemas import to_json_schema, validate
from foundry_magics.store.history import History
from foundry_magics.store.usage import session_usage
from foundry_magics.wording import article

__all__ = ["Settings", "Call", "Prompter", "prompter", "reset", "resolve_schema", "parse_json_reply", "interpret_json",
           "extract_code", "resolve_images", "usage"]

log = logging.getLogger("foundry_magics")


@dataclass
class Settings:
    """The defaults a face passes in (the magic's `%config FoundryMagics.*` traits)."""

    default_connection: str | None = None
    format: str = "markdown"
    stream: bool = True
    concurrency: int | None = None
    cache: bool = True
    history: bool = True
    timeout: float = TIMEOUT
    max_retries: int = MAX_RETRIES


@dataclass
class Call:
    """One prepared request: everything needed to send it, show it and log it."""

    connection: Connection
    api: str  # "chat" | "responses"
    prompt: str  # after interpolation
    kwargs: dict[str, Any]  # for FoundryClient.chat / .respond (minus prompt and stream)
    stream: bool
    format: str
    chat: str | None = None
    new: bool = False  # --new: the conversation restarts with this call
    schema: dict[str, Any] | None = None
    settings: Settings = field(default_factory=Settings)
    notice: str | None = None  # one-time notice to show (emulator fallback)
    agent: str | None = None  # --agent NAME[:VERSION]
    conversation: str | None = None  # --conversation NAME: a server-side conversation, by local name
    # filled while running
    served_model: str | None = None  # the model the client found when none was named (a server's only one)
    live: Stream | None = None
    recorded: bool = False
    started: float = 0.0

    @property
    def model(self) -> str | None:
        return self.kwargs.get("model") or self.connection.model or self.served_model


class Prompter:
    """Session state and the send path. One per process (`prompter()`), or make your own."""

    def __init__(self, history: History | None = None) -> None:
        self.conversations = Conversations()
        self.server_conversations = ServerConversations()  # --conversation NAME (notebook/agents.py)
        self.history = history or History()
        self.usage = session_usage()  # the process's: DataFrame runs and batches count there too
        self.default_model: str | None = None
        self._clients: dict[tuple[Any, ...], FoundryClient] = {}
        self._lock = threading.RLock()
        self._local = threading.local()  # the Call being sent in this thread (for the record hook)

    # ------------------------------------------------------------------ session state

    def use_model(self, model: str | None) -> None:
        """`%foundry use MODEL`: the model for calls that do not name one (until the next connect)."""
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ConfigurationError("Give a model name: `%foundry use MODEL`.", hint="`%foundry models` lists them.")
        self.default_model = model.strip() if model else None

    def connect(self, target: str, *, save: str | None = None, **fields: Any) -> Connection:
        """`%foundry connect`: make a connection current (and save it); resets `use`."""
        conn = session.connect(target, save=save, **fields)
        self.default_model = None
        return conn

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            c.close()
        self.history.close()
        self.server_conversations.close()

    # ------------------------------------------------------------------ connections & clients

    def resolve_connection(self, name: str | None, settings: Settings) -> Connection:
        """-c NAME, else a connection chosen in this session (`%foundry connect`, the picker,
        fm.connect), else `FoundryMagics.default_connection`, else the session's default."""
        if name:
            return session.resolve(name)
        chosen = session.chosen_connection()
        if chosen is None and settings.default_connection:
            return session.resolve(settings.default_connection)
        return session.current_connection()

    def client(self, conn: Connection, settings: Settings) -> FoundryClient:
        """A client per connection (and key, timeout, retries), reused across cells."""
        key = (conn, _key_fingerprint(conn), settings.timeout, settings.max_retries)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = FoundryClient(conn, timeout=settings.timeout, max_retries=settings.max_retries,
                                       on_record=self._on_record)
                self._clients[key] = client
            return client

    def agents(self, name: str | None = None, settings: Settings | None = None) -> list[Any]:
        """`%foundry agents`: the agents of the project (-c NAME, else the current connection)."""
        settings = settings or Settings()
        conn = self.resolve_connection(name, settings)
        return self.client(conn, settings).agents()

    def server_conversation(self, name: str, settings: Settings | None = None) -> tuple[Any, list[Any]] | None:
        """`%foundry chat show NAME` of a server-side conversation: (what is saved, its items from
        the service), or None when NAME is not a server conversation of the current connection."""
        if not any(c.name == name for c in self.server_conversations.store.all()):
            return None  # (no connection is resolved for a name kept only in the notebook)
        settings = settings or Settings()
        conn = self.resolve_connection(None, settings)
        saved = self.server_conversations.lookup(name, conn)
        if saved is None:
            return None
        return saved, self.client(conn, settings).conversation_items(saved.conversation_id)

    def forget_server_conversation(self, name: str, settings: Settings | None = None) -> bool:
        """`%foundry chat reset NAME`: forget which server conversation NAME stands for (on the
        current connection's endpoint); the conversation itself stays on the service."""
        if not any(c.name == name for c in self.server_conversations.store.all()):
            return False
        conn = self.resolve_connection(None, settings or Settings())
        return self.server_conversations.forget(name, conn)

    def models(self, name: str | None = None, settings: Settings | None = None) -> list[str]:
        settings = settings or Settings()
        conn = self.resolve_connection(name, settings)
        return self.client(conn, settings).models()

    # ------------------------------------------------------------------ preparing

    def prepare(self, args: Any, namespace: Mapping[str, Any], settings: Settings) -> Call:
        """Turn parsed options (any object with PromptArgs' attributes) into a Call. No I/O
        except starting the embedded emulator when nothing else is configured."""
        prompt = args.prompt
        system = args.system
        if args.interpolate:
            prompt = interpolate(prompt, namespace)
            system = interpolate(system, namespace) if system else system
        if not prompt.strip():
            raise ConfigurationError("The prompt is empty.", hint="Write the prompt in the cell body, under %%foundry.")
        schema = resolve_schema(args.schema, namespace) if args.schema else None
        conn = self.resolve_connection(args.connection, settings)
        agent, server_conv = getattr(args, "agent", None), getattr(args, "conversation", None)
        api = "responses" if agent or server_conv else (args.api or conn.api)
        fmt = args.format or ("json" if schema is not None else settings.format)
        stream = settings.stream if args.stream is None else args.stream
        model = args.model or (None if agent else self.default_model) or None  # an agent brings its model
        kwargs: dict[str, Any] = {"model": model, "temperature": args.temperature, "max_tokens": args.max_tokens,
                                  "schema": schema}
        if agent:
            kwargs["agent"] = agent
        if server_conv:
            kwargs["system"] = system
            kwargs["conversation"] = self.server_conversations.conversation_for(server_conv, conn, fresh=bool(args.new))
        elif args.chat:
            # --new: built as if empty; the old turns are forgotten only once the reply arrives
            # (a dry run or a failed call leaves the conversation as it was).
            if api == "chat":
                kwargs.update(self.conversations.chat_kwargs(args.chat, system, fresh=args.new))
            else:
                kwargs.update(self.conversations.responses_kwargs(args.chat, prompt, system, conn.label,
                                                                  fresh=args.new))
        else:
            kwargs["system"] = system
        if api == "responses" and "input" not in kwargs:
            kwargs["input"] = prompt
        images = resolve_images(getattr(args, "images", None) or [], namespace)
        if images:
            kwargs["images"] = images
        if fmt == "json" and schema is None:
            kwargs["extra_body"] = json_mode(api)
            if "json" not in (prompt + " " + (kwargs.get("system") or "")).lower():
                # Azure refuses JSON mode unless the messages mention JSON.
                kwargs["system"] = ((kwargs.get("system") or "") + "\n\n" + JSON_NUDGE).strip()
        kwargs = {k: v for k, v in kwargs.items() if v is not None and v != []}
        notice = session.pop_notice()
        return Call(conn, api, prompt, kwargs, stream, fmt, chat=args.chat, new=bool(args.new), schema=schema,
                    settings=settings, notice=notice, agent=agent, conversation=server_conv)

    def prepare_compare(self, args: Any, namespace: Mapping[str, Any], settings: Settings) -> list[Call]:
        """`-m A,B,C`: one Call per model (with --chat, each model its own conversation NAME@MODEL).
        Images are read once and shared by the calls."""
        import copy

        models = list(getattr(args, "models", None) or [])
        if len(models) < 2:
            raise ConfigurationError("Name two or more models to compare.", hint="-m gpt-4.1-mini,gpt-4o")
        images = resolve_images(getattr(args, "images", None) or [], namespace)
        calls = []
        for model in models:
            one = copy.copy(args)
            one.model, one.models, one.images = model, None, images
            if getattr(args, "chat", None):
                one.chat = f"{args.chat}@{model}"
            calls.append(self.prepare(one, namespace, settings))
        return calls

    def _client_args(self, call: Call) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if call.api == "responses":
            return (), dict(call.kwargs)
        return (call.prompt,), dict(call.kwargs)

    # ------------------------------------------------------------------ sending

    def dry_run(self, call: Call) -> dict[str, Any]:
        """The exact request (URL, redacted headers, JSON body). Sends nothing, logs nothing."""
        client = self.client(call.connection, call.settings)
        args, kwargs = self._client_args(call)
        if call.stream:
            kwargs["stream"] = True
        return client.dry_run(call.api, *args, **kwargs)

    def send(self, call: Call) -> Reply:
        """Send without streaming; returns the Reply (errors raise, and are logged)."""
        client = self.client(call.connection, call.settings)
        if call.conversation:  # a first turn (or --new) creates the server conversation now
            self.server_conversations.materialize(call.conversation, call.connection, client, call.kwargs)
        args, kwargs = self._client_args(call)
        method = client.respond if call.api == "responses" else client.chat
        call.started = time.perf_counter()
        self._local.call = call
        try:
            return cast(Reply, method(*args, **kwargs))  # without stream=True: a Reply
        finally:
            self._local.call = None

    def start_stream(self, call: Call) -> Stream:
        """A Stream to iterate (in this thread). `.text` is the text so far; `.reply` at the end."""
        client = self.client(call.connection, call.settings)
        if call.conversation:
            self.server_conversations.materialize(call.conversation, call.connection, client, call.kwargs)
        args, kwargs = self._client_args(call)
        method = client.respond if call.api == "responses" else client.chat
        call.started = time.perf_counter()
        call.live = live = cast(Stream, method(*args, stream=True, **kwargs))
        # The client asked the server for its models if none was named: the display that waits
        # for the first token can now name the model (not "the model").
        call.served_model = client.model_for(kwargs.get("model"))
        return live

    def iterate(self, call: Call):
        """Iterate `call.live`, with the record hook knowing which call it belongs to."""
        assert call.live is not None
        it = iter(call.live)
        while True:
            self._local.call = call
            try:
                delta = next(it)
            except StopIteration:
                return
            finally:
                self._local.call = None
            yield delta

    def finish(self, call: Call, reply: Reply) -> Reply:
        """After a complete reply: continue the conversation."""
        if call.conversation:
            self.server_conversations.record(call.conversation, call.connection,
                                             reply.conversation or call.kwargs["conversation"], call.agent)
        if call.chat:
            self.conversations.record(
                call.chat, call.prompt, reply.text, system=call.kwargs.get("system"),
                response_id=reply.id if call.api == "responses" else None, connection=call.connection.label,
                fresh=call.new,
            )
        return reply

    def interrupted(self, call: Call) -> str:
        """After Ctrl-C: stop the stream, log the call as interrupted, return the text so far."""
        partial = call.live.text if call.live is not None else ""
        if call.live is not None:
            self._local.call = call
            try:
                call.live.close()
            finally:
                self._local.call = None
        if not call.recorded:
            client = self.client(call.connection, call.settings)
            args, kwargs = self._client_args(call)
            build = client.build_respond if call.api == "responses" else client.build_chat
            try:
                _, body = build(*args, **kwargs)
            except Exception:
                body = {}
            rec = CallRecord(call.api, call.connection.label, call.model, body, None,
                             time.perf_counter() - call.started if call.started else 0.0, interrupted=True)
            self._log(rec, call)
        return partial

    # ------------------------------------------------------------------ history & usage

    def _on_record(self, rec: CallRecord) -> None:
        call: Call | None = getattr(self._local, "call", None)
        self._log(rec, call)

    def _log(self, rec: CallRecord, call: Call | None) -> None:
        if call is not None:
            call.recorded = True
        if not rec.counted:  # the client counted its own calls (rest/base.py); not the ones made up here
            self.usage.add(rec)
        if call is not None and not call.settings.history:
            return
        partial = call.live.text if call is not None and call.live is not None and rec.reply is None else None
        try:
            self.history.record(rec, conversation=(call.chat or call.conversation) if call else None, partial=partial,
                                secrets=_secrets_of(call.connection if call else None))
        except Exception as exc:  # a full disk or a locked file must not break the call itself
            log.warning("Could not write the history log: %s", exc)


def _key_fingerprint(conn: Connection) -> str | None:
    """Tells keys apart in the client cache without keeping the key itself there."""
    if conn.auth != "key":
        return None
    from foundry_magics.rest.auth import resolve_key

    try:
        key = resolve_key(conn)
    except ConfigurationError:
        return None  # the client constructor raises the readable MissingKeyError
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _secrets_of(conn: Connection | None) -> list[str]:
    if conn is None or conn.auth != "key":
        return []
    from foundry_magics.rest.auth import resolve_key

    try:
        return [resolve_key(conn)]
    except ConfigurationError:
        return []


# ---------------------------------------------------------------------- helpers (pure)


def resolve_schema(spec: Any, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """`--schema VAR|JSON`: a variable holding a mapping / JSON Schema / pydantic model, or inline JSON."""
    value: Any = spec
    if isinstance(spec, str):
        text = spec.strip()
        if text.isidentifier():
            if text not in namespace:
                raise ConfigurationError(
                    f"--schema {text}: no variable named {text!r}.",
                    hint='Define it first, e.g. schema = {"label": str, "score": float}, or give inline JSON.',
                )
            value = namespace[text]
        else:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigurationError(
                    f"--schema is neither a variable name nor valid JSON: {exc}.",
                    hint='Quote inline JSON for the shell: --schema \'{"label": "string"}\'.',
                ) from None
    if hasattr(value, "model_json_schema") and callable(value.model_json_schema):
        value = value.model_json_schema()
    return to_json_schema(value)


def resolve_images(specs: Any, namespace: Mapping[str, Any]) -> list[str]:
    """`--image PATH|URL|VAR` values -> the URLs to send (files read once, here): a name of a
    notebook variable (holding a path, URL, bytes, a PIL image or a list of them) is that
    variable; anything else is a path or a URL. Errors name the image and the fix."""
    from foundry_magics.rest.images import image_urls, is_image_value

    out: list[str] = []
    for spec in specs:
        value: Any = spec
        if isinstance(spec, str) and spec.isidentifier() and spec in namespace:
            value = namespace[spec]
            if not (is_image_value(value) or isinstance(value, (list, tuple))):
                raise ConfigurationError(
                    f"--image {spec}: the variable holds {article(type(value).__name__)}, not an image.",
                    hint="Give it a path, an http(s) URL, bytes or a PIL image (or a list of them).")
        out.extend(image_urls(value))
    return out


JSON_NUDGE = "Reply with a JSON object."


def json_mode(api: str) -> dict[str, Any]:
    """The request fields for JSON mode (-f json without a schema)."""
    if api == "responses":
        return {"text": {"format": {"type": "json_object"}}}
    return {"response_format": {"type": "json_object"}}


_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:\n```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block of a reply (all of them, if several), else the whole text."""
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    return "\n\n".join(b.rstrip() for b in blocks) if blocks else text.strip()


def parse_json_reply(text: str) -> Any:
    """The reply as JSON; accepts a ```json fenced block. Raises ValueError if it is not JSON."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        m = _FENCE.search(stripped)
        if m:
            return json.loads(m.group(2))
        raise


def interpret_json(text: str, schema: Mapping[str, Any] | None = None) -> tuple[Any, str | None, list[str]]:
    """(parsed value, parse error, schema problems) of a JSON reply."""
    try:
        parsed = parse_json_reply(text)
    except ValueError as exc:
        return None, str(exc), []
    return parsed, None, (validate(parsed, schema) if schema is not None else [])


# ---------------------------------------------------------------------- the process-wide instance

_instance: Prompter | None = None
_instance_lock = threading.Lock()


def prompter() -> Prompter:
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = Prompter()
        return _instance


def reset() -> None:
    """Forget the process-wide Prompter (closing its clients) and the session's usage; the
    next prompter() starts afresh."""
    global _instance
    with _instance_lock:
        inst, _instance = _instance, None
    session_usage().reset()
    if inst is not None:
        inst.close()


def usage() -> Any:
    """`fm.usage()`: what this process sent - cells, comparisons, DataFrame runs (Spark tasks
    included), embeddings, batches, and calls made directly on a `FoundryClient` - as a pandas
    DataFrame, one row per (connection, model): calls, runs, rows, requests, cache_hits, errors,
    interrupted, input_tokens, output_tokens, cached_input_tokens (a part of the input),
    reasoning_tokens (a part of the output), seconds, and cost, priced now (NaN where no price
    is known: `fm.set_prices`; a broken prices.toml makes costs unknown, never an error).
    `.sum()` gives the totals (`.cost.sum()` sums what is priced)."""
    import pandas as pd

    from foundry_magics.store.usage import COLUMNS

    rows = session_usage().rows(total=False)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["cost"] = pd.to_numeric(frame["cost"], errors="coerce").astype("float64")
    return frame
