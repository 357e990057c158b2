"""The async client's I/O: aiohttp by default, or any httpx transport when one is given.

Why aiohttp: measured here against the emulator in its own process (200 ms latency, the
engine sending distinct prompts), httpx's own pool reached 63 rows/s at 64 in flight and
httpx over httpx-aiohttp's transport 690 rows/s at 256, where a bare aiohttp ClientSession
reached 1,084 at 0.40 ms of CPU per request: the cost is httpx's per-request machinery
(Request/Response objects, the auth flow, the byte streams), not the socket. So the async
path talks to aiohttp directly and keeps its own work per request to a dict of headers and
one bytes body. An httpx transport (`transport=httpx.MockTransport(...)`, or one of your
own) is still accepted, and goes through `httpx.AsyncClient` with the same auth objects.

Both answer with `AsyncResponse` and raise only `FoundryError`s: `ConnectionFailed` (no
connection, a hang-up, a body cut short) or `FoundryTimeoutError`. Proxies come from the
environment (HTTPS_PROXY, NO_PROXY, ...) and TLS uses the same context as the sync client
(httpx's: certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator, Mapping

import httpx

from foundry_magics.defaults import CONNECT_TIMEOUT
from foundry_magics.errors import FoundryError
from foundry_magics.rest.base import transport_error
from foundry_magics.rest.routes import Route

__all__ = ["AsyncResponse", "AiohttpSession", "HttpxSession", "async_session"]


class AsyncResponse:
    """What the client needs of a response: status, headers, charset, the path, the body."""

    __slots__ = ("status_code", "headers", "charset_encoding", "path", "_chunks", "_read", "_close", "_url")

    def __init__(self, status: int, headers: Mapping[str, str], charset: str | None, path: str, url: str,
                 chunks: Any, read: Any, close: Any) -> None:
        self.status_code = status
        self.headers = headers
        self.charset_encoding = charset
        self.path = path
        self._url = url
        self._chunks, self._read, self._close = chunks, read, close

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks():
                yield chunk
        except FoundryError:
            raise
        except _failures() as exc:
            raise transport_error(exc, self._url) from exc

    async def aread(self) -> bytes:
        try:
            return await self._read()
        except FoundryError:
            raise
        except _failures() as exc:
            raise transport_error(exc, self._url) from exc

    async def aclose(self) -> None:
        await self._close()


@functools.lru_cache(maxsize=None)
def _failures() -> tuple[type[BaseException], ...]:
    """Everything below HTTP that either library raises (aiohttp is imported on first use)."""
    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError, httpx.TimeoutException, httpx.TransportError, OSError)


class AiohttpSession:
    """One aiohttp ClientSession (a keep-alive pool of `max_connections`), opened on first use
    on the running loop. Auth: the headers of `auth.aheaders()`; a 401 on a refreshable
    credential (Entra ID) fetches a new token and sends once more."""

    def __init__(self, auth: Any, headers: Mapping[str, str], max_connections: int) -> None:
        self.auth = auth
        self.headers = dict(headers)
        self.max_connections = max_connections
        self._session: Any = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _proxy(self, url: str) -> str | None:
        """The proxy from the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) for this
        URL's scheme and host, looked up once per session."""
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        key = (scheme, host)
        if key not in self._proxies:
            import urllib.request

            proxies = urllib.request.getproxies()
            proxy = proxies.get(scheme) or proxies.get("all")
            hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if proxy and urllib.request.proxy_bypass(hostname):
                proxy = None
            self._proxies[key] = proxy
        return self._proxies[key]

    def _open(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ssl=_ssl_context(),
                                         keepalive_timeout=30)
        # trust_env=True would read ~/.netrc and the proxy variables on every request, in a
        # thread (measured: half the client's CPU); the proxy is looked up once per host instead.
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    async def send(self, route: Route, content: bytes | None, timeout: float) -> AsyncResponse:
        import aiohttp

        if self._session is None:
            self._session = self._open()
        headers = {**self.headers, **await self.auth.aheaders()}
        if content is not None:
            headers["content-type"] = "application/json"
        t = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT),
                                  sock_read=timeout)
        read_401 = False
        for refreshed in (False, True):
            try:
                resp = await self._session.request(route.method, route.url, params=route.params or None,
                                                   data=content, headers=headers, timeout=t, allow_redirects=False,
                                                   proxy=self._proxy(route.url))
                if resp.status == 401 and self.auth.refreshable and not refreshed:
                    # The same decision as EntraAuth's httpx flows: a token for the wrong audience
                    # switches to the other scope, any other 401 refreshes the token; once.
                    text = (await resp.read()).decode("utf-8", "replace")
                    read_401 = True
                    if self.auth.wrong_audience(text, resp.headers):
                        if not self.auth.switch_scope():
                            break
                        stale = None
                    else:
                        stale = headers.get("Authorization")
                    resp.release()
                    read_401 = False
                    headers.update(await self.auth.aheaders(stale=stale))
                    continue
            except _failures() as exc:
                raise transport_error(exc, route.url) from exc
            break

        async def chunks() -> AsyncIterator[bytes]:
            if read_401:  # its body was read above to see why
                yield await resp.read()
                return
            async for chunk in resp.content.iter_any():
                yield chunk

        async def close() -> None:
            resp.release()

        return AsyncResponse(resp.status, resp.headers, resp.charset, resp.url.path, route.url, chunks, resp.read,
                             close)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxSession:
    """Any httpx async transport (MockTransport in tests), through httpx.AsyncClient and its auth flow."""

    def __init__(self, auth: Any, headers: Mapping[str, str], transport: httpx.AsyncBaseTransport,
                 timeout: float) -> None:
        self._http = httpx.AsyncClient(auth=auth, headers=dict(headers), transport=transport, timeout=timeout,
                                       follow_redirects=False)

    async def send(self, route: Route, content: bytes | None, timeout: float) -> AsyncResponse:
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            req = self._http.build_request(route.method, route.url, params=route.params or None, content=content,
                                           headers=headers,
                                           timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)))
            resp = await self._http.send(req, stream=True)
        except _failures() as exc:
            raise transport_error(exc, route.url) from exc
        return AsyncResponse(resp.status_code, resp.headers, resp.charset_encoding, resp.request.url.path, route.url,
                             resp.aiter_bytes, resp.aread, resp.aclose)

    async def aclose(self) -> None:
        await self._http.aclose()


def async_session(auth: Any, headers: Mapping[str, str], *, transport: httpx.AsyncBaseTransport | None,
                  max_connections: int, timeout: float) -> AiohttpSession | HttpxSession:
    if transport is not None:
        return HttpxSession(auth, headers, transport, timeout)
    return AiohttpSession(auth, headers, max_connections)


@functools.lru_cache(maxsize=1)
def _ssl_context() -> Any:
    """httpx's default context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), shared by every
    aiohttp pool: building one costs ~20 ms."""
    return httpx.create_ssl_context()
