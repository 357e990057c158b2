"""The offline Foundry emulator: routes, auth, wire shapes, SSE quirks, limits, faults, CLI.

Every server here listens on 127.0.0.1 with a lifetime, so nothing outlives the tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from foundry_magics import emulator
from foundry_magics.emulator import Emulator, brain

pytestmark = pytest.mark.timeout(60)

KEY = "test-key-123"
CHAT = "/openai/v1/chat/completions"
MSG = [{"role": "user", "content": "Hello there. How are you today?"}]


# ------------------------------------------------------------------ fixtures & helpers

@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY, bearer_tokens=("entra-token",), expired_tokens=("old-token",), lifetime=120) as e:
        yield e


@pytest.fixture()
def client(emu):
    with httpx.Client(base_url=emu.url, headers={"api-key": KEY}, timeout=10, trust_env=False) as c:
        yield c


def open_client(e: Emulator, **kw) -> httpx.Client:
    return httpx.Client(base_url=e.url, timeout=10, trust_env=False, **kw)


def chat_body(text="Hello there. How are you today?", **extra):
    return dict({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}, **extra)


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        out.append((event, "\n".join(data)))
    return out


def assert_marked(r: httpx.Response):
    assert r.headers["x-foundry-emulator"] == "1"
    assert len(r.headers["x-request-id"]) == 36
    assert r.headers["apim-request-id"]


# ------------------------------------------------------------------ routes

ROUTES = [
    ("POST", "/openai/v1/chat/completions", chat_body(), "chat"),
    ("POST", "/openai/v1/responses", {"model": "gpt-4o-mini", "input": "hi"}, "response"),
    ("POST", "/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}, "embeddings"),
    ("GET", "/openai/v1/models", None, "list"),
    ("POST", "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
     {"messages": MSG}, "chat"),
    ("POST", "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21", {"input": ["a"]},
     "embeddings"),
    ("GET", "/openai/models?api-version=2024-10-21", None, "list"),
    ("POST", "/models/chat/completions?api-version=2025-04-01", chat_body(), "chat"),
    ("POST", "/models/embeddings?api-version=2025-04-01", {"model": "text-embedding-3-small", "input": "x"},
     "embeddings"),
    ("GET", "/models/info?api-version=2025-04-01", None, "info"),
    ("POST", "/api/projects/proj/openai/v1/responses", {"model": "gpt-4.1-mini", "input": "hi"}, "response"),
    ("POST", "/api/projects/proj/openai/v1/chat/completions", chat_body(), "chat"),
    ("POST", "/api/projects/proj/openai/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"},
     "embeddings"),
    ("GET", "/api/projects/proj/openai/v1/models", None, "list"),
    ("POST", "/api/projects/proj/openai/responses?api-version=2025-11-15-preview",
     {"model": "gpt-4o-mini", "input": "hi"}, "response"),
    ("GET", "/api/projects/proj/deployments?api-version=v1", None, "deployments"),
    ("POST", "/v1/chat/completions", chat_body(), "chat"),
    ("POST", "/v1/responses", {"model": "local", "input": "hi"}, "response"),
    ("POST", "/v1/embeddings", {"model": "local-embed", "input": "hi"}, "embeddings"),
    ("GET", "/v1/models", None, "list"),
    ("POST", "/my-api/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
     {"messages": MSG}, "chat"),
    ("POST", "/gateway/x/openai/v1/chat/completions", chat_body(), "chat"),
    ("POST", "/gw/models/chat/completions?api-version=2024-05-01-preview", chat_body(), "chat"),
]


@pytest.mark.parametrize("method,path,body,shape", ROUTES, ids=[r[1] for r in ROUTES])
def test_every_route_kind(client, method, path, body, shape):
    r = client.request(method, path, json=body)
    assert r.status_code == 200, r.text
    assert_marked(r)
    assert r.headers["content-type"].startswith("application/json")
    j = r.json()
    if shape == "chat":
        assert j["object"] == "chat.completion"
        assert j["choices"][0]["message"]["content"].startswith("[emulated] ")
        if "deployments/" in path:
            assert j["model"] == "gpt-4o-mini"
    elif shape == "response":
        assert j["object"] == "response" and j["status"] == "completed"
        assert j["output"][0]["content"][0]["text"].startswith("[emulated] ")
    elif shape == "embeddings":
        assert j["object"] == "list" and j["data"][0]["object"] == "embedding"
    elif shape == "list":
        ids = [m["id"] for m in j["data"]]
        assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids
    elif shape == "info":
        assert j == {"model_name": "gpt-4o-mini", "model_type": "chat-completion", "model_provider_name": "OpenAI"}
    elif shape == "deployments":
        names = {d["name"]: d for d in j["value"]}
        assert set(names) == {"gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small"}
        d = names["gpt-4.1-mini"]
        assert d["modelName"] == "gpt-4.1-mini" and d["modelPublisher"] == "OpenAI" and d["type"] == "ModelDeployment"


def test_unknown_route_and_wrong_method(client):
    r = client.post("/openai/v1/nothing/here", json={})
    assert r.status_code == 404 and r.json() == {"error": {"code": "404", "message": "Resource not found"}}
    assert_marked(r)
    r = client.get(CHAT)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_api_version_required_where_azure_requires_it(client):
    r = client.post("/openai/deployments/gpt-4o-mini/chat/completions", json={"messages": MSG})
    assert r.status_code == 404 and r.json()["error"] == {"code": "404", "message": "Resource not found"}
    r = client.post("/openai/deployments/gpt-4o-mini/embeddings", json={"input": "x"})
    assert r.status_code == 404
    r = client.post("/models/chat/completions", json=chat_body())
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    r = client.get("/models/info")
    assert r.status_code == 400
    r = client.post("/api/projects/p/openai/responses", json={"model": "m", "input": "x"})
    assert r.status_code == 404
    r = client.get("/api/projects/p/deployments")
    assert r.status_code == 400
    r = client.get("/openai/models")
    assert r.status_code == 404
    r = client.post("/openai/deployments/d/chat/completions?api-version=yesterday", json={"messages": MSG})
    assert r.status_code == 400 and r.json()["error"] == {"code": "BadRequest", "message": "API version not supported"}
    # v1 routes need none, and ignore one
    assert client.post(CHAT, json=chat_body()).status_code == 200
    assert client.post(CHAT + "?api-version=preview", json=chat_body()).status_code == 200


def test_model_required_on_v1_and_strict_models():
    with Emulator(lifetime=30, strict_models=True, deployments=["my-gpt", "my-embed"]) as e, open_client(e) as c:
        r = c.post(CHAT, json={"messages": MSG})
        assert r.status_code == 400 and "model" in r.json()["error"]["message"]
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 404 and r.json()["error"]["code"] == "DeploymentNotFound"
        r = c.post("/openai/deployments/nope/chat/completions?api-version=2024-10-21", json={"messages": MSG})
        assert r.status_code == 404 and r.json()["error"]["code"] == "DeploymentNotFound"
        r = c.post(CHAT, json=dict(chat_body(), model="my-gpt"))
        assert r.status_code == 200 and r.json()["model"] == "my-gpt"
        assert [m["id"] for m in c.get("/openai/v1/models").json()["data"]] == ["my-gpt", "my-embed"]
        # the local OpenAI-compatible route defaults the model
        assert c.post("/v1/chat/completions", json={"messages": MSG}).json()["model"] == "my-gpt"


# ------------------------------------------------------------------ auth

@pytest.mark.parametrize("headers", [
    {"api-key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"Ocp-Apim-Subscription-Key": KEY},
    {"Authorization": "Bearer entra-token"}, {"authorization": f"bearer {KEY}"},
])
def test_auth_accepted(emu, headers):
    with open_client(emu, headers=headers) as c:
        assert c.post(CHAT, json=chat_body()).status_code == 200


@pytest.mark.parametrize("headers", [
    {}, {"api-key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Ocp-Apim-Subscription-Key": "wrong"},
    {"Authorization": KEY},
])
def test_auth_rejected(emu, headers):
    with open_client(emu, headers=headers) as c:
        for path in (CHAT, "/openai/deployments/d/chat/completions?api-version=2024-10-21",
                     "/models/chat/completions?api-version=2025-04-01", "/api/projects/p/openai/v1/responses"):
            r = c.post(path, json=chat_body())
            assert r.status_code == 401, path
            err = r.json()["error"]
            assert err["code"] == "401"
            assert err["message"].startswith("Access denied due to invalid subscription key or wrong API endpoint.")
            assert_marked(r)


def test_entra_style_tokens(emu):
    with open_client(emu, headers={"Authorization": "Bearer old-token"}) as c:
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 401 and r.json()["error"]["code"] == "ExpiredAuthenticationToken"
        assert "expired" in r.json()["error"]["message"]
    with open_client(emu, headers={"Authorization": "Bearer eyJ0eXAi.eyJhdWQi.c2ln"}) as c:
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 401 and "Access token is missing, invalid" in r.json()["error"]["message"]


def test_no_credentials_configured_accepts_anything():
    with Emulator(lifetime=30) as e, open_client(e) as c:
        assert c.post(CHAT, json=chat_body()).status_code == 200
        assert c.post(CHAT, json=chat_body(), headers={"api-key": "whatever"}).status_code == 200
        assert c.post(CHAT, json=chat_body(), headers={"Authorization": "Bearer x"}).status_code == 200


def test_admin_routes_need_no_key(emu):
    with open_client(emu) as c:
        assert c.get("/_emulator/health").json()["status"] == "ok"
        assert "requests" in c.get("/_emulator/stats").json()


# ------------------------------------------------------------------ chat completions

def test_chat_shape(client):
    r = client.post(CHAT, json=chat_body())
    j = r.json()
    assert j["id"].startswith("chatcmpl-") and j["object"] == "chat.completion"
    assert isinstance(j["created"], int) and j["model"] == "gpt-4o-mini"
    assert j["system_fingerprint"] == "foundry-emulator"
    ch = j["choices"][0]
    assert ch["index"] == 0 and ch["finish_reason"] == "stop"
    assert ch["message"]["role"] == "assistant"
    assert ch["message"]["content"].startswith("[emulated] ")
    assert "Hello there." in ch["message"]["content"]
    assert all(v["filtered"] is False for v in ch["content_filter_results"].values())
    pf = j["prompt_filter_results"][0]
    assert pf["prompt_index"] == 0 and pf["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    u = j["usage"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_reply_is_deterministic_and_depends_on_the_request(client):
    a = client.post(CHAT, json=chat_body("What is the capital of France?")).json()
    b = client.post(CHAT, json=chat_body("What is the capital of France?")).json()
    c = client.post(CHAT, json=chat_body("Tell me about whales.")).json()
    text = a["choices"][0]["message"]["content"]
    assert text == b["choices"][0]["message"]["content"]
    assert text != c["choices"][0]["message"]["content"]
    assert a["id"] != b["id"]
    long = client.post(CHAT, json=chat_body(" ".join(["Emulators make notebooks testable offline."] * 20))).json()
    assert len(long["choices"][0]["message"]["content"]) > len(text)


def test_reply_plausible_for_common_tasks():
    assert brain.reply_text("Summarize: The cat sat on the mat. It was warm.").startswith(
        "[emulated] **Summary:** The cat sat on the mat.")
    assert brain.reply_text("Translate to French: hello my friend") == "[emulated] (French) bonjour mon ami"
    assert brain.reply_text("What is the sentiment of: I love this, it is great") == "[emulated] positive"
    assert brain.reply_text("Classify the sentiment: the product broke and support was terrible") == \
        "[emulated] negative"
    assert brain.reply_text("Classify into one of: sports, politics, weather. Text: heavy weather today") == \
        "[emulated] weather"
    assert brain.reply_text("Classify the sentiment of the following text as positive, negative or neutral.\n\n"
                            "Text: The delivery was late and the box was broken.") == "[emulated] negative"
    assert brain.reply_text("Classify the text into one of these categories: billing, shipping, other.\n\n"
                            "Text: my shipping label is wrong") == "[emulated] shipping"
    assert brain.reply_text("Explain sentiment analysis briefly.").startswith("[emulated] You said:")
    t = brain.reply_text("second", system="You are a pirate.", turn=2, first_user="first message")
    assert "(turn 2)" in t and "first message" in t and "pirate" in t


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_truncates(client, param):
    full = client.post(CHAT, json=chat_body()).json()["choices"][0]["message"]["content"]
    j = client.post(CHAT, json=chat_body(**{param: 3})).json()
    text = j["choices"][0]["message"]["content"]
    assert j["choices"][0]["finish_reason"] == "length"
    assert j["usage"]["completion_tokens"] == 3
    assert full.startswith(text) and len(text.split()) == 3
    r = client.post(CHAT, json=chat_body(**{param: 0}))
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_bad_bodies(client):
    r = client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "could not parse the JSON body" in r.json()["error"]["message"]
    r = client.post(CHAT, json={"model": "gpt-4o-mini"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_chat_completion_bytes_are_the_json_of_the_object(monkeypatch):
    """shapes.chat_completion formats a few values into a pre-encoded template: the same bytes as
    encoding the whole object."""
    from types import SimpleNamespace

    from foundry_magics.emulator import shapes

    monkeypatch.setattr(shapes, "new_id", lambda prefix: prefix + "0123456789abcdef" * 2)
    monkeypatch.setattr(shapes, "time", SimpleNamespace(time=lambda: 1_700_000_000.7))
    for model, content, finish, usage, filtered in [
            ("gpt-4o-mini", "[emulated] Hello!", "stop", (10, 20), False),
            ('we"ird\\model %s', 'quotes " \\ \n tabs\t, unicode é 日本, %d %s %%', "length", (1, 0), True),
            ("m", "", "content_filter", (123456, 7), True)]:
        p, c = usage
        want = shapes._dumps({
            "id": "chatcmpl-" + "0123456789abcdef" * 2, "object": "chat.completion", "created": 1_700_000_000,
            "model": model, "system_fingerprint": shapes.FINGERPRINT,
            "choices": [{
                "index": 0, "finish_reason": finish, "logprobs": None,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "content_filter_results": shapes.COMPLETION_FILTER_HIT if filtered else shapes.COMPLETION_FILTER_OK,
            }],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}},
            "prompt_filter_results": shapes.PROMPT_FILTER_RESULTS,
        }).encode()
        assert shapes.chat_completion(model, content, finish, usage, filtered=filtered) == want


def test_chat_stream_azure_quirks_in_order(client):
    body = chat_body(stream=True, stream_options={"include_usage": True})
    r = client.post(CHAT, json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert_marked(r)
    assert r.text.endswith("data: [DONE]\n\n")
    assert all(block.startswith("data: ") for block in r.text.split("\n\n") if block)
    events = sse_events(r.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    first = chunks[0]
    assert first["choices"] == [] and first["prompt_filter_results"][0]["prompt_index"] == 0
    role = chunks[1]["choices"][0]
    assert role["delta"]["role"] == "assistant" and role["delta"]["content"] == ""
    i_finish = next(i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0].get("finish_reason"))
    content = chunks[2:i_finish]
    deltas = [c["choices"][0]["delta"]["content"] for c in content]
    assert all(len(d.split()) == 1 for d in deltas), deltas  # one word per chunk
    assert chunks[i_finish]["choices"][0]["finish_reason"] == "stop"
    annot = chunks[i_finish + 1]["choices"][0]
    assert "delta" not in annot and "content_filter_results" in annot
    usage = chunks[i_finish + 2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(deltas)
    assert len(chunks) == i_finish + 3
    for c in chunks[1:]:
        assert c["id"].startswith("chatcmpl-") and c["object"] == "chat.completion.chunk"
    plain = client.post(CHAT, json=chat_body()).json()
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert usage["usage"] == {k: plain["usage"][k] for k in usage["usage"]}


def test_chat_stream_without_usage_and_with_max_tokens(client):
    r = client.post(CHAT, json=chat_body(stream=True, max_tokens=2))
    chunks = [json.loads(d) for _, d in sse_events(r.text)[:-1]]
    assert not any("usage" in c for c in chunks)
    deltas = [c["choices"][0]["delta"]["content"] for c in chunks[2:] if c["choices"] and
              c["choices"][0].get("delta", {}).get("content")]
    assert len(deltas) == 2
    assert any(c["choices"] and c["choices"][0].get("finish_reason") == "length" for c in chunks)


def test_token_delay_paces_the_stream():
    with Emulator(lifetime=30, token_delay=0.03) as e, open_client(e) as c:
        t0 = time.perf_counter()
        stamps = []
        with c.stream("POST", CHAT, json=chat_body(stream=True)) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    stamps.append(time.perf_counter() - t0)
        assert len(stamps) >= 8
        assert stamps[-1] - stamps[0] >= 0.03 * (len(stamps) - 2)


# ------------------------------------------------------------------ Responses API

RESP = "/openai/v1/responses"


def test_responses_shape_and_input_forms(client):
    j = client.post(RESP, json={"model": "gpt-4o-mini", "input": "Hello there", "instructions": "Be brief."}).json()
    assert j["id"].startswith("resp_") and j["object"] == "response" and j["status"] == "completed"
    assert j["model"] == "gpt-4o-mini" and j["instructions"] == "Be brief." and j["previous_response_id"] is None
    assert j["incomplete_details"] is None
    item = j["output"][0]
    assert item["type"] == "message" and item["id"].startswith("msg_") and item["role"] == "assistant"
    assert item["status"] == "completed"
    part = item["content"][0]
    assert part["type"] == "output_text" and part["annotations"] == []
    assert part["text"].startswith("[emulated] ") and "Hello there" in part["text"]
    u = j["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0
    as_list = client.post(RESP, json={"model": "gpt-4o-mini", "instructions": "Be brief.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}]}).json()
    as_msg = client.post(RESP, json={"model": "gpt-4o-mini", "instructions": "Be brief.",
                                     "input": [{"role": "user", "content": "Hello there"}]}).json()
    assert as_list["output"][0]["content"][0]["text"] == part["text"] == as_msg["output"][0]["content"][0]["text"]


def test_responses_max_output_tokens_incomplete(client):
    j = client.post(RESP, json={"model": "gpt-4o-mini", "input": "Hello there friend", "max_output_tokens": 2}).json()
    assert j["status"] == "incomplete" and j["incomplete_details"] == {"reason": "max_output_tokens"}
    assert j["usage"]["output_tokens"] == 2


def test_previous_response_id_continuity(client):
    r1 = client.post(RESP, json={"model": "gpt-4o-mini", "input": "My name is Ada."}).json()
    r2 = client.post(RESP, json={"model": "gpt-4o-mini", "input": "What is my name?",
                                 "previous_response_id": r1["id"]}).json()
    t2 = r2["output"][0]["content"][0]["text"]
    assert r2["previous_response_id"] == r1["id"]
    assert "turn 2" in t2 and "My name is Ada." in t2
    r3 = client.post(RESP, json={"model": "gpt-4o-mini", "input": "And again?", "previous_response_id": r2["id"]}).json()
    assert "turn 3" in r3["output"][0]["content"][0]["text"]
    assert r3["usage"]["input_tokens"] > r2["usage"]["total_tokens"] > r1["usage"]["total_tokens"]  # history billed
    # branching from r1 again is turn 2 again
    r2b = client.post(RESP, json={"model": "gpt-4o-mini", "input": "What is my name?",
                                  "previous_response_id": r1["id"]}).json()
    assert r2b["output"][0]["content"][0]["text"] == t2
    got = client.get(f"/openai/v1/responses/{r1['id']}")
    assert got.status_code == 200 and got.json()["id"] == r1["id"]
    r = client.post(RESP, json={"model": "gpt-4o-mini", "input": "x", "previous_response_id": "resp_nope"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "previous_response_not_found" and err["param"] == "previous_response_id"
    # store=false responses cannot be continued
    r4 = client.post(RESP, json={"model": "gpt-4o-mini", "input": "x", "store": False}).json()
    assert client.post(RESP, json={"model": "gpt-4o-mini", "input": "y",
                                   "previous_response_id": r4["id"]}).status_code == 400


def test_responses_stream_events(client):
    r = client.post(RESP, json={"model": "gpt-4o-mini", "input": "Stream this please", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in r.text
    events = sse_events(r.text)
    types = [e for e, _ in events]
    datas = [json.loads(d) for _, d in events]
    assert [d["type"] for d in datas] == types
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    n_delta = types.count("response.output_text.delta")
    assert types == (["response.created", "response.in_progress", "response.output_item.added",
                      "response.content_part.added"] + ["response.output_text.delta"] * n_delta +
                     ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                      "response.completed"])
    deltas = [d["delta"] for d in datas if d["type"] == "response.output_text.delta"]
    assert all(len(x.split()) == 1 for x in deltas)
    done = next(d for d in datas if d["type"] == "response.output_text.done")
    assert "".join(deltas) == done["text"]
    final = datas[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["output_tokens"] == n_delta
    assert final["output"][0]["content"][0]["text"] == done["text"]
    assert datas[0]["response"]["status"] == "in_progress"
    # streamed responses are stored too
    nxt = client.post(RESP, json={"model": "gpt-4o-mini", "input": "next", "previous_response_id": final["id"]})
    assert "turn 2" in nxt.json()["output"][0]["content"][0]["text"]


# ------------------------------------------------------------------ embeddings

EMB = "/openai/v1/embeddings"


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_embeddings_order_dims_unit_length(client):
    texts = ["the cat sat on the mat", "a cat sat on a mat", "stock markets fell sharply today"]
    j = client.post(EMB, json={"model": "text-embedding-3-small", "input": texts}).json()
    assert j["object"] == "list" and j["model"] == "text-embedding-3-small"
    assert [d["index"] for d in j["data"]] == [0, 1, 2]
    vecs = [d["embedding"] for d in j["data"]]
    assert all(len(v) == 64 for v in vecs)
    assert all(abs(math.sqrt(_cos(v, v)) - 1) < 1e-6 for v in vecs)
    assert _cos(vecs[0], vecs[1]) > _cos(vecs[0], vecs[2]) + 0.3
    assert j["usage"]["prompt_tokens"] == j["usage"]["total_tokens"] > 0
    single = client.post(EMB, json={"model": "x", "input": texts[2]}).json()["data"][0]["embedding"]
    assert single == vecs[2]
    j = client.post(EMB, json={"model": "x", "input": ["hello"], "dimensions": 256}).json()
    assert len(j["data"][0]["embedding"]) == 256


def test_embeddings_base64(client):
    f = client.post(EMB, json={"model": "x", "input": ["alpha beta", "gamma"]}).json()
    b = client.post(EMB, json={"model": "x", "input": ["alpha beta", "gamma"], "encoding_format": "base64"}).json()
    for fd, bd in zip(f["data"], b["data"]):
        raw = base64.b64decode(bd["embedding"])
        vec = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert len(vec) == 64
        assert max(abs(x - y) for x, y in zip(vec, fd["embedding"])) < 1e-6


def test_embeddings_limits(client):
    ok = client.post(EMB, json={"model": "x", "input": [f"t{i}" for i in range(2048)]})
    assert ok.status_code == 200 and len(ok.json()["data"]) == 2048
    r = client.post(EMB, json={"model": "x", "input": [f"t{i}" for i in range(2049)]})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["message"].startswith("Too many inputs. The max number of inputs is 2048.")
    assert err["type"] == "invalid_request_error"
    assert client.post(EMB, json={"model": "x", "input": []}).status_code == 400
    assert client.post(EMB, json={"model": "x", "input": ""}).status_code == 400
    assert client.post(EMB, json={"model": "x", "input": [1, 2, 3]}).status_code == 200  # token ids


# ------------------------------------------------------------------ structured output

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
        "vip": {"type": "boolean"},
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "address": {"type": "object", "properties": {"street": {"type": "string"}, "zip": {"type": ["string", "null"]}},
                    "required": ["street", "zip"], "additionalProperties": False},
        "kind": {"$ref": "#/$defs/kind"},
    },
    "required": ["name", "age", "city", "score", "vip", "sentiment", "tags", "address", "kind"],
    "additionalProperties": False,
    "$defs": {"kind": {"type": "string", "enum": ["customer", "supplier"]}},
}


def test_json_schema_chat_and_responses_validate(client):
    jsonschema = pytest.importorskip("jsonschema")
    text = "Extract: John Smith is 42, lives in Paris, and is a happy supplier who loves the product."
    j = client.post(CHAT, json=chat_body(text, response_format={
        "type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}})).json()
    content = j["choices"][0]["message"]["content"]
    obj = json.loads(content)  # no prefix: only JSON
    jsonschema.validate(obj, PERSON)
    assert obj["name"] == "John Smith" and obj["age"] == 42 and obj["city"] == "Paris"
    assert obj["sentiment"] == "positive" and obj["kind"] == "supplier"
    j = client.post(RESP, json={"model": "gpt-4o-mini", "input": text, "text": {"format": {
        "type": "json_schema", "name": "person", "strict": True, "schema": PERSON}}}).json()
    assert json.loads(j["output"][0]["content"][0]["text"]) == obj
    r = client.post(CHAT, json=chat_body('Return JSON with keys "title" and "year".',
                                         response_format={"type": "json_object"}))
    assert set(json.loads(r.json()["choices"][0]["message"]["content"])) == {"title", "year"}


def test_enum_choice_rules():
    labels = ["positive", "negative", "neutral"]
    assert brain.choose_label(labels, "Label as positive, negative or neutral: awful, broken, slow") == "negative"
    assert brain.choose_label(labels, "Label as positive, negative or neutral: it is a chair") == "neutral"
    assert brain.choose_label(labels, "I really love it") == "positive"
    topics = ["sports", "politics", "tech"]
    assert brain.choose_label(topics, "One of sports, politics or tech: the tech conference opened") == "tech"
    a = brain.choose_label(topics, "nothing matching here")
    assert a == brain.choose_label(topics, "nothing matching here") and a in topics


def test_generated_json_validates_against_random_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    leaf = st.one_of(
        st.just({"type": "string"}), st.just({"type": "integer"}), st.just({"type": "number"}),
        st.just({"type": "boolean"}),
        st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
                  st.integers(-50, 50), st.integers(0, 100)),
        st.lists(st.text("abcxyz", min_size=1, max_size=6), min_size=1, max_size=4, unique=True).map(
            lambda xs: {"type": "string", "enum": xs}),
        st.just({"type": "string", "maxLength": 5}), st.just({"anyOf": [{"type": "string"}, {"type": "null"}]}),
    )
    names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)

    def objects(children):
        return st.dictionaries(names, children, min_size=1, max_size=4).map(
            lambda p: {"type": "object", "properties": p, "required": list(p), "additionalProperties": False})

    schemas = st.recursive(leaf, lambda ch: st.one_of(
        objects(ch), ch.map(lambda s: {"type": "array", "items": s, "minItems": 1, "maxItems": 3})), max_leaves=8)

    @hyp.settings(max_examples=60, deadline=None, database=None)
    @hyp.given(schema=schemas, text=st.text(max_size=60))
    def check(schema, text):
        obj = brain.json_for_schema(schema, text)
        jsonschema.validate(obj, schema)
        assert json.loads(brain.dumps(obj)) == obj

    check()


# ------------------------------------------------------------------ directives

def test_directive_content_filter(client):
    r = client.post(CHAT, json=chat_body("tell me something #emulator:content_filter"))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "content_filter" and err["param"] == "prompt"
    assert err["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert err["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    r = client.post(RESP, json={"model": "m", "input": "x #emulator:content_filter"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"


def test_directive_filter_completion(client):
    j = client.post(CHAT, json=chat_body("write a story #emulator:filter_completion")).json()
    ch = j["choices"][0]
    assert ch["finish_reason"] == "content_filter" and ch["content_filter_results"]["violence"]["filtered"] is True
    r = client.post(CHAT, json=chat_body("write a story #emulator:filter_completion", stream=True))
    assert '"finish_reason":"content_filter"' in r.text
    j = client.post(RESP, json={"model": "m", "input": "story #emulator:filter_completion"}).json()
    assert j["status"] == "incomplete" and j["incomplete_details"]["reason"] == "content_filter"


def test_directive_context_length_status_and_delay(client):
    r = client.post(CHAT, json=chat_body("long #emulator:context_length"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = client.post(CHAT, json=chat_body("x #emulator:status=503"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable"
    r = client.post(CHAT, json=chat_body("x #emulator:status=429"))
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.headers["retry-after-ms"] == "1000"
    r = client.post(CHAT, json=chat_body("x #emulator:status=500"))
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    t0 = time.perf_counter()
    r = client.post(CHAT, json=chat_body("slow please #emulator:delay=0.3"))
    assert r.status_code == 200 and time.perf_counter() - t0 >= 0.28
    assert "#emulator" not in r.json()["choices"][0]["message"]["content"]
    assert r.json()["choices"][0]["message"]["content"] == \
        client.post(CHAT, json=chat_body("slow please")).json()["choices"][0]["message"]["content"]
    big = "word " * 600_000
    r = client.post(CHAT, json=chat_body(big))
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def _read_stream(c: httpx.Client, path: str, body: dict) -> tuple[str, Exception | None]:
    got = []
    try:
        with c.stream("POST", path, json=body) as r:
            for chunk in r.iter_text():
                got.append(chunk)
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        return "".join(got), e
    return "".join(got), None


def test_directive_stream_cut(client):
    text, err = _read_stream(client, CHAT, chat_body("cut me #emulator:stream_cut", stream=True))
    assert err is not None and "[DONE]" not in text and '"delta":{"content":' in text
    text, err = _read_stream(client, RESP, {"model": "m", "input": "cut #emulator:stream_cut", "stream": True})
    assert err is not None and "response.completed" not in text and "response.output_text.delta" in text
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(CHAT, json=chat_body("cut me #emulator:stream_cut"))



def _raw_exchange(url: str, request: bytes) -> bytes:
    """Send one raw request; read until the server closes the connection."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        got = b""
        while True:
            part = s.recv(65536)
            if not part:
                return got
            got += part


