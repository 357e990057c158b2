"""The real client against the emulator running in its own process, for every endpoint kind."""

from __future__ import annotations

import asyncio

import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.emulator import Emulator

KEY = "integration-key-42"


@pytest.fixture(scope="module")
def server():
    emu = Emulator(process=True, api_key=KEY, lifetime=300)
    url = emu.start()
    yield emu, url
    emu.stop()


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("EMU_KEY", KEY)


def kinds(url):
    return {
        "openai-v1": fm.Connection.from_url(f"{url}/openai/v1", api_key_env="EMU_KEY", model="gpt-4o-mini"),
        "azure-deployment": fm.Connection.from_url(
            f"{url}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21", api_key_env="EMU_KEY"),
        "foundry-models": fm.Connection.from_url(f"{url}/models", api_key_env="EMU_KEY", key_header="Authorization",
                                                 model="gpt-4o-mini"),
        "foundry-project": fm.Connection.from_url(f"{url}/api/projects/demo", auth="key", api_key_env="EMU_KEY",
                                                  model="gpt-4o-mini"),
        "openai-compatible": fm.Connection.from_url(f"{url}/v1", auth="key", api_key_env="EMU_KEY",
                                                    model="gpt-4o-mini"),
        "apim": fm.Connection.from_url(f"{url}/gateway/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
                                       api_key_env="EMU_KEY", key_header="Ocp-Apim-Subscription-Key"),
    }


KIND_NAMES = ["openai-v1", "azure-deployment", "foundry-models", "foundry-project", "openai-compatible", "apim"]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_chat_and_stream_agree_on_every_kind(server, kind):
    _, url = server
    with fm.FoundryClient(kinds(url)[kind], timeout=10) as c:
        reply = c.chat("Describe the sea in one sentence.")
        stream = c.chat("Describe the sea in one sentence.", stream=True)
        pieces = [d.text for d in stream]
    assert reply.text.startswith("[emulated] ") and reply.emulated
    assert "".join(pieces) == reply.text == stream.reply.text
    assert len([p for p in pieces if p]) > 1  # it really streamed
    if kind != "foundry-models":  # /models gets no stream_options (it answers 422 to unknown parameters)
        assert stream.reply.usage.output_tokens == reply.usage.output_tokens > 0


@pytest.mark.parametrize("kind", ["openai-v1", "foundry-project", "openai-compatible"])
def test_responses_with_previous_response_id(server, kind):
    _, url = server
    with fm.FoundryClient(kinds(url)[kind], timeout=10) as c:
        first = c.respond("Remember the word cobalt.")
        second = c.respond("Which word?", previous_response_id=first.id)
        stream = c.respond("Which word?", previous_response_id=first.id, stream=True)
        text = "".join(d.text for d in stream)
    assert first.id and first.id != second.id and "turn 2" in second.text
    assert text == stream.reply.text and stream.reply.id


def test_project_preview_route_keeps_its_api_version(server):
    emu, url = server
    conn = fm.Connection.from_url(f"{url}/api/projects/demo/openai/responses?api-version=2025-11-15-preview",
                                  auth="key", api_key_env="EMU_KEY", model="gpt-4o-mini")
    with fm.FoundryClient(conn, timeout=10) as c:
        assert c.respond("hello").text.startswith("[emulated] ")


@pytest.mark.parametrize("kind", ["openai-v1", "azure-deployment", "foundry-models", "openai-compatible"])
def test_embeddings_are_deterministic_and_ordered(server, kind):
    _, url = server
    conn = kinds(url)[kind]
    if kind == "azure-deployment":
        conn = conn.replace(model="text-embedding-3-small")
    texts = ["red apple", "green apple", "stock market crash", "red apple"]
    with fm.FoundryClient(conn, timeout=10) as c:
        vecs = c.embed(texts, model="text-embedding-3-small")
    assert len(vecs) == 4 and vecs[0] == vecs[3] and vecs[0] != vecs[1]

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])


