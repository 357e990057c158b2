"""Exact client behaviour through httpx.MockTransport: requests per kind, auth, parsing,
streaming, error mapping and retry timing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.rest import client as client_mod

KEY = "sk-unit-test-key-123"


class Recorder:
    """A MockTransport handler that answers from a queue (or a function) and keeps the requests."""

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


def chat_ok(text="hi", model="m", **extra):
    body = {"id": "chatcmpl-1", "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    body.update(extra)
    return httpx.Response(200, json=body, headers={"x-request-id": "req-1"})


def make(url, handler, **fields):
    """A client on a MockTransport; key auth gets the test key in memory unless auth says otherwise."""
    if fields.get("auth", "key") == "key":
        fields.setdefault("api_key", KEY)
    conn = fm.Connection.from_url(url, **fields)
    return fm.FoundryClient(conn, transport=httpx.MockTransport(handler))


@pytest.fixture
def sleeps(monkeypatch):
    """Record the client's sleeps instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(client_mod.time, "sleep", lambda s: recorded.append(s))
    return recorded


# --------------------------------------------------------------------------- requests per kind


@pytest.mark.parametrize("url, fields, expect_url, model_in_body", [
    ("https://r.openai.azure.com/openai/v1", {"model": "gpt-4o"},
     "https://r.openai.azure.com/openai/v1/chat/completions", True),
    ("https://r.cognitiveservices.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-05-01-preview", {},
     "https://r.cognitiveservices.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-05-01-preview", False),
    ("https://r.services.ai.azure.com/models", {"model": "Phi-4"},
     "https://r.services.ai.azure.com/models/chat/completions?api-version=2025-04-01", True),
    ("https://r.services.ai.azure.com/api/projects/p", {"model": "gpt-4o", "auth": "key", "api_key_env": None},
     "https://r.services.ai.azure.com/api/projects/p/openai/v1/chat/completions", True),
    ("http://localhost:5273/v1", {"model": "phi-3.5-mini", "auth": "none"},
     "http://localhost:5273/v1/chat/completions", True),
    ("https://gw.azure-api.net/aoai/openai/deployments/d/chat/completions?api-version=2024-10-21", {},
     "https://gw.azure-api.net/aoai/openai/deployments/d/chat/completions?api-version=2024-10-21", False),
])
def test_chat_request_per_kind(url, fields, expect_url, model_in_body):
    rec = Recorder(chat_ok())
    with make(url, rec, **fields) as c:
        reply = c.chat("Hello", system="Be brief", temperature=0.2, max_tokens=50)
    req = rec.requests[0]
    assert str(req.url) == expect_url and req.method == "POST"
    body = rec.bodies[0]
    assert body["messages"] == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hello"}]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert ("model" in body) is model_in_body
    assert reply.text == "hi" and reply.usage.input_tokens == 5 and reply.request_id == "req-1"


def test_reasoning_models_get_max_completion_tokens():
    rec = Recorder(chat_ok())
    with make("https://r.openai.azure.com/openai/v1", rec, model="o3-mini") as c:
        c.chat("x", max_tokens=10)
    assert rec.bodies[0]["max_completion_tokens"] == 10 and "max_tokens" not in rec.bodies[0]


@pytest.mark.parametrize("url, fields, header, value", [
    ("https://r.openai.azure.com/openai/v1", {"model": "m"}, "api-key", KEY),
    ("https://r.services.ai.azure.com/models", {"model": "m", "key_header": "Authorization"}, "authorization", f"Bearer {KEY}"),
    ("https://gw.azure-api.net/x/openai/v1", {"model": "m"}, "ocp-apim-subscription-key", KEY),
    ("https://gw.example.com/x/openai/v1", {"model": "m", "key_header": "X-Gateway-Key"}, "x-gateway-key", KEY),
])
def test_key_header_variants(url, fields, header, value):
    rec = Recorder(chat_ok())
    with make(url, rec, **fields) as c:
        c.chat("x")
    assert rec.requests[0].headers[header] == value
    others = {"api-key", "authorization", "ocp-apim-subscription-key", "x-gateway-key"} - {header}
    assert not any(h in rec.requests[0].headers for h in others)


def test_key_from_environment_variable(monkeypatch):
    monkeypatch.setenv("MY_AOAI_KEY", "env-key-value")
    rec = Recorder(chat_ok())
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key_env="MY_AOAI_KEY", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec)) as c:
        c.chat("x")
    assert rec.requests[0].headers["api-key"] == "env-key-value"


