"""A pure Server-Sent Events parser (no I/O), per the WHATWG event-stream rules.

Feed it lines (without their line terminators) or text chunks; it yields `Event`s.
It also interprets the two stream dialects Foundry speaks:

* chat completions: `data: {chunk}` lines ending with `data: [DONE]`, with Azure's quirks
  (an empty-choices first chunk, annotation chunks after `finish_reason`, a usage chunk);
* the Responses API: `event: TYPE` + `data: {"type": TYPE, ...}`, ending with
  `response.completed` / `response.failed` / `response.incomplete`, or an `error` event.

A stream that ends without its terminal event is incomplete, and the caller must say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from foundry_magics.errors import ResponseError, StreamError
from foundry_magics.rest.models import Delta, Usage

__all__ = ["Event", "SSEDecoder", "iter_events", "ChatStreamState", "ResponsesStreamState"]


@dataclass(frozen=True)
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Line-oriented decoder. `feed_line` returns an Event when a blank line ends one."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._buffer = ""

    def feed_line(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def feed(self, text: str) -> list[Event]:
        """Feed an arbitrary chunk of text; returns the events it completed."""
        self._buffer += text
        events: list[Event] = []
        while True:
            idx = _first_line_break(self._buffer)
            if idx < 0:
                break
            end = idx + (2 if self._buffer.startswith("\r\n", idx) else 1)
            line, self._buffer = self._buffer[:idx], self._buffer[end:]
            ev = self.feed_line(line)
            if ev is not None:
                events.append(ev)
        return events

    def flush(self) -> Event | None:
        """At end of input: a final event without its blank line is still dispatched."""
        if self._buffer:
            line, self._buffer = self._buffer, ""
            ev = self.feed_line(line)
            if ev is not None:
                return ev
        return self._dispatch()

    def _dispatch(self) -> Event | None:
        if not self._data:  # per the spec: no data lines, no event
            self._event, self._retry = "", None
            return None
        ev = Event(self._event or "message", "\n".join(self._data), self._id, self._retry)
        self._event, self._data, self._retry = "", [], None
        return ev


def _first_line_break(s: str) -> int:
    r, n = s.find("\r"), s.find("\n")
    if r < 0:
        return n
    if n < 0:
        # A lone trailing "\r" may be the first half of "\r\n": wait for more.
        return r if r + 1 < len(s) else -1
    return min(r, n)


def iter_events(lines: Iterable[str]) -> Iterator[Event]:
    decoder = SSEDecoder()
    for line in lines:
        ev = decoder.feed_line(line)
        if ev is not None:
            yield ev
    ev = decoder.flush()
    if ev is not None:
        yield ev


def _loads(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ResponseError(
            f"The stream sent an event that is not JSON: {data[:120]!r}.",
            hint="The endpoint may not be a Foundry/OpenAI-compatible API: check the URL.",
        ) from None


class ChatStreamState:
    """Folds chat-completion chunks into deltas and remembers what a final Reply needs."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.done = False
        self.filtered: dict[str, Any] = {}

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, ev: Event) -> Delta | None:
        if ev.data.strip() == "[DONE]":
            self.done = True
            return None
        if ev.event == "error":
            _raise_stream_error(_loads(ev.data), self.text)
        chunk = _loads(ev.data)
        if isinstance(chunk, dict) and "error" in chunk and not chunk.get("choices"):
            _raise_stream_error(chunk, self.text)
        if not isinstance(chunk, dict):
            return None
        self.model = chunk.get("model") or self.model
        self.id = chunk.get("id") or self.id
        text = ""
        finish = None
        for choice in chunk.get("choices") or []:  # never assume choices[0] exists
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
            if piece:
                text += piece
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            results = choice.get("content_filter_results")
            if finish == "content_filter" and isinstance(results, dict):
                from foundry_magics.errors import filtered_categories

                self.filtered.update(filtered_categories(results))
        usage = Usage.from_api(chunk["usage"]) if chunk.get("usage") else None
        if usage is not None:
            self.usage = usage
        if finish:
            self.finish_reason = finish
        if text:
            self.parts.append(text)
        if not (text or finish or usage):
            return None
        return Delta(text=text, finish_reason=finish, usage=usage, model=self.model, id=self.id, raw=chunk)


class ResponsesStreamState:
    """Folds Responses API events into deltas; `response` is the final object."""

    TERMINAL = ("response.completed", "response.failed", "response.incomplete")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.response: dict[str, Any] | None = None
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        # Output items as they finished (tool calls, messages) and the annotations streamed on
        # the text: what the final response holds too, kept for servers whose last event omits it.
        self.items: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def output(self) -> list[dict[str, Any]]:
        """The streamed items, with the streamed annotations put back on the message's text."""
        items = [dict(i) for i in self.items]
        if self.annotations and not any(i.get("type") == "message" for i in items):
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": self.text, "annotations": []}]})
        for item in items:
            if item.get("type") == "message" and self.annotations:
                parts = [dict(p) for p in item.get("content") or [] if isinstance(p, dict)]
                if parts and not any(p.get("annotations") for p in parts):
                    parts[0]["annotations"] = list(self.annotations)
                    item["content"] = parts
        return items

    def feed(self, ev: Event) -> Delta | None:
        payload = _loads(ev.data) if ev.data else {}
        if not isinstance(payload, dict):
            return None
        etype = payload.get("type") or ev.event
        if etype == "error":
            _raise_stream_error(payload, self.text)
        resp = payload.get("response")
        if isinstance(resp, dict):
            self.id = resp.get("id") or self.id
            self.model = resp.get("model") or self.model
        if etype == "response.output_text.delta":
            piece = payload.get("delta") or ""
            if piece:
                self.parts.append(piece)
                return Delta(text=piece, model=self.model, id=self.id, raw=payload)
            return None
        if etype in ("response.output_item.added", "response.output_item.done"):
            item = payload.get("item")
            if not isinstance(item, dict):
                return None
            if etype.endswith(".done"):
                self.items.append(item)
                return None
            from foundry_magics.rest.agents import tool_calls_of

            tools = tool_calls_of([item])
            return Delta(text="", model=self.model, id=self.id, raw=payload, tool_call=tools[0]) if tools else None
        if etype == "response.output_text.annotation.added":
            ann = payload.get("annotation")
            if isinstance(ann, dict):
                self.annotations.append(ann)
            return None
        if etype in self.TERMINAL:
            self.done = True
            self.response = resp if isinstance(resp, dict) else {}
            if etype == "response.failed":
                _raise_stream_error(self.response, self.text)
            usage = Usage.from_api(self.response.get("usage"))
            return Delta(text="", finish_reason=finish_reason_of(self.response), usage=usage,
                         model=self.model, id=self.id, raw=payload)
        return None


def finish_reason_of(response: dict[str, Any]) -> str:
    status = response.get("status") or "completed"
    if status == "incomplete":
        details = response.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason == "max_output_tokens" else (reason or "incomplete")
    return "stop" if status == "completed" else str(status)


def _raise_stream_error(payload: Any, partial: str) -> None:
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        err = payload if isinstance(payload, dict) else {}
    code = err.get("code")
    message = err.get("message") or "the service reported an error in the stream"
    text = f"The stream failed: {message}" + (f" ({code})" if code else "")
    raise StreamError(text, partial=partial, hint="Partial text was kept; run the cell again to retry.")
