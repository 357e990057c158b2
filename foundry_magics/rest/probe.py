"""Testing a connection: one tiny request, a clear verdict.

`probe(conn)` lists the deployments/models (`GET .../models`, or the kind's equivalent) and,
when the listing cannot prove the connection works (no listing on that server, or a legacy
deployment route where only a call proves the deployment exists), sends a chat of one token.
It never raises for a problem with the connection: the result says what went wrong and
how to fix it. With Entra ID it says which credential of the chain answered, or why none
did, in one line.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import DEFAULT_SCOPE, PROBE_TIMEOUT
from foundry_magics.errors import (
    AuthError,
    BadRequestError,
    FoundryError,
    HTTPStatusError,
    NotFoundError,
    ResponseError,
    first_line,
)

__all__ = ["probe", "ProbeResult", "credential_name", "explain_credential_failure"]



@dataclass
class ProbeResult:
    ok: bool
    latency: float | None = None          # seconds, of the request that proved the connection
    models: list[str] = field(default_factory=list)
    error: str | None = None               # the cause, one line (never a key)
    hint: str | None = None                # the fix
    credential_name: str | None = None     # Entra ID: the credential that answered
    checked: str = ""                      # what was sent: "models", "chat", "models+chat"
    warning: str | None = None             # worked, but something deserves a look
    emulated: bool = False

    def summary(self) -> str:
        """One line for people."""
        if not self.ok:
            return f"Failed: {self.error}"
        parts = [f"OK in {self.latency * 1000:.0f} ms" if self.latency is not None else "OK"]
        if self.models:
            shown = ", ".join(self.models[:8]) + (", …" if len(self.models) > 8 else "")
            parts.append(f"{len(self.models)} model(s): {shown}")
        if self.credential_name:
            parts.append(f"token from {self.credential_name}")
        if self.emulated:
            parts.append("emulator")
        return " — ".join(parts)


def credential_name(credential: Any) -> str | None:
    """Which credential produced the token: for a chain (DefaultAzureCredential,
    ChainedTokenCredential) the member that answered, else the credential's own class."""
    if credential is None:
        return None
    inner = getattr(credential, "_successful_credential", None)  # azure-identity's chain records it
    if inner is not None:
        name = getattr(inner, "_credential_name", None) or type(inner).__name__
        return f"{name} (via {type(credential).__name__})"
    return type(credential).__name__


