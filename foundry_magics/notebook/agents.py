"""Agents and server-side conversations, for the faces (`%foundry agents`, `fm.agents()`,
`%%foundry --conversation NAME`).

`ServerConversations` names conversations that live on the service: the first turn of
`--conversation NAME` creates one (`POST {project}/openai/v1/conversations`) and stores
NAME -> its id for that endpoint (store.conversations), so the same NAME continues it after
a kernel restart; `--new` creates another. The requests themselves are `build_respond`'s
(`conversation=`), like every other path.
"""

from __future__ import annotations

from typing import Any

from foundry_magics.connections.connection import Connection
from foundry_magics.rest.agents import NEW_CONVERSATION, ConversationItem
from foundry_magics.store.conversations import ConversationStore, SavedConversation

__all__ = ["ServerConversations", "agents", "AGENT_COLUMNS", "NEW_CONVERSATION"]

AGENT_COLUMNS = ("name", "version", "model", "instructions", "tools")


def agents(connection: Connection | str | None = None) -> Any:
    """The agents of a Foundry project (default: the current connection) as a pandas DataFrame:
    name, version (the latest), model, the first line of its instructions, its tools."""
    import pandas as pd

    from foundry_magics.rest.client import FoundryClient

    with FoundryClient(connection) as client:
        rows = [a.row() for a in client.agents()]
    return pd.DataFrame(rows, columns=list(AGENT_COLUMNS))


class ServerConversations:
    """Conversations kept on the service under a local name (per endpoint), and their items."""

    def __init__(self, store: ConversationStore | None = None) -> None:
        self.store = store or ConversationStore()

    def close(self) -> None:
        self.store.close()

    def lookup(self, name: str, conn: Connection) -> SavedConversation | None:
        return self.store.get(name, conn.endpoint)

    def conversation_for(self, name: str, conn: Connection, *, fresh: bool = False) -> str:
        """The id a turn of `name` is sent with: the saved one, or NEW_CONVERSATION (created when
        sent: `materialize`). Nothing is sent here, so a dry run shows the request as it stands."""
        saved = None if fresh else self.lookup(name, conn)
        return saved.conversation_id if saved else NEW_CONVERSATION

    def materialize(self, name: str, conn: Connection, client: Any, kwargs: dict[str, Any]) -> None:
        """Create the server conversation a first turn (or `--new`) needs, and name it now."""
        if kwargs.get("conversation") != NEW_CONVERSATION:
            return
        cid = client.create_conversation(metadata={"name": name[:512], "created_by": "foundry-magics"})
        self.store.put(name, conn.endpoint, cid, agent=kwargs.get("agent"))
        kwargs["conversation"] = cid

    def record(self, name: str, conn: Connection, conversation_id: str, agent: str | None) -> None:
        self.store.turn(name, conn.endpoint, conversation_id, agent=agent)

    def items(self, name: str, conn: Connection, client: Any) -> list[ConversationItem] | None:
        """The items of the conversation `name` on `conn`, from the service; None if the name is not saved."""
        saved = self.lookup(name, conn)
        if saved is None:
            return None
        return client.conversation_items(saved.conversation_id)

    def forget(self, name: str, conn: Connection | None = None) -> bool:
        return self.store.forget(name, conn.endpoint if conn is not None else None)

    def rows(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "turns": c.turns, "conversation": c.conversation_id, "agent": c.agent or "",
                 "endpoint": c.endpoint} for c in self.store.all()]


def transcript(name: str, items: list[ConversationItem], saved: SavedConversation | None = None) -> str:
    """Markdown for `%foundry chat show NAME` of a server-side conversation: each item on its own line."""
    head = f"Conversation **{name}** (on the service"
    if saved is not None:
        head += f": `{saved.conversation_id}`"
        if saved.agent:
            head += f", agent {saved.agent}"
    turns = sum(1 for i in items if i.type == "message" and i.role == "user")
    head += f"), {turns} turn{'s' if turns != 1 else ''}, {len(items)} item{'s' if len(items) != 1 else ''}"
    if not items:
        return head + "\n\nNo items yet."
    lines = [head]
    for item in items:
        if item.type == "message":
            lines.append(f"\n**{item.role or 'message'}:** {item.text}")
        else:
            lines.append(f"\n*🔧 {item.type}:* {item.text}")
    return "\n".join(lines)
