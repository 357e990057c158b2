"""Reply, Usage and Delta: what the client returns. Plain data, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Usage", "Reply", "Delta", "EMULATED_PREFIX"]

EMULATED_PREFIX = "[emulated] "


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_api(cls, usage: Any) -> "Usage":
        """Chat (`prompt_tokens`/`completion_tokens`) and Responses (`input_tokens`/`output_tokens`)."""
        if not isinstance(usage, dict):
            return cls()
        inp = usage.get("input_tokens", usage.get("prompt_tokens")) or 0
        out = usage.get("output_tokens", usage.get("completion_tokens")) or 0
        return cls(int(inp), int(out))

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


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
        if self.model:
            bits.append(str(self.model))
        if self.usage.total_tokens:
            bits.append(f"{self.usage.input_tokens}+{self.usage.output_tokens} tokens")
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
