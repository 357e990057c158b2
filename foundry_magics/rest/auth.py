"""httpx.Auth implementations: API key, Entra ID (azure-identity), none.

Key lookup order is explicit: a key held in memory on the connection, then the environment
variable the connection names. A missing key fails here, before anything is sent.
Entra tokens are cached and refreshed 5 minutes before they expire; one lock makes the
refresh safe from threads, and the async flow runs a synchronous credential in a worker
thread so it never blocks the event loop. A 401 on a cached token refreshes it once and
retries the request once. A 401 that names the token's audience (the resource a token is for,
e.g. "audience is incorrect (https://cognitiveservices.azure.com)") is a token for the wrong
scope instead: one retry with the other documented scope (Azure OpenAI's
`https://cognitiveservices.azure.com/.default` <-> a project's `https://ai.azure.com/.default`),
then one readable AuthError that names the scopes tried and the role to ask for.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import threading
import time
from typing import Any, AsyncGenerator, Generator

import httpx

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import (
    AI_SCOPE,
    COGNITIVE_SCOPE,
    DEFAULT_SCOPE,
    OPENAI_ROLE,
    PROJECT_ROLE,
    REDACTED,
    TOKEN_REFRESH_MARGIN,
)
from foundry_magics.errors import AuthError, MissingKeyError, first_line

__all__ = ["KeyAuth", "EntraAuth", "NoAuth", "auth_for", "resolve_key", "ENTRA_HINT"]


def resolve_key(conn: Connection) -> str:
    """The key for `conn`: in memory first, then `$api_key_env`. Raises MissingKeyError."""
    if conn.api_key is not None:
        return conn.api_key.get()
    var = conn.api_key_env
    if var:
        value = os.environ.get(var, "").strip()
        if value:
            return value
        raise MissingKeyError(
            f"No API key for {conn.label}: the environment variable {var} is not set.",
            hint=(
                f"Set {var} (in your shell, or os.environ[{var!r}] = ... in the notebook), "
                "paste the key into `%foundry picker`, or connect with --auth entra."
            ),
        )
    raise MissingKeyError(
        f"No API key for {conn.label}: the connection names no key variable.",
        hint="Pass api_key_env='VAR' (or --key-env VAR), paste the key into `%foundry picker`, or use auth 'entra'.",
    )


class KeyAuth(httpx.Auth):
    """Sends the key in `header`: `api-key`, `Authorization` (as Bearer) or e.g. an APIM header."""

    def __init__(self, key: str, header: str = "api-key") -> None:
        self._key = key
        self.header = header

    def __repr__(self) -> str:
        return f"KeyAuth(header={self.header!r}, key={REDACTED!r})"

    refreshable = False  # a 401 will not go away by sending the same key again

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self.headers())
        yield request

    def headers(self) -> dict[str, str]:
        if self.header == "Authorization":
            return {"Authorization": f"Bearer {self._key}"}
        return {self.header: self._key}

    async def aheaders(self, stale: str | None = None) -> dict[str, str]:
        """The headers to send, for an I/O path that does not run httpx's auth flow (aiohttp)."""
        return self.headers()

    def describe(self) -> dict[str, str]:
        value = f"Bearer {REDACTED}" if self.header == "Authorization" else REDACTED
        return {self.header: value}

    def secrets(self) -> list[str]:
        """Values that must never be shown (used to scrub what a server echoes back)."""
        return [self._key]


class NoAuth(httpx.Auth):
    def __repr__(self) -> str:
        return "NoAuth()"

    refreshable = False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request

    async def aheaders(self, stale: str | None = None) -> dict[str, str]:
        return {}

    def describe(self) -> dict[str, str]:
        return {}

    def secrets(self) -> list[str]:
        return []


