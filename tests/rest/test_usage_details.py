"""Cached input and reasoning tokens, read from every reply shape (httpx.MockTransport): chat,
chat streamed (the final usage chunk), Responses, Responses streamed (response.completed), a
Batch API result line; and every call a client sends counted in `fm.usage()`."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import foundry_magics as fm
from foundry_magics.rest.models import Usage
from foundry_magics.store.prices import set_prices
from foundry_magics.store.usage import session_usage

KEY = "sk-unit-test-key-123"

CHAT_USAGE = {"prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
              "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}}
RESP_USAGE = {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1536}, "output_tokens": 300,
              "output_tokens_details": {"reasoning_tokens": 256}, "total_tokens": 2300}
EXPECTED = Usage(2000, 300, 1536, 256)


@pytest.fixture(autouse=True)
def clean():
    set_prices(None)
    session_usage().reset()
    yield
    set_prices(None)
    session_usage().reset()


def chat_body(usage=CHAT_USAGE, model="o3-mini-2025-01-31"):
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": usage}


def response_body(usage=RESP_USAGE, model="o3-mini-2025-01-31"):
    return {"id": "resp_1", "object": "response", "status": "completed", "model": model,
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
            "usage": usage}


def chat_sse(usage=CHAT_USAGE) -> bytes:
    """Azure's order: an empty-choices filter chunk, the text, the finish, an annotation chunk,
    the usage chunk (choices: []), [DONE]."""
    chunks = [
        {"choices": [], "id": "", "model": "", "prompt_filter_results": [{"prompt_index": 0}]},
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "id": "c1", "model": "o3-mini-2025-01-31"},
        {"choices": [{"index": 0, "delta": {"content": "hi"}}], "id": "c1", "model": "o3-mini-2025-01-31"},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "id": "c1", "model": "o3-mini-2025-01-31"},
        {"choices": [{"index": 0, "content_filter_results": {}, "finish_reason": None}], "id": "c1"},
        {"choices": [], "id": "c1", "model": "o3-mini-2025-01-31", "usage": usage},
    ]
    return ("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n").encode()


def responses_sse(usage=RESP_USAGE) -> bytes:
    final = response_body(usage)
    events = [("response.created", {"response": dict(final, status="in_progress", output=[], usage=None)}),
              ("response.output_text.delta", {"delta": "hi", "item_id": "m", "output_index": 0}),
              ("response.completed", {"response": final})]
    return "".join(f"event: {t}\ndata: {json.dumps(dict(p, type=t))}\n\n" for t, p in events).encode()


def handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    stream = body.get("stream")
    if request.url.path.endswith("/chat/completions"):
        if stream:
            return httpx.Response(200, content=chat_sse(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=chat_body())
    if request.url.path.endswith("/responses"):
        if stream:
            return httpx.Response(200, content=responses_sse(), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=response_body())
    if request.url.path.endswith("/embeddings"):
        n = len(body["input"]) if isinstance(body["input"], list) else 1
        return httpx.Response(200, json={"object": "list", "model": "text-embedding-3-small",
                                         "data": [{"index": i, "embedding": [0.1, 0.2]} for i in range(n)],
                                         "usage": {"prompt_tokens": 7 * n, "total_tokens": 7 * n}})
    return httpx.Response(404, json={"error": {"code": "404", "message": "no"}})


def client(**kw):
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", model="o3-mini", api_key=KEY)
    return fm.FoundryClient(conn, transport=httpx.MockTransport(handler), **kw)


@pytest.mark.parametrize("api, stream", [("chat", False), ("chat", True), ("respond", False), ("respond", True)])
def test_every_reply_shape_carries_cached_and_reasoning_tokens(api, stream):
    with client() as c:
        out = getattr(c, api)("Hello", stream=stream)
        if stream:
            deltas = list(out)
            assert any(d.usage == EXPECTED for d in deltas)  # the usage chunk / response.completed
            reply = out.reply
        else:
            reply = out
    assert reply.usage == EXPECTED
    assert reply.usage.total_tokens == 2300  # parts, not more: cached is in the input, reasoning in the output
    assert "2,000+300 tokens (1,536 cached, 256 reasoning)" in " · ".join(reply.meta_bits())


def test_the_async_client_reads_them_too():
    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", model="o3-mini", api_key=KEY)

    async def go():
        async with fm.AsyncFoundryClient(conn, transport=httpx.MockTransport(handler)) as c:
            r1 = await c.chat("Hello")
            s = await c.respond("Hello", stream=True)
            r2 = await s.until_done()
            return r1, r2

    r1, r2 = asyncio.run(go())
    assert r1.usage == EXPECTED and r2.usage == EXPECTED
    rows = {r["model"]: r for r in session_usage().rows()}
    assert rows[""]["calls"] == 2 and rows[""]["cached_input_tokens"] == 2 * 1536


@pytest.mark.parametrize("usage, expected", [
    ({"prompt_tokens": 5, "completion_tokens": 1}, Usage(5, 1, 0, 0)),  # no details (older api-versions)
    ({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": None,
      "completion_tokens_details": None}, Usage(5, 1, 0, 0)),
    ({"input_tokens": 5, "output_tokens": 1, "input_tokens_details": {"cached_tokens": None}}, Usage(5, 1, 0, 0)),
    ({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": "x"}}, Usage(5, 1)),
    ({"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 99},
      "completion_tokens_details": {"reasoning_tokens": 99}}, Usage(5, 1, 5, 1)),  # parts never exceed the whole
    (None, Usage()),
    ("garbage", Usage()),
])
def test_odd_usage_objects(usage, expected):
    assert Usage.from_api(usage) == expected


def test_usage_adds_every_part():
    assert Usage(10, 5, 4, 2) + Usage(1, 1, 1, 1) == Usage(11, 6, 5, 3)
    assert Usage(10, 5).describe() == "10+5 tokens"


def test_a_batch_result_line_carries_them(fm_home):
    """What collect() reads from an output file: the line's body through the online parser."""
    from foundry_magics.batch_api.results import collect
    from foundry_magics.store.cache import MemoryCache

    key = "ab" * 32
    lines = [json.dumps({"id": "batch_req_1", "custom_id": key,
                         "response": {"status_code": 200, "request_id": "r", "body": chat_body()},
                         "error": None}).encode()]

    class Store:
        def parts(self, job_id):
            return []

        def part_keys(self, job_id, part):
            return [bytes.fromhex(key)]

        def pack_lines(self, job_id, part):
            return {}, None  # an unpacked job: no packed lines

        def finish_part(self, job_id, part, reasons):
            assert reasons == {}
            return False

    with client() as c:
        c.lines = lambda file_id: iter(lines)
        cache = MemoryCache()
        tokens = collect(c, Store(), cache, "job", "chat", "o3-mini", {"status": "completed", "part": 0,
                                                                         "output_file_id": "file-1"})
    assert tokens == (2000, 300, 1536, 256)
    hit = cache.get_many([bytes.fromhex(key)])[bytes.fromhex(key)]
    assert (hit.input_tokens, hit.output_tokens, hit.cached_input_tokens, hit.reasoning_tokens) == (2000, 300, 1536, 256)


