"""Foundry agents and server-side conversations: requests and parsing, no I/O.

A Foundry project (`https://RES.services.ai.azure.com/api/projects/P`) holds named, versioned
agents and conversations. An agent runs through the project's Responses API with an agent
reference in the body (`build_respond(agent=...)` adds it, so dry-run, history and every path
see the same request); a conversation is created once and each turn names it
(`build_respond(conversation=...)`), the service appending the turn's input and output to it.

    GET  {project}/agents?api-version=v1                 the agents (agents_route)
    GET  {project}/agents/{name}?api-version=v1          one agent (agent_route)
    POST {project}/openai/v1/conversations               a new conversation (conversations_route)
    GET  {project}/openai/v1/conversations/{id}/items    its items (conversation_route(..., "items"))

The replies of agents carry tool items before the message (web search, file search, code
interpreter, MCP, functions) and annotations on the text (`url_citation`, `file_citation`):
`tool_calls_of` and `citations_of` turn them into `ToolCall`s and numbered `Citation`s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import AGENTS_API_VERSION, CONVERSATION_ITEMS_PAGE, PROJECT_URL_EXAMPLE
from foundry_magics.errors import ConfigurationError
from foundry_magics.rest.models import Citation, ToolCall
from foundry_magics.rest.routes import Route
from foundry_magics.wording import article

__all__ = [
    "Agent", "ConversationItem", "agent_reference", "agent_label", "conversation_id_of", "require_project",
    "agents_route", "agent_route", "conversations_route", "conversation_route", "conversation_body",
    "agents_from_listing", "agent_from_object", "items_from_listing", "citations_of", "chat_citations", "tool_calls_of",
    "TOOL_ITEM_TYPES", "NEW_CONVERSATION",
]

# Output items that are a tool at work (everything but the message itself and reasoning).
TOOL_ITEM_TYPES = ("web_search_call", "file_search_call", "code_interpreter_call", "mcp_call", "mcp_list_tools",
                   "mcp_approval_request", "function_call", "function_call_output", "computer_call",
                   "image_generation_call", "local_shell_call", "custom_tool_call", "bing_grounding_call",
                   "azure_ai_search_call", "openapi_call", "sharepoint_grounding_call", "fabric_dataagent_call")

# What a dry run shows in place of a conversation id that is only created when the cell is sent.
NEW_CONVERSATION = "<new conversation: created when sent>"


# ---------------------------------------------------------------------------- agent references


def agent_reference(agent: str | Mapping[str, Any]) -> dict[str, Any]:
    """`"helpdesk"`, `"helpdesk:2"` or a mapping -> `{"type": "agent_reference", "name", "version"?}`."""
    if isinstance(agent, Mapping):
        name, version = agent.get("name"), agent.get("version")
    elif isinstance(agent, str):
        name, sep, version = agent.strip().partition(":")
        if sep and not version.strip():
            name = ""  # "NAME:" names no version: refused below
    else:
        raise ConfigurationError(f"agent must be a name such as 'helpdesk' or 'helpdesk:2', "
                                 f"got {type(agent).__name__}.",
                                 hint="Pass agent='NAME' or agent='NAME:VERSION' (`%foundry agents` lists them).")
    name = str(name or "").strip()
    version = str(version).strip() if version not in (None, "") else None
    if not name or any(c.isspace() or c in "/?#" for c in name) or (version is not None and not version):
        raise ConfigurationError(f"{agent!r} is not an agent name.",
                                 hint="Use NAME or NAME:VERSION, e.g. helpdesk or helpdesk:2 "
                                      "(`%foundry agents` lists them).")
    ref: dict[str, Any] = {"type": "agent_reference", "name": name}
    if version is not None:
        ref["version"] = version
    return ref


def agent_label(body: Mapping[str, Any] | None) -> str | None:
    """`NAME[:VERSION]` of the agent a request body references (either spelling), else None."""
    if not isinstance(body, Mapping):
        return None
    ref = body.get("agent_reference") or body.get("agent")
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    return f"{ref['name']}:{ref['version']}" if ref.get("version") else str(ref["name"])


def conversation_id_of(value: Any) -> str | None:
    """A request's or response's `conversation` (an id, or `{"id": ...}`) as an id."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return str(value) if value else None