def test_missing_key_variable_fails_before_sending(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    rec = Recorder(chat_ok())
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key_env="NOPE_KEY", model="m")
    with pytest.raises(errors.MissingKeyError) as info:
        fm.FoundryClient(conn, transport=httpx.MockTransport(rec))
    assert "NOPE_KEY" in str(info.value) and rec.requests == []


def test_no_auth_sends_no_credentials():
    rec = Recorder(chat_ok())
    with make("http://localhost:8080/v1", rec, auth="none", model="m") as c:
        c.chat("x")
    assert "authorization" not in rec.requests[0].headers and "api-key" not in rec.requests[0].headers


def test_messages_and_extra_body():
    rec = Recorder(chat_ok())
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with make("http://localhost:8080/v1", rec, auth="none", model="m") as c:
        c.chat(messages=msgs, extra_body={"seed": 1})
        c.chat("c", messages=msgs, system="s")
    assert rec.bodies[0]["messages"] == msgs and rec.bodies[0]["seed"] == 1
    assert [m["content"] for m in rec.bodies[1]["messages"]] == ["s", "a", "b", "c"]


def test_empty_prompt_and_missing_model_are_configuration_errors():
    rec = Recorder(chat_ok())
    with make("https://r.openai.azure.com/openai/v1", rec) as c:
        with pytest.raises(errors.ConfigurationError, match="empty"):
            c.chat()
        with pytest.raises(errors.ConfigurationError, match="No model"):
            c.chat("x")
    assert rec.requests == []


def test_schema_becomes_strict_json_schema():
    rec = Recorder(chat_ok(text='{"label": "a", "score": 0.5}'))
    with make("http://localhost:8080/v1", rec, auth="none", model="m") as c:
        r = c.chat("x", schema={"label": str, "score": float})
    fmt = rec.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"] == {"label": {"type": "string"}, "score": {"type": "number"}}
    assert r.json() == {"label": "a", "score": 0.5}


# --------------------------------------------------------------------------- responses API


def resp_ok(text="answer", rid="resp_1"):
    return httpx.Response(200, json={"id": rid, "status": "completed", "model": "m", "output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "content": [{"type": "output_text", "text": text}]}],
        "usage": {"input_tokens": 4, "output_tokens": 1}})


@pytest.mark.parametrize("url, expect", [
    ("https://r.services.ai.azure.com/api/projects/p", "https://r.services.ai.azure.com/api/projects/p/openai/v1/responses"),
    ("https://r.services.ai.azure.com/api/projects/p/openai/responses?api-version=2025-11-15-preview",
     "https://r.services.ai.azure.com/api/projects/p/openai/responses?api-version=2025-11-15-preview"),
    ("https://r.openai.azure.com/openai/v1", "https://r.openai.azure.com/openai/v1/responses"),
])
def test_respond_routes_and_previous_response_id(url, expect):
    rec = Recorder(resp_ok())
    with make(url, rec, model="gpt-4o", auth="key", api_key_env=None) as c:
        r = c.respond("Hello", system="sys", previous_response_id="resp_0", max_tokens=20)
    assert str(rec.requests[0].url) == expect
    body = rec.bodies[0]
    assert body == {"model": "gpt-4o", "input": "Hello", "instructions": "sys", "previous_response_id": "resp_0",
                    "max_output_tokens": 20}
    assert (r.text, r.id, r.finish_reason, r.usage.output_tokens) == ("answer", "resp_1", "stop", 1)


