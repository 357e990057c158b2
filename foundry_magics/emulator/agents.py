"""The emulator's Foundry project: agents, agent references on responses, conversations, and
an API Management gateway mode.

* Agents: named, versioned definitions (`GET {project}/agents?api-version=v1`, one by name,
  its versions; `POST .../agents/{name}/versions` adds one). A response with an agent
  reference (`agent_reference` or `agent`) runs with the agent's model and instructions; its
  output holds the agent's tool items (web search, file search, code interpreter) before the
  message, whose text carries `url_citation` / `file_citation` annotations. Streamed, the
  same: `response.output_item.added` / `.done` per item, the tool's progress events, and
  `response.output_text.annotation.added` per annotation.
* Conversations (`/openai/v1/conversations`, on a project and on the plain v1 route): create,
  retrieve, update, delete, and their items (list, add, retrieve, delete). A response with
  `conversation` continues it (the brain sees the earlier turns) and appends its input and
  output items to it.
* Gateway mode (options `gateway_tpm`, `gateway_token_quota`, `gateway_quota_period`,
  `gateway_quota_retry_after`): what API Management's `azure-openai-token-limit` policy answers,
  counted per subscription key: over the token rate, 429 with Retry-After; over the quota for
  the period, 403 Forbidden (with Retry-After when the policy names one).

Everything here is called from `App` (app.py) on the server's loop: synchronous, no I/O.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, unquote

from . import brain, shapes
from .jobs import JSON_CT, Fail, err
from .routes import API_VERSION, Route
from .wire import Reply, Request

__all__ = ["DEFAULT_AGENTS", "Project", "Gateway", "resolve", "handle"]

KB = "https://kb.contoso.example"  # the emulated knowledge base (the .example TLD never resolves)

# name -> versions (oldest first); each version: model, instructions, tools, description
DEFAULT_AGENTS: dict[str, list[dict[str, Any]]] = {
    "helpdesk": [
        {"model": "gpt-4o-mini", "description": "Contoso IT helpdesk (files only)",
         "instructions": "You are Contoso's IT helpdesk. Answer from the knowledge base files and cite them.",
         "tools": [{"type": "file_search", "vector_store_ids": ["vs_contoso_kb"]}]},
        {"model": "gpt-4o-mini", "description": "Contoso IT helpdesk",
         "instructions": "You are Contoso's IT helpdesk. Answer briefly, search the knowledge base and the web, "
                         "and cite your sources.",
         "tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_contoso_kb"]}]},
    ],
    "researcher": [
        {"model": "gpt-4.1-mini", "description": "Web research with sources",
         "instructions": "Research the question on the web and cite every source you use.",
         "tools": [{"type": "web_search"}]},
    ],
    "calculator": [
        {"model": "gpt-4o-mini", "description": "Arithmetic with the code interpreter",
         "instructions": "Work out numbers with the code interpreter and show the result.",
         "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
    ],
}
CREATED = 1735689600  # 2025-01-01: the default agents' creation time (stable outputs)


# ============================================================================ routes


def resolve(path: str) -> Route | None:
    """Agents (under `/api/projects/P/`) and conversations (under any `/v1/`), or None."""
    segs = [unquote(s) for s in path.split("/") if s]
    if "agents" in segs:
        i = len(segs) - 1 - segs[::-1].index("agents")
        if i >= 3 and segs[i - 3:i - 1] == ["api", "projects"]:
            rest = segs[i + 1:]
            if not rest:
                return Route("agents", "agents.list", None, False, False)
            if len(rest) == 1:
                return Route("agents", "agents.get", rest[0], False, False)
            if len(rest) == 2 and rest[1] == "versions":
                return Route("agents", "agents.versions", rest[0], False, False)
            if len(rest) == 3 and rest[1] == "versions":
                return Route("agents", "agents.version", (rest[0], rest[2]), False, False)
            return None
    if "conversations" in segs:
        i = segs.index("conversations")
        if i >= 1 and segs[i - 1] == "v1":
            rest = segs[i + 1:]
            if not rest:
                return Route("agents", "conversations", None, False, False)
            if len(rest) == 1:
                return Route("agents", "conversation", rest[0], False, False)
            if len(rest) == 2 and rest[1] == "items":
                return Route("agents", "conversation.items", rest[0], False, False)
            if len(rest) == 3 and rest[1] == "items":
                return Route("agents", "conversation.item", (rest[0], rest[2]), False, False)
    return None


# ============================================================================ state


def _version_object(name: str, version: str, spec: dict[str, Any], created: int) -> dict[str, Any]:
    return {
        "object": "agent.version", "id": f"{name}:{version}", "name": name, "version": version,
        "description": spec.get("description") or "", "created_at": created, "metadata": spec.get("metadata") or {},
        "definition": {"kind": spec.get("kind") or "prompt", "model": spec.get("model"),
                       "instructions": spec.get("instructions") or "", "tools": list(spec.get("tools") or [])},
    }


class Project:
    """The agents and conversations of the emulator (one set for every project path)."""

    def __init__(self) -> None:
        self.agents: dict[str, list[dict[str, Any]]] = {}
        for name, versions in DEFAULT_AGENTS.items():
            self.agents[name] = [_version_object(name, str(i + 1), v, CREATED) for i, v in enumerate(versions)]
        self.conversations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.max_conversations = 10_000

    # -- agents
    def agent_object(self, name: str) -> dict[str, Any] | None:
        versions = self.agents.get(name)
        if not versions:
            return None
        return {"object": "agent", "id": name, "name": name, "versions": {"latest": versions[-1]}}

    def version(self, name: str, version: str | None) -> dict[str, Any] | None:
        versions = self.agents.get(name) or []
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v["version"] == str(version)), None)

    def add_version(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        definition = body.get("definition")
        if not isinstance(definition, dict):
            definition = {}
        if not definition.get("model"):
            raise Fail(err(400, shapes.invalid_request("Missing required parameter: 'definition.model'.",
                                                       "definition.model", "missing_required_parameter")))
        versions = self.agents.setdefault(name, [])
        spec = dict(definition, description=body.get("description"), metadata=body.get("metadata"))
        obj = _version_object(name, str(len(versions) + 1), spec, int(time.time()))
        versions.append(obj)
        return obj

    # -- conversations
    def new_conversation(self, metadata: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
        conv: dict[str, Any] = {"id": shapes.new_id("conv_"), "object": "conversation", "created_at": int(time.time()),
                "metadata": metadata if isinstance(metadata, dict) else {}, "items": []}
        conv["items"].extend(_stamp(i) for i in items)
        self.conversations[conv["id"]] = conv
        if len(self.conversations) > self.max_conversations:
            self.conversations.popitem(last=False)
        return conv

    def conversation(self, cid: str) -> dict[str, Any]:
        conv = self.conversations.get(cid)
        if conv is None:
            raise Fail(err(404, shapes.invalid_request(f"Conversation with id '{cid}' not found.", None, "not_found")))
        return conv


def _public(conv: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in conv.items() if k != "items"}


def _stamp(item: Any) -> dict[str, Any]:
    """An input item as a conversation stores it: a message with an id, a status and content parts."""
    if isinstance(item, str):
        item = {"type": "message", "role": "user", "content": item}
    if not isinstance(item, dict):
        raise Fail(err(400, shapes.invalid_request("Invalid type for 'items': expected an object.", "items")))
    item = dict(item)
    typ = item.setdefault("type", "message")
    if typ == "message":
        role = item.get("role") or "user"
        content = item.get("content")
        kind = "output_text" if role == "assistant" else "input_text"
        if isinstance(content, str):
            content = [{"type": kind, "text": content}]
        elif not isinstance(content, list):
            content = []
        item.update(role=role, content=content)
        item.setdefault("id", shapes.new_id("msg_"))
    else:
        item.setdefault("id", shapes.new_id("item_"))
    item.setdefault("status", "completed")
    return item


def _text(item: dict[str, Any]) -> str:
    parts = item.get("content")
    if isinstance(parts, str):
        return parts
    return "\n".join(p.get("text", "") for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str))


def _listing(items: list[dict[str, Any]], query: str, default_order: str = "desc") -> bytes:
    q = parse_qs(query)
    order = (q.get("order") or [default_order])[0]
    try:
        limit = max(1, min(100, int((q.get("limit") or ["20"])[0])))
    except ValueError:
        raise Fail(err(400, shapes.invalid_request("Invalid 'limit': expected an integer.", "limit"))) from None
    seq = list(items) if order == "asc" else list(reversed(items))
    after = q["after"][0] if q.get("after") else None
    if after:
        ids = [i.get("id") for i in seq]
        seq = seq[ids.index(after) + 1:] if after in ids else []
    page = seq[:limit]
    return shapes.dumps({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                         "last_id": page[-1]["id"] if page else None, "has_more": len(seq) > limit})


# ============================================================================ requests


def handle(app: Any, req: Request, route: Route, body: Any) -> Reply:
    """An agents or conversations request (auth already checked)."""
    project: Project = app.project
    delay = app.opts["latency"]
    method, op = req.method, route.op
    if body is not None and not isinstance(body, dict):
        raise Fail(err(400, shapes.invalid_request("We could not parse the JSON body of your request.")))
    body = body or {}

    def ok(obj: Any) -> Reply:
        return Reply(200, [JSON_CT], obj if isinstance(obj, bytes) else shapes.dumps(obj), delay=delay)

    def allow(*methods: str) -> None:
        if method not in methods:
            r = err(405, shapes.error_body("405", "Method Not Allowed"))
            r.headers.append(("allow", ", ".join(methods)))
            raise Fail(r)

    if op.startswith("agents"):
        _check_version(req)
        if op == "agents.list":
            allow("GET")
            objs = [project.agent_object(n) for n in project.agents]
            return ok(_listing([o for o in objs if o], req.query, "asc"))
        arg = route.arg  # agents.get / agents.versions: the name; agents.version: (name, version)
        name = arg[0] if isinstance(arg, tuple) else str(arg)
        if op == "agents.versions" and method == "POST":
            return ok(project.add_version(name, body))
        if project.agent_object(name) is None:
            raise Fail(err(404, shapes.error_body("NotFound", f"Agent '{name}' was not found in this project.")))
        allow("GET")
        if op == "agents.get":
            return ok(project.agent_object(name))
        if op == "agents.versions":
            return ok(_listing(project.agents[name], req.query))
        wanted = arg[1] if isinstance(arg, tuple) else None
        found = project.version(name, wanted)
        if found is None:
            raise Fail(err(404, shapes.error_body("NotFound", f"Agent '{name}' has no version '{wanted}'.")))
        return ok(found)

    if op == "conversations":
        allow("POST")
        items = body.get("items") or []
        if not isinstance(items, list) or len(items) > 20:
            raise Fail(err(400, shapes.invalid_request("'items' must be a list of at most 20 items.", "items")))
        return ok(_public(project.new_conversation(body.get("metadata"), items)))
    arg = route.arg  # conversation / conversation.items: its id; conversation.item: (its id, the item's)
    cid = arg[0] if isinstance(arg, tuple) else str(arg)
    conv = project.conversation(cid)
    if op == "conversation":
        allow("GET", "POST", "DELETE")
        if method == "DELETE":
            project.conversations.pop(cid, None)
            return ok({"id": cid, "object": "conversation.deleted", "deleted": True})
        if method == "POST":
            if isinstance(body.get("metadata"), dict):
                conv["metadata"] = body["metadata"]
        return ok(_public(conv))
    if op == "conversation.items":
        allow("GET", "POST")
        if method == "POST":
            items = body.get("items")
            if not isinstance(items, list) or not items or len(items) > 20:
                raise Fail(err(400, shapes.invalid_request("'items' must be a list of 1 to 20 items.", "items")))
            added = [_stamp(i) for i in items]
            conv["items"].extend(added)
            return ok({"object": "list", "data": added, "first_id": added[0]["id"], "last_id": added[-1]["id"],
                       "has_more": False})
        return ok(_listing(conv["items"], req.query))
    item_id = arg[1] if isinstance(arg, tuple) else None
    found = next((i for i in conv["items"] if i.get("id") == item_id), None)
    if found is None:
        raise Fail(err(404, shapes.invalid_request(f"Item with id '{item_id}' not found.", None, "not_found")))
    allow("GET", "DELETE")
    if method == "DELETE":
        conv["items"].remove(found)
        return ok(_public(conv))
    return ok(found)


def _check_version(req: Request) -> None:
    version = parse_qs(req.query).get("api-version", [None])[0] if req.query else None
    if not version:
        raise Fail(err(400, shapes.error_body(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.")))
    if not API_VERSION.match(version):
        raise Fail(err(400, shapes.error_body("BadRequest", "API version not supported")))


# ============================================================================ responses with agents / conversations


def reference_of(body: dict[str, Any]) -> dict[str, Any] | None:
    ref = body.get("agent_reference") or body.get("agent")
    return ref if isinstance(ref, dict) else None


def prepare(app: Any, body: dict[str, Any]) -> dict[str, Any] | None:
    """For a Responses request: the agent version and the conversation it names, or None."""
    ref = reference_of(body)
    conv_value = body.get("conversation")
    if ref is None and conv_value is None:
        return None
    project: Project = app.project
    out: dict[str, Any] = {"agent": None, "conversation": None}
    if ref is not None:
        name = ref.get("name")
        if not isinstance(name, str) or not name:
            raise Fail(err(400, shapes.invalid_request("Missing required parameter: 'agent_reference.name'.",
                                                       "agent_reference.name", "missing_required_parameter")))
        version = project.version(name, ref.get("version"))
        if version is None:
            what = f"Agent '{name}'" + (f" version '{ref['version']}'" if ref.get("version") else "")
            raise Fail(err(404, shapes.error_body("NotFound", f"{what} was not found in this project.")))
        out["agent"] = version
    if conv_value is not None:
        cid = conv_value.get("id") if isinstance(conv_value, dict) else conv_value
        if not isinstance(cid, str) or not cid:
            raise Fail(err(400, shapes.invalid_request("Invalid 'conversation': expected an id.", "conversation")))
        if body.get("previous_response_id"):
            raise Fail(err(400, shapes.invalid_request(
                "Mutually exclusive parameters: 'previous_response_id' and 'conversation'. Ensure you are only "
                "providing one of: 'previous_response_id' or 'conversation'.", None, "mutually_exclusive_parameters")))
        out["conversation"] = project.conversation(cid)
    return out


def model_of(prepared: dict[str, Any]) -> str | None:
    agent = prepared.get("agent")
    return agent["definition"].get("model") if agent else None


def extend_job(job: dict[str, Any], prepared: dict[str, Any], body: dict[str, Any]) -> None:
    """The brain's view of an agent turn: the agent's instructions, the conversation so far."""
    agent = prepared.get("agent")
    conv = prepared.get("conversation")
    job["agent"] = agent
    job["conversation"] = conv
    job["input_items"] = _input_items(body.get("input"))
    if agent is not None:
        instructions = agent["definition"].get("instructions") or ""
        job["system"] = "\n".join(s for s in (instructions, job["system"]) if s)
    if conv is not None:
        earlier = [_text(i) for i in conv["items"] if i.get("type") == "message" and i.get("role") == "user"]
        if earlier:
            job["turn"] = len(earlier) + job["turn"]
            job["first"] = earlier[0]
            job["prev_context"] = sum(max(1, brain.count_tokens(_text(i))) for i in conv["items"]
                                      if i.get("type") == "message")


def _input_items(inp: Any) -> list[dict[str, Any]]:
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": inp}]
    out = []
    for item in inp if isinstance(inp, list) else []:
        if isinstance(item, str):
            out.append({"type": "message", "role": "user", "content": item})
        elif isinstance(item, dict):
            item = dict(item)
            if "role" in item and "type" not in item:
                item["type"] = "message"
            out.append(item)
    return out


def _slug(words: list[str]) -> str:
    return "-".join(re.sub(r"[^a-z0-9]+", "", w.lower()) for w in words if w) or "overview"


def agent_reply(job: dict[str, Any], text: str) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(the reply text with its sources line, the tool items, the annotations on the text)."""
    agent = job.get("agent")
    if agent is None:
        return text, [], []
    last = brain.strip_directives(job["last"])
    kws = brain.keywords(last, 3) or ["contoso"]
    topic = " ".join(kws[:2])
    tools = [t.get("type") for t in agent["definition"].get("tools") or [] if isinstance(t, dict)]
    items: list[dict[str, Any]] = []
    sources: list[tuple[str, str | None, str | None]] = []  # (title, url, file id)
    if "file_search" in tools:
        items.append({"type": "file_search_call", "id": shapes.new_id("fs_"), "status": "completed",
                      "queries": [brain.first_sentence(last, 10)], "results": None})
        sources.append((f"{_slug(kws[:2])}.md", None, "assistant-" + format(brain.h32(topic), "08x")))
    if "web_search" in tools:
        items.append({"type": "web_search_call", "id": shapes.new_id("ws_"), "status": "completed",
                      "action": {"type": "search", "query": brain.first_sentence(last, 10)}})
        sources.append((f"Contoso KB: {topic.title()}", f"{KB}/articles/{_slug(kws[:2])}", None))
        sources.append(("Contoso KB: Troubleshooting", f"{KB}/articles/troubleshooting?q={_slug(kws[:1])}", None))
    if "code_interpreter" in tools:
        nums = [int(n) for n in re.findall(r"\b\d{1,9}\b", last)][:6] or [0]
        times = bool(re.search(r"\btimes\b|\*|×|\bmultipl", last.lower()))
        expr = (" * " if times else " + ").join(map(str, nums))
        result = 1 if times else 0
        for n in nums:
            result = result * n if times else result + n
        items.append({"type": "code_interpreter_call", "id": shapes.new_id("ci_"), "status": "completed",
                      "code": f"print({expr})", "container_id": "cntr_emulated",
                      "outputs": [{"type": "logs", "logs": f"{result}\n"}]})
        if job.get("mode", "text") == "text":
            text += f"\n\nThe code interpreter ran `print({expr})` and printed {result}."
    annotations: list[dict[str, Any]] = []
    if sources and job.get("mode", "text") == "text":  # structured output stays parseable
        text += "\n\nSee "
        for k, (title, url, file_id) in enumerate(sources):
            if k:
                text += " and " if k == len(sources) - 1 else ", "
            start = len(text)
            text += title
            if url:
                annotations.append({"type": "url_citation", "url": url, "title": title, "start_index": start,
                                    "end_index": len(text)})
            else:
                annotations.append({"type": "file_citation", "file_id": file_id, "filename": title,
                                    "index": len(text)})
        text += "."
    return text, items, annotations