def test_cut_stream_is_an_error_for_httpx_not_a_clean_end():
    body = chat_body("Tell me about rivers and the sea.", stream=True)
    with Emulator(lifetime=30, stream_cut_rate=1.0) as e:
        got = []
        with open_client(e) as c, pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            with c.stream("POST", CHAT, json=body) as r:
                assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked"
                for text in r.iter_text():
                    got.append(text)
        assert '"delta":{"content":' in "".join(got) and "[DONE]" not in "".join(got)

        async def read_async():
            async with httpx.AsyncClient(base_url=e.url, timeout=10, trust_env=False) as c:
                async with c.stream("POST", CHAT, json=body) as r:
                    async for _ in r.aiter_bytes():
                        pass

        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            asyncio.run(read_async())
        # on the wire: the head and some chunks, then the connection ends without the terminating chunk
        data = json.dumps(body).encode()
        raw = _raw_exchange(e.url, (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                                    f"content-length: {len(data)}\r\n\r\n").encode() + data)
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        assert rest.endswith(b"\r\n") and b"data: " in rest and not rest.endswith(b"0\r\n\r\n")


def test_cut_plain_body_is_shorter_than_its_content_length(emu):
    data = json.dumps(chat_body("half of it #emulator:stream_cut")).encode()
    raw = _raw_exchange(emu.url, (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\n"
                                  f"content-length: {len(data)}\r\n\r\n").encode() + data)
    head, _, rest = raw.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length:")))
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(rest) == length // 2