# ---------------------------------------------------------------------------- routes


def require_project(conn: Connection, what: str = "Agents") -> str:
    """The project root of `conn` (`.../api/projects/P`), or a ConfigurationError saying where agents live."""
    if conn.kind == "foundry-project":
        return conn.endpoint.rstrip("/")
    where = (f"{conn.label} is of kind {conn.kind}" if conn.label == conn.endpoint
             else f"{conn.label} ({conn.endpoint}) is of kind {conn.kind}")
    if conn.kind == "emulator":
        origin = conn.endpoint.split("/openai/", 1)[0]
        hint = (f"The emulator presents a project too: fm.connect({origin + '/api/projects/demo'!r}, auth='none'), "
                "then run the cell again.")
    else:
        hint = ("Connect to the project's endpoint (Foundry portal > your project > Overview), e.g. "
                f"`%foundry connect {PROJECT_URL_EXAMPLE} --auth entra`, or pass -c NAME of a saved project.")
    raise ConfigurationError(f"{what} live on a Foundry project endpoint: {PROJECT_URL_EXAMPLE}; {where}.", hint=hint)


def _v1_root(conn: Connection) -> str:
    """The `/openai/v1` root that serves conversations: a project's, or a v1 endpoint's own."""
    if conn.kind == "foundry-project":
        return conn.endpoint.rstrip("/") + "/openai/v1"
    if conn.kind in ("openai-v1", "openai-compatible", "emulator"):
        return conn.endpoint.rstrip("/")
    raise ConfigurationError(
        f"Server-side conversations need the Responses API's v1 route; {conn.label} is {article(conn.kind)} endpoint.",
        hint=f"Connect to a Foundry project ({PROJECT_URL_EXAMPLE}), or use --chat NAME "
             "(a conversation kept in the notebook) on this connection.",
    )


def _version() -> dict[str, str]:
    return {"api-version": AGENTS_API_VERSION}


def agents_route(conn: Connection) -> Route:
    return Route("GET", require_project(conn) + "/agents", _version())


def agent_route(conn: Connection, name: str) -> Route:
    ref = agent_reference(name)
    return Route("GET", f"{require_project(conn)}/agents/{quote(ref['name'], safe='')}", _version())


def conversations_route(conn: Connection) -> Route:
    return Route("POST", _v1_root(conn) + "/conversations")


def conversation_route(conn: Connection, conversation_id: str, part: str = "", method: str = "GET") -> Route:
    """`GET .../conversations/{id}` (part ""), `GET .../conversations/{id}/items` (part "items"),
    `DELETE .../conversations/{id}` (method "DELETE")."""
    if not isinstance(conversation_id, str) or not conversation_id.strip() or "/" in conversation_id:
        raise ConfigurationError(f"{conversation_id!r} is not a conversation id.",
                                 hint="Conversation ids look like conv_...; create one with create_conversation().")
    url = f"{_v1_root(conn)}/conversations/{quote(conversation_id.strip(), safe='')}"
    params: dict[str, str] = {}
    if part == "items":
        url += "/items"
        params = {"order": "asc", "limit": str(CONVERSATION_ITEMS_PAGE)}
    return Route(method, url, params)