def test_respond_incomplete_and_failed():
    inc = httpx.Response(200, json={"id": "r", "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                                    "output": [{"type": "message", "content": [{"type": "output_text", "text": "cut"}]}]})
    failed = httpx.Response(200, json={"id": "r", "status": "failed", "error": {"code": "server_error", "message": "bad"}})
    rec = Recorder(inc, failed)
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        r = c.respond("x")
        assert r.finish_reason == "length" and not r.complete
        with pytest.raises(errors.FoundryError, match="bad"):
            c.respond("x")


# --------------------------------------------------------------------------- streaming


def sse(chunks, done=True):
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ("data: [DONE]\n\n" if done else "")
    return text.encode()


CHAT_CHUNKS = [
    {"choices": [], "prompt_filter_results": [{"prompt_index": 0}]},
    {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
    {"id": "c", "choices": [{"index": 0, "delta": {"content": "one "}}]},
    {"id": "c", "choices": [{"index": 0, "delta": {"content": "two"}, "finish_reason": "stop"}]},
    {"id": "c", "choices": [{"index": 0, "content_filter_results": {}}]},
    {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
]


def test_chat_stream_yields_deltas_and_a_final_reply():
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(CHAT_CHUNKS)))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        stream = c.chat("x", stream=True)
        texts = [d.text for d in stream]
    assert "".join(texts) == "one two" and stream.text == "one two"
    assert stream.reply.text == "one two" and stream.reply.usage.output_tokens == 2 and stream.reply.finish_reason == "stop"
    body = rec.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_cut_mid_way_raises_with_partial_text():
    def body():
        yield sse(CHAT_CHUNKS[:3], done=False)
        raise httpx.ReadError("connection reset")

    rec = Recorder(lambda req: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body()))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        stream = c.chat("x", stream=True)
        with pytest.raises(errors.StreamError) as info:
            list(stream)
    assert info.value.partial == "one " and stream.text == "one " and stream.reply is None


def test_stream_ending_without_done_is_incomplete_not_a_reply():
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(CHAT_CHUNKS[:4], done=False)))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        stream = c.chat("x", stream=True)
        with pytest.raises(errors.StreamError, match="before the service said it was complete") as info:
            list(stream)
    assert info.value.partial == "one two" and stream.reply is None


def test_responses_stream():
    events = [
        {"type": "response.created", "response": {"id": "resp_9", "status": "in_progress"}},
        {"type": "response.output_text.delta", "delta": "Hel"},
        {"type": "response.output_text.delta", "delta": "lo"},
        {"type": "response.completed", "response": {"id": "resp_9", "status": "completed", "model": "m",
         "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hello"}]}],
         "usage": {"input_tokens": 1, "output_tokens": 2}}},
    ]
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, content=text.encode()))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        stream = c.respond("x", stream=True)
        assert [d.text for d in stream if d.text] == ["Hel", "lo"]
    assert stream.reply.id == "resp_9" and stream.reply.text == "Hello" and stream.reply.usage.output_tokens == 2


def test_server_ignoring_stream_flag_still_works():
    rec = Recorder(chat_ok("whole"))
    with make("http://localhost:1/v1", rec, auth="none", model="m") as c:
        stream = c.chat("x", stream=True)
        assert [d.text for d in stream] == ["whole"]
    assert stream.reply.text == "whole"


# --------------------------------------------------------------------------- errors


def err(status, body, headers=None):
    return httpx.Response(status, json=body, headers={"apim-request-id": "rid-7", **(headers or {})})


@pytest.mark.parametrize("inner_key, results_key", [("innererror", "content_filter_result"),
                                                      ("inner_error", "content_filter_results")])
def test_content_filter_error_both_spellings(inner_key, results_key):
    body = {"error": {"code": "content_filter", "message": "The response was filtered", "param": "prompt", "status": 400,
                      inner_key: {"code": "ResponsibleAIPolicyViolation", results_key: {
                          "violence": {"filtered": True, "severity": "medium"}, "hate": {"filtered": False, "severity": "safe"}}}}}
    rec = Recorder(err(400, body))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        with pytest.raises(errors.ContentFilterError) as info:
            c.chat("x")
    e = info.value
    assert e.categories == {"violence": "medium"} and e.status == 400 and e.code == "content_filter"
    assert e.request_id == "rid-7" and "violence (medium)" in str(e) and len(rec.requests) == 1