# ------------------------------------------------------------------ rate limits & quota

def test_rpm_window_429():
    with Emulator(lifetime=30, rpm=120, rpm_window=1.0) as e, open_client(e) as c:  # 2 per 1 s window
        codes = []
        for _ in range(5):
            r = c.post(CHAT, json=chat_body())
            codes.append(r.status_code)
            if r.status_code == 429:
                break
        # normally [200, 200, 429]; a window boundary may fall in between once on a slow machine
        assert codes in ([200, 200, 429], [200, 200, 200, 429], [200, 200, 200, 200, 429]), codes
        ms = int(r.headers["retry-after-ms"])
        assert 0 < ms <= 1000 and r.headers["retry-after"] == "1"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        err = r.json()["error"]
        assert err["code"] == "429"
        assert err["message"].startswith("Requests to the ChatCompletions_Create Operation")
        assert "exceeded call rate limit" in err["message"] and "Please retry after 1 second" in err["message"]
        time.sleep(ms / 1000 + 0.02)
        ok = c.post(CHAT, json=chat_body())
        assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining-requests"] == "1"
        assert e.stats()["faults"]["rate_limited"] == 1


def test_tpm_429():
    with Emulator(lifetime=30, tpm=120, rpm_window=5.0) as e, open_client(e) as c:  # 10 tokens per window
        first = c.post(CHAT, json=chat_body(max_tokens=50))
        assert first.status_code == 200  # an empty window admits one oversized request
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 429 and "token rate limit" in r.json()["error"]["message"]
        assert "x-ratelimit-remaining-tokens" in r.headers