@pytest.mark.parametrize("kind", ["openai-v1", "foundry-models", "foundry-project", "openai-compatible"])
def test_models_listing(server, kind):
    _, url = server
    with fm.FoundryClient(kinds(url)[kind], timeout=10) as c:
        names = c.models()
    assert names and all(isinstance(n, str) for n in names)


def test_wrong_key_is_an_auth_error_without_the_key(server, monkeypatch):
    _, url = server
    monkeypatch.setenv("EMU_KEY", "wrong-key-value")
    with fm.FoundryClient(kinds(url)["openai-v1"], timeout=10) as c:
        with pytest.raises(errors.AuthError) as info:
            c.chat("hi")
    assert info.value.status == 401 and "wrong-key-value" not in str(info.value)


def test_content_filter_and_context_length(server):
    _, url = server
    with fm.FoundryClient(kinds(url)["azure-deployment"], timeout=10) as c:
        with pytest.raises(errors.ContentFilterError) as info:
            c.chat("#emulator:content_filter tell me something")
        assert info.value.categories.get("violence") == "medium"
        with pytest.raises(errors.ContextLengthError):
            c.chat("#emulator:context_length")
        filtered = c.chat("#emulator:filter_completion")
        assert filtered.finish_reason == "content_filter" and not filtered.complete


def test_stream_cut_mid_way_keeps_partial_and_raises(server):
    _, url = server
    with fm.FoundryClient(kinds(url)["openai-v1"], timeout=10, max_retries=0) as c:
        stream = c.chat("#emulator:stream_cut please write a long answer about rivers and seas", stream=True)
        with pytest.raises(errors.StreamError) as info:
            for _ in stream:
                pass
    assert stream.reply is None and info.value.partial == stream.text


def test_rate_limit_429_is_waited_out():
    with Emulator(process=True, rpm=12, rpm_window=1.0, lifetime=120) as emu:  # 1 request per 1 s window
        conn = fm.Connection.from_url(f"{emu.url}/openai/v1", auth="none", model="m")
        with fm.FoundryClient(conn, timeout=10) as c:
            replies = [c.chat(f"q{i}") for i in range(3)]
        stats = emu.stats()
    assert all(r.text for r in replies)
    assert stats["by_status"].get("429", stats["by_status"].get(429, 0)) >= 1


def test_quota_block_fails_fast():
    with Emulator(process=True, quota_block_seconds=86400, lifetime=60) as emu:
        conn = fm.Connection.from_url(f"{emu.url}/openai/v1", auth="none", model="m")
        with fm.FoundryClient(conn, timeout=10) as c:
            with pytest.raises(errors.RateLimitError) as info:
                c.chat("hi")
        assert emu.stats()["requests"] == 1
    assert info.value.quota_block and "hours" in str(info.value)


def test_transient_faults_are_retried_to_the_right_answer():
    with Emulator(process=True, fail_first=2, lifetime=60) as emu:
        conn = fm.Connection.from_url(f"{emu.url}/openai/v1", auth="none", model="m")
        with fm.FoundryClient(conn, timeout=10, max_retries=3) as c:
            reply = c.chat("fault tolerant?")
        assert emu.stats()["requests"] == 3
    with Emulator(process=True, lifetime=60) as clean:
        conn = fm.Connection.from_url(f"{clean.url}/openai/v1", auth="none", model="m")
        with fm.FoundryClient(conn, timeout=10) as c:
            assert c.chat("fault tolerant?").text == reply.text


def test_async_client_many_concurrent_requests(server):
    _, url = server

    async def main():
        async with fm.AsyncFoundryClient(kinds(url)["openai-v1"], timeout=10) as c:
            return await asyncio.gather(*(c.chat(f"question {i}") for i in range(50)))

    replies = asyncio.run(main())
    assert len({r.text for r in replies}) == 50 and all(r.emulated for r in replies)