@pytest.mark.parametrize("status, body, exc", [
    (400, {"error": {"code": "context_length_exceeded", "message": "maximum context length is 128000 tokens"}}, errors.ContextLengthError),
    (400, {"error": {"code": "invalid_value", "message": "bad temperature"}}, errors.BadRequestError),
    (401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key"}}, errors.AuthError),
    (403, {"error": {"code": "403", "message": "Traffic is not from an approved private endpoint"}}, errors.AuthError),
    (404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist"}}, errors.NotFoundError),
    (422, {"error": {"code": "unsupported_parameter", "message": "extra parameter"}}, errors.BadRequestError),
    (401, {"statusCode": 401, "message": "Access denied due to missing subscription key."}, errors.AuthError),  # APIM shape
])
def test_status_errors_map_to_the_tree(status, body, exc):
    rec = Recorder(err(status, body))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        with pytest.raises(exc) as info:
            c.chat("x")
    assert info.value.status == status and len(rec.requests) == 1
    assert body.get("error", body)["message"] in str(info.value)
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_plain_text_error_body():
    rec = Recorder(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        c.max_retries = 0
        with pytest.raises(errors.ServerError, match="Bad Gateway"):
            c.chat("x")


def test_html_or_malformed_2xx_is_a_response_error_after_retries(sleeps):
    rec = Recorder(httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        c.max_retries = 2
        with pytest.raises(errors.ResponseError, match="text/html"):
            c.chat("x")
    assert len(rec.requests) == 3
    rec2 = Recorder(httpx.Response(200, text='{"choices": [', headers={"content-type": "application/json"}), chat_ok("ok"))
    with make("https://r.openai.azure.com/openai/v1", rec2, model="m") as c:
        assert c.chat("x").text == "ok"


# --------------------------------------------------------------------------- retries


def test_retry_after_ms_is_honoured(sleeps):
    rec = Recorder(err(429, {"error": {"code": "429", "message": "slow"}}, {"retry-after-ms": "250", "retry-after": "1"}),
                   chat_ok("after"))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        assert c.chat("x").text == "after"
    assert sleeps == [0.25] and len(rec.requests) == 2


def test_retry_after_seconds_and_http_date(sleeps):
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))
    rec = Recorder(err(503, {"error": {"message": "busy"}}, {"retry-after": "2"}),
                   err(429, {"error": {"message": "slow"}}, {"retry-after": date}), chat_ok())
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        c.chat("x")
    assert sleeps[0] == 2.0 and 1.0 <= sleeps[1] <= 3.0


def test_exponential_backoff_with_jitter_bounded_by_max_retries(sleeps):
    rec = Recorder(err(500, {"error": {"code": "InternalServerError", "message": "oops"}}))
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), max_retries=4) as c:
        with pytest.raises(errors.ServerError):
            c.chat("x")
    assert len(rec.requests) == 5 and len(sleeps) == 4
    for n, s in enumerate(sleeps):
        full = min(0.5 * 2 ** n, 8)
        assert 0.75 * full <= s <= full


def test_non_retryable_statuses_are_not_retried(sleeps):
    rec = Recorder(err(400, {"error": {"message": "bad"}}))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        with pytest.raises(errors.BadRequestError):
            c.chat("x")
    assert len(rec.requests) == 1 and sleeps == []


def test_quota_block_fails_at_once_saying_when(sleeps):
    rec = Recorder(err(429, {"error": {"code": "429", "message": "quota exceeded"}}, {"retry-after": "86400"}))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        with pytest.raises(errors.RateLimitError) as info:
            c.chat("x")
    e = info.value
    assert e.quota_block and e.retry_after == 86400 and "24.0 hours" in str(e)
    assert len(rec.requests) == 1 and sleeps == []


def test_total_deadline_bounds_waiting(sleeps):
    rec = Recorder(err(429, {"error": {"message": "slow"}}, {"retry-after": "30"}))
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), deadline=5) as c:
        with pytest.raises(errors.RateLimitError) as info:
            c.chat("x")
    assert not info.value.quota_block and len(rec.requests) == 1 and sleeps == []


def test_connection_errors_and_timeouts_are_retried_then_mapped(sleeps):
    def refuse(req):
        raise httpx.ConnectError("connection refused", request=req)

    rec = Recorder(refuse, chat_ok("back"))
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        assert c.chat("x").text == "back"

    def slow(req):
        raise httpx.ReadTimeout("timed out", request=req)

    rec = Recorder(slow)
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), max_retries=1) as c:
        with pytest.raises(errors.TimeoutError):
            c.chat("x")
    assert len(rec.requests) == 2
    rec = Recorder(refuse)
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), max_retries=0) as c:
        with pytest.raises(errors.ConnectionFailed, match="r.openai.azure.com"):
            c.chat("x")


def test_timeout_is_passed_to_each_request():
    seen = []

    def handler(req):
        seen.append(req.extensions["timeout"])
        return chat_ok()

    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(handler), timeout=7) as c:
        c.chat("x")
    assert seen[0]["read"] == 7 and seen[0]["connect"] == 7


# --------------------------------------------------------------------------- embeddings and models


