"""Agents, server-side conversations, citations and tool calls, exactly, through httpx.MockTransport
(sync and async); the name -> conversation id store; the history log's agent columns."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.rest.agents import (
    NEW_CONVERSATION,
    agent_reference,
    citations_of,
    items_from_listing,
    tool_calls_of,
)
from foundry_magics.rest.models import Citation, ToolCall

PROJECT = "https://res.services.ai.azure.com/api/projects/proj"
KEY = "sk-agents-unit-key-123"


class Recorder:
    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        nxt = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return nxt(request) if callable(nxt) else nxt

    @property
    def bodies(self):
        return [json.loads(r.content) if r.content else None for r in self.requests]


def project_client(handler, **fields):
    fields.setdefault("auth", "key")
    fields.setdefault("api_key", KEY)
    conn = fm.Connection.from_url(PROJECT, **fields)
    return fm.FoundryClient(conn, transport=httpx.MockTransport(handler))


ANSWER = "Restart the spooler. See the printer guide and kb-17.md."
OUTPUT = [
    {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["printer spooler"], "results": None},
    {"type": "web_search_call", "id": "ws_1", "status": "completed",
     "action": {"type": "search", "query": "restart print spooler"}},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "status": "completed", "name": "open_ticket",
     "arguments": '{"priority": "low"}'},
    {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [
        {"type": "output_text", "text": ANSWER, "annotations": [
            {"type": "url_citation", "url": "https://kb.example/printer", "title": "Printer guide",
             "start_index": ANSWER.index("printer guide"), "end_index": ANSWER.index("printer guide") + 13},
            {"type": "file_citation", "file_id": "file-17", "filename": "kb-17.md", "index": len(ANSWER) - 1},
            {"type": "url_citation", "url": "https://kb.example/printer", "title": "Printer guide (again)",
             "start_index": 0, "end_index": 7},
        ]}]},
]


def response_body(**extra):
    body = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4o-mini", "output": OUTPUT,
            "usage": {"input_tokens": 12, "output_tokens": 20, "total_tokens": 32},
            "agent_reference": {"type": "agent_reference", "name": "helpdesk", "version": "2"},
            "conversation": {"id": "conv_1"}}
    body.update(extra)
    return body


# --------------------------------------------------------------------------- building requests


def test_agent_reference_spellings():
    assert agent_reference("helpdesk") == {"type": "agent_reference", "name": "helpdesk"}
    assert agent_reference("helpdesk:2") == {"type": "agent_reference", "name": "helpdesk", "version": "2"}
    assert agent_reference({"name": "a", "version": 3}) == {"type": "agent_reference", "name": "a", "version": "3"}
    for bad in ("", "help desk", "a:", ":2", "a/b", 7):
        with pytest.raises(errors.ConfigurationError):
            agent_reference(bad)


def test_respond_with_agent_and_conversation_extends_build_respond():
    rec = Recorder(httpx.Response(200, json=response_body()))
    with project_client(rec) as c:
        r = c.respond("Which printer?", agent="helpdesk:2", conversation="conv_1", system="Be brief")
        dry = c.dry_run("responses", input="Which printer?", agent="helpdesk:2", conversation="conv_1",
                        system="Be brief")
    req = rec.requests[0]
    assert str(req.url) == PROJECT + "/openai/v1/responses"
    assert rec.bodies[0] == {"agent_reference": {"type": "agent_reference", "name": "helpdesk", "version": "2"},
                             "input": "Which printer?", "conversation": "conv_1", "instructions": "Be brief"}
    assert dry["json"] == rec.bodies[0] and dry["url"] == str(req.url)  # one builder for every path
    assert "model" not in rec.bodies[0]  # the agent brings its model
    assert r.agent == "helpdesk:2" and r.conversation == "conv_1" and r.text == ANSWER


def test_agent_with_an_explicit_model_sends_it_and_plain_calls_are_unchanged():
    rec = Recorder(httpx.Response(200, json=response_body()))
    with project_client(rec, model="gpt-4o") as c:
        c.respond("x", agent="helpdesk", model="gpt-4.1")
        c.respond("x")
    assert rec.bodies[0]["model"] == "gpt-4.1" and "agent_reference" not in rec.bodies[1]
    assert rec.bodies[1] == {"model": "gpt-4o", "input": "x"}


def test_agents_on_a_connection_that_is_not_a_project_is_a_helpful_error():
    rec = Recorder(httpx.Response(200, json=response_body()))
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec)) as c:
        for call in (lambda: c.respond("x", agent="helpdesk"), c.agents, lambda: c.agent("helpdesk")):
            with pytest.raises(errors.ConfigurationError,
                               match=r"(?i)agents live on a Foundry project endpoint: "
                                     r"https://RES\.services\.ai\.azure\.com/api/projects/P") as info:
                call()
            assert "%foundry connect" in info.value.hint
    assert rec.requests == []  # refused before sending


def test_conversation_needs_a_v1_route_and_excludes_previous_response_id():
    with project_client(Recorder(httpx.Response(200, json=response_body()))) as c:
        with pytest.raises(errors.ConfigurationError, match="not both"):
            c.build_respond("x", agent="a", conversation="conv_1", previous_response_id="resp_0")
        with pytest.raises(errors.ConfigurationError, match="conversation id"):
            c.build_respond("x", agent="a", conversation=" ")
        assert c.build_respond("x", agent="a", conversation=NEW_CONVERSATION)[1]["conversation"] == NEW_CONVERSATION
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
                                  api_key=KEY)
    with fm.FoundryClient(conn, transport=httpx.MockTransport(Recorder(httpx.Response(200)))) as c:
        with pytest.raises(errors.ConfigurationError, match="v1 route"):
            c.build_respond("x", conversation="conv_1")


# --------------------------------------------------------------------------- parsing replies


def test_reply_carries_numbered_citations_and_tool_calls():
    rec = Recorder(httpx.Response(200, json=response_body()))
    with project_client(rec) as c:
        r = c.respond("Which printer?", agent="helpdesk")
    assert r.citations == [(1, "Printer guide", "https://kb.example/printer"), (2, "kb-17.md", None)]
    guide, kb = r.citations
    assert (guide.kind, guide.start, guide.end) == ("url_citation", ANSWER.index("printer guide"),
                                                    ANSWER.index("printer guide") + 13)
    assert (kb.kind, kb.file_id, kb.end) == ("file_citation", "file-17", len(ANSWER) - 1)
    n, title, url = r.citations[0]  # the (n, title, url) tuple of the contract
    assert (n, title, url) == (1, "Printer guide", "https://kb.example/printer")
    assert [tuple(t) for t in r.tool_calls] == [("file_search_call", "fs_1", "completed"),
                                                 ("web_search_call", "ws_1", "completed"),
                                                 ("function_call", "fc_1", "completed")]
    assert [t.detail for t in r.tool_calls] == ["searched files for “printer spooler”",
                                                 "searched the web for “restart print spooler”",
                                                 'called open_ticket({"priority": "low"})']
    assert "agent helpdesk:2" in r.meta_bits()


def test_citation_offsets_count_the_whole_text_across_parts():
    output = [{"type": "message", "content": [
        {"type": "output_text", "text": "abc", "annotations": []},
        {"type": "output_text", "text": "de", "annotations": [
            {"type": "url_citation", "url": "https://x.example", "title": "X", "start_index": 0, "end_index": 2}]}]}]
    (c,) = citations_of(output)
    assert (c.start, c.end) == (3, 5)
    assert citations_of([{"type": "message", "content": [{"type": "output_text", "text": "t", "annotations": [
        {"type": "url_citation", "url": "", "title": "no url"}, {"type": "unknown"}, "junk"]}]}]) == []
    assert tool_calls_of([{"type": "message"}, {"type": "reasoning"}, "junk", {"no": "type"}]) == []


STREAM = [
    ("response.created", {"response": {"id": "resp_s", "model": "gpt-4o-mini", "status": "in_progress", "output": []}}),
    ("response.output_item.added", {"output_index": 0, "item": {"type": "web_search_call", "id": "ws_9",
                                                                "status": "in_progress",
                                                                "action": {"type": "search", "query": "toner"}}}),
    ("response.web_search_call.searching", {"output_index": 0, "item_id": "ws_9"}),
    ("response.output_item.done", {"output_index": 0, "item": {"type": "web_search_call", "id": "ws_9",
                                                               "status": "completed",
                                                               "action": {"type": "search", "query": "toner"}}}),
    ("response.output_item.added", {"output_index": 1, "item": {"type": "message", "id": "msg_9", "content": []}}),
    ("response.output_text.delta", {"item_id": "msg_9", "output_index": 1, "content_index": 0, "delta": "Buy "}),
    ("response.output_text.delta", {"item_id": "msg_9", "output_index": 1, "content_index": 0, "delta": "toner."}),
    ("response.output_text.annotation.added", {"item_id": "msg_9", "output_index": 1, "content_index": 0,
                                               "annotation_index": 0,
                                               "annotation": {"type": "url_citation", "url": "https://t.example",
                                                              "title": "Toner", "start_index": 4,
                                                              "end_index": 9}}),
    ("response.output_item.done", {"output_index": 1, "item": {"type": "message", "id": "msg_9", "content": [
        {"type": "output_text", "text": "Buy toner.", "annotations": []}]}}),
]


def sse(events, final_output=True):
    out = ""
    for typ, payload in events:
        out += f"event: {typ}\ndata: {json.dumps(dict(payload, type=typ))}\n\n"
    final = {"id": "resp_s", "model": "gpt-4o-mini", "status": "completed",
             "usage": {"input_tokens": 3, "output_tokens": 2},
             "output": [events[3][1]["item"], {"type": "message", "id": "msg_9", "content": [
                 {"type": "output_text", "text": "Buy toner.", "annotations": [events[7][1]["annotation"]]}]}]
             if final_output else []}
    out += f"event: response.completed\ndata: {json.dumps({'type': 'response.completed', 'response': final})}\n\n"
    return out.encode()


@pytest.mark.parametrize("final_output", [True, False], ids=["final-response-has-output", "only-streamed"])
def test_stream_yields_tool_calls_and_the_reply_keeps_citations(final_output):
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(STREAM, final_output)))
    with project_client(rec) as c:
        stream = c.respond("toner?", agent="helpdesk", stream=True)
        deltas = list(stream)
    tools = [d.tool_call for d in deltas if d.tool_call is not None]
    assert [tuple(t) for t in tools] == [("web_search_call", "ws_9", "in_progress")]
    assert stream.text == "Buy toner." and rec.bodies[0]["stream"] is True
    r = stream.reply
    assert r.citations == [(1, "Toner", "https://t.example")] and r.citations[0].end == 9
    assert [tuple(t) for t in r.tool_calls] == [("web_search_call", "ws_9", "completed")]


def test_async_client_agents_conversations_and_streams():
    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if path.endswith("/agents"):
            return httpx.Response(200, json={"object": "list", "data": [
                {"object": "agent", "name": "helpdesk", "versions": {"latest": {
                    "version": "2", "definition": {"model": "gpt-4o-mini", "instructions": "Help.\nMore.",
                                                   "tools": [{"type": "web_search"}]}}}}], "has_more": False})
        if path.endswith("/conversations"):
            return httpx.Response(200, json={"id": "conv_a", "object": "conversation", "created_at": 1, "metadata": {}})
        if path.endswith("/items"):
            return httpx.Response(200, json={"object": "list", "has_more": False, "data": [
                {"type": "message", "id": "m1", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]})
        body = json.loads(req.content)
        if body.get("stream"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(STREAM))
        return httpx.Response(200, json=response_body())

    async def main():
        conn = fm.Connection.from_url(PROJECT, api_key=KEY)
        async with fm.AsyncFoundryClient(conn, transport=httpx.MockTransport(handler)) as c:
            agents = await c.agents()
            cid = await c.create_conversation(metadata={"name": "t"})
            r = await c.respond("x", agent="helpdesk", conversation=cid)
            stream = await c.respond("x", agent="helpdesk", conversation=cid, stream=True)
            tools = [d.tool_call async for d in stream if d.tool_call is not None]
            items = await c.conversation_items(cid)
        return agents, cid, r, stream, tools, items

    agents, cid, r, stream, tools, items = asyncio.run(main())
    assert [a.row() for a in agents] == [{"name": "helpdesk", "version": "2", "model": "gpt-4o-mini",
                                          "instructions": "Help.", "tools": "web_search"}]
    assert cid == "conv_a" and r.citations[0].url == "https://kb.example/printer" and len(r.tool_calls) == 3
    assert stream.reply.citations == [(1, "Toner", "https://t.example")] and len(tools) == 1
    assert [(i.role, i.text) for i in items] == [("user", "hi")]


# --------------------------------------------------------------------------- agents and conversation calls


def test_agents_listing_follows_pages_and_one_agent_by_name():
    pages = [
        {"object": "list", "data": [{"object": "agent", "id": "a", "name": "a", "versions": {"latest": {
            "name": "a", "version": "1", "definition": {"kind": "prompt", "model": "m1", "instructions": "A"}}}}],
         "has_more": True, "last_id": "a"},
        {"object": "list", "data": [{"name": "b", "version": "3", "definition": {"model": "m2"}}], "has_more": False},
    ]
    rec = Recorder(httpx.Response(200, json=pages[0]), httpx.Response(200, json=pages[1]),
                   httpx.Response(200, json=pages[0]["data"][0]))
    with project_client(rec) as c:
        agents = c.agents()
        one = c.agent("a:1")
    assert [(a.name, a.version, a.model) for a in agents] == [("a", "1", "m1"), ("b", "3", "m2")]
    assert [str(r.url) for r in rec.requests] == [PROJECT + "/agents?api-version=v1",
                                                  PROJECT + "/agents?api-version=v1&after=a",
                                                  PROJECT + "/agents/a?api-version=v1"]
    assert one.name == "a" and one.reference == "a:1" and one.kind == "prompt"
    assert all(r.method == "GET" and r.headers["api-key"] == KEY for r in rec.requests)


def test_conversation_create_items_and_delete():
    items_page = {"object": "list", "data": [
        {"type": "message", "id": "m1", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "web_search_call", "id": "ws", "status": "completed", "action": {"query": "q"}},
        {"type": "message", "id": "m2", "role": "assistant", "content": [
            {"type": "output_text", "text": "Hello", "annotations": []}]}], "has_more": False, "last_id": "m2"}
    rec = Recorder(httpx.Response(200, json={"id": "conv_7", "object": "conversation"}),
                   httpx.Response(200, json=items_page), httpx.Response(200, json={"deleted": True}))
    with project_client(rec) as c:
        cid = c.create_conversation(["earlier question"], metadata={"name": "desk"})
        items = c.conversation_items(cid)
        c.delete_conversation(cid)
        with pytest.raises(errors.ConfigurationError):
            c.conversation_items("a/b")
    assert cid == "conv_7"
    assert rec.bodies[0] == {"items": [{"type": "message", "role": "user", "content": "earlier question"}],
                             "metadata": {"name": "desk"}}
    assert [(r.method, str(r.url)) for r in rec.requests] == [
        ("POST", PROJECT + "/openai/v1/conversations"),
        ("GET", PROJECT + "/openai/v1/conversations/conv_7/items?order=asc&limit=100"),
        ("DELETE", PROJECT + "/openai/v1/conversations/conv_7")]
    assert [(i.type, i.role, i.text) for i in items] == [("message", "user", "Hi"),
                                                         ("web_search_call", None, "searched the web for “q”"),
                                                         ("message", "assistant", "Hello")]
    assert items_from_listing({"data": ["junk"]}) == []


def test_unknown_agent_and_lost_conversation_say_what_to_do():
    rec = Recorder(httpx.Response(404, json={"error": {"code": "NotFound", "message": "Agent 'x' was not found."}}),
                   httpx.Response(404, json={"error": {"code": "not_found",
                                                       "message": "Conversation with id 'conv_1' not found."}}))
    with project_client(rec) as c:
        with pytest.raises(errors.NotFoundError) as a:
            c.respond("q", agent="x")
        with pytest.raises(errors.NotFoundError) as b:
            c.respond("q", agent="helpdesk", conversation="conv_1")
    assert "%foundry agents" in a.value.hint and "--new" in b.value.hint


def test_citation_and_tool_call_are_tuples_that_survive_copy_and_pickle():
    import copy
    import pickle

    c = Citation(2, "T", "https://t.example", kind="url_citation", start=1, end=4)
    t = ToolCall("mcp_call", "mcp_1", "failed", detail="called s.f()", raw={"x": 1})
    for clone in (copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
        assert clone == (2, "T", "https://t.example") and clone.end == 4 and clone.n == 2
    for clone in (copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert clone == ("mcp_call", "mcp_1", "failed") and clone.detail == "called s.f()" and clone.status == "failed"


# --------------------------------------------------------------------------- Entra ID: the token's audience


class ScopedCredential:
    """Hands out a token per scope; records the scopes asked for."""

    def __init__(self):
        self.scopes: list[str] = []

    def get_token(self, *scopes, **kw):
        self.scopes.append(scopes[0])
        name = "ai" if "ai.azure.com" in scopes[0] else "cog"
        return SimpleNamespace(token=f"tok-{name}-{len(self.scopes)}", expires_on=4102444800)


AUDIENCE_401 = {"error": {"code": "PermissionDenied", "message": "Unauthorized. Access token is missing, invalid, "
                          "audience is incorrect (https://cognitiveservices.azure.com), or have expired."}}


def audience_handler(accept: str):
    def handler(req: httpx.Request) -> httpx.Response:
        if req.headers.get("authorization", "").startswith(f"Bearer tok-{accept}"):
            return httpx.Response(200, json=response_body())
        return httpx.Response(401, json=AUDIENCE_401)
    return handler


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_401_naming_the_audience_retries_once_with_the_other_scope(mode):
    cred = ScopedCredential()
    rec = Recorder(audience_handler("cog"))
    conn = fm.Connection.from_url(PROJECT, auth="entra", model="m")  # a project: ai.azure.com by default

    async def amain():
        async with fm.AsyncFoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
            return await c.respond("x"), await c.respond("y"), c.auth

    if mode == "sync":
        with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
            first, second, auth = c.respond("x"), c.respond("y"), c.auth
    else:
        first, second, auth = asyncio.run(amain())
    assert first.text == second.text == ANSWER
    assert cred.scopes == ["https://ai.azure.com/.default", "https://cognitiveservices.azure.com/.default"]
    assert len(rec.requests) == 3 and auth.scope == "https://cognitiveservices.azure.com/.default"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_refused_by_both_scopes_is_one_error_naming_the_scopes_and_the_role(mode):
    cred = ScopedCredential()
    rec = Recorder(audience_handler("nobody"))
    conn = fm.Connection.from_url(PROJECT, auth="entra", model="m")

    async def amain():
        async with fm.AsyncFoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred,
                                         max_retries=3) as c:
            await c.respond("x")

    with pytest.raises(errors.AuthError) as info:
        if mode == "sync":
            with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred, max_retries=3) as c:
                c.respond("x")
        else:
            asyncio.run(amain())
    hint = info.value.hint
    assert "https://ai.azure.com/.default and https://cognitiveservices.azure.com/.default" in hint
    assert "'Azure AI User'" in hint and len(rec.requests) == 2 and len(cred.scopes) == 2
    assert not any(t in str(info.value) for t in ("tok-ai-1", "tok-cog-2"))


def test_an_expired_token_is_still_refreshed_with_the_same_scope():
    cred = ScopedCredential()

    def handler(req):
        if req.headers["authorization"] == "Bearer tok-cog-1":
            return httpx.Response(401, json={"error": {"code": "ExpiredAuthenticationToken", "message":
                                  "The access token has expired. audience is incorrect (https://cognitiveservices.azure.com)"}},
                                  headers={"www-authenticate": 'Bearer error="invalid_token", error_description="expired"'})
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})

    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
    rec = Recorder(handler)
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
        assert c.chat("x").text == "ok"
        assert c.auth.scope == "https://cognitiveservices.azure.com/.default"
    assert cred.scopes == ["https://cognitiveservices.azure.com/.default"] * 2 and len(rec.requests) == 2


def test_a_custom_scope_is_not_switched():
    cred = ScopedCredential()
    rec = Recorder(httpx.Response(401, json=AUDIENCE_401))
    conn = fm.Connection.from_url(PROJECT, auth="entra", model="m", scope="api://custom/.default")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
        with pytest.raises(errors.AuthError, match="api://custom/.default"):
            c.respond("x")
    assert len(rec.requests) == 1


# --------------------------------------------------------------------------- API Management: a 403 quota


def gateway_client(rec, url="https://gw.azure-api.net/aoai/openai/v1", **fields):
    fields.setdefault("api_key", KEY)
    conn = fm.Connection.from_url(url, model="m", **fields)
    return fm.FoundryClient(conn, transport=httpx.MockTransport(rec), max_retries=3)


OK = httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
QUOTA = {"statusCode": 403, "message": "Token quota is exceeded. Quota will be replenished in 02:00:00."}


@pytest.fixture(autouse=True)
def fresh_gateway_memory():
    from foundry_magics.rest.retry import gateway_memory

    gateway_memory.clear()
    yield
    gateway_memory.clear()


def test_a_gateway_403_after_a_success_with_the_same_key_is_a_quota_block():
    rec = Recorder(OK, httpx.Response(403, json=QUOTA))
    with gateway_client(rec) as c:
        assert c.chat("a").text == "ok"
        with pytest.raises(errors.RateLimitError) as info:
            c.chat("b")
    e = info.value
    assert e.status == 403 and e.quota_block and e.retry_after == 7200
    assert "2.0 hours" in e.hint and "token quota" in e.hint and len(rec.requests) == 2  # not retried
    from foundry_magics.rest.retry import is_transient, stops_everything

    assert stops_everything(e) and not is_transient(e)
    assert rec.requests[0].headers["ocp-apim-subscription-key"] == KEY


def test_the_memory_is_per_key_and_shared_by_clients():
    with gateway_client(Recorder(OK)) as c:
        c.chat("a")
    with gateway_client(Recorder(httpx.Response(403, json=QUOTA))) as c:  # a new client, the same key
        with pytest.raises(errors.RateLimitError):
            c.chat("b")
    with gateway_client(Recorder(httpx.Response(403, json=QUOTA)), api_key="sk-another-key-456") as c:
        with pytest.raises(errors.AuthError) as info:  # never succeeded with this key: a wrong key, or no access
            c.chat("b")
    assert not isinstance(info.value, errors.RateLimitError)


def test_a_gateway_403_with_retry_after_is_a_quota_even_first():
    rec = Recorder(httpx.Response(403, json={"statusCode": 403, "message": "Token quota is exceeded."},
                                  headers={"retry-after": "600"}))
    with gateway_client(rec) as c:
        with pytest.raises(errors.RateLimitError) as info:
            c.chat("x")
    assert info.value.quota_block and info.value.retry_after == 600 and "10 minutes" in info.value.hint


def test_the_apim_key_header_marks_a_gateway_on_any_host_and_plain_403s_stay_auth_errors():
    rec = Recorder(OK, httpx.Response(403, json=QUOTA))
    with gateway_client(rec, url="https://gateway.contoso.example/openai/v1",
                        key_header="Ocp-Apim-Subscription-Key") as c:
        c.chat("a")
        with pytest.raises(errors.RateLimitError):
            c.chat("b")
    rec = Recorder(OK, httpx.Response(403, json={"error": {"code": "403", "message": "Forbidden"}}))
    with gateway_client(rec, url="https://r.openai.azure.com/openai/v1") as c:  # not a gateway
        c.chat("a")
        with pytest.raises(errors.AuthError) as info:
            c.chat("b")
    assert not isinstance(info.value, errors.RateLimitError) and "role" in info.value.hint


def test_a_gateway_stream_success_counts_too():
    body = (b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\n'
            b"data: [DONE]\n\n")
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body),
                   httpx.Response(403, json=QUOTA))
    with gateway_client(rec) as c:
        assert c.chat("a", stream=True).until_done().text == "ok"
        with pytest.raises(errors.RateLimitError):
            c.chat("b", stream=True).until_done()


# --------------------------------------------------------------------------- the store and the history log


def test_conversation_names_survive_a_new_store_and_are_per_endpoint(fm_home):
    from foundry_magics.store.conversations import ConversationStore

    a = ConversationStore()
    a.put("desk", PROJECT + "/", "conv_1", agent="helpdesk")
    a.turn("desk", PROJECT, "conv_1")
    a.turn("desk", PROJECT, "conv_1")
    a.turn("other", PROJECT, "conv_2")
    a.close()
    b = ConversationStore()  # a new kernel
    saved = b.get("desk", PROJECT)
    assert (saved.conversation_id, saved.turns, saved.agent) == ("conv_1", 2, "helpdesk")
    assert b.get("desk", "https://elsewhere.example/api/projects/p") is None
    assert b.get("other", PROJECT).turns == 1
    b.put("desk", PROJECT, "conv_9")  # --new
    assert b.get("desk", PROJECT).conversation_id == "conv_9" and b.get("desk", PROJECT).turns == 0
    assert [c.name for c in b.all()] == ["desk", "other"]
    assert b.forget("desk", PROJECT) and not b.forget("desk", PROJECT) and b.get("desk", PROJECT) is None
    assert (fm_home / "conversations.sqlite").exists()
    b.close()


def test_history_records_the_agent_and_the_conversation(fm_home):
    from foundry_magics.store.history import History

    rec = Recorder(httpx.Response(200, json=response_body()))
    history = History()
    conn = fm.Connection.from_url(PROJECT, api_key=KEY)
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), on_record=history.record) as c:
        c.respond("Which printer?", agent="helpdesk:2", conversation="conv_1")
    (row,) = history.recent(1)
    assert (row["agent"], row["conversation_id"], row["prompt"]) == ("helpdesk:2", "conv_1", "Which printer?")
    history.close()


def test_a_token_that_worked_and_is_refused_later_is_refreshed_not_switched():
    """Azure's 401 text for an expired token names the audience too: a token that was accepted
    before is refreshed with the same scope; only a token never accepted switches scopes."""
    cred = ScopedCredential()
    state = {"n": 0}

    def handler(req):
        state["n"] += 1
        if state["n"] == 2:  # the cached tok-cog-1 is refused (revoked, expired) on the second call
            return httpx.Response(401, json=AUDIENCE_401)
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})

    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(handler), credential=cred) as c:
        assert c.chat("a").text == c.chat("b").text == "ok"
        assert c.auth.scope == "https://cognitiveservices.azure.com/.default"
    assert cred.scopes == ["https://cognitiveservices.azure.com/.default"] * 2 and state["n"] == 3


def test_chat_completions_url_citations_are_read_too():
    text = "See the docs."
    body = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text,
            "annotations": [{"type": "url_citation", "url_citation": {"url": "https://d.example", "title": "Docs",
                                                                      "start_index": 8, "end_index": 12}}]}}]}
    rec = Recorder(httpx.Response(200, json=body))
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec)) as c:
        r = c.chat("docs?")
    assert r.citations == [(1, "Docs", "https://d.example")] and text[r.citations[0].start:r.citations[0].end] == "docs"
