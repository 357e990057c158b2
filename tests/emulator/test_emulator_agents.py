"""The emulator's Foundry project, in a subprocess: agents, agent references on responses
(streamed too, with tool items and citation annotations), conversations and their items, the
gateway mode (API Management's token-limit policy); our client against it, the OpenAI SDK's
`conversations` and `responses` calls agreeing with our client, and a gateway quota stopping a
1,000-row DataFrame run at once with every finished row kept."""

from __future__ import annotations

import json

import httpx
import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.emulator import Emulator

pytestmark = pytest.mark.timeout(120)

KEY = "emu-agents-key-123"
PROJECT_PATH = "/api/projects/demo"


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY, lifetime=300, process=True) as e:
        yield e


@pytest.fixture()
def http(emu):
    with httpx.Client(base_url=emu.url + PROJECT_PATH, headers={"api-key": KEY}, timeout=10, trust_env=False) as c:
        yield c


@pytest.fixture()
def project(emu):
    conn = fm.Connection.from_url(emu.url + PROJECT_PATH, api_key=KEY)
    with fm.FoundryClient(conn, timeout=10) as c:
        yield c


def configure(emu, **options):
    """Gateway options are not Emulator(...) keywords: the admin endpoint sets them."""
    r = httpx.post(emu.url + "/_emulator/config", json=options, timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    httpx.post(emu.url + "/_emulator/reset", json={}, timeout=10, trust_env=False)


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        event = next(ln[6:].strip() for ln in lines if ln.startswith("event:"))
        data = json.loads("".join(ln[5:].strip() for ln in lines if ln.startswith("data:")))
        assert data["type"] == event
        out.append((event, data))
    return out


# ------------------------------------------------------------------ the project endpoint


def test_the_emulator_presents_a_project_endpoint(emu):
    conn = fm.Connection.from_url(emu.url + PROJECT_PATH, auth="none")
    assert conn.kind == "foundry-project" and conn.api == "responses" and conn.auth == "none"
    assert conn.endpoint == emu.url + PROJECT_PATH


def test_agents_list_get_versions_and_create(http):
    r = http.get("/agents", params={"api-version": "v1"})
    assert r.status_code == 200 and r.headers["x-foundry-emulator"] == "1"
    listing = r.json()
    assert listing["object"] == "list" and listing["has_more"] is False
    names = [a["name"] for a in listing["data"]]
    assert names[:3] == ["helpdesk", "researcher", "calculator"]
    latest = listing["data"][0]["versions"]["latest"]
    assert latest["version"] == "2" and latest["definition"]["model"] == "gpt-4o-mini"
    assert http.get("/agents/helpdesk", params={"api-version": "v1"}).json()["versions"]["latest"]["id"] == "helpdesk:2"
    versions = http.get("/agents/helpdesk/versions", params={"api-version": "v1"}).json()["data"]
    assert [v["version"] for v in versions] == ["2", "1"]  # newest first
    assert http.get("/agents/helpdesk/versions/1", params={"api-version": "v1"}).json()["definition"]["tools"] == [
        {"type": "file_search", "vector_store_ids": ["vs_contoso_kb"]}]
    assert http.get("/agents").status_code == 400  # api-version is required
    assert http.get("/agents/nope", params={"api-version": "v1"}).status_code == 404
    made = http.post("/agents/tutor/versions", params={"api-version": "v1"}, json={
        "definition": {"kind": "prompt", "model": "gpt-4.1-mini", "instructions": "Teach kindly.",
                       "tools": [{"type": "web_search"}]}, "description": "A tutor"})
    assert made.status_code == 200 and made.json()["version"] == "1"
    assert http.post("/agents/bad/versions", params={"api-version": "v1"}, json={"definition": {}}).status_code == 400


def test_our_client_lists_and_runs_agents(project):
    agents = {a.name: a for a in project.agents()}
    assert {"helpdesk", "researcher", "calculator"} <= set(agents)
    assert agents["helpdesk"].tools == ["web_search", "file_search"] and agents["helpdesk"].version == "2"
    r = project.respond("My printer shows error 49. What now?", agent="helpdesk")
    assert r.emulated and r.agent == "helpdesk:2" and r.model == "gpt-4o-mini"
    assert [t.type for t in r.tool_calls] == ["file_search_call", "web_search_call"]
    assert [c.n for c in r.citations] == [1, 2, 3] and r.citations[0].url is None and r.citations[0].file_id
    assert all(c.url.startswith("https://kb.contoso.example/") for c in r.citations[1:])
    for c in r.citations:  # the spans point at the cited titles in the text
        assert r.text[c.start:c.end] == c.title if c.url else r.text[:c.end].endswith(c.title)
    v1 = project.respond("Where are the drivers?", agent="helpdesk:1")
    assert v1.agent == "helpdesk:1" and [t.type for t in v1.tool_calls] == ["file_search_call"]
    calc = project.respond("What is 6 times 7?", agent="calculator")
    assert calc.tool_calls[0].detail == "ran code: print(6 * 7)" and "printed 42" in calc.text
    with pytest.raises(errors.NotFoundError, match="nope"):
        project.respond("x", agent="nope")
    with pytest.raises(errors.NotFoundError, match="version '9'"):
        project.respond("x", agent="helpdesk:9")


def test_a_streamed_agent_reply_has_tool_items_and_annotation_events(http, project):
    r = http.post("/openai/v1/responses", json={"input": "Reset my password please",
                                                "agent_reference": {"type": "agent_reference", "name": "helpdesk"},
                                                "stream": True})
    events = sse_events(r.text)
    types = [t for t, _ in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert types[2:6] == ["response.output_item.added", "response.file_search_call.in_progress",
                          "response.file_search_call.searching", "response.file_search_call.completed"]
    assert "response.web_search_call.searching" in types
    annotations = [d["annotation"] for t, d in events if t == "response.output_text.annotation.added"]
    assert [a["type"] for a in annotations] == ["file_citation", "url_citation", "url_citation"]
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    final = events[-1][1]["response"]
    assert [i["type"] for i in final["output"]] == ["file_search_call", "web_search_call", "message"]
    assert final["agent_reference"]["name"] == "helpdesk"
    text = "".join(d["delta"] for t, d in events if t == "response.output_text.delta")
    assert text == final["output"][-1]["content"][0]["text"]
    # our client's stream: the tool calls as they start, the same reply as unstreamed
    stream = project.respond("Reset my password please", agent="helpdesk", stream=True)
    started = [d.tool_call.type for d in stream if d.tool_call is not None]
    plain = project.respond("Reset my password please", agent="helpdesk")
    assert started == ["file_search_call", "web_search_call"]
    assert stream.reply.text == plain.text and stream.reply.citations == plain.citations
    assert [tuple(t)[0] for t in stream.reply.tool_calls] == ["file_search_call", "web_search_call"]


def test_the_older_agent_spelling_and_structured_output(http):
    r = http.post("/openai/v1/responses", json={"input": "Describe a printer as JSON",
                                                "agent": {"type": "agent_reference", "name": "researcher"},
                                                "text": {"format": {"type": "json_object"}}})
    body = r.json()
    assert r.status_code == 200 and body["model"] == "gpt-4.1-mini"
    message = body["output"][-1]["content"][0]
    json.loads(message["text"])  # still JSON: no sources line appended
    assert message["annotations"] == []


# ------------------------------------------------------------------ conversations


def test_conversations_crud_and_items(http):
    made = http.post("/openai/v1/conversations", json={"metadata": {"name": "desk"},
                                                       "items": [{"type": "message", "role": "user",
                                                                  "content": "I use a Mac."}]})
    conv = made.json()
    assert made.status_code == 200 and conv["id"].startswith("conv_") and conv["object"] == "conversation"
    cid = conv["id"]
    assert http.get(f"/openai/v1/conversations/{cid}").json()["metadata"] == {"name": "desk"}
    assert http.post(f"/openai/v1/conversations/{cid}", json={"metadata": {"name": "desk2"}}).json()["metadata"] == {
        "name": "desk2"}
    added = http.post(f"/openai/v1/conversations/{cid}/items", json={"items": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And an iPhone."}]}]}).json()
    item_id = added["data"][0]["id"]
    listed = http.get(f"/openai/v1/conversations/{cid}/items", params={"order": "asc"}).json()
    assert [i["content"][0]["text"] for i in listed["data"]] == ["I use a Mac.", "And an iPhone."]
    assert http.get(f"/openai/v1/conversations/{cid}/items").json()["data"][0]["id"] == item_id  # default: desc
    page = http.get(f"/openai/v1/conversations/{cid}/items", params={"order": "asc", "limit": 1}).json()
    assert page["has_more"] is True and len(page["data"]) == 1
    assert http.get(f"/openai/v1/conversations/{cid}/items/{item_id}").json()["id"] == item_id
    assert http.delete(f"/openai/v1/conversations/{cid}/items/{item_id}").status_code == 200
    assert http.delete(f"/openai/v1/conversations/{cid}").json() == {"id": cid, "object": "conversation.deleted",
                                                                   "deleted": True}
    assert http.get(f"/openai/v1/conversations/{cid}").status_code == 404
    assert http.put(f"/openai/v1/conversations/{cid}").status_code in (404, 405)


def test_a_conversation_continues_over_turns_and_holds_them(project, http):
    cid = project.create_conversation(metadata={"name": "three turns"})
    texts = [project.respond(p, agent="helpdesk", conversation=cid).text
             for p in ("My name is Ada and my printer jams.", "What is my name?", "And what jams?")]
    assert "(turn 2)" in texts[1] and "(turn 3)" in texts[2] and "My name is Ada" in texts[2]
    items = project.conversation_items(cid)
    assert [(i.type, i.role) for i in items if i.type == "message"] == [("message", "user"), ("message", "assistant")] * 3
    assert len(items) == 12  # 3 x (question, file search, web search, answer)
    r = http.post("/openai/v1/responses", json={"input": "x", "model": "gpt-4o-mini", "conversation": cid,
                                                "previous_response_id": "resp_1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "mutually_exclusive_parameters"
    with pytest.raises(errors.NotFoundError) as info:
        project.respond("x", agent="helpdesk", conversation="conv_gone")
    assert "--new" in info.value.hint
    # a model (no agent) can continue a conversation too, also on the plain v1 route
    plain = fm.Connection.from_url(project.connection.endpoint.replace(PROJECT_PATH, "/openai/v1"), api_key=KEY,
                                   model="gpt-4o-mini")
    with fm.FoundryClient(plain, timeout=10) as c:
        cid2 = c.create_conversation()
        c.respond("Remember: blue.", conversation=cid2)
        assert "(turn 2)" in c.respond("Which colour?", conversation=cid2).text


# ------------------------------------------------------------------ the OpenAI SDK agrees


openai = pytest.importorskip("openai")


@pytest.fixture()
def sdk(emu):
    c = openai.OpenAI(base_url=emu.url + PROJECT_PATH + "/openai/v1", api_key=KEY, max_retries=0, timeout=10)
    yield c
    c.close()


def test_sdk_conversations_and_responses_agree_with_our_client(sdk, project):
    conv = sdk.conversations.create(metadata={"name": "sdk"})
    assert conv.object == "conversation" and sdk.conversations.retrieve(conv.id).metadata == {"name": "sdk"}
    agent = {"agent_reference": {"type": "agent_reference", "name": "helpdesk"}}
    first = sdk.responses.create(input="My laptop will not boot.", conversation=conv.id, extra_body=agent)
    ours = project.respond("Is it the battery?", agent="helpdesk", conversation=conv.id)
    third = sdk.responses.create(input="Thanks!", conversation=conv.id, extra_body=agent)
    assert "(turn 2)" in ours.text and "(turn 3)" in third.output_text
    assert first.output_text.startswith("[emulated] ") and first.conversation.id == conv.id == ours.conversation
    # the same citations, read by the SDK's models and by ours
    sdk_anns = [a for item in first.output if item.type == "message" for a in item.content[0].annotations]
    again = project.respond("My laptop will not boot.", agent="helpdesk")
    assert [(a.type, getattr(a, "url", None)) for a in sdk_anns] == [
        (c.kind, c.url) for c in again.citations]
    assert [i.type for i in first.output] == [t.type for t in again.tool_calls] + ["message"]
    # the items, listed by both
    sdk_items = list(sdk.conversations.items.list(conv.id, order="asc", limit=100))
    our_items = project.conversation_items(conv.id)
    assert [i.id for i in sdk_items] == [i.id for i in our_items] and len(our_items) == 12
    assert [getattr(i, "role", None) for i in sdk_items] == [i.role for i in our_items]
    texts = [i.content[0].text for i in sdk_items if i.type == "message"]
    assert texts == [i.text for i in our_items if i.type == "message"]
    # a stream through the SDK's event models, with tool items and annotation events
    types, deltas = [], []
    for ev in sdk.responses.create(input="My laptop will not boot.", extra_body=agent, stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
    assert "response.output_text.annotation.added" in types and "response.web_search_call.completed" in types
    assert "".join(deltas) == again.text
    # (the SDK's stream helper insists on a model: the agent's own, here)
    with sdk.responses.stream(model="gpt-4o-mini", input="My laptop will not boot.", extra_body=agent) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert final.output_text == again.text and len(final.output[-1].content[0].annotations) == 3
    assert sdk.conversations.delete(conv.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conv.id)


# ------------------------------------------------------------------ the gateway mode (API Management)


def gateway_conn(emu, key=KEY):
    return fm.Connection.from_url(emu.url + "/openai/v1", api_key=key, key_header="Ocp-Apim-Subscription-Key",
                                  model="gpt-4o-mini")


@pytest.fixture()
def gateway(emu):
    from foundry_magics.rest.retry import gateway_memory

    gateway_memory.clear()
    yield emu
    configure(emu, gateway_tpm=None, gateway_token_quota=None, gateway_quota_period=3600.0,
              gateway_quota_retry_after=True)
    gateway_memory.clear()


def test_gateway_token_rate_is_a_429_and_the_quota_a_403(gateway):
    configure(gateway, gateway_token_quota=60, gateway_quota_retry_after=True)
    with httpx.Client(base_url=gateway.url, headers={"Ocp-Apim-Subscription-Key": KEY}, timeout=10,
                      trust_env=False) as h:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there, gateway."}]}
        statuses = [h.post("/openai/v1/chat/completions", json=body).status_code for _ in range(6)]
        assert statuses[0] == 200 and statuses[-1] == 403
        r = h.post("/openai/v1/chat/completions", json=body)
        assert r.json()["statusCode"] == 403 and "replenished in" in r.json()["message"]
        assert 3500 <= int(r.headers["retry-after"]) <= 3600
    configure(gateway, gateway_token_quota=None, gateway_tpm=25)  # about 14 tokens a call
    with fm.FoundryClient(gateway_conn(gateway), timeout=10, max_retries=0) as c:
        c.chat("Hello there, gateway.")
        c.chat("Hello there, gateway.")
        with pytest.raises(errors.RateLimitError) as info:
            c.chat("Hello there, gateway.")
    e = info.value
    assert e.status == 429 and not e.quota_block and 1 <= e.retry_after <= 60 and "Token limit" in e.message


@pytest.mark.parametrize("retry_after", [True, False], ids=["with-retry-after", "after-a-success"])
def test_gateway_quota_is_a_quota_block_for_our_client(gateway, retry_after):
    configure(gateway, gateway_token_quota=40, gateway_quota_period=7200, gateway_quota_retry_after=retry_after)
    with fm.FoundryClient(gateway_conn(gateway), timeout=10, max_retries=3) as c:
        c.chat("Hello there, gateway.")
        with pytest.raises(errors.RateLimitError) as info:
            for _ in range(5):
                c.chat("Hello there, gateway.")
    e = info.value
    assert e.status == 403 and e.quota_block and 7000 <= e.retry_after <= 7200 and "2.0 hours" in e.hint
    assert gateway.stats()["by_status"]["403"] == 1  # not retried


def test_a_gateway_quota_stops_a_1000_row_run_after_the_first_403_keeping_every_finished_row(gateway, fm_home):
    pd = pytest.importorskip("pandas")
    configure(gateway, gateway_token_quota=4000, gateway_quota_retry_after=False)  # no retry-after: by memory
    df = pd.DataFrame({"text": [f"Review number {i}: the toaster works." for i in range(1000)]})
    conn = gateway_conn(gateway)
    with pytest.raises(errors.RateLimitError) as info:
        df["text"].foundry.prompt("Summarize: {}", connection=conn, concurrency=8, progress=False)
    assert info.value.quota_block and info.value.status == 403
    report = fm.last_run()
    stats = gateway.stats()["by_status"]
    ok, refused = stats["200"], stats["403"]
    assert 20 < ok < 300 and 1 <= refused <= 8  # only the requests already in flight met the 403 too
    assert report.done == ok and report.stopped and "quota" in report.stopped
    assert report.requests == ok + refused and report.not_sent >= 1000 - ok - 8
    # every finished row was kept: with the quota renewed, a re-run sends only the rest
    configure(gateway, gateway_token_quota=None)
    out = df["text"].foundry.prompt("Summarize: {}", connection=conn, concurrency=8, progress=False)
    again = fm.last_run()
    assert out.notna().all() and again.cache_hits == ok and again.requests == 1000 - ok


# ------------------------------------------------------------------ Entra ID on the wire (aiohttp and httpx)


class ScopedCredential:
    def __init__(self):
        self.scopes: list[str] = []

    def get_token(self, *scopes, **kw):
        from types import SimpleNamespace

        self.scopes.append(scopes[0])
        return SimpleNamespace(token="tok-ai" if "ai.azure.com" in scopes[0] else "tok-cog", expires_on=4102444800)


@pytest.mark.parametrize("mode", ["sync", "async-aiohttp"])
def test_a_token_for_the_wrong_audience_is_retried_with_the_other_scope(mode):
    import asyncio

    with Emulator(bearer_tokens=("tok-cog",), lifetime=60) as e:  # accepts only the cognitiveservices token
        conn = fm.Connection.from_url(e.url + PROJECT_PATH, auth="entra")
        cred = ScopedCredential()

        async def amain():
            async with fm.AsyncFoundryClient(conn, credential=cred, timeout=10) as c:
                return await c.respond("Hello", agent="helpdesk"), await c.respond("Again", agent="helpdesk")

        if mode == "sync":
            with fm.FoundryClient(conn, credential=cred, timeout=10) as c:
                replies = c.respond("Hello", agent="helpdesk"), c.respond("Again", agent="helpdesk")
        else:
            replies = asyncio.run(amain())
        statuses = e.stats()["by_status"]
    assert all(r.agent == "helpdesk:2" for r in replies)
    assert cred.scopes[0] == "https://ai.azure.com/.default" and cred.scopes[-1] == "https://cognitiveservices.azure.com/.default"
    # both I/O paths read the 401 and switch scopes at once: one refused request, not two
    assert statuses == {"401": 1, "200": 2}