def decorate(app: Any, job: dict[str, Any], resp: dict[str, Any], items: list[dict[str, Any]],
             annotations: list[dict[str, Any]]) -> None:
    """The response as an agent / a conversation turn: tool items first, annotations on the text,
    the agent and conversation named; the turn appended to its conversation."""
    message = resp["output"][0]
    text = message["content"][0]["text"]
    kept = [a for a in annotations if (a.get("end_index") or a.get("index") or 0) <= len(text)]
    message["content"][0]["annotations"] = kept
    resp["output"] = [*items, message]
    agent = job.get("agent")
    if agent is not None:
        resp["agent_reference"] = {"type": "agent_reference", "name": agent["name"], "version": agent["version"]}
        resp["tools"] = list(agent["definition"].get("tools") or [])
    conv = job.get("conversation")
    if conv is not None:
        resp["conversation"] = {"id": conv["id"]}
        conv["items"].extend(_stamp(i) for i in job.get("input_items") or [])
        conv["items"].extend(dict(i) for i in resp["output"])
        app.project.conversations.move_to_end(conv["id"])


def response_events(resp: dict[str, Any], toks: list[str]) -> list[bytes]:
    """The stream of an agent's response: each tool item (added, its progress, done), then the
    message (text deltas, one event per annotation), then response.completed."""
    seq = 0
    out: list[bytes] = []

    def emit(typ: str, payload: str) -> None:
        nonlocal seq
        out.append(('event: %s\ndata: {"type":"%s","sequence_number":%d,%s}\n\n' % (typ, typ, seq, payload)).encode())
        seq += 1

    d = shapes.dumps
    pending = dict(resp, status="in_progress", output=[], usage=None, incomplete_details=None)
    emit("response.created", '"response":' + d(pending).decode())
    emit("response.in_progress", '"response":' + d(pending).decode())
    *tools, message = resp["output"]
    for i, item in enumerate(tools):
        head = '"output_index":%d,"item_id":%s' % (i, d(item["id"]).decode())
        started = d(dict(item, status="in_progress")).decode()
        emit("response.output_item.added", '"output_index":%d,"item":%s' % (i, started))
        kind = item["type"][: -len("_call")] if item["type"].endswith("_call") else item["type"]
        steps = {"web_search": ("in_progress", "searching", "completed"),
                 "file_search": ("in_progress", "searching", "completed"),
                 "code_interpreter": ("in_progress", "interpreting", "completed")}.get(kind, ())
        for step in steps:
            emit(f"response.{kind}_call.{step}", head)
        emit("response.output_item.done", '"output_index":%d,"item":%s' % (i, d(item).decode()))
    n = len(tools)
    part = message["content"][0]
    opened = {"type": "message", "id": message["id"], "status": "in_progress", "role": "assistant", "content": []}
    emit("response.output_item.added", '"output_index":%d,"item":%s' % (n, d(opened).decode()))
    ids = '"item_id":%s,"output_index":%d,"content_index":0' % (d(message["id"]).decode(), n)
    emit("response.content_part.added", ids + ',"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}')
    for t in toks:
        emit("response.output_text.delta", ids + ',"delta":' + d(t).decode() + ',"logprobs":[]')
    for k, ann in enumerate(part.get("annotations") or []):
        emit("response.output_text.annotation.added",
             ids + ',"annotation_index":%d,"annotation":%s' % (k, d(ann).decode()))
    emit("response.output_text.done", ids + ',"text":' + d(part["text"]).decode() + ',"logprobs":[]')
    emit("response.content_part.done", ids + ',"part":' + d(part).decode())
    emit("response.output_item.done", '"output_index":%d,"item":%s' % (n, d(message).decode()))
    final = "response.completed" if resp["status"] == "completed" else "response." + resp["status"]
    emit(final, '"response":' + d(resp).decode())
    return out


