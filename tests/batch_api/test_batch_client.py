"""The Files / Batches calls go through the REST client: a 429 with retry-after, an API Management
gateway's 403 token quota and a 401 for the wrong Entra audience answer exactly as on a chat call
(httpx.MockTransport); a connection without the Batch API is refused the same way by the run and
by its estimate; old import paths of the Batch API still work."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import httpx
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.rest.batches import BatchClient
from foundry_magics.rest.retry import gateway_memory

PROJECT = "https://res.services.ai.azure.com/api/projects/proj"
GATEWAY = "https://gw.azure-api.net/aoai/openai/v1"
KEY = "sk-batch-client-unit-key-123"
CHAT_OK = {"choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}]}
BATCH_OK = {"id": "batch_1", "status": "in_progress", "input_file_id": "file-1"}
QUOTA = {"statusCode": 403, "message": "Token quota is exceeded. Quota will be replenished in 02:00:00."}
AUDIENCE_401 = {"error": {"code": "PermissionDenied", "message": "Unauthorized. Access token is missing, invalid, "
                          "audience is incorrect (https://cognitiveservices.azure.com), or have expired."}}


@pytest.fixture(autouse=True)
def fresh_gateway_memory():
    gateway_memory.clear()
    yield
    gateway_memory.clear()


class Service:
    """Answers each request with the next of `script` (a status, headers, body; or "ok": the
    success for that route) and records the requests."""

    def __init__(self, *script):
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if callable(step):
            step = step(request)
        if step == "ok":
            return httpx.Response(200, json=CHAT_OK if request.url.path.endswith("/chat/completions") else BATCH_OK)
        status, headers, body = step
        return httpx.Response(status, json=body, headers=headers)


def on_chat(conn, service, **kw):
    with fm.FoundryClient(conn, transport=httpx.MockTransport(service), **kw) as client:
        return client.chat("hello")


def on_batch(conn, service, call="batch", **kw):
    with BatchClient(conn, transport=httpx.MockTransport(service), **kw) as client:
        if call == "upload":
            return client.upload(__file__, "in.jsonl")
        return client.batch("batch_1")


def both(conn, make_service, call="batch", **kw):
    """The same script against a chat call and a Files / Batches call: (chat outcome, batch outcome)."""
    out = []
    for run in (on_chat, lambda c, s, **k: on_batch(c, s, call, **k)):
        gateway_memory.clear()
        service = make_service()
        try:
            out.append((run(conn, service, **kw), None, service))
        except errors.FoundryError as exc:
            out.append((None, exc, service))
    return out


def assert_same_error(chat, batch, cls):
    (_, e1, _), (_, e2, _) = chat, batch
    assert type(e1) is type(e2) is cls
    assert str(e1) == str(e2) and e1.hint == e2.hint and e1.retry_after == e2.retry_after
    return e1, e2


def key_conn(url=GATEWAY):
    return fm.Connection.from_url(url, model="m", api_key=KEY)


@pytest.mark.parametrize("call", ["batch", "upload"])
def test_a_429_is_the_same_rate_limit_error_and_its_retry_after_is_honoured(call):
    busy = (429, {"retry-after": "7"}, {"error": {"code": "429", "message": "Rate limit is exceeded."}})
    chat, batch = both(key_conn("https://r.openai.azure.com/openai/v1"), lambda: Service(busy), call,
                       max_retries=0)
    e, _ = assert_same_error(chat, batch, errors.RateLimitError)
    assert e.retry_after == 7 and not e.quota_block and "rate limiting" in e.hint
    quick = (429, {"retry-after-ms": "5"}, {"error": {"code": "429", "message": "Rate limit is exceeded."}})
    chat, batch = both(key_conn("https://r.openai.azure.com/openai/v1"), lambda: Service(quick, "ok"), call)
    assert chat[1] is None and batch[1] is None  # retried once after 5 ms, then answered
    assert len(chat[2].requests) == len(batch[2].requests) == 2
    blocked = (429, {"retry-after": "86400"}, {"error": {"code": "429", "message": "Quota exceeded."}})
    chat, batch = both(key_conn("https://r.openai.azure.com/openai/v1"), lambda: Service(blocked), call)
    e, _ = assert_same_error(chat, batch, errors.RateLimitError)
    assert e.quota_block and len(chat[2].requests) == len(batch[2].requests) == 1  # a quota block: not retried


@pytest.mark.parametrize("call", ["batch", "upload"])
def test_a_gateway_403_after_a_success_is_the_same_token_quota_answer(call):
    def script():
        return Service("ok", (403, {}, QUOTA))

    out = []
    for run in (lambda s: (on_chat(key_conn(), s), on_chat(key_conn(), s)),
                lambda s: (on_batch(key_conn(), s, "batch"), on_batch(key_conn(), s, call))):
        gateway_memory.clear()
        service = script()
        with pytest.raises(errors.RateLimitError) as info:
            run(service)
        out.append((None, info.value, service))
    e, _ = assert_same_error(out[0], out[1], errors.RateLimitError)
    assert e.status == 403 and e.quota_block and e.retry_after == 7200 and "token quota" in e.hint
    assert len(out[1][2].requests) == 2  # not retried
    assert out[1][2].requests[-1].headers["ocp-apim-subscription-key"] == KEY
    # a chat success with the key counts for the batch calls too (one memory per gateway and key)
    gateway_memory.clear()
    on_chat(key_conn(), Service("ok"))
    with pytest.raises(errors.RateLimitError):
        on_batch(key_conn(), Service((403, {}, QUOTA)), call)
    gateway_memory.clear()
    with pytest.raises(errors.AuthError) as first:  # never succeeded with this key: a plain 403
        on_batch(key_conn(), Service((403, {}, QUOTA)), call)
    assert not isinstance(first.value, errors.RateLimitError)


class ScopedCredential:
    def __init__(self):
        self.scopes: list[str] = []

    def get_token(self, *scopes, **kw):
        self.scopes.append(scopes[0])
        name = "ai" if "ai.azure.com" in scopes[0] else "cog"
        return SimpleNamespace(token=f"tok-{name}-{len(self.scopes)}", expires_on=4102444800)


def audience(accept):
    def answer(request):
        if request.headers.get("authorization", "").startswith(f"Bearer tok-{accept}"):
            return "ok"
        return (401, {}, AUDIENCE_401)
    return answer


@pytest.mark.parametrize("call", ["batch", "upload"])
def test_a_401_for_the_wrong_entra_audience_switches_scope_and_says_the_same(call):
    conn = fm.Connection.from_url(PROJECT, auth="entra", model="m")  # a project: ai.azure.com first
    for accept in ("cog", "nobody"):
        creds = [ScopedCredential(), ScopedCredential()]
        services = [Service(audience(accept)), Service(audience(accept))]
        outcomes = []
        for run, cred, service in zip((on_chat, lambda c, s, **k: on_batch(c, s, call, **k)), creds, services):
            try:
                outcomes.append((run(conn, service, credential=cred), None, service))
            except errors.FoundryError as exc:
                outcomes.append((None, exc, service))
        assert creds[0].scopes == creds[1].scopes == ["https://ai.azure.com/.default",
                                                      "https://cognitiveservices.azure.com/.default"]
        assert len(services[0].requests) == len(services[1].requests) == 2
        if accept == "cog":
            assert outcomes[0][1] is None and outcomes[1][1] is None  # the other scope, at once
        else:
            e, _ = assert_same_error(outcomes[0], outcomes[1], errors.AuthError)
            assert "https://ai.azure.com/.default and https://cognitiveservices.azure.com/.default" in e.hint
            assert "tok-" not in str(e)


def test_the_estimate_refuses_a_connection_without_the_batch_api_as_the_run_does(emu_models_conn):
    s = pd.Series(["a", "b"])
    refused = []
    for call in (lambda: s.foundry.prompt("Say {}", batch=True, connection=emu_models_conn),
                 lambda: s.foundry.estimate("Say {}", batch=True, connection=emu_models_conn),
                 lambda: s.foundry.classify(["x", "y"], estimate=True, batch=True, connection=emu_models_conn),
                 lambda: s.foundry.embed(batch=True, connection=emu_models_conn),
                 lambda: s.foundry.embed(estimate=True, batch=True, connection=emu_models_conn)):
        with pytest.raises(errors.ConfigurationError) as info:
            call()
        refused.append(str(info.value))
    assert len(set(refused)) == 1 and "Batch API is not available" in refused[0]
    assert s.foundry.estimate("Say {}", connection=emu_models_conn).to_send == 2  # online: fine


@pytest.fixture
def emu_models_conn():
    return fm.Connection.from_url("https://res.services.ai.azure.com/models", auth="none", model="Phi-4")


OLD_NAMES = {
    "engine.batch": ["BatchJob", "BatchCounts", "BatchSnapshot", "BatchFailedError", "submit", "submit_embeddings",
                     "job_rows", "JOB_COLUMNS", "aggregate", "default_interval", "reap_stale"],
    "engine.batch_input": ["Source", "prompt_source", "embed_source", "Part", "PartWriter"],
    "engine.batch_results": ["collect"],
    "engine.batch_io": ["BatchHTTP"],
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_the_old_batch_modules_still_import_with_their_names(old):
    module = importlib.import_module(f"foundry_magics.{old}")
    assert all(callable(getattr(module, n)) or n == "JOB_COLUMNS" for n in OLD_NAMES[old])
    from foundry_magics.batch_api import BatchJob

    assert fm.BatchJob is BatchJob and importlib.import_module("foundry_magics.engine.batch").BatchJob is BatchJob