def test_embeddings_batch_at_2048_and_keep_order():
    def handler(req):
        inputs = json.loads(req.content)["input"]
        data = [{"index": i, "embedding": [float(len(t)), float(i)]} for i, t in enumerate(inputs)]
        return httpx.Response(200, json={"data": list(reversed(data)), "usage": {"prompt_tokens": 1}})

    rec = Recorder(handler)
    texts = [f"t{i}" for i in range(5000)]
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        vecs = c.embed(texts, dimensions=2)
    assert [len(b["input"]) for b in rec.bodies] == [2048, 2048, 904]
    assert rec.bodies[0]["model"] == "text-embedding-3-small" and rec.bodies[0]["dimensions"] == 2
    assert vecs[0] == [2.0, 0.0] and vecs[2049] == [5.0, 1.0] and len(vecs) == 5000


def test_embeddings_on_deployment_route_and_bad_input():
    rec = Recorder(httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0]}]}))
    with make("https://r.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21", rec) as c:
        c.embed("one", model="emb")
        with pytest.raises(errors.ConfigurationError, match="strings"):
            c.embed(["ok", None])
    assert rec.requests[0].url.path == "/openai/deployments/emb/embeddings" and "model" not in rec.bodies[0]


@pytest.mark.parametrize("url, fields, body, path, names", [
    ("https://r.openai.azure.com/openai/v1", {}, {"data": [{"id": "gpt-4o"}, {"id": "o3"}]}, "/openai/v1/models", ["gpt-4o", "o3"]),
    ("https://r.services.ai.azure.com/api/projects/p", {"auth": "none"}, {"value": [{"name": "dep-a"}, {"name": "dep-b"}]},
     "/api/projects/p/deployments", ["dep-a", "dep-b"]),
    ("https://r.services.ai.azure.com/models", {}, {"model_name": "Phi-4", "model_type": "chat-completion"}, "/models/info", ["Phi-4"]),
    ("http://localhost:1/v1", {"auth": "none"}, {"data": [{"id": "llama"}]}, "/v1/models", ["llama"]),
])
def test_models_per_kind(url, fields, body, path, names):
    rec = Recorder(httpx.Response(200, json=body))
    with make(url, rec, **fields) as c:
        assert c.models() == names
    assert rec.requests[0].url.path == path and rec.requests[0].method == "GET"


# --------------------------------------------------------------------------- dry run and records


def test_dry_run_sends_nothing_and_redacts():
    rec = Recorder(chat_ok())
    with make("https://r.openai.azure.com/openai/v1", rec, model="m") as c:
        req = c.dry_run("chat", "hello", system="s")
        req2 = c.dry_run("responses", "hello")
    assert rec.requests == []
    assert req["url"] == "https://r.openai.azure.com/openai/v1/chat/completions"
    assert req["headers"]["api-key"] == "***redacted***" and KEY not in json.dumps(req) and KEY not in json.dumps(req2)
    assert req2["url"].endswith("/responses") and req2["json"]["input"] == "hello"


def test_on_record_hook_sees_calls_without_secrets():
    records = []
    rec = Recorder(chat_ok(), err(400, {"error": {"message": "bad"}}))
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", api_key=KEY, model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), on_record=records.append) as c:
        c.chat("one")
        with pytest.raises(errors.BadRequestError):
            c.chat("two")
    assert [r.reply.text if r.reply else None for r in records] == ["hi", None]
    assert records[1].error.startswith("BadRequestError") and KEY not in repr(records)


# --------------------------------------------------------------------------- Entra ID


class FakeCredential:
    def __init__(self, lifetime=3600.0):
        self.calls = 0
        self.lifetime = lifetime
        self.lock = threading.Lock()

    def get_token(self, *scopes, **kw):
        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(0.01)
        return SimpleNamespace(token=f"tok-{n}", expires_on=time.time() + self.lifetime)


def test_entra_token_cached_with_scope_and_bearer():
    scopes = []
    cred = FakeCredential()
    orig = cred.get_token
    cred.get_token = lambda *s, **k: (scopes.append(s), orig(*s, **k))[1]
    rec = Recorder(chat_ok())
    conn = fm.Connection.from_url("https://r.services.ai.azure.com/api/projects/p", model="m", api="chat")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
        c.chat("a")
        c.chat("b")
    assert cred.calls == 1 and scopes == [("https://ai.azure.com/.default",)]
    assert [r.headers["authorization"] for r in rec.requests] == ["Bearer tok-1", "Bearer tok-1"]


