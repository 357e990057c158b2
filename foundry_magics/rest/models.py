"""Reply, Usage and Delta: what the client returns. Plain data, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Usage", "Reply", "Delta", "Citation", "ToolCall", "EMULATED_PREFIX"]

EMULATED_PREFIX = "[emulated] "


@dataclass
class Usage:
    """Tokens of one reply (or a sum of replies), as the service counts them.

    `cached_input_tokens` are part of `input_tokens` (the prompt's prefix the service had cached:
    chat `prompt_tokens_details.cached_tokens`, Responses `input_tokens_details.cached_tokens`);
    `reasoning_tokens` are part of `output_tokens` (a reasoning model's hidden thinking: chat
    `completion_tokens_details.reasoning_tokens`, Responses `output_tokens_details.reasoning_tokens`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_api(cls, usage: Any) -> "Usage":
        """Chat (`prompt_tokens`/`completion_tokens` and their `*_tokens_details`) and Responses
        (`input_tokens`/`output_tokens` and theirs); a missing or malformed field counts 0."""
        if not isinstance(usage, dict):
            return cls()
        inp = _count(usage.get("input_tokens", usage.get("prompt_tokens")))
        out = _count(usage.get("output_tokens", usage.get("completion_tokens")))
        cached = _count(_detail(usage, ("input_tokens_details", "prompt_tokens_details"), "cached_tokens"))
        reasoning = _count(_detail(usage, ("output_tokens_details", "completion_tokens_details"), "reasoning_tokens"))
        # As the service counts them, both are parts of their totals: never more than the whole.
        return cls(inp, out, min(cached, inp), min(reasoning, out))

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cached_input_tokens + other.cached_input_tokens,
                     self.reasoning_tokens + other.reasoning_tokens)

    def describe(self) -> str:
        """`1,234+56 tokens (1,024 cached, 40 reasoning)`: what a footer shows."""
        text = f"{self.input_tokens:,}+{self.output_tokens:,} tokens"
        parts = [f"{n:,} {what}" for n, what in ((self.cached_input_tokens, "cached"),
                                                 (self.reasoning_tokens, "reasoning")) if n]
        return text + (f" ({', '.join(parts)})" if parts else "")


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        return 0
    return int(value)


def _detail(usage: dict[str, Any], names: tuple[str, ...], key: str) -> Any:
    for name in names:
        details = usage.get(name)
        if isinstance(details, dict) and details.get(key) is not None:
            return details.get(key)
    return None


class Citation(tuple):
    """One source a reply cites: a tuple `(n, title, url)` (n counts from 1; `url` is None for a
    file), with the annotation's `kind` (`url_citation`, `file_citation`, ...), `file_id`, and the
    span of the text it belongs to (`start`, `end`; None when the service gave none)."""

    kind: str
    file_id: str | None
    start: int | None
    end: int | None

    def __new__(cls, n: int, title: str, url: str | None, *, kind: str = "url_citation",
                file_id: str | None = None, start: int | None = None, end: int | None = None) -> "Citation":
        self = super().__new__(cls, (n, title, url))
        self.kind, self.file_id, self.start, self.end = kind, file_id, start, end
        return self

    n = property(lambda self: self[0])
    title = property(lambda self: self[1])
    url = property(lambda self: self[2])

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:  # pickle / copy
        return tuple(self), dict(kind=self.kind, file_id=self.file_id, start=self.start, end=self.end)

    def __repr__(self) -> str:
        return f"Citation({self[0]!r}, {self[1]!r}, {self[2]!r})"


class ToolCall(tuple):
    """One tool item of a reply: a tuple `(type, id, status)` (`web_search_call`, `file_search_call`,
    `code_interpreter_call`, `mcp_call`, `function_call`, ...), with `detail` (a short description:
    the query, the function and its arguments, ...) and `raw` (the item as the service sent it)."""

    detail: str
    raw: Any

    def __new__(cls, type: str, id: str | None, status: str | None, *, detail: str = "",  # noqa: A002
                raw: Any = None) -> "ToolCall":
        self = super().__new__(cls, (type, id, status))
        self.detail, self.raw = detail, raw
        return self

    type = property(lambda self: self[0])
    id = property(lambda self: self[1])
    status = property(lambda self: self[2])

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return tuple(self), dict(detail=self.detail, raw=self.raw)

    def __repr__(self) -> str:
        return f"ToolCall({self[0]!r}, {self[1]!r}, {self[2]!r})"


@dataclass
class Reply:
    """A complete reply. `text` is the whole answer; `raw` the parsed response body."""

    text: str
    model: str | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    id: str | None = None
    raw: Any = field(default=None, repr=False)
    latency: float | None = None
    emulated: bool = False
    request_id: str | None = None
    connection: str | None = None
    # Content filter categories that fired on the completion (finish_reason "content_filter").
    filtered: dict[str, Any] = field(default_factory=dict)
    # Sources the reply cites (url_citation / file_citation annotations), numbered from 1.
    citations: list[Citation] = field(default_factory=list)
    # Tool items of the reply (web search, file search, code interpreter, MCP, functions), in order.
    tool_calls: list[ToolCall] = field(default_factory=list)
    agent: str | None = None  # "NAME" or "NAME:VERSION" when an agent answered
    conversation: str | None = None  # the server-side conversation id the turn was added to

    def __str__(self) -> str:
        return self.text

    def json(self) -> Any:
        """The reply parsed as JSON (structured output)."""
        return json.loads(self.text)

    @property
    def complete(self) -> bool:
        return self.finish_reason in (None, "stop", "completed", "end_turn")

    def meta_bits(self) -> list[str]:
        """What to show under a reply: emulated, model, tokens, latency, an unusual finish."""
        bits = []
        if self.emulated:
            bits.append("emulated")
        if self.agent:
            bits.append(f"agent {self.agent}")
        if self.model:
            bits.append(str(self.model))
        if self.usage.total_tokens:
            bits.append(self.usage.describe())
        if self.latency is not None:
            bits.append(f"{self.latency:.2f} s")
        if self.finish_reason and not self.complete:
            bits.append(f"finish: {self.finish_reason}")
        if self.filtered:
            bits.append("filtered: " + ", ".join(self.filtered))
        return bits

    def _repr_markdown_(self) -> str:
        meta = " · ".join(self.meta_bits())
        return f"{self.text}\n\n<sub>{meta}</sub>" if meta else self.text


@dataclass
class Delta:
    """One piece of a stream. `text` may be empty (role, annotation or usage chunks)."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    id: str | None = None
    raw: Any = field(default=None, repr=False)
    tool_call: ToolCall | None = None  # a tool item the stream just started (Responses API)
