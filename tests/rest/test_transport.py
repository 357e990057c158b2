"""LeanTransport: keep-alive, body framings, streaming, cuts, timeouts, pool limits, TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import httpx
import pytest

from foundry_magics.rest.client import AsyncFoundryClient
from foundry_magics.connections import Connection
from foundry_magics.errors import ConnectionFailed, StreamError
from foundry_magics.rest.transport import LeanTransport

pytestmark = pytest.mark.timeout(60)


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


def test_keep_alive_reuses_one_connection():
    async def main():
        srv = ScriptedServer(lambda req, n: [ok(b"reply %d" % n)])
        port = await srv.start()
        t = LeanTransport()
        async with httpx.AsyncClient(transport=t) as c:
            texts = [(await c.post(f"http://127.0.0.1:{port}/x", json={"i": i})).text for i in range(5)]
        await srv.stop()
        return texts, srv.connections, t.connections_made

    texts, conns, made = run(main())
    assert texts == [f"reply {i}" for i in range(1, 6)]
    assert conns == 1 and made == 1


def test_request_line_headers_and_body_reach_the_server():
    seen = []

    async def main():
        srv = ScriptedServer(lambda req, n: (seen.append(req), [ok()])[1])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            r = await c.post(f"http://127.0.0.1:{port}/a/b?api-version=1", json={"q": "é"}, headers={"x-t": "1"})
        await srv.stop()
        return r

    r = run(main())
    assert r.status_code == 200 and r.json() == {"ok": True}
    raw = seen[0]
    assert raw.startswith(b"POST /a/b?api-version=1 HTTP/1.1\r\n")
    assert b"\r\nx-t: 1\r\n" in raw.lower()
    assert raw.endswith('{"q":"é"}'.encode())


def test_chunked_body_with_extensions_and_trailers():
    body = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\ntrailer: x\r\n\r\n")

    async def main():
        # deliver byte by byte to exercise every parser state
        srv = ScriptedServer(lambda req, n: [body[i:i + 1] for i in range(len(body))])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            a = await c.get(f"http://127.0.0.1:{port}/")
            b = await c.get(f"http://127.0.0.1:{port}/")  # same connection afterwards
        await srv.stop()
        return a.text, b.text, srv.connections

    a, b, conns = run(main())
    assert a == b == "hello world"
    assert conns == 1


def test_body_until_close_and_connection_close_header():
    async def main():
        srv = ScriptedServer(lambda req, n: [b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it", "close"])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            texts = [(await c.get(f"http://127.0.0.1:{port}/")).text for _ in range(2)]
        await srv.stop()
        return texts, srv.connections

    texts, conns = run(main())
    assert texts == ["all of it", "all of it"]
    assert conns == 2  # not reused


def test_interim_100_continue_is_skipped_and_204_has_no_body():
    async def main():
        srv = ScriptedServer(lambda req, n: [b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"final")] if n == 1
                             else [b"HTTP/1.1 204 No Content\r\n\r\n"])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            a = await c.post(f"http://127.0.0.1:{port}/", content=b"x")
            b = await c.delete(f"http://127.0.0.1:{port}/")
        await srv.stop()
        return a, b

    a, b = run(main())
    assert (a.status_code, a.text) == (200, "final")
    assert (b.status_code, b.content) == (204, b"")


def test_streaming_yields_chunks_as_they_arrive():
    def respond(req, n):
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        parts = [head]
        for i in range(3):
            data = b"data: %d\n\n" % i
            parts += [b"%x\r\n%s\r\n" % (len(data), data), 0.2]
        parts.append(b"0\r\n\r\n")
        return parts

    async def main():
        srv = ScriptedServer(respond)
        port = await srv.start()
        loop = asyncio.get_running_loop()
        stamps = []
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            async with c.stream("GET", f"http://127.0.0.1:{port}/") as r:
                async for chunk in r.aiter_bytes():
                    stamps.append((loop.time(), chunk))
        await srv.stop()
        return stamps

    stamps = run(main())
    assert b"".join(c for _, c in stamps) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert stamps[-1][0] - stamps[0][0] >= 0.3  # the first chunk came well before the last


def test_large_body_with_flow_control():
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)

    async def main():
        srv = ScriptedServer(lambda req, n: [ok(big)])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            async with c.stream("GET", f"http://127.0.0.1:{port}/") as r:
                got = bytearray()
                async for chunk in r.aiter_raw():
                    got += chunk
                    await asyncio.sleep(0)  # a slow reader
            again = await c.get(f"http://127.0.0.1:{port}/")
        await srv.stop()
        return bytes(got), again.content, srv.connections

    got, again, conns = run(main())
    assert got == big and again == big
    assert conns == 1


def test_cut_before_the_response_is_a_remote_protocol_error():
    async def main():
        srv = ScriptedServer(lambda req, n: ["close"])
        port = await srv.start()
        try:
            async with httpx.AsyncClient(transport=LeanTransport()) as c:
                with pytest.raises(httpx.RemoteProtocolError):
                    await c.get(f"http://127.0.0.1:{port}/")
        finally:
            await srv.stop()

    run(main())


def test_cut_mid_body_raises_while_reading():
    async def main():
        srv = ScriptedServer(lambda req, n: [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part", "close"])
        port = await srv.start()
        try:
            async with httpx.AsyncClient(transport=LeanTransport()) as c:
                with pytest.raises(httpx.TransportError):
                    await c.get(f"http://127.0.0.1:{port}/")
                # the pool is still usable afterwards (a fresh connection)
                srv.respond = lambda req, n: [ok(b"fine")]
                assert (await c.get(f"http://127.0.0.1:{port}/")).text == "fine"
        finally:
            await srv.stop()

    run(main())


def test_cuts_map_to_foundry_errors_in_the_client():
    def respond(req, n):
        if b"stream" in req:
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            data = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
            return [head, b"%x\r\n%s\r\n" % (len(data), data), "close"]
        return ["close"]

    async def main():
        srv = ScriptedServer(respond)
        port = await srv.start()
        conn = Connection.from_url(f"http://127.0.0.1:{port}/openai/v1", auth="none", model="m")
        client = AsyncFoundryClient(conn, max_retries=0, transport=LeanTransport())
        try:
            with pytest.raises(ConnectionFailed):
                await client.chat("hi")
            stream = await client.chat("hi", stream=True)
            with pytest.raises(StreamError) as err:
                async for _ in stream:
                    pass
            assert err.value.partial == "Hel"
        finally:
            await client.aclose()
            await srv.stop()

    run(main())


def test_read_timeout_and_connect_error():
    async def main():
        srv = ScriptedServer(lambda req, n: ["hang"])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport(), timeout=httpx.Timeout(0.3)) as c:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(httpx.ReadTimeout):
                await c.get(f"http://127.0.0.1:{port}/")
            assert loop.time() - t0 < 2
        await srv.stop()
        # a port nobody listens on
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        free = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://127.0.0.1:{free}/")

    run(main())


def test_pool_limit_and_pool_timeout():
    async def main():
        srv = ScriptedServer(lambda req, n: [0.2, ok(b"x")])
        port = await srv.start()
        t = LeanTransport(max_connections=2)
        async with httpx.AsyncClient(transport=t) as c:
            rs = await asyncio.gather(*(c.get(f"http://127.0.0.1:{port}/") for _ in range(6)))
            assert [r.text for r in rs] == ["x"] * 6
            assert srv.connections == 2
            with pytest.raises(httpx.PoolTimeout):
                await asyncio.gather(*(c.get(f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(5, pool=0.05))
                                       for _ in range(4)))
        await srv.stop()

    run(main())


def test_idle_connections_expire():
    async def main():
        srv = ScriptedServer(lambda req, n: [ok(b"x")])
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport(keepalive_expiry=0.1)) as c:
            await c.get(f"http://127.0.0.1:{port}/")
            await asyncio.sleep(0.3)
            await c.get(f"http://127.0.0.1:{port}/")
        await srv.stop()
        return srv.connections

    assert run(main()) == 2


def test_unsupported_scheme():
    async def main():
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            with pytest.raises(httpx.UnsupportedProtocol):
                await c.get("ftp://127.0.0.1/")

    run(main())


def _self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return key, cert


def test_tls(tmp_path):
    key, cert = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main():
        srv = ScriptedServer(lambda req, n: [ok(b"secure")], ssl_ctx=server_ctx)
        port = await srv.start()
        async with httpx.AsyncClient(transport=LeanTransport(verify=client_ctx)) as c:
            a = await c.get(f"https://127.0.0.1:{port}/")
            b = await c.get(f"https://127.0.0.1:{port}/")
        # the default context does not trust a self-signed certificate
        async with httpx.AsyncClient(transport=LeanTransport()) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(f"https://127.0.0.1:{port}/")
        await srv.stop()
        return a.text, b.text, srv.connections

    a, b, conns = run(main())
    assert a == b == "secure"
    assert conns == 1  # kept alive for both; the refused handshake never reached the handler


def test_against_the_emulator(emulator_url):
    async def main():
        conn = Connection.from_url(emulator_url + "/openai/v1", kind="emulator", auth="none", model="gpt-4o-mini")
        t = LeanTransport()
        async with AsyncFoundryClient(conn, transport=t) as lean, AsyncFoundryClient(conn) as plain:
            a = await asyncio.gather(*(lean.chat(f"say {i}") for i in range(20)))
            b = await asyncio.gather(*(plain.chat(f"say {i}") for i in range(20)))
            s = await lean.chat("stream it please", stream=True)
            text = "".join([d.text async for d in s])
            ref = await plain.chat("stream it please")
        return a, b, text, ref, t

    a, b, text, ref, t = run(main())
    assert [r.text for r in a] == [r.text for r in b]
    assert all(r.emulated for r in a)
    assert text == ref.text
    assert t.connections_made <= 20