def test_quota_block():
    with Emulator(lifetime=30, quota_block_seconds=86400) as e, open_client(e) as c:
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "86400" and r.headers["retry-after-ms"] == "86400000"
        assert "quota" in r.json()["error"]["message"]
        assert c.post(EMB, json={"model": "x", "input": "y"}).status_code == 429
        assert c.get("/openai/v1/models").status_code == 200  # listing is not inference


# ------------------------------------------------------------------ faults

def test_fail_rate_and_status():
    with Emulator(lifetime=30, fail_rate=1.0) as e, open_client(e) as c:
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 500 and r.json()["error"]["message"].startswith("The server had an error")
        e.configure(fail_status=503)
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable"


def test_faults_are_seeded_and_reproducible():
    def run(seed):
        with Emulator(lifetime=30, fail_rate=0.5, seed=seed) as e, open_client(e) as c:
            return [c.post(CHAT, json=chat_body()).status_code for _ in range(24)]

    a, b = run(7), run(7)
    assert a == b and 200 in a and 500 in a
    assert run(8) != a


def test_cut_rate_closes_without_response():
    with Emulator(lifetime=30, cut_rate=1.0) as e, open_client(e) as c:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.post(CHAT, json=chat_body())
        assert e.stats()["faults"]["cut"] == 1
        assert c.get("/openai/v1/models").status_code == 200