def test_direct_client_calls_count_in_usage_and_are_priced_with_the_cached_rate():
    with client() as c:
        c.chat("Hello")
        list(c.chat("Hello", stream=True))
        c.respond("Hello")
        c.embed(["a", "b", "c"])
    rows = {r["model"]: r for r in session_usage().rows()}
    o3, emb, total = rows["o3-mini-2025-01-31"], rows["text-embedding-3-small"], rows[""]
    assert (o3["calls"], o3["requests"], o3["input_tokens"], o3["cached_input_tokens"], o3["reasoning_tokens"]) == \
        (3, 3, 6000, 3 * 1536, 3 * 256)
    assert (emb["calls"], emb["input_tokens"]) == (1, 21)
    assert o3["cost"] is None and total["cost"] is None and total["unpriced"] == ["o3-mini-2025-01-31",
                                                                                   "text-embedding-3-small"]
    set_prices({"o3-mini": {"input": 1.10, "cached_input": 0.55, "output": 4.40}})  # the dated name finds it
    rows = {r["model"]: r for r in session_usage().rows()}
    want = (3 * (2000 - 1536) * 1.10 + 3 * 1536 * 0.55 + 3 * 300 * 4.40) / 1e6
    assert rows["o3-mini-2025-01-31"]["cost"] == pytest.approx(want)
    # the total sums what is priced and names what is not
    assert rows[""]["cost"] == pytest.approx(want) and rows[""]["unpriced"] == ["text-embedding-3-small"]
    assert rows[""]["cached_at_input_price"] == []


def test_a_failed_call_counts_as_an_error():
    def refuse(request):
        return httpx.Response(400, json={"error": {"code": "BadRequest", "message": "no"}})

    conn = fm.Connection.from_url("https://r.openai.azure.com/openai/v1", model="gpt-4o", api_key=KEY)
    with fm.FoundryClient(conn, transport=httpx.MockTransport(refuse)) as c, pytest.raises(fm.FoundryError):
        c.chat("Hello")
    total = session_usage().rows()[-1]
    assert (total["calls"], total["errors"]) == (1, 1)


def test_a_hook_still_gets_every_record_and_nothing_is_counted_twice():
    seen = []
    with client(on_record=seen.append) as c:
        c.chat("Hello")
    assert len(seen) == 1 and seen[0].counted  # the client counted it: a face's hook must not again
    assert session_usage().rows()[-1]["calls"] == 1
