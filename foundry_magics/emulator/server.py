"""The emulator's HTTP server: aiohttp.web does the HTTP, this module adapts it to the app.

aiohttp parses requests (keep-alive, pipelining, Content-Length and chunked bodies,
``Expect: 100-continue``) and frames responses (``web.Response`` for plain bodies,
``web.StreamResponse``, chunked, for streams). This module turns each aiohttp request into a
`Request`, asks the application (``handle(Request) -> Reply``, synchronous) what to send,
and does the waiting: latency, token pacing, slow bodies and cut connections, with
``asyncio.sleep``, never blocking the loop.

Imports aiohttp: load it only when a server starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web, web_protocol
from aiohttp.http import HttpVersion11

from .wire import Reply, Request, is_loopback, uuid4_hex

_expect_continue: Callable[[Any], Awaitable[Any]] | None
try:  # aiohttp's own "100 Continue" (what web.Application does for routes); optional
    from aiohttp.web_urldispatcher import _default_expect_handler as _expect_continue
except ImportError:  # pragma: no cover - a future aiohttp without it: clients wait, then send the body
    _expect_continue = None

__all__ = ["HTTPServer", "Reply", "Request", "is_loopback", "MAX_BODY", "MAX_HEAD"]

MAX_HEAD = 64 * 1024          # longest request line / header line
MAX_BODY = 64 * 1024 * 1024   # largest request body
SHUTDOWN_GRACE = 0.05         # close(): how long in-flight requests may still finish

# aiohttp logs each malformed request it answers with a traceback; keep that off the terminal unless
# the host application configured logging (a library's NullHandler: records still propagate)
_log = logging.getLogger("foundry_magics.emulator.http")
_log.addHandler(logging.NullHandler())

_JSON_CT = ("content-type", "application/json")
_VERSIONS = {(1, 1): "HTTP/1.1", (1, 0): "HTTP/1.0"}


def _request_id() -> str:
    """A random (version 4) UUID, as text: like str(uuid.uuid4()), at a third of the cost."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _error(status: int, code: str, message: str, *, close: bool = False) -> Reply:
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    return Reply(status, [_JSON_CT], body, close=close)


def _bug(e: BaseException) -> Reply:
    return _error(500, "InternalServerError", f"emulator bug: {type(e).__name__}")


class _TooLarge(Exception):
    pass


_TOO_LARGE = _error(413, "413", "Request body too large", close=True)
_BAD_BODY = _error(400, "400", "Malformed request body", close=True)


async def _read_body(request: web.BaseRequest, length: int | None) -> bytes:
    """The whole body (Content-Length or chunked; aiohttp decodes), at most MAX_BODY bytes."""
    content = request.content
    first = await content.readany()
    if not first or (length is not None and len(first) >= length):
        return first
    parts = [first]
    size = len(first)
    while True:
        chunk = await content.readany()
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        parts.append(chunk)


def _hang_up(request: web.BaseRequest) -> None:
    """Close the connection now: what was written is flushed, then FIN, with no more HTTP (a
    stream without its terminating chunk, a body shorter than its Content-Length, or nothing)."""
    t = request.transport
    if t is not None:
        t.close()


_UNPARSED = getattr(web_protocol, "ERROR", None)  # the stand-in aiohttp uses for a request it could not parse
_UNPARSED_11 = _UNPARSED._replace(version=HttpVersion11) if _UNPARSED is not None else None


class _Server(web.Server):
    """aiohttp's low-level server, telling the app about connections opening and closing."""

    def __init__(self, handler, app, **kwargs) -> None:
        super().__init__(handler, request_factory=self._request, **kwargs)
        self.app = app
        self.loop = asyncio.get_running_loop()

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        self.app.on_connection(+1)

    def connection_lost(self, handler, exc=None) -> None:
        super().connection_lost(handler, exc)
        self.app.on_connection(-1)

    def _request(self, message, payload, protocol, writer, task) -> web.BaseRequest:
        if message is _UNPARSED:  # answer unparsable requests as the HTTP/1.1 server we are
            message = _UNPARSED_11
        return web.BaseRequest(message, payload, protocol, writer, task, self.loop, client_max_size=MAX_BODY)