def test_stream_cut_rate():
    with Emulator(lifetime=30, stream_cut_rate=1.0) as e, open_client(e) as c:
        text, err = _read_stream(c, CHAT, chat_body(stream=True))
        assert err is not None and "[DONE]" not in text
        assert c.post(CHAT, json=chat_body()).status_code == 200  # non-streams are untouched


def test_malformed_and_wrong_content_type():
    with Emulator(lifetime=30, malformed_rate=1.0) as e, open_client(e) as c:
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        with pytest.raises(ValueError):
            r.json()
    with Emulator(lifetime=30, wrong_content_type_rate=1.0) as e, open_client(e) as c:
        r = c.post(CHAT, json=chat_body())
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert r.text.lstrip().startswith("<!DOCTYPE html>")


def test_slow_body():
    with Emulator(lifetime=30, slow_body=0.4) as e, open_client(e) as c:
        t0 = time.perf_counter()
        r = c.post(CHAT, json=chat_body())
        assert time.perf_counter() - t0 >= 0.3
        assert r.json()["choices"][0]["message"]["content"].startswith("[emulated]")


def test_fail_first_per_distinct_body():
    with Emulator(lifetime=30, fail_first=2, fail_status=503) as e, open_client(e) as c:
        a = [c.post(CHAT, json=chat_body("one")).status_code for _ in range(4)]
        b = [c.post(CHAT, json=chat_body("two")).status_code for _ in range(3)]
        assert a == [503, 503, 200, 200] and b == [503, 503, 200]
        assert e.stats()["faults"]["fail_first"] == 4