def conversation_body(items: Sequence[Any] | None = None, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The body of `POST .../conversations`: initial `items` (strings become user messages) and `metadata`."""
    body: dict[str, Any] = {}
    if items:
        body["items"] = [{"type": "message", "role": "user", "content": i} if isinstance(i, str) else dict(i)
                         for i in items]
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad or len(metadata) > 16:
            raise ConfigurationError("Conversation metadata is at most 16 string keys with string values.",
                                     hint='Pass metadata={"name": "helpdesk"}.')
        body["metadata"] = {k: v[:512] for k, v in metadata.items()}
    return body


# ---------------------------------------------------------------------------- agents


@dataclass
class Agent:
    """An agent of a project: its name and (latest) version, the model and instructions it runs with."""

    name: str
    version: str | None = None
    model: str | None = None
    instructions: str | None = None
    description: str | None = None
    kind: str | None = None
    tools: list[str] = field(default_factory=list)
    raw: Any = field(default=None, repr=False)

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name

    def row(self) -> dict[str, Any]:
        """What `%foundry agents` and `fm.agents()` show."""
        first = (self.instructions or "").strip().splitlines()
        return {"name": self.name, "version": self.version, "model": self.model,
                "instructions": first[0] if first else "", "tools": ", ".join(self.tools)}


def agent_from_object(obj: Any) -> Agent | None:
    """An agent from the API's object: `{"name", "versions": {"latest": {...}}}` (the current API),
    an agent version (`{"name", "version", "definition": {...}}`), or a flat legacy shape."""
    if not isinstance(obj, Mapping):
        return None
    versions = obj.get("versions")
    latest = versions.get("latest") if isinstance(versions, Mapping) else None
    ver = latest if isinstance(latest, Mapping) else obj
    definition = ver.get("definition")
    if not isinstance(definition, Mapping):
        definition = ver
    name = obj.get("name") or ver.get("name") or obj.get("id")
    if not name:
        return None
    tools = []
    for t in definition.get("tools") or []:
        if isinstance(t, Mapping) and t.get("type"):
            tools.append(str(t["type"]))
        elif isinstance(t, str):
            tools.append(t)
    version = ver.get("version")
    return Agent(name=str(name), version=str(version) if version not in (None, "") else None,
                 model=definition.get("model"), instructions=definition.get("instructions"),
                 description=ver.get("description") or obj.get("description"),
                 kind=definition.get("kind"), tools=tools, raw=obj)


def agents_from_listing(body: Any) -> list[Agent]:
    items = body.get("data", body.get("value")) if isinstance(body, Mapping) else body
    out = []
    for item in items if isinstance(items, list) else []:
        agent = agent_from_object(item)
        if agent is not None:
            out.append(agent)
    return out


# ---------------------------------------------------------------------------- conversation items


@dataclass
class ConversationItem:
    """One item of a server-side conversation: a message (role and text) or a tool item."""

    id: str | None
    type: str
    role: str | None = None
    text: str = ""
    status: str | None = None
    raw: Any = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "role": self.role or "", "text": self.text}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for p in content if isinstance(content, list) else []:
        if isinstance(p, Mapping):
            if isinstance(p.get("text"), str):
                parts.append(p["text"])
            elif p.get("type") in ("input_image", "image_url"):
                parts.append("[image]")
            elif isinstance(p.get("refusal"), str):
                parts.append(p["refusal"])
    return "".join(parts)


def items_from_listing(body: Any) -> list[ConversationItem]:
    items = body.get("data") if isinstance(body, Mapping) else body
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        typ = str(item.get("type") or "message")
        if typ == "message":
            text = _content_text(item.get("content"))
        else:
            tool = _tool_call(item)
            text = tool.detail if tool is not None else ""
        out.append(ConversationItem(id=item.get("id"), type=typ, role=item.get("role"), text=text,
                                    status=item.get("status"), raw=item))
    return out


# ---------------------------------------------------------------------------- replies: tools and citations


def _short(value: Any, n: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _tool_detail(item: Mapping[str, Any]) -> str:
    typ = item.get("type")
    action = item.get("action")
    if not isinstance(action, Mapping):
        action = {}
    if typ == "web_search_call":
        query = action.get("query") or item.get("query")
        if query:
            return f"searched the web for “{_short(query, 60)}”"
        return f"opened {action['url']}" if action.get("url") else "searched the web"
    if typ == "file_search_call":
        queries = [q for q in item.get("queries") or [] if isinstance(q, str)]
        return ("searched files for " + ", ".join(f"“{_short(q, 40)}”" for q in queries[:3])) if queries \
            else "searched files"
    if typ == "code_interpreter_call":
        code = item.get("code")
        return f"ran code: {_short(code, 60)}" if code else "ran code"
    if typ in ("mcp_call", "function_call", "custom_tool_call"):
        label = item.get("name") or "a tool"
        if item.get("server_label"):
            label = f"{item['server_label']}.{label}"
        args = item.get("arguments") if typ != "custom_tool_call" else item.get("input")
        return f"called {label}({_short(args, 50)})" if args not in (None, "", "{}") else f"called {label}"
    if typ == "function_call_output":
        return f"returned {_short(item.get('output'), 60)}"
    if typ == "mcp_list_tools":
        return f"listed the tools of {item.get('server_label') or 'an MCP server'}"
    return typ.replace("_call", "").replace("_", " ") if isinstance(typ, str) else "tool"


def _tool_call(item: Mapping[str, Any]) -> ToolCall | None:
    typ = item.get("type")
    if not isinstance(typ, str) or typ in ("message", "reasoning"):
        return None
    return ToolCall(typ, item.get("id") or item.get("call_id"), item.get("status"), detail=_tool_detail(item),
                    raw=dict(item))


def tool_calls_of(output: Iterable[Any] | None) -> list[ToolCall]:
    """The tool items of a response's `output`, in order."""
    out = []
    for item in output or []:
        if isinstance(item, Mapping):
            tc = _tool_call(item)
            if tc is not None:
                out.append(tc)
    return out


def _annotations(output: Iterable[Any] | None) -> Iterable[tuple[Mapping[str, Any], int]]:
    """(annotation, offset of its text part in the reply's whole text), for every output_text part."""
    offset = 0
    for item in output or []:
        if not isinstance(item, Mapping) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if not isinstance(part, Mapping) or part.get("type") != "output_text":
                continue
            for ann in part.get("annotations") or []:
                if isinstance(ann, Mapping):
                    yield ann, offset
            offset += len(part.get("text") or "")


def citations_of(output: Iterable[Any] | None) -> list[Citation]:
    """Numbered sources from the annotations of a response's `output`: one number per distinct
    URL (or file), in order of first mention; each Citation keeps the span of its first mention
    (offsets into the reply's whole text)."""
    out: list[Citation] = []
    seen: dict[tuple[str, str], int] = {}
    for ann, offset in _annotations(output):
        kind = str(ann.get("type") or "")
        if kind == "url_citation" or (not kind and ann.get("url")):
            url = ann.get("url")
            if not isinstance(url, str) or not url:
                continue
            key, title, file_id = ("url", url), str(ann.get("title") or url), None
        elif kind in ("file_citation", "container_file_citation", "file_path"):
            file_id = ann.get("file_id")
            name = ann.get("filename") or ann.get("title") or file_id
            if not name:
                continue
            key, title, url = ("file", str(file_id or name)), str(name), None
        else:
            continue
        if key in seen:
            continue
        seen[key] = len(out) + 1
        start, end = ann.get("start_index"), ann.get("end_index")
        if kind != "url_citation" and end is None and isinstance(ann.get("index"), int):
            start = end = ann["index"]  # file citations mark one position
        span = (offset + start, offset + end) if isinstance(start, int) and isinstance(end, int) else (None, None)
        out.append(Citation(len(out) + 1, title, url, kind=kind or "url_citation", file_id=file_id,
                            start=span[0], end=span[1]))
    return out


def chat_citations(message: Any) -> list[Citation]:
    """Citations of a chat completion's message: `annotations` of `{"type": "url_citation",
    "url_citation": {"url", "title", "start_index", "end_index"}}` (web search models)."""
    anns = message.get("annotations") if isinstance(message, Mapping) else None
    if not isinstance(anns, list) or not anns:
        return []
    flat: list[Mapping[str, Any]] = []
    for a in anns:
        if isinstance(a, Mapping) and isinstance(a.get(a.get("type") or ""), Mapping):
            flat.append({"type": a["type"], **a[a["type"]]})
        elif isinstance(a, Mapping):
            flat.append(a)
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    return citations_of([{"type": "message", "content": [{"type": "output_text", "text": text, "annotations": flat}]}])
