"""The async client's own I/O (aiohttp): keep-alive, cuts, timeouts, pool limit, TLS, proxies,
Entra refresh, every failure in the FoundryError tree - against raw scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import pytest

from foundry_magics.connections import Connection
from foundry_magics.errors import AuthError, ConnectionFailed, FoundryTimeoutError, StreamError
from foundry_magics.rest import http as rest_http
from foundry_magics.rest.client import AsyncFoundryClient, FoundryClient

pytestmark = pytest.mark.timeout(60)

CHAT = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],"model":"m"}'


class ScriptedServer:
    """A raw HTTP/1.1 server on 127.0.0.1: `respond(request_bytes, n)` returns what to do:
    a list of bytes pieces to write (with optional float pauses between them), ending with
    "close" to close the connection afterwards, or "keep" to keep it open."""

    def __init__(self, respond, ssl_ctx=None):
        self.respond = respond
        self.ssl_ctx = ssl_ctx
        self.connections = 0
        self.requests = 0
        self.server = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_ctx)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests += 1
                plan = self.respond(head + body, self.requests)
                end = "keep"
                for piece in plan:
                    if isinstance(piece, (int, float)):
                        await asyncio.sleep(piece)
                    elif piece in ("close", "keep", "hang"):
                        end = piece
                    else:
                        writer.write(piece)
                        await writer.drain()
                if end == "hang":
                    await asyncio.sleep(30)
                if end == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self):
        self.server.close()


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (len(body), extra)) + body


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def chat(text: bytes = b"hi", extra: bytes = b"") -> bytes:
    return ok(CHAT % text, extra)


def conn_for(port: int, scheme: str = "http", **fields) -> Connection:
    fields.setdefault("auth", "none")
    return Connection.from_url(f"{scheme}://127.0.0.1:{port}/openai/v1", model="m", **fields)


def test_keep_alive_reuses_one_connection_and_sends_json():
    seen = []

    def respond(req, n):
        seen.append(req)
        return [chat(b"r%d" % n)]

    async def main():
        srv = ScriptedServer(respond)
        port = await srv.start()
        try:
            async with AsyncFoundryClient(conn_for(port)) as c:
                texts = [(await c.chat(f"q{i}")).text for i in range(3)]
        finally:
            await srv.stop()
        return texts, srv.connections

    texts, conns = run(main())
    assert texts == ["r1", "r2", "r3"] and conns == 1
    head, _, body = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /openai/v1/chat/completions HTTP/1.1")
    assert b"content-type: application/json" in head.lower() and b"user-agent: foundry-magics/" in head.lower()
    assert body == b'{"messages":[{"role":"user","content":"q0"}],"model":"m"}'


def test_cut_before_the_response_and_mid_body_are_connection_failed():
    async def main():
        srv = ScriptedServer(lambda req, n: ["close"])
        port = await srv.start()
        try:
            async with AsyncFoundryClient(conn_for(port), max_retries=0) as c:
                with pytest.raises(ConnectionFailed) as before:
                    await c.chat("x")
                srv.respond = lambda req, n: [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part", "close"]
                with pytest.raises(ConnectionFailed) as mid:
                    await c.chat("x")
                srv.respond = lambda req, n: [chat(b"fine")]  # the pool is still usable afterwards
                assert (await c.chat("x")).text == "fine"
        finally:
            await srv.stop()
        return before.value, mid.value

    before, mid = run(main())
    assert "Could not reach 127.0.0.1: RemoteProtocolError: Server disconnected" in before.message
    assert "ReadError" in mid.message and "payload" in mid.message.lower()


def test_a_cut_is_retried_to_the_reply():
    async def main():
        srv = ScriptedServer(lambda req, n: ["close"] if n == 1 else [chat(b"second")])
        port = await srv.start()
        try:
            async with AsyncFoundryClient(conn_for(port), max_retries=2) as c:
                return (await c.chat("x")).text, srv.requests
        finally:
            await srv.stop()

    assert run(main()) == ("second", 2)


def test_stream_cut_mid_way_is_a_stream_error_with_the_text_so_far():
    def respond(req, n):
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        data = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        return [head, b"%x\r\n%s\r\n" % (len(data), data), 0.05, "close"]

    async def main():
        srv = ScriptedServer(respond)
        port = await srv.start()
        try:
            async with AsyncFoundryClient(conn_for(port), max_retries=0) as c:
                stream = await c.chat("hi", stream=True)
                with pytest.raises(StreamError) as err:
                    async for _ in stream:
                        pass
                return err.value, stream
        finally:
            await srv.stop()

    err, stream = run(main())
    assert err.partial == "Hel" and stream.reply is None and "cut after 3 characters" in err.message


def test_multibyte_characters_split_across_chunks_survive():
    text = "héllo wörld ✓"
    data = ('data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\ndata: [DONE]\n\n' % text).encode()

    def respond(req, n):
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n"
        cut = data.index("ö".encode()) + 1  # inside the two bytes of "ö"
        parts = [data[:cut], data[cut:]]
        return [head, *[p for part in parts for p in (b"%x\r\n%s\r\n" % (len(part), part), 0.02)], b"0\r\n\r\n"]

    async def main():
        srv = ScriptedServer(respond)
        port = await srv.start()
        try:
            async with AsyncFoundryClient(conn_for(port)) as c:
                stream = await c.chat("hi", stream=True)
                return "".join([d.text async for d in stream]), stream.reply
        finally:
            await srv.stop()

    got, reply = run(main())
    assert got == text and reply is not None and reply.text == text


def test_read_timeout_and_connect_error():
    async def main():
        srv = ScriptedServer(lambda req, n: ["hang"])
        port = await srv.start()
        loop = asyncio.get_running_loop()
        async with AsyncFoundryClient(conn_for(port), timeout=0.3, max_retries=0) as c:
            t0 = loop.time()
            with pytest.raises(FoundryTimeoutError) as slow:
                await c.chat("x")
            took = loop.time() - t0
        await srv.stop()
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # a port nobody listens on
        free = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        async with AsyncFoundryClient(conn_for(free), max_retries=0) as c:
            with pytest.raises(ConnectionFailed) as refused:
                await c.chat("x")
        return slow.value, took, refused.value

    slow, took, refused = run(main())
    assert took < 2 and "within the timeout" in slow.message
    assert "Could not reach 127.0.0.1: ConnectError" in refused.message
    assert "ReadTimeout" in slow.message


def test_pool_limit():
    async def main():
        srv = ScriptedServer(lambda req, n: [0.2, chat(b"x")])
        port = await srv.start()
        try:
            async with AsyncFoundryClient(conn_for(port), max_connections=2) as c:
                rs = await asyncio.gather(*(c.chat(f"q{i}") for i in range(6)))
        finally:
            await srv.stop()
        return [r.text for r in rs], srv.connections

    texts, conns = run(main())
    assert texts == ["x"] * 6 and conns == 2


def test_entra_token_refreshed_once_on_a_401():
    class Cred:
        def __init__(self):
            self.calls = 0

        def get_token(self, *scopes):
            self.calls += 1
            return type("T", (), {"token": f"tok{self.calls}", "expires_on": 4102444800})()

    seen = []

    def respond(req, n):
        seen.append(req)
        if b"Bearer tok1" in req:
            return [b'HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 41\r\n\r\n'
                    b'{"error":{"code":"401","message":"nope"}}']
        return [chat(b"in")]

    async def main():
        srv = ScriptedServer(respond)
        port = await srv.start()
        cred = Cred()
        try:
            async with AsyncFoundryClient(conn_for(port, auth="entra"), credential=cred, max_retries=0) as c:
                first = (await c.chat("x")).text
            srv.respond = lambda req, n: [b'HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}']
            cred2 = Cred()
            async with AsyncFoundryClient(conn_for(port, auth="entra"), credential=cred2, max_retries=3) as c:
                with pytest.raises(AuthError):
                    await c.chat("x")
        finally:
            await srv.stop()
        return first, cred.calls, cred2.calls

    first, calls, calls2 = run(main())
    assert first == "in" and calls == 2 and len(seen) == 2
    assert calls2 == 2  # a token rejected again is one AuthError, not a loop


def _self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return key, cert


def test_tls_trusts_the_same_store_as_the_sync_client(tmp_path, monkeypatch):
    key, cert = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def main():
        srv = ScriptedServer(lambda req, n: [chat(b"secure")], ssl_ctx=server_ctx)
        port = await srv.start()
        try:
            rest_http._ssl_context.cache_clear()
            async with AsyncFoundryClient(conn_for(port, "https"), max_retries=0) as c:
                with pytest.raises(ConnectionFailed):  # a self-signed certificate is not trusted...
                    await c.chat("x")
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # ...unless the store says so (as for httpx)
            rest_http._ssl_context.cache_clear()
            async with AsyncFoundryClient(conn_for(port, "https")) as c:
                texts = [(await c.chat("x")).text, (await c.chat("y")).text]
        finally:
            await srv.stop()
            rest_http._ssl_context.cache_clear()
        return texts, srv.connections

    texts, conns = run(main())
    assert texts == ["secure", "secure"] and conns == 1


def test_proxy_from_the_environment(monkeypatch):
    seen = []

    def respond(req, n):
        seen.append(req)
        return [chat(b"via proxy")]

    async def main():
        proxy = ScriptedServer(respond)
        port = await proxy.start()
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        conn = Connection.from_url("http://llm.example.test:8000/v1", auth="none", model="m")
        try:
            async with AsyncFoundryClient(conn, max_retries=0) as c:
                return (await c.chat("x")).text
        finally:
            await proxy.stop()

    assert run(main()) == "via proxy"
    assert seen and seen[0].startswith(b"POST http://llm.example.test:8000/v1/chat/completions HTTP/1.1")


def test_async_and_sync_clients_agree_against_the_emulator(emulator_url):
    conn = Connection.from_url(emulator_url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")

    async def main():
        async with AsyncFoundryClient(conn) as c:
            a = await asyncio.gather(*(c.chat(f"say {i}") for i in range(20)))
            s = await c.chat("stream it please", stream=True)
            text = "".join([d.text async for d in s])
            vecs = await c.embed(["a", "b"])
            models = await c.models()
        return a, text, vecs, models

    a, text, vecs, models = run(main())
    with FoundryClient(conn) as sync:
        b = [sync.chat(f"say {i}") for i in range(20)]
        ref = sync.chat("stream it please")
        assert vecs == sync.embed(["a", "b"]) and models == sync.models()
    assert [r.text for r in a] == [r.text for r in b] and text == ref.text
    assert all(r.emulated and r.request_id for r in a)