def test_latency_does_not_block_the_loop():
    with Emulator(lifetime=30, latency=0.3) as e:
        def one(_):
            with open_client(e) as c:
                return c.post(CHAT, json=chat_body()).status_code

        t0 = time.perf_counter()
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(one, range(20)))
        dt = time.perf_counter() - t0
        assert codes == [200] * 20 and 0.3 <= dt < 1.5
        assert e.stats()["max_in_flight"] >= 10


# ------------------------------------------------------------------ stats, configure, admin

def test_stats_reset_and_configure():
    with Emulator(lifetime=30) as e, open_client(e) as c:
        c.post(CHAT, json=chat_body())
        e.reset_stats()
        c.post(CHAT, json=chat_body())
        c.post(CHAT, json=chat_body())
        c.post(EMB, json={"model": "x", "input": ["a b c d"]})
        c.post("/nowhere/at/all", json={})
        s = e.stats()
        assert s["requests"] == 4
        assert s["by_route"] == {"openai-v1:chat.completions": 2, "openai-v1:embeddings": 1, "unknown": 1}
        assert s["by_status"] == {"200": 3, "404": 1}
        assert s["tokens"]["prompt"] > 0 and s["tokens"]["completion"] > 0
        assert s["tokens"]["total"] == s["tokens"]["prompt"] + s["tokens"]["completion"]
        assert s["distinct_bodies"] == 2
        assert c.get("/_emulator/stats").json()["requests"] == 4  # admin calls are not counted
        c.post("/_emulator/reset")
        assert e.stats()["requests"] == 0
        e.configure(latency=0.25)
        t0 = time.perf_counter()
        c.post(CHAT, json=chat_body())
        assert time.perf_counter() - t0 >= 0.24
        r = c.post("/_emulator/config", json={"latency": 0, "api_key": "new-key"})
        assert r.status_code == 200 and r.json()["options"]["api_key"] == "***"
        assert c.post(CHAT, json=chat_body()).status_code == 401
        assert c.post(CHAT, json=chat_body(), headers={"api-key": "new-key"}).status_code == 200
        assert c.post("/_emulator/config", json={"bogus": 1}).status_code == 400
        with pytest.raises(TypeError):
            e.configure(bogus=1)


