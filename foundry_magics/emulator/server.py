"""A small, fast HTTP/1.1 server on asyncio Protocols.

Keep-alive, pipelining (responses in order), Content-Length and chunked request bodies,
`Expect: 100-continue`. The application is a plain object with ``handle(Request) -> Reply``
(synchronous, pure computation); this module does all the waiting: latency, token pacing,
slow bodies and cut connections, with timers, never blocking the loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import uuid
from collections import deque
from email.utils import formatdate
from http import HTTPStatus

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
MAX_PENDING = 64

_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
    return line


_date_cache = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_cache[1]


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body", "keep_alive")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = b""
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in conn
        else:
            self.keep_alive = "close" not in conn


class Reply:
    """What to send. `chunks` makes a chunked (streamed) body paced by `chunk_delay`;
    `cut_after` closes the connection after that many chunks (no terminator);
    `drop` closes the connection without any response; `slow_body` trickles a plain body."""

    __slots__ = ("status", "headers", "body", "chunks", "delay", "chunk_delay", "cut_after", "drop",
                 "slow_body", "close")

    def __init__(self, status: int = 200, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
                 *, chunks: list[bytes] | None = None, delay: float = 0.0, chunk_delay: float = 0.0,
                 cut_after: int | None = None, drop: bool = False, slow_body: float = 0.0,
                 close: bool = False) -> None:
        self.status = status
        self.headers = headers or []
        self.body = body
        self.chunks = chunks
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.cut_after = cut_after
        self.drop = drop
        self.slow_body = slow_body
        self.close = close

    @property
    def simple(self) -> bool:
        return self.chunks is None and not self.drop and self.slow_body <= 0 and self.cut_after is None


def _head(reply: Reply, length: int | None, close: bool) -> bytes:
    parts = [_status_line(reply.status), _date_header(), b"x-foundry-emulator: 1\r\n"]
    rid = str(uuid.uuid4()).encode()
    parts.append(b"x-request-id: " + rid + b"\r\napim-request-id: " + rid + b"\r\n")
    for k, v in reply.headers:
        parts.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
    if length is None:
        parts.append(b"transfer-encoding: chunked\r\n")
    else:
        parts.append(b"content-length: %d\r\n" % length)
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Conn(asyncio.Protocol):
    __slots__ = ("srv", "app", "loop", "transport", "buf", "cur", "need", "chunk_state", "busy", "pending",
                 "closed", "timer", "task", "paused_reading", "write_paused", "drain_waiter")

    def __init__(self, srv: "HTTPServer") -> None:
        self.srv = srv
        self.app = srv.app
        self.loop = srv.loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.cur: Request | None = None   # request whose body is being read
        self.need = 0                      # Content-Length still wanted
        self.chunk_state: list | None = None  # [pos, parts] while reading a chunked body
        self.busy = False
        self.pending: deque[Request] = deque()
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None
        self.paused_reading = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future | None = None

    # -- transport callbacks
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.srv.conns.add(self)
        self.app.on_connection(+1)

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        self.closed = True
        self.srv.conns.discard(self)
        self.app.on_connection(-1)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.app.on_done()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        self.pending.clear()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        w = self.drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def _drain(self) -> None:
        if self.write_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            await self.drain_waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except _BadRequest as e:
            self._fatal(e.status, str(e))

    # -- parsing
    def _parse(self) -> None:
        buf = self.buf
        while not self.closed:
            if self.cur is None:
                idx = buf.find(b"\r\n\r\n")
                if idx < 0:
                    if len(buf) > MAX_HEAD:
                        raise _BadRequest(431, "Request header fields too large")
                    return
                if idx > MAX_HEAD:
                    raise _BadRequest(431, "Request header fields too large")
                head = buf[:idx].decode("latin-1")
                del buf[: idx + 4]
                head = head.lstrip("\r\n")
                if not head:
                    continue
                lines = head.split("\r\n")
                try:
                    method, target, version = lines[0].split(" ")
                except ValueError:
                    raise _BadRequest(400, "Malformed request line") from None
                if not version.startswith("HTTP/1."):
                    raise _BadRequest(505, "HTTP version not supported")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    k, sep, v = line.partition(":")
                    if not sep:
                        raise _BadRequest(400, "Malformed header line")
                    k = k.strip().lower()
                    v = v.strip()
                    if k in headers:
                        headers[k] = headers[k] + ", " + v
                    else:
                        headers[k] = v
                req = Request(method, target, version, headers)
                te = headers.get("transfer-encoding")
                if te is not None and "chunked" in te.lower():
                    self.chunk_state = [0, []]
                    self.need = 0
                else:
                    cl = headers.get("content-length")
                    if cl is None:
                        self.need = 0
                    else:
                        try:
                            self.need = int(cl)
                        except ValueError:
                            raise _BadRequest(400, "Bad Content-Length") from None
                        if self.need < 0:
                            raise _BadRequest(400, "Bad Content-Length")
                        if self.need > MAX_BODY:
                            raise _BadRequest(413, "Request body too large")
                    self.chunk_state = None
                self.cur = req
                if (headers.get("expect", "").lower() == "100-continue" and not self.busy
                        and (self.need > len(buf) or self.chunk_state)):
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            req = self.cur
            if self.chunk_state is not None:
                if not self._parse_chunked():
                    return
            else:
                if len(buf) < self.need:
                    return
                if self.need:
                    req.body = bytes(buf[: self.need])
                    del buf[: self.need]
            self.cur = None
            self.chunk_state = None
            self._enqueue(req)

    def _parse_chunked(self) -> bool:
        buf = self.buf
        st = self.chunk_state
        while True:
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > 4096:
                    raise _BadRequest(400, "Bad chunk header")
                return False
            size_s = bytes(buf[:nl]).split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise _BadRequest(400, "Bad chunk size") from None
            if size == 0:
                end = buf.find(b"\r\n\r\n", nl)  # optional trailers, then an empty line
                if end < 0:
                    return False
                del buf[: end + 4]
                self.cur.body = b"".join(st[1])
                return True
            if len(buf) < nl + 2 + size + 2:
                return False
            st[0] += size
            if st[0] > MAX_BODY:
                raise _BadRequest(413, "Request body too large")
            st[1].append(bytes(buf[nl + 2: nl + 2 + size]))
            del buf[: nl + 2 + size + 2]

    def _fatal(self, status: int, message: str) -> None:
        if self.closed:
            return
        body = ('{"error":{"code":"%d","message":"%s"}}' % (status, message)).encode()
        reply = Reply(status, [("content-type", "application/json")], body)
        self.transport.write(_head(reply, len(body), True) + body)
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    # -- dispatch (one request at a time per connection; pipelined ones wait in order)
    def _enqueue(self, req: Request) -> None:
        if self.busy:
            self.pending.append(req)
            if len(self.pending) >= MAX_PENDING and not self.paused_reading:
                self.paused_reading = True
                self.transport.pause_reading()
            return
        self._dispatch(req)

    def _dispatch(self, req: Request) -> None:
        self.busy = True
        try:
            reply = self.app.handle(req)
        except Exception as e:  # never let a handler bug kill the connection silently
            body = ('{"error":{"code":"InternalServerError","message":"emulator bug: %s"}}'
                    % type(e).__name__).encode()
            reply = Reply(500, [("content-type", "application/json")], body)
        close = reply.close or not req.keep_alive
        if reply.simple:
            if reply.delay > 0:
                self.timer = self.loop.call_later(reply.delay, self._send_simple, reply, close)
            else:
                self._send_simple(reply, close)
        else:
            self.task = self.loop.create_task(self._send_complex(reply, close))

    def _send_simple(self, reply: Reply, close: bool) -> None:
        self.timer = None
        if not self.closed:
            body = reply.body
            self.transport.write(_head(reply, len(body), close) + body)
        self.app.on_done()
        self._finish(close)

    async def _send_complex(self, reply: Reply, close: bool) -> None:
        try:
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            if self.closed:
                return
            if reply.drop:
                self._close()
                return
            t = self.transport
            if reply.chunks is None:
                body = reply.body
                t.write(_head(reply, len(body), close))
                if reply.cut_after is not None:  # truncated body: half of it, then hang up
                    t.write(body[: len(body) // 2])
                    self._close()
                    return
                n = 10 if len(body) >= 10 else max(1, len(body))
                step = (len(body) + n - 1) // n if body else 0
                pause = reply.slow_body / n
                for i in range(n):
                    piece = body[i * step:(i + 1) * step]
                    if piece:
                        t.write(piece)
                    if i < n - 1:
                        await asyncio.sleep(pause)
                        if self.closed:
                            return
                        await self._drain()
            else:
                chunks = reply.chunks
                cut = reply.cut_after
                limit = len(chunks) if cut is None else min(cut, len(chunks))
                pace = reply.chunk_delay
                if pace <= 0:
                    data = [_head(reply, None, close)]
                    data.extend(_chunk(c) for c in chunks[:limit])
                    if cut is None:
                        data.append(b"0\r\n\r\n")
                    t.write(b"".join(data))
                else:
                    t.write(_head(reply, None, close))
                    for i in range(limit):
                        if i:
                            await asyncio.sleep(pace)
                            if self.closed:
                                return
                            await self._drain()
                        t.write(_chunk(chunks[i]))
                    if cut is None:
                        t.write(b"0\r\n\r\n")
                if cut is not None:
                    self._close()
                    return
            self._finish(close)
        except asyncio.CancelledError:
            pass
        finally:
            self.task = None
            self.app.on_done()

    def _finish(self, close: bool) -> None:
        self.busy = False
        if close:
            self._close()
            return
        if self.closed:
            return
        if self.pending:
            self._dispatch(self.pending.popleft())
            if self.paused_reading and len(self.pending) < MAX_PENDING // 2:
                self.paused_reading = False
                self.transport.resume_reading()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HTTPServer:
    """Owns the listening socket and the open connections, on the current event loop."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, allow_remote: bool = False) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on non-loopback host {host!r}: the emulator accepts any "
                "credentials; pass allow_remote=True (--allow-remote) if you really mean it")
        self.app = app
        self.host = host
        self.port = port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[_Conn] = set()

    async def start(self) -> str:
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(lambda: _Conn(self), self.host, self.port,
                                                    backlog=1024, reuse_address=True)
        sock = self.server.sockets[0]
        host, port = sock.getsockname()[:2]
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for c in list(self.conns):
                if c.transport is not None:
                    c.transport.abort()
            self.conns.clear()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            except (asyncio.TimeoutError, Exception):
                pass
            self.server = None