class EntraAuth(httpx.Auth):
    """Bearer tokens from a `TokenCredential` (default: azure-identity's DefaultAzureCredential)."""

    def __init__(self, scope: str, credential: Any = None, *, role: str | None = None) -> None:
        self.scope = scope
        self.role = role or OPENAI_ROLE  # the role to name when the endpoint refuses the token
        self.scopes_tried = [scope]
        self._proven = False  # the current token has been accepted at least once
        self._credential = credential
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = threading.Lock()
        self.refreshes = 0  # how many tokens were fetched (for tests and diagnostics)

    def __repr__(self) -> str:
        return f"EntraAuth(scope={self.scope!r})"

    @property
    def credential(self) -> Any:
        if self._credential is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError as exc:  # pragma: no cover - azure-identity is a dependency
                raise AuthError(
                    "Entra ID needs the azure-identity package.", status=0,
                    hint="pip install azure-identity, or use an API key (auth='key').",
                ) from exc
            self._credential = DefaultAzureCredential()
        return self._credential

    def describe(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {REDACTED}"}

    def secrets(self) -> list[str]:
        return [self._token] if self._token else []

    # -- token cache ---------------------------------------------------------------

    def _fresh(self) -> bool:
        return self._token is not None and time.time() < self._expires_on - TOKEN_REFRESH_MARGIN

    def _store(self, token: Any) -> str:
        value = getattr(token, "token", None)
        if not value:
            raise AuthError("The credential returned no token.", status=0, hint=ENTRA_HINT)
        self._token = value
        self._proven = False
        self._expires_on = float(getattr(token, "expires_on", 0) or 0)
        self.refreshes += 1
        return value

    def token(self, *, force: bool = False, stale: str | None = None) -> str:
        """A valid token. `stale`: the token a 401 rejected; refresh unless another caller already did."""
        with self._lock:
            if self._fresh() and not force and (stale is None or self._token != stale):
                return self._token  # type: ignore[return-value]
            try:
                got = self.credential.get_token(self.scope)
            except AuthError:
                raise
            except Exception as exc:  # azure.identity raises ClientAuthenticationError & co.
                raise AuthError(
                    f"Entra ID could not get a token for {self.scope}: {first_line(exc)}",
                    status=0, hint=ENTRA_HINT,
                ) from None
            if inspect.isawaitable(got):
                raise AuthError(
                    "An async credential was given to a synchronous client.", status=0,
                    hint="Use azure.identity (not azure.identity.aio) with FoundryClient.",
                )
            return self._store(got)

    async def atoken(self, *, stale: str | None = None) -> str:
        if self._fresh() and (stale is None or self._token != stale):
            return self._token  # type: ignore[return-value]
        get = getattr(self.credential, "get_token", None)
        if get is not None and inspect.iscoroutinefunction(get):
            try:
                got = await get(self.scope)
            except Exception as exc:
                raise AuthError(
                    f"Entra ID could not get a token for {self.scope}: {first_line(exc)}",
                    status=0, hint=ENTRA_HINT,
                ) from None
            with self._lock:
                return self._store(got)
        return await asyncio.to_thread(self.token, stale=stale)

    # -- a token for the wrong audience -------------------------------------------------

    @property
    def other_scope(self) -> str | None:
        """The other documented scope for Foundry / Azure OpenAI, or None for a custom scope."""
        return {COGNITIVE_SCOPE: AI_SCOPE, AI_SCOPE: COGNITIVE_SCOPE}.get(self.scope)

    def accepted(self) -> None:
        """The endpoint accepted the current token (the aiohttp path says so after a success)."""
        self._proven = True

    def wrong_audience(self, text: str, headers: Any = None) -> bool:
        """A 401 for a token that was never accepted, naming the audience: the scope is wrong (a
        token that worked before and is refused now has expired or been revoked: refresh it)."""
        return not self._proven and self.names_audience(text, headers)

    @staticmethod
    def names_audience(text: str, headers: Any = None) -> bool:
        """Whether a 401 says the token is for the wrong audience (it names one: a documented
        resource URL or the word audience with a URL), and not merely that it expired."""
        low = (text or "").lower()
        www = str((headers or {}).get("www-authenticate", "")).lower() if headers is not None else ""
        if "expired" in www or "expiredauthenticationtoken" in low.replace(" ", ""):
            return False
        return bool(_AUDIENCE.search(low))

    def switch_scope(self) -> bool:
        """Use the other documented scope from now on (once per client): True if there was one to try."""
        with self._lock:
            other = self.other_scope
            if other is None or other in self.scopes_tried:
                return False
            self.scope = other
            self.scopes_tried.append(other)
            self._token, self._expires_on = None, 0.0
            return True

    def failure_hint(self) -> str:
        """The fix for a token the endpoint refused: the scope(s) tried and the role to ask for."""
        tried = " and ".join(self.scopes_tried)
        return (f"The endpoint refused the Entra ID token for {tried}. Check that your identity has the "
                f"'{self.role}' role on the resource (Azure portal > Access control (IAM)), and that the connection's "
                f"scope is the one the endpoint expects (Azure OpenAI: {COGNITIVE_SCOPE}; projects: {AI_SCOPE}); "
                "`az login` again if you switched accounts.")

    # -- flows: httpx's (sync client, httpx transports) and plain headers (aiohttp) ---

    refreshable = True  # a 401 on a cached token: fetch a new one and send again, once

    async def aheaders(self, stale: str | None = None) -> dict[str, str]:
        """`stale`: the Authorization value a 401 rejected; a new token replaces it."""
        old = stale[len("Bearer "):] if stale and stale.startswith("Bearer ") else None
        return {"Authorization": f"Bearer {await self.atoken(stale=old)}"}

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            self._proven = True
        else:
            response.read()  # a 401 body is small: it says whether the audience is the problem
            if self.wrong_audience(response.text, response.headers):
                if self.switch_scope():
                    request.headers["Authorization"] = f"Bearer {self.token()}"
                    response = yield request
                    self._proven = response.status_code != 401
                return
            request.headers["Authorization"] = f"Bearer {self.token(stale=token)}"
            response = yield request
            self._proven = response.status_code != 401

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.atoken()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            self._proven = True
        else:
            await response.aread()
            if self.wrong_audience(response.text, response.headers):
                if self.switch_scope():
                    request.headers["Authorization"] = f"Bearer {await self.atoken()}"
                    response = yield request
                    self._proven = response.status_code != 401
                return
            request.headers["Authorization"] = f"Bearer {await self.atoken(stale=token)}"
            response = yield request
            self._proven = response.status_code != 401


# "audience" next to a URL, or one of the documented resources named outright.
_AUDIENCE = re.compile(r"audience[^.]{0,80}https?://|https://(?:cognitiveservices\.azure\.com|ai\.azure\.com)\b")

ENTRA_HINT = (
    "Sign in with `az login` (or set AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_CLIENT_SECRET), "
    "and check your identity has the 'Cognitive Services OpenAI User' role (projects: 'Azure AI User')."
)


def auth_for(conn: Connection, credential: Any = None) -> httpx.Auth:
    """The httpx.Auth for a connection. Key auth resolves the key now (fails before sending)."""
    if conn.auth == "none":
        return NoAuth()
    if conn.auth == "key":
        return KeyAuth(resolve_key(conn), conn.key_header)
    scope = conn.scope or DEFAULT_SCOPE
    return EntraAuth(scope, credential, role=PROJECT_ROLE if conn.kind == "foundry-project" else OPENAI_ROLE)