def test_request_log(emu, client):
    client.post(CHAT, json=chat_body("log me"), headers={"x-custom": "1"})
    method, target, headers, body = emu.requests[-1]
    assert method == "POST" and target == CHAT and headers["x-custom"] == "1"
    assert body["messages"][0]["content"] == "log me"
    assert "log me" not in repr(emu)


# ------------------------------------------------------------------ HTTP/1.1 details

def test_keepalive_pipelining_and_chunked_request_body(emu):
    body = json.dumps(chat_body("pipelined")).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    req1 = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body
    req2 = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\ntransfer-encoding: chunked\r\n\r\n").encode() \
        + chunked + b"0\r\n\r\n"
    req3 = f"GET /openai/v1/models HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\nconnection: close\r\n\r\n".encode()
    host, port = emu.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        data = req1 + req2 + req3
        for i in range(0, len(data), 50):  # dribble the bytes in
            s.sendall(data[i:i + 50])
        got = b""
        while True:
            part = s.recv(65536)
            if not part:
                break
            got += part
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert got.index(b"chat.completion") < got.index(b'"object":"list"')
    assert got.count(b"pipelined") == 2


def test_bad_http_is_answered_and_closed(emu):
    host, port = emu.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        got = s.recv(65536)
    assert got.startswith(b"HTTP/1.1 400")



def test_body_too_large_is_a_json_413(emu):
    head = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\ncontent-length: {65 * 1024 * 1024}\r\n\r\n"
    raw = _raw_exchange(emu.url, head.encode() + b"{" * 1000)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"x-foundry-emulator: 1" in head
    assert json.loads(rest)["error"] == {"code": "413", "message": "Request body too large"}