class HTTPServer:
    """Serves `app` on aiohttp's low-level ``web.Server``, on the current event loop."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on non-loopback host {host!r}: the emulator accepts any "
                "credentials; pass allow_remote=True (--allow-remote) if you really mean it")
        self.app = app
        self.host = host
        self.port = port
        self.runner: web.ServerRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        server = _Server(self._handle, self.app, handler_cancellation=True, access_log=None, logger=_log,
                         lingering_time=0, max_line_size=MAX_HEAD, max_field_size=MAX_HEAD)
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    async def close(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            try:
                await asyncio.wait_for(runner.cleanup(), 2.0)
            except (asyncio.TimeoutError, Exception):
                pass

    # ------------------------------------------------------------------ one request
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        app = self.app
        headers: dict[str, str] = {}
        for k, v in request.headers.items():
            k = k.lower()
            if k in headers:
                headers[k] += ", " + v
            else:
                headers[k] = v
        if request.body_exists:
            try:
                length = request.content_length
                if length is not None and length > MAX_BODY:
                    raise _TooLarge
                if _expect_continue is not None and headers.get("expect", "").lower() == "100-continue":
                    await _expect_continue(request)  # aiohttp writes "100 Continue"; other expectations: ignored
                body = await _read_body(request, length)
            except _TooLarge:
                return self._response(_TOO_LARGE)
            except ConnectionError:  # the client went away mid-body
                _hang_up(request)
                return web.Response()
            except Exception:  # a broken body (bad chunk framing, shorter than its Content-Length)
                return self._response(_BAD_BODY)
        else:
            body = b""
        req = Request(request.method, request.raw_path, _VERSIONS.get(request.version, "HTTP/1.1"), headers,
                      body, request.keep_alive)
        try:
            reply = app.handle(req)
        except Exception as e:  # never let a handler bug kill the connection silently
            reply = _bug(e)
        try:
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            if reply.simple:
                return self._response(reply)
            return await self._send_complex(request, reply)
        except ConnectionError:  # the client went away
            return web.Response()
        finally:
            app.on_done()

    @staticmethod
    def _headers(reply: Reply) -> list[tuple[str, str]]:
        rid = _request_id()
        return [("x-foundry-emulator", "1"), ("x-request-id", rid), ("apim-request-id", rid), *reply.headers]

    @classmethod
    def _response(cls, reply: Reply, body: bytes | None = None) -> web.Response:
        resp = web.Response(status=reply.status, body=reply.body if body is None else body,
                            headers=cls._headers(reply))
        if reply.close:
            resp.force_close()
        return resp

    async def _send_complex(self, request: web.BaseRequest, reply: Reply) -> web.StreamResponse:
        if reply.drop:  # no response at all
            _hang_up(request)
            return web.Response()
        chunks = reply.chunks
        cut = reply.cut_after
        pace = reply.chunk_delay
        if chunks is not None and pace <= 0 and cut is None and request.version == HttpVersion11:
            # an unpaced stream: the whole chunked body in one write, with the head
            whole = self._response(reply, b"".join(chunks))
            whole.enable_chunked_encoding()
            return whole
        resp = web.StreamResponse(status=reply.status, headers=self._headers(reply))
        if reply.close:
            resp.force_close()
        if chunks is None:  # a plain body, trickled or cut
            body = reply.body
            resp.content_length = len(body)
            await resp.prepare(request)
            if cut is not None:  # truncated body: half of it, then hang up
                await resp.write(body[: len(body) // 2])
                _hang_up(request)
                return resp
            n = 10 if len(body) >= 10 else max(1, len(body))
            step = (len(body) + n - 1) // n if body else 0
            pause = reply.slow_body / n
            for i in range(n):
                piece = body[i * step:(i + 1) * step]
                if piece:
                    await resp.write(piece)
                if i < n - 1:
                    await asyncio.sleep(pause)
            return resp
        # a stream: no Content-Length, so aiohttp sends it chunked (on HTTP/1.0: until the connection closes)
        limit = len(chunks) if cut is None else min(cut, len(chunks))
        await resp.prepare(request)
        if pace <= 0:
            data = b"".join(chunks[:limit])
            if data:
                await resp.write(data)
        else:
            for i in range(limit):
                if i:
                    await asyncio.sleep(pace)
                await resp.write(chunks[i])
        if cut is not None:  # no terminating chunk: the client sees a cut stream, not a clean end
            _hang_up(request)
        return resp
