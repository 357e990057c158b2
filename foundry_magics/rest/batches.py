"""The Files and Batch APIs per endpoint kind: routes, input lines, reading what comes back, and the calls.

    routes = batch_routes(conn)                  # files / batches URLs, the `url` of a line, the endpoint
    line = input_line(custom_id, routes.line_url("chat"), body)      # one JSONL line (bytes)
    state = batch_state(client_json)             # status (lower-cased), request counts, file ids, errors
    out = output_line(raw)                       # custom_id, status code, body or error
    client = BatchClient(conn)                   # upload, file, create, batch, cancel, list, delete, lines

The bodies of the lines are the online request bodies, built by `BaseClient.build_chat` /
`build_respond` / `embed_body` (one way to build a request, for every path); a batch line
only adds the deployment name where the online route carried it in the URL (legacy Azure
deployments), because every line of a batch file names its Global-Batch deployment.

`BatchClient` is a `FoundryClient`: its requests go out with the same auth, retry policy and
error mapping as a chat call (a gateway's 403 token quota, a 429's retry-after, a 401 for the
wrong Entra audience answer the same), synchronously in the caller's thread - a batch job is
a handful of requests a minute, so it needs no event loop. Uploads stream the input file from
disk and output files are read line by line, so memory stays bounded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import httpx

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import BATCH_COMPLETION_WINDOW, MAX_RETRIES, TIMEOUT
from foundry_magics.errors import ConfigurationError, FoundryError, HTTPStatusError, ResponseError
from foundry_magics.rest.base import ResponseLike, transport_error
from foundry_magics.rest.client import FoundryClient
from foundry_magics.rest.retry import RetryPolicy
from foundry_magics.rest.routes import Route
from foundry_magics.wording import article

__all__ = ["BatchClient", "BatchHTTP", "BatchRoutes", "BatchState", "OutputLine", "batch_routes", "input_line",
           "line_body", "create_body", "batch_state", "output_line", "file_status", "is_pending_file", "TERMINAL",
           "ACTIVE", "OPS"]

log = logging.getLogger("foundry_magics.batch")

OPS = ("chat", "responses", "embeddings")
_PATHS = {"chat": "/chat/completions", "responses": "/responses", "embeddings": "/embeddings"}
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
FILE_READY = frozenset({"processed"})
FILE_FAILED = frozenset({"error", "deleted", "deleting"})


@dataclass
class BatchRoutes:
    """Where the Files and Batch APIs of one connection live."""

    root: str  # .../openai/v1, .../openai (legacy, with api-version), .../v1
    params: dict[str, str] = field(default_factory=dict)
    line_prefix: str = ""  # "/v1" in front of a line's url for OpenAI-style servers

    def _route(self, method: str, path: str) -> Route:
        return Route(method, self.root + path, dict(self.params))

    def upload(self) -> Route:
        return self._route("POST", "/files")

    def file(self, file_id: str) -> Route:
        return self._route("GET", f"/files/{file_id}")

    def content(self, file_id: str) -> Route:
        return self._route("GET", f"/files/{file_id}/content")

    def delete(self, file_id: str) -> Route:
        return self._route("DELETE", f"/files/{file_id}")

    def create(self) -> Route:
        return self._route("POST", "/batches")

    def batch(self, batch_id: str) -> Route:
        return self._route("GET", f"/batches/{batch_id}")

    def cancel(self, batch_id: str) -> Route:
        return self._route("POST", f"/batches/{batch_id}/cancel")

    def list(self, limit: int = 100) -> Route:
        route = self._route("GET", "/batches")
        route.params["limit"] = str(limit)
        return route

    def line_url(self, op: str) -> str:
        """The `url` of an input line (also the batch's `endpoint`)."""
        return self.line_prefix + _PATHS[op]


def batch_routes(conn: Connection) -> BatchRoutes:
    """The Files / Batch API routes of a connection, or a ConfigurationError naming the fix."""
    kind, root = conn.kind, conn.endpoint.rstrip("/")
    if kind in ("openai-v1", "emulator"):  # Azure's v1 API (and the emulator's copy of it)
        return BatchRoutes(root, {"api-version": conn.api_version} if kind == "openai-v1" and conn.api_version else {})
    if kind == "azure-deployment":  # the legacy data plane: /openai/files?api-version=...
        return BatchRoutes(root + "/openai", {"api-version": conn.api_version} if conn.api_version else {})
    if kind == "foundry-project":
        return BatchRoutes(root + "/openai/v1")
    if kind == "openai-compatible":  # OpenAI itself, vLLM, ...: lines say /v1/...
        return BatchRoutes(root, line_prefix="/v1" if root.endswith("/v1") else "")
    raise ConfigurationError(
        f"The Batch API is not available on {article(kind)} endpoint ({conn.label}).",
        hint="Connect to the resource's Azure OpenAI endpoint (https://RESOURCE.openai.azure.com/openai/v1) with a "
             "Global Batch deployment, or leave batch=True out to send the requests online.",
    )


def line_body(body: Mapping[str, Any], model: str | None) -> Mapping[str, Any]:
    """The body of a batch line: the online body, plus the deployment where the online route
    carried it in its URL (every line of a batch file names its Global-Batch deployment)."""
    if "model" in body or not model:
        return body
    return {"model": model, **body}


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def input_line(custom_id: str, url: str, body: Mapping[str, Any]) -> bytes:
    """One line of a batch input file (JSONL), newline included:
    `{"custom_id": ..., "method": "POST", "url": ..., "body": {...}}`."""
    head = '{"custom_id":%s,"method":"POST","url":%s,"body":' % (_ENCODE(custom_id), _ENCODE(url))
    return (head + _ENCODE(body) + "}\n").encode("utf-8")


def create_body(file_id: str, endpoint: str, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"input_file_id": file_id, "endpoint": endpoint,
                            "completion_window": BATCH_COMPLETION_WINDOW}
    if metadata:
        body["metadata"] = dict(metadata)
    return body


@dataclass
class BatchState:
    """What a batch object says, normalised (status lower-cased: samples show "Validating")."""

    id: str
    status: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = field(default_factory=list)  # validation errors, readable, one per problem
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def batch_state(data: Any) -> BatchState:
    if not isinstance(data, dict) or not data.get("id"):
        raise ResponseError("The Batch API answered without a batch object.",
                            hint="Check that the endpoint supports the Batch API (a Global Batch deployment).")
    counts = data.get("request_counts")
    if not isinstance(counts, dict):
        counts = {}
    metadata = data.get("metadata")
    return BatchState(
        id=str(data["id"]),
        status=str(data.get("status") or "validating").strip().lower().replace(" ", "_"),
        total=_int(counts.get("total")), completed=_int(counts.get("completed")), failed=_int(counts.get("failed")),
        input_file_id=data.get("input_file_id"), output_file_id=data.get("output_file_id") or None,
        error_file_id=data.get("error_file_id") or None, errors=_errors(data.get("errors")),
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _errors(errors: Any) -> list[str]:
    """`errors` of a failed batch ({"data": [{"code", "message", "param", "line"}]}) as readable lines."""
    if isinstance(errors, dict):
        errors = errors.get("data")
    out = []
    for e in errors if isinstance(errors, list) else []:
        if not isinstance(e, dict):
            continue
        where = f"line {e['line']}: " if e.get("line") is not None else ""
        code = f" ({e['code']})" if e.get("code") else ""
        out.append(f"{where}{e.get('message') or 'invalid'}{code}")
    return out


def file_status(data: Any) -> str:
    """An uploaded file's status, lower-cased ("pending", "processed", "error", ...)."""
    status = data.get("status") if isinstance(data, dict) else None
    return str(status or "processed").strip().lower()


def is_pending_file(exc: BaseException) -> bool:
    """The create call failed because the input file is still being processed (a known quirk)."""
    return isinstance(exc, HTTPStatusError) and exc.status in (400, 409) and "pending" in exc.message.lower()


@dataclass
class OutputLine:
    custom_id: str | None
    status: int  # the response's status code (0: none given)
    body: Any  # the normal reply body, when status is 2xx
    error: str | None  # the reason, when the request failed


def output_line(raw: bytes | str) -> OutputLine:
    """One line of an output or error file."""
    try:
        data = json.loads(raw)
    except ValueError:
        return OutputLine(None, 0, None, "an output line that is not JSON")
    if not isinstance(data, dict):
        return OutputLine(None, 0, None, "an output line that is not an object")
    cid = data.get("custom_id")
    resp = data.get("response")
    if not isinstance(resp, dict):
        resp = {}
    status = _int(resp.get("status_code"))
    body = resp.get("body")
    if isinstance(body, str):  # some servers send the body as a JSON string
        try:
            body = json.loads(body)
        except ValueError:
            pass
    err = data.get("error")
    if err:
        return OutputLine(cid, status, None, _reason(status or 400, err))
    if status >= 400 or (status == 0 and not isinstance(body, dict)):
        return OutputLine(cid, status, None, _reason(status or 500, body))
    return OutputLine(cid, status or 200, body, None)


def _reason(status: int, err: Any) -> str:
    """A failed line's reason, worded as the online path words the same failure."""
    from foundry_magics.errors import describe, error_from_response

    if isinstance(err, dict) and "error" not in err and ("message" in err or "code" in err):
        err = {"error": err}
    text = err if isinstance(err, str) else json.dumps(err, ensure_ascii=False, default=str)
    exc: FoundryError = error_from_response(status, text)
    return describe(exc)


# ====================================================================== the calls

_HTTPX_FAILURES = (httpx.TimeoutException, httpx.TransportError)


@dataclass
class _Upload:
    """The body of an upload: a file sent from disk (multipart, `purpose=batch`), opened anew per attempt."""

    path: str
    name: str
    _file: Any = None

    def open(self) -> Any:
        self.close()
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close(), after the attempt
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class BatchClient(FoundryClient):
    """One connection's Files and Batch APIs. A connection without them (a `/models` endpoint)
    is a ConfigurationError here, before anything is sent. `transport`: any httpx transport."""

    def __init__(self, conn: Connection | str | None = None, *, timeout: float = TIMEOUT,
                 max_retries: int = MAX_RETRIES, deadline: float | None = None, credential: Any = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(conn, timeout=timeout, max_retries=max_retries, deadline=deadline, credential=credential,
                         transport=transport)
        try:
            self.routes = batch_routes(self.connection)
        except BaseException:
            self.close()
            raise
        # The emulator marks its replies: its jobs run on a fast clock, so they are polled often.
        self.emulated = self.connection.is_emulator

    def upload(self, path: str, name: str) -> dict[str, Any]:
        """POST /files (purpose=batch), the file streamed from disk (re-opened on a retry). No
        deadline: 200 MB may take longer to send than a call may take."""
        body = _Upload(path, name)
        try:
            return self._object(self.routes.upload(), body, RetryPolicy(self.max_retries, None))
        finally:
            body.close()

    def file(self, file_id: str) -> dict[str, Any]:
        return self._object(self.routes.file(file_id))

    def create(self, file_id: str, endpoint: str, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        return self._object(self.routes.create(), create_body(file_id, endpoint, metadata))

    def batch(self, batch_id: str) -> dict[str, Any]:
        return self._object(self.routes.batch(batch_id))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._object(self.routes.cancel(batch_id), {})

    def list(self, limit: int = 100) -> list[dict[str, Any]]:  # noqa: A003 - the API's own verb
        items = self._object(self.routes.list(limit)).get("data")
        return [b for b in items or [] if isinstance(b, dict)]

    def delete(self, file_id: str | None) -> None:
        """Delete a file we uploaded or read; best effort (a service keeps them until they expire)."""
        if not file_id:
            return
        try:
            self._send(self.routes.delete(file_id), None, policy=RetryPolicy(1, self.deadline))
        except FoundryError as exc:
            log.debug("could not delete batch file %s: %s", file_id, exc)

    def lines(self, file_id: str) -> Iterator[bytes]:
        """The lines of a file's content, streamed (an output file can be hundreds of MB). A cut
        before the first line is retried; after it, the caller's work is not repeatable: raised."""
        route = self.routes.content(file_id)
        policy = self._policy()
        while True:
            started = False
            try:
                resp, _ = self._send(route, None, stream=True, policy=policy)
                try:
                    self._saw(resp)
                    for line in resp.iter_lines():
                        started = True
                        if line.strip():
                            yield line.encode("utf-8")
                finally:
                    resp.close()
                return
            except _HTTPX_FAILURES as exc:
                err = transport_error(exc, route.url)
            if started:
                raise err
            delay = policy.next_delay(err)
            if delay is None:
                raise err
            time.sleep(delay)

    # -- sending: FoundryClient's, with a file body and the emulator's mark -------------------

    def _object(self, route: Route, body: Any = None, policy: RetryPolicy | None = None) -> dict[str, Any]:
        _, data = self._send(route, body, policy=policy)
        if not isinstance(data, dict):
            raise ResponseError(f"The {'Files' if '/files' in route.url else 'Batch'} API answered without an "
                                "object.", hint="This is usually a transient proxy fault: run it again.")
        return data

    def _request(self, route: Route, body: Any, policy: RetryPolicy) -> httpx.Request:
        if not isinstance(body, _Upload):
            return super()._request(route, body, policy)
        return self._http.build_request(route.method, route.url, params=route.params or None,
                                        data={"purpose": "batch"},
                                        files={"file": (body.name, body.open(), "application/jsonl")},
                                        timeout=self._timeout(policy))

    def _body(self, resp: ResponseLike, raw: bytes) -> Any:
        self._saw(resp)
        if not raw and resp.status_code < 400:  # a DELETE may answer 204
            self._succeeded()
            return {}
        return super()._body(resp, raw)

    def _saw(self, resp: ResponseLike) -> None:
        if resp.headers.get("x-foundry-emulator") == "1":
            self.emulated = True


BatchHTTP = BatchClient  # its name before the Files / Batches calls joined the REST client