def test_expect_100_continue(emu):
    body = json.dumps(chat_body("expecting")).encode()
    host, port = emu.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall((f"POST {CHAT} HTTP/1.1\r\nHost: x\r\napi-key: {KEY}\r\nexpect: 100-continue\r\n"
                   f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # before any of the body is sent
        s.sendall(body)
        got = b""
        while part := s.recv(65536):
            got += part
    assert got.startswith(b"HTTP/1.1 200") and b"expecting" in got


def test_handler_bug_is_a_json_500():
    with Emulator(lifetime=30) as e, open_client(e) as c:
        def boom(req):
            raise KeyError("oops")

        e._app.handle = boom
        r = c.get("/openai/v1/models")
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert r.json() == {"error": {"code": "InternalServerError", "message": "emulator bug: KeyError"}}
        assert_marked(r)
        assert r.headers["x-request-id"] == r.headers["apim-request-id"] and "date" in r.headers


def test_refuses_non_loopback_host():
    with pytest.raises(ValueError, match="non-loopback"):
        Emulator(host="0.0.0.0").start()
    with pytest.raises(ValueError, match="non-loopback"):
        Emulator(host="192.0.2.1", process=True).start()


def test_lifetime_stops_the_server():
    e = Emulator(lifetime=0.3)
    url = e.start()
    assert e.url == url
    deadline = time.time() + 5
    while e.url and time.time() < deadline:
        time.sleep(0.05)
    assert e.url is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_emulator/health", timeout=2, trust_env=False)
    e.stop()
    e.stop()  # idempotent


def test_module_level_embedded_instance():
    emulator.stop()
    assert emulator.url() is None and emulator.status()["running"] is False
    try:
        u = emulator.start(lifetime=60)
        assert emulator.start() == u  # idempotent
        assert emulator.start(latency=0.0) == u
        assert emulator.url() == u
        httpx.post(u + CHAT, json=chat_body(), trust_env=False)
        st = emulator.status()
        assert st["running"] and st["url"] == u and st["stats"]["requests"] == 1
        assert st["options"]["latency"] == 0.0
    finally:
        emulator.stop()
    assert emulator.url() is None


def test_import_is_light():
    code = ("import sys, foundry_magics; before = set(sys.modules); import foundry_magics.emulator; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m in ('asyncio', 'httpx', 'h11') or m.startswith(("
            "'foundry_magics.emulator.', 'asyncio.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr



# ------------------------------------------------------------------ the options table

def test_one_table_of_options():
    import inspect

    from foundry_magics.emulator import options
    from foundry_magics.emulator.__main__ import build_parser, options_from_args
    from foundry_magics.emulator.app import OPTIONS as APP_OPTIONS, App

    table = {o.name: o for o in options.OPTIONS}
    assert len(table) == len(options.OPTIONS) and set(options.RUNTIME) <= set(table)
    # Emulator(...): the runtime options and the server settings, with the table's defaults
    params = {k: p.default for k, p in inspect.signature(Emulator.__init__).parameters.items() if k != "self"}
    assert set(params) == set(options.RUNTIME) | set(options.SERVER) | {"process"}
    assert {k: params[k] for k in options.RUNTIME} == {k: table[k].default for k in options.RUNTIME}
    assert {k: params[k] for k in options.SERVER} == options.SERVER
    assert set(Emulator().options) == set(options.RUNTIME)
    with pytest.raises(TypeError):
        Emulator().configure(record_requests=True)  # in the table, but not a runtime option
    # the app: exactly the table, starting from its defaults
    assert APP_OPTIONS == set(table) and App().opts == {k: o.default for k, o in table.items()}
    # the CLI: one flag per runtime option (plus the server settings), parsed to the option's kind
    parser = build_parser()
    assert set(vars(parser.parse_args([]))) == set(options.RUNTIME) | set(options.SERVER) | {"api_key_env",
                                                                                              "config_stdin"}
    argv, want = [], {}
    samples = {"float": ("0.5", 0.5), "float?": ("7", 7.0), "int": ("3", 3), "str?": ("k", "k"),
               "deployments": ("a,b", "a,b")}
    for o in options.OPTIONS:
        if not o.runtime:
            continue
        flag = o.flag or "--" + o.name.replace("_", "-")
        if o.kind == "bool":
            argv.append(flag)
            want[o.name] = True
        elif o.kind == "tokens":
            argv += [flag, "t1", flag, "t2"]
            want[o.name] = ["t1", "t2"]
        else:
            text, value = samples[o.kind]
            argv += [flag, text]
            want[o.name] = value
    opts = options_from_args(parser.parse_args(argv))
    assert opts == want and set(opts) == set(options.RUNTIME)
    assert App(**opts).opts["bearer_tokens"] == ("t1", "t2")


# ------------------------------------------------------------------ process mode

@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM semantics")
def test_cli_port_zero_and_lifetime():
    env = dict(os.environ, EMU_TEST_KEY="cli-key")
    proc = subprocess.Popen([sys.executable, "-m", "foundry_magics.emulator", "--port", "0", "--lifetime", "20",
                             "--api-key-env", "EMU_TEST_KEY", "--rpm", "6000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("foundry-emulator listening on http://127.0.0.1:")
        url = line.split(" on ", 1)[1]
        with httpx.Client(base_url=url, timeout=5, trust_env=False) as c:
            assert c.post(CHAT, json=chat_body()).status_code == 401
            r = c.post(CHAT, json=chat_body(), headers={"api-key": "cli-key"})
            assert r.status_code == 200 and "x-ratelimit-remaining-requests" in r.headers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    short = subprocess.run([sys.executable, "-m", "foundry_magics.emulator", "--port", "0", "--lifetime", "0.3"],
                           capture_output=True, text=True, timeout=20)
    assert short.returncode == 0 and short.stdout.count("\n") == 1


def test_process_mode():
    with Emulator(process=True, api_key="proc-key", lifetime=30, fail_first=1) as e:
        assert e.url.startswith("http://127.0.0.1:")
        with open_client(e, headers={"api-key": "proc-key"}) as c:
            assert c.post(CHAT, json=chat_body()).status_code == 500
            assert c.post(CHAT, json=chat_body()).status_code == 200
            s = e.stats()
            assert s["requests"] == 2 and s["by_status"] == {"500": 1, "200": 1}
            e.configure(fail_first=0, latency=0.2)
            t0 = time.perf_counter()
            assert c.post(CHAT, json=chat_body("new")).status_code == 200
            assert time.perf_counter() - t0 >= 0.19
            e.reset_stats()
            assert e.stats()["requests"] == 0
        assert e.requests == []
        proc = e._proc
    assert e.url is None and proc.poll() is not None


def test_admin_shutdown_ends_the_process_cleanly():
    e = Emulator(process=True, lifetime=30)
    try:
        url = e.start()
        r = httpx.post(url + "/_emulator/shutdown", timeout=10, trust_env=False)
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert e._proc.wait(10) == 0  # not killed, not aborted at interpreter exit
        assert e.url is None
    finally:
        e.stop()


def test_async_clients_share_one_connection_each(emu):
    async def main():
        async with httpx.AsyncClient(base_url=emu.url, headers={"api-key": KEY}, trust_env=False,
                                     limits=httpx.Limits(max_connections=4)) as c:
            rs = await asyncio.gather(*[c.post(CHAT, json=chat_body(f"n{i}")) for i in range(40)])
        return [r.status_code for r in rs]

    assert asyncio.run(main()) == [200] * 40