def test_entra_refreshes_five_minutes_before_expiry():
    cred = FakeCredential(lifetime=200)  # inside the 5-minute margin: every call refreshes
    rec = Recorder(chat_ok())
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
        c.chat("a")
        c.chat("b")
    assert cred.calls == 2 and rec.requests[1].headers["authorization"] == "Bearer tok-2"


def test_entra_401_refreshes_once_and_retries_once():
    cred = FakeCredential()
    rec = Recorder(lambda r: err(401, {"error": {"code": "401", "message": "token expired"}})
                   if r.headers["authorization"] == "Bearer tok-1" else chat_ok("fresh"))
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred) as c:
        assert c.chat("a").text == "fresh"
    assert cred.calls == 2 and len(rec.requests) == 2
    # a token that stays rejected: one refresh, then the AuthError
    cred2 = FakeCredential()
    rec2 = Recorder(err(401, {"error": {"code": "401", "message": "wrong audience"}}))
    with fm.FoundryClient(conn, transport=httpx.MockTransport(rec2), credential=cred2) as c:
        with pytest.raises(errors.AuthError, match="wrong audience"):
            c.chat("a")
    assert cred2.calls == 2 and len(rec2.requests) == 2


def test_entra_token_fetch_is_thread_safe():
    cred = FakeCredential()
    rec = Recorder(chat_ok())
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
    c = fm.FoundryClient(conn, transport=httpx.MockTransport(rec), credential=cred)
    threads = [threading.Thread(target=c.chat, args=("x",)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cred.calls == 1 and len(rec.requests) == 16


def test_entra_failure_is_one_readable_auth_error():
    class Broken:
        def get_token(self, *s, **k):
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token from the included credentials.\nAttempted...")

    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(Recorder(chat_ok())), credential=Broken()) as c:
        with pytest.raises(errors.AuthError) as info:
            c.chat("x")
    assert "az login" in str(info.value) and "Attempted" not in str(info.value)


# --------------------------------------------------------------------------- async client


def test_async_client_chat_stream_embed_and_retries(monkeypatch):
    slept = []

    async def fake_sleep(s):
        slept.append(s)

    monkeypatch.setattr(client_mod.asyncio, "sleep", fake_sleep)
    cred = FakeCredential()
    calls = {"n": 0}

    def handler(req):
        calls["n"] += 1
        body = json.loads(req.content) if req.content else {}
        if req.url.path.endswith("/embeddings"):
            return httpx.Response(200, json={"data": [{"index": i, "embedding": [float(i)]} for i in range(len(body["input"]))]})
        if body.get("stream"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(CHAT_CHUNKS))
        if calls["n"] == 1:
            return err(429, {"error": {"message": "slow"}}, {"retry-after-ms": "100"})
        return chat_ok("async ok")

    async def main():
        conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", auth="entra", model="m")
        async with fm.AsyncFoundryClient(conn, transport=httpx.MockTransport(handler), credential=cred) as c:
            r = await c.chat("x")
            stream = await c.chat("x", stream=True)
            texts = [d.text async for d in stream]
            vecs = await c.embed(["a", "b", "c"])
            many = await asyncio.gather(*(c.chat(f"p{i}") for i in range(10)))
        return r, texts, stream, vecs, many

    r, texts, stream, vecs, many = asyncio.run(main())
    assert r.text == "async ok" and slept == [0.1]
    assert "".join(texts) == "one two" and stream.reply.usage.output_tokens == 2
    assert vecs == [[0.0], [1.0], [2.0]] and all(m.text == "async ok" for m in many)
    assert cred.calls == 1


def test_async_stream_cut_raises_stream_error():
    async def body():
        yield sse(CHAT_CHUNKS[:3], done=False)
        raise httpx.ReadError("reset")

    def handler(req):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async def main():
        conn = fm.Connection.from_url("http://localhost:1/v1", auth="none", model="m")
        async with fm.AsyncFoundryClient(conn, transport=httpx.MockTransport(handler)) as c:
            stream = await c.chat("x", stream=True)
            with pytest.raises(errors.StreamError) as info:
                async for _ in stream:
                    pass
            return info.value, stream

    e, stream = asyncio.run(main())
    assert e.partial == "one " and stream.reply is None
