"""The Files and Batch APIs over HTTP: upload, file status, create, poll, cancel, stream a file's lines.

Synchronous (httpx), in the caller's thread: a batch job is a handful of requests a minute,
so it needs no event loop - and a notebook cell never gets `asyncio.run`. The client is built
from `BaseClient`'s public pieces (its connection, its `auth` flow, so a key or an Entra
token is sent exactly as for an online call) and the same retry policy as every call:
bounded retries on 408/409/429/5xx and cut connections, `retry-after` honoured. Uploads
stream the input file from disk (httpx reads it in chunks), so memory stays bounded.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator

import httpx

from foundry_magics.defaults import CONNECT_TIMEOUT, MAX_RETRIES, REDACTED, TIMEOUT, USER_AGENT
from foundry_magics.errors import FoundryError, ResponseError, error_from_response
from foundry_magics.rest.base import BaseClient, transport_error
from foundry_magics.rest.batches import BatchRoutes, batch_routes, create_body
from foundry_magics.rest.retry import RetryPolicy, parse_retry_after
from foundry_magics.rest.routes import Route

__all__ = ["BatchHTTP"]

log = logging.getLogger("foundry_magics.batch")

_FAILURES = (httpx.TimeoutException, httpx.TransportError)


class BatchHTTP:
    """One connection's Files / Batch API. `transport`: any httpx transport (MockTransport in tests)."""

    def __init__(self, conn: Any, *, timeout: float = TIMEOUT, max_retries: int = MAX_RETRIES,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base = BaseClient(conn, timeout=timeout, max_retries=max_retries)  # a missing key fails here
        self.connection = self.base.connection
        self.routes: BatchRoutes = batch_routes(self.connection)
        self.max_retries = self.base.max_retries
        # The emulator marks its replies: its jobs run on a fast clock, so they are polled often.
        self.emulated = self.connection.is_emulator
        self.http = httpx.Client(auth=self.base.auth, headers={"user-agent": USER_AGENT, "accept": "application/json"},
                                 transport=transport, follow_redirects=False,
                                 timeout=httpx.Timeout(self.base.timeout, connect=min(self.base.timeout,
                                                                                       CONNECT_TIMEOUT)))

    def __repr__(self) -> str:
        return f"BatchHTTP(connection={self.connection.label!r})"

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ the API

    def upload(self, path: str, name: str) -> dict[str, Any]:
        """POST /files (purpose=batch), the file streamed from disk; re-opened on a retry."""
        def send() -> httpx.Response:
            with open(path, "rb") as f:
                return self._send(self.routes.upload(), data={"purpose": "batch"},
                                  files={"file": (name, f, "application/jsonl")})

        return self._call(self.routes.upload(), send)

    def file(self, file_id: str) -> dict[str, Any]:
        return self._json(self.routes.file(file_id))

    def create(self, file_id: str, endpoint: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        return self._json(self.routes.create(), create_body(file_id, endpoint, metadata))

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._json(self.routes.batch(batch_id))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._json(self.routes.cancel(batch_id), {})

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        data = self._json(self.routes.list(limit))
        items = data.get("data") if isinstance(data, dict) else None
        return [b for b in items or [] if isinstance(b, dict)]

    def delete(self, file_id: str | None) -> None:
        """Delete a file we uploaded or read; best effort (a service keeps them until they expire)."""
        if not file_id:
            return
        try:
            self._call(self.routes.delete(file_id), lambda: self._send(self.routes.delete(file_id)), retries=1)
        except FoundryError as exc:
            log.debug("could not delete batch file %s: %s", file_id, exc)

    def lines(self, file_id: str) -> Iterator[bytes]:
        """The lines of a file's content, streamed (an output file can be hundreds of MB)."""
        route = self.routes.content(file_id)
        policy = self._policy()
        while True:
            started = False
            try:
                with self.http.stream("GET", route.url, params=route.params or None) as resp:
                    if resp.status_code >= 400:
                        raise self._error(resp, resp.read())
                    for line in resp.iter_lines():
                        started = True
                        if line.strip():
                            yield line.encode("utf-8")
                return
            except _FAILURES as exc:
                err: FoundryError = transport_error(exc, route.url)
            except FoundryError as exc:
                err = exc
            if started:  # lines already handed out: the caller's work is not repeatable from here
                raise err
            delay = policy.next_delay(err)
            if delay is None:
                raise err
            time.sleep(delay)

    # ------------------------------------------------------------------ sending

    def _policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.base.deadline)

    def _json(self, route: Route, body: Any = None) -> Any:
        return self._call(route, lambda: self._send(route, json=body))

    def _send(self, route: Route, **kwargs: Any) -> httpx.Response:
        log.debug("%s %s", route.method, route.url)
        return self.http.request(route.method, route.url, params=route.params or None, **kwargs)

    def _call(self, route: Route, send: Any, retries: int | None = None) -> Any:
        """`send()` with the retry policy; the parsed JSON of a 2xx, else the FoundryError."""
        policy = self._policy() if retries is None else RetryPolicy(retries, self.base.deadline)
        while True:
            try:
                try:
                    resp = send()
                except _FAILURES as exc:
                    raise transport_error(exc, route.url) from exc
                if resp.headers.get("x-foundry-emulator") == "1":
                    self.emulated = True
                if resp.status_code >= 400:
                    raise self._error(resp, resp.content)
                return self._parse(resp)
            except FoundryError as err:
                delay = policy.next_delay(err)
                if delay is None:
                    raise
            time.sleep(delay)

    def _scrub(self, text: str) -> str:
        for secret in self.base.auth.secrets():  # type: ignore[attr-defined]
            if secret and secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _error(self, resp: httpx.Response, raw: bytes) -> FoundryError:
        text = self._scrub(raw.decode(resp.charset_encoding or "utf-8", "replace"))
        return error_from_response(resp.status_code, text,
                                   request_id=resp.headers.get("x-request-id") or resp.headers.get("apim-request-id"),
                                   retry_after=parse_retry_after(resp.headers))

    @staticmethod
    def _parse(resp: httpx.Response) -> Any:
        if not resp.content:
            return {}
        try:
            return json.loads(resp.content)
        except ValueError:
            raise ResponseError(f"The Batch API sent a body that is not JSON ({len(resp.content)} bytes).",
                                hint="This is usually a transient proxy fault: run it again.") from None
