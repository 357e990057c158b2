"""Named conversations for `--chat NAME`: held in process memory, one transcript per name.

The transcript (user and assistant turns) is the source of truth, so a conversation can move
between APIs and connections. Chat completions resend it as `messages`; the Responses API
continues with `previous_response_id` while it talks to the connection that issued that id,
and falls back to sending the transcript as `input` items otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Conversation", "Conversations", "DEFAULT_NAME"]

DEFAULT_NAME = "default"


@dataclass
class Conversation:
    name: str
    messages: list[dict[str, str]] = field(default_factory=list)  # user/assistant turns, oldest first
    system: str | None = None
    response_id: str | None = None  # last Responses API id ...
    response_connection: str | None = None  # ... and the connection that issued it

    @property
    def turns(self) -> int:
        return sum(1 for m in self.messages if m["role"] == "user")

    def transcript(self) -> str:
        """Markdown for `%foundry chat show`."""
        if not self.messages:
            return f"Conversation **{self.name}** is empty."
        lines = [f"Conversation **{self.name}** ({self.turns} turn{'s' if self.turns != 1 else ''})"]
        if self.system:
            lines.append(f"\n*system:* {self.system}")
        for m in self.messages:
            lines.append(f"\n**{m['role']}:** {m['content']}")
        return "\n".join(lines)


class Conversations:
    """All conversations of this process, by name. Thread-safe."""

    def __init__(self) -> None:
        self._by_name: dict[str, Conversation] = {}
        self._lock = threading.Lock()

    def get(self, name: str = DEFAULT_NAME) -> Conversation:
        with self._lock:
            return self._by_name.setdefault(name, Conversation(name))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._by_name)

    def reset(self, name: str = DEFAULT_NAME) -> bool:
        """Forget conversation `name`; True if it had any turns."""
        with self._lock:
            conv = self._by_name.pop(name, None)
        return bool(conv and conv.messages)

    def clear(self) -> None:
        with self._lock:
            self._by_name.clear()

    # -------------------------------------------------------------- request pieces

    def _peek(self, name: str, fresh: bool) -> Conversation:
        if fresh:
            return Conversation(name)
        return self.get(name)

    def chat_kwargs(self, name: str, system: str | None, *, fresh: bool = False) -> dict[str, Any]:
        """`messages` (the history, without the new prompt) and `system` for client.chat.
        `fresh`: as if the conversation were empty (--new; nothing is forgotten yet)."""
        conv = self._peek(name, fresh)
        return {"messages": [dict(m) for m in conv.messages], "system": system or conv.system}

    def responses_kwargs(self, name: str, prompt: str, system: str | None, connection: str, *,
                         fresh: bool = False) -> dict[str, Any]:
        """`input`, `previous_response_id` and `system` for client.respond."""
        conv = self._peek(name, fresh)
        kw: dict[str, Any] = {"system": system or conv.system}
        if conv.response_id and conv.response_connection == connection:
            kw.update(input=prompt, previous_response_id=conv.response_id)
        elif conv.messages:
            kw["input"] = [dict(m) for m in conv.messages] + [{"role": "user", "content": prompt}]
        else:
            kw["input"] = prompt
        return kw

    def record(self, name: str, prompt: str, reply_text: str, *, system: str | None = None,
               response_id: str | None = None, connection: str | None = None, fresh: bool = False) -> Conversation:
        """Append one finished exchange (`fresh`: to an emptied conversation)."""
        if fresh:
            self.reset(name)
        conv = self.get(name)
        with self._lock:
            conv.messages.append({"role": "user", "content": prompt})
            conv.messages.append({"role": "assistant", "content": reply_text})
            if system:
                conv.system = system
            conv.response_id = response_id
            conv.response_connection = connection if response_id else None
        return conv