# ============================================================================ the gateway (API Management)


class Gateway:
    """API Management's token-limit policy, per subscription key: `gateway_tpm` tokens per
    minute (over it: 429 + Retry-After) and `gateway_token_quota` tokens per
    `gateway_quota_period` seconds (over it: 403, with Retry-After if `gateway_quota_retry_after`)."""

    def __init__(self) -> None:
        self.minute: dict[str, list[tuple[float, int]]] = {}
        self.quota: dict[str, tuple[float, int]] = {}  # key -> (period start, tokens used)

    @staticmethod
    def active(opts: dict[str, Any]) -> bool:
        return bool(opts.get("gateway_tpm") or opts.get("gateway_token_quota"))

    @staticmethod
    def key_of(req: Request) -> str:
        h = req.headers
        return h.get("ocp-apim-subscription-key") or h.get("api-key") or h.get("authorization") or "anonymous"

    def reset(self) -> None:
        self.minute.clear()
        self.quota.clear()

    def check(self, opts: dict[str, Any], req: Request, now: float | None = None) -> None:
        """Raise the gateway's answer when this key is over its rate or its quota."""
        now = time.time() if now is None else now
        key = self.key_of(req)
        quota = opts.get("gateway_token_quota")
        if quota:
            period = float(opts.get("gateway_quota_period") or 3600.0)
            start, used = self.quota.get(key, (now, 0))
            if now - start >= period:
                start, used = now, 0
                self.quota[key] = (start, used)
            if used >= float(quota):
                left = max(1, int(round(period - (now - start))))
                hh, rem = divmod(left, 3600)
                mm, ss = divmod(rem, 60)
                headers = [("retry-after", str(left))] if opts.get("gateway_quota_retry_after", True) else []
                raise Fail(Reply(403, [JSON_CT, *headers], shapes.dumps({
                    "statusCode": 403,
                    "message": f"Token quota is exceeded. Quota will be replenished in {hh:02d}:{mm:02d}:{ss:02d}."})))
        tpm = opts.get("gateway_tpm")
        if tpm:
            window = [(t, n) for t, n in self.minute.get(key, []) if now - t < 60.0]
            self.minute[key] = window
            if window and sum(n for _, n in window) >= float(tpm):
                wait = max(1, int(60.0 - (now - window[0][0]) + 0.999))
                raise Fail(Reply(429, [JSON_CT, ("retry-after", str(wait)), ("x-ratelimit-remaining-tokens", "0")],
                                 shapes.dumps({"statusCode": 429,
                                               "message": f"Token limit is exceeded. Try again in {wait} seconds."})))

    def consume(self, opts: dict[str, Any], req: Request, tokens: int, now: float | None = None) -> None:
        if not self.active(opts):
            return
        now = time.time() if now is None else now
        key = self.key_of(req)
        if opts.get("gateway_token_quota"):
            start, used = self.quota.get(key, (now, 0))
            self.quota[key] = (start, used + tokens)
        if opts.get("gateway_tpm"):
            self.minute.setdefault(key, []).append((now, tokens))