def explain_credential_failure(exc: BaseException) -> str:
    """One line from azure-identity's multi-line "Attempted credentials:" report."""
    text = str(getattr(exc, "message", None) or exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if "Attempted credentials:" in lines:
        i = lines.index("Attempted credentials:")
        tried = []
        for ln in lines[i + 1:]:
            m = _ATTEMPT.match(ln)
            if m:  # "AzureCliCredential: Azure CLI not found on path" (other lines continue the previous one)
                tried.append(f"{m.group(1)}: {_reason(m.group(1), m.group(2))}")
        chain = lines[0].split(" failed")[0] if " failed" in lines[0] else "the credential chain"
        if tried:
            return f"No credential in {chain} gave a token: " + "; ".join(tried) + "."
    first = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


_ATTEMPT = re.compile(r"^([A-Za-z][A-Za-z0-9_]*Credential[A-Za-z0-9_]*):\s*(.*)$")


def _reason(name: str, why: str) -> str:
    """The informative sentence: "X authentication unavailable. Env vars are not set." -> "Env vars are not set"."""
    why = re.sub(rf"^{re.escape(name)}\s*(authentication\s*)?(unavailable|failed)[.,:]?\s*", "", why, flags=re.I)
    sentence = re.split(r"(?<=[.!?])\s", why, maxsplit=1)[0].rstrip(".")
    return (sentence or "unavailable")[:120]


class _Quiet(logging.Filter):
    """Drops azure.identity's own warnings while the probe fetches a token."""

    _names = ("azure.identity._credentials.chained", "azure.identity._credentials.default",
              "azure.identity._internal.decorators", "azure.identity")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    def __enter__(self) -> "_Quiet":
        for name in self._names:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in self._names:
            logging.getLogger(name).removeFilter(self)


class _Prefetched:
    """Hands out a token already fetched once, then defers to the real credential."""

    def __init__(self, credential: Any, token: Any) -> None:
        self._credential = credential
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        token, self._token = self._token, None
        return token if token is not None else self._credential.get_token(*scopes, **kwargs)


def _entra_token(conn: Connection, credential: Any) -> tuple[Any, str | None, ProbeResult | None]:
    """Fetch a token ourselves to name the credential that answered (or explain why none did)."""
    from foundry_magics.rest.auth import ENTRA_HINT

    if credential is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:  # pragma: no cover - a dependency
            return None, None, ProbeResult(False, error="Entra ID needs the azure-identity package.",
                                           hint="pip install azure-identity, or use an API key.")
        credential = DefaultAzureCredential()
    scope = conn.scope or DEFAULT_SCOPE
    quiet = _Quiet()
    try:
        with quiet:  # azure-identity logs the multi-line report as a warning: we say it in one line
            token = credential.get_token(scope)
    except Exception as exc:  # ClientAuthenticationError, CredentialUnavailableError, ...
        return None, None, ProbeResult(False, error=explain_credential_failure(exc), hint=ENTRA_HINT)
    return _Prefetched(credential, token), credential_name(credential), None


def probe(conn: Connection, *, credential: Any = None, timeout: float = PROBE_TIMEOUT,
          transport: Any = None) -> ProbeResult:
    """Send one tiny request to `conn` and report. Never raises for a connection problem."""
    from foundry_magics.rest.client import FoundryClient

    cred_name = None
    if conn.auth == "entra":
        credential, cred_name, failed = _entra_token(conn, credential)
        if failed is not None:
            return failed
    try:
        client = FoundryClient(conn, timeout=timeout, max_retries=1, deadline=timeout * 2,
                               credential=credential, transport=transport)
    except FoundryError as exc:  # e.g. MissingKeyError: fails before sending anything
        return _failed(exc, cred_name)
    with client:
        result = _run(client, conn)
    result.credential_name = cred_name
    return result


def _run(client: Any, conn: Connection) -> ProbeResult:
    models: list[str] = []
    t0 = time.perf_counter()
    listing_error: FoundryError | None = None
    try:
        models = client.models()
        latency = time.perf_counter() - t0
    except (NotFoundError, ResponseError) as exc:
        listing_error = exc  # this server cannot list: a tiny chat decides
    except HTTPStatusError as exc:
        if exc.status in (400, 405, 422, 501):
            listing_error = exc
        else:
            return _failed(exc)
    except FoundryError as exc:
        return _failed(exc)
    else:
        need_chat = conn.kind == "azure-deployment" and bool(conn.model)
        warning = None
        if conn.model and models and conn.model not in models and conn.kind != "azure-deployment":
            warning = f"Model {conn.model!r} is not among the {len(models)} listed."
        if not need_chat:
            return ProbeResult(True, latency, models, checked="models", warning=warning,
                               emulated=conn.is_emulator)
    model = conn.model or (models[0] if models else None)
    if model is None and conn.kind not in ("azure-deployment", "emulator"):
        why = listing_error
        return ProbeResult(False, error=f"The endpoint lists no models ({first_line(why)})." if why else
                           "The endpoint lists no models.", hint="Enter the model or deployment name, then Test again.")
    t1 = time.perf_counter()
    try:
        reply = client.chat("ping", model=model, max_tokens=1)
    except BadRequestError as exc:
        # The request reached the model: auth and route are right; it disliked the tiny call.
        return ProbeResult(True, time.perf_counter() - t1, models, checked="models+chat" if models else "chat",
                           warning=f"The 1-token test call was refused: {first_line(exc)}")
    except FoundryError as exc:
        return _failed(exc)
    return ProbeResult(True, time.perf_counter() - t1, models or ([reply.model] if reply.model else []),
                       checked="models+chat" if models else "chat", emulated=reply.emulated)


def _failed(exc: FoundryError, cred_name: str | None = None) -> ProbeResult:
    message = str(exc).split("\n", 1)[0] if isinstance(exc, HTTPStatusError) else exc.message
    hint = exc.hint
    if isinstance(exc, AuthError) and exc.status == 401 and not hint:
        hint = "Check the key or the token's scope."
    return ProbeResult(False, error=message, hint=hint, credential_name=cred_name)
