"""The Connection model and URL inference.

A Connection is a named profile that never contains a secret it could write anywhere: a key
typed by the user is wrapped in `Secret`, excluded from `repr`, equality, `to_dict()` and
pickling. `Connection.from_url` infers the endpoint kind from the URL **path**, so the same
rules hold for Azure hosts, API Management gateways and a local emulator on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

from foundry_magics.defaults import (
    AI_SCOPE,
    APIM_KEY_HEADER,
    COGNITIVE_SCOPE,
    DEFAULT_API_VERSIONS,
    DEFAULT_KEY_ENV,
    GATEWAY_HOST_SUFFIXES,
)
from foundry_magics.errors import ConfigurationError

__all__ = ["Connection", "Secret", "KINDS", "AUTHS"]

KINDS = ("openai-v1", "azure-deployment", "foundry-models", "foundry-project", "openai-compatible", "emulator")
AUTHS = ("entra", "key", "none")
APIS = ("chat", "responses")

_AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")

_URL_HELP = (
    "A valid endpoint is an http(s) URL such as "
    "https://RESOURCE.openai.azure.com/openai/v1, "
    "https://RESOURCE.cognitiveservices.azure.com/openai/deployments/DEPLOYMENT/chat/completions"
    "?api-version=2024-10-21, "
    "https://RESOURCE.services.ai.azure.com/models, "
    "https://RESOURCE.services.ai.azure.com/api/projects/PROJECT, "
    "or http://localhost:PORT/v1 for Foundry Local, llama.cpp or vLLM."
)


class Secret:
    """A key held in process memory only. Its repr, str and pickle never show the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError("An API key must be a non-empty string.")
        self._value = value.strip()

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("A Secret cannot be pickled: keys stay in process memory only.")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class Connection:
    """A named endpoint profile. `endpoint` is the kind's root URL (see `from_url`)."""

    endpoint: str
    kind: str
    name: str | None = None
    auth: str = "key"
    api_key_env: str | None = None
    key_header: str = "api-key"
    model: str | None = None
    api: str = "chat"
    api_version: str | None = None
    scope: str | None = None
    # In memory only: never in repr, equality, to_dict() or a file.
    api_key: Secret | None = field(default=None, repr=False, compare=False)
    # Where this profile came from ("registry", "env:AZURE_OPENAI_ENDPOINT", "url", "emulator").
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigurationError(f"Unknown endpoint kind {self.kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
        if self.auth not in AUTHS:
            raise ConfigurationError(f"Unknown auth {self.auth!r}.", hint="Use auth='entra', 'key' or 'none'.")
        if self.api not in APIS:
            raise ConfigurationError(f"Unknown api {self.api!r}.", hint="Use api='chat' or api='responses'.")
        if isinstance(self.api_key, str):
            object.__setattr__(self, "api_key", Secret(self.api_key))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_url(cls, url: str, **fields: Any) -> "Connection":
        """Infer `kind`, `model`, `api_version` (and `api`) from a URL's path.

        Explicit `fields` win over what is inferred (`kind=` included).
        """
        parts = _split(url)
        segs = [s for s in parts.path.split("/") if s]
        query = parse_qs(parts.query)
        url_version = (query.get("api-version") or [None])[0]
        origin = f"{parts.scheme}://{parts.netloc}"
        host = (parts.hostname or "").lower()

        inferred = _infer(segs, host)
        kind = fields.pop("kind", None) or inferred.kind
        if kind not in KINDS:
            raise ConfigurationError(f"Unknown endpoint kind {kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
        if kind != inferred.kind:
            # An explicit kind reinterprets the whole path as that kind's root.
            inferred = _Inferred(kind, segs, None, None)
        root = origin + ("/" + "/".join(inferred.root) if inferred.root else "")

        # A project URL with an api-version keeps its preview route (/openai/responses?api-version=V).
        api_version = url_version
        if kind in DEFAULT_API_VERSIONS and api_version is None:
            api_version = DEFAULT_API_VERSIONS[kind]

        values: dict[str, Any] = dict(
            endpoint=root,
            kind=kind,
            model=inferred.model,
            api=inferred.api or ("responses" if kind == "foundry-project" else "chat"),
            api_version=api_version,
        )
        key_given = fields.get("api_key") is not None or fields.get("api_key_env") is not None
        if "auth" not in fields:
            if key_given:
                values["auth"] = "key"
            elif kind in ("openai-compatible", "emulator") or _is_loopback(host):
                # Local servers (Foundry Local, llama.cpp, the emulator) rarely want a key.
                values["auth"] = "none"
            elif kind == "foundry-project":
                values["auth"] = "entra"
            else:
                values["auth"] = "key"
        auth = fields.get("auth") or values.get("auth")
        if auth == "key" and fields.get("api_key") is None and not fields.get("api_key_env"):
            values["api_key_env"] = DEFAULT_KEY_ENV.get(kind)
        if "key_header" not in fields:
            if host.endswith(GATEWAY_HOST_SUFFIXES):
                values["key_header"] = APIM_KEY_HEADER
            elif kind == "openai-compatible":
                values["key_header"] = "Authorization"
        values["scope"] = AI_SCOPE if kind == "foundry-project" else COGNITIVE_SCOPE
        values.setdefault("source", "url")
        values.update({k: v for k, v in fields.items() if v is not None})
        if "key_header" in values:
            values["key_header"] = normalize_key_header(values["key_header"])
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str | None = None, source: str | None = None) -> "Connection":
        """A connection from a registry table. Unknown keys are an error that names them."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)} - {"api_key", "source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown connection field(s): {', '.join(unknown)}.",
                hint=f"Known fields: {', '.join(sorted(known))}.",
            )
        endpoint = data.pop("endpoint", None)
        if not endpoint:
            raise ConfigurationError(f"Connection {name or data.get('name')!r} has no endpoint.", hint=_URL_HELP)
        if name is not None:
            data["name"] = name
        return cls.from_url(endpoint, source=source, **data)

    def to_dict(self) -> dict[str, Any]:
        """The fields worth saving: no secret, no defaults-only noise."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("api_key", "source", "name"):
                continue
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out

    def replace(self, **changes: Any) -> "Connection":
        if "key_header" in changes and changes["key_header"] is not None:
            changes["key_header"] = normalize_key_header(changes["key_header"])
        return dataclasses.replace(self, **changes)

    def with_key_env(self) -> "Connection":
        """Key auth names the variable its key is read from (the kind's usual one when none is
        given), so a saved entry says where the key comes from once a pasted one is gone."""
        if self.auth == "key" and not self.api_key_env and DEFAULT_KEY_ENV.get(self.kind):
            return self.replace(api_key_env=DEFAULT_KEY_ENV[self.kind])
        return self

    # ------------------------------------------------------------------ derived facts

    @property
    def label(self) -> str:
        return self.name or self.endpoint

    @property
    def is_emulator(self) -> bool:
        return self.kind == "emulator"

    def key_source(self) -> str:
        """Where the key comes from, for display: never the key itself."""
        if self.auth != "key":
            return self.auth
        if self.api_key is not None:
            return "key in memory"
        return f"${self.api_key_env}" if self.api_key_env else "no key configured"


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def normalize_key_header(header: str) -> str:
    if not isinstance(header, str) or not header.strip() or any(c in header for c in " :\r\n"):
        raise ConfigurationError(
            f"Invalid key header {header!r}.",
            hint="Use 'api-key', 'Authorization' (Bearer) or a header name such as 'Ocp-Apim-Subscription-Key'.",
        )
    header = header.strip()
    if header.lower() == "authorization":
        return "Authorization"
    if header.lower() == "api-key":
        return "api-key"
    return header


@dataclass
class _Inferred:
    kind: str
    root: list[str]
    model: str | None
    api: str | None


def _split(url: Any):
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("The endpoint URL is empty.", hint=_URL_HELP)
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise ConfigurationError(f"{url!r} is not a valid URL ({exc}).", hint=_URL_HELP) from None
    if parts.scheme not in ("http", "https"):
        if "://" in url:
            raise ConfigurationError(f"Unsupported URL scheme {parts.scheme!r} in {url!r}.", hint=_URL_HELP)
        raise ConfigurationError(f"{url!r} is not a URL.", hint=_URL_HELP)
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigurationError(f"{url!r} has an invalid port.", hint=_URL_HELP) from None
    if not parts.hostname:
        raise ConfigurationError(f"{url!r} has no host.", hint=_URL_HELP)
    if any(c.isspace() for c in url):
        raise ConfigurationError(
            f"{url!r} contains whitespace.",
            hint="Paste the URL alone (a key goes in the key field or a variable, never in the URL). " + _URL_HELP,
        )
    return parts


def _api_from_tail(tail: list[str]) -> str | None:
    if tail[-1:] == ["responses"] or "responses" in tail:
        return "responses"
    if tail[-2:] == ["chat", "completions"]:
        return "chat"
    return None


def _infer(segs: list[str], host: str) -> _Inferred:
    """Walk the path left to right; the first marker decides the kind."""
    for i, seg in enumerate(segs):
        low = seg.lower()
        nxt = segs[i + 1].lower() if i + 1 < len(segs) else None
        if low == "api" and nxt == "projects" and i + 2 < len(segs):
            root = segs[: i + 3]
            tail = [s.lower() for s in segs[i + 3 :]]
            return _Inferred("foundry-project", root, None, _api_from_tail(tail) if tail else None)
        if low == "openai":
            if nxt == "v1":
                return _Inferred("openai-v1", segs[: i + 2], None, _api_from_tail(segs[i + 2 :]))
            model = segs[i + 2] if nxt == "deployments" and i + 2 < len(segs) else None
            return _Inferred("azure-deployment", segs[:i], model, None)
        if low == "models":
            return _Inferred("foundry-models", segs[: i + 1], None, None)
        if low == "v1":
            return _Inferred("openai-compatible", segs[: i + 1], None, _api_from_tail(segs[i + 1 :]))
    if host.endswith(_AZURE_HOST_SUFFIXES):
        # The resource endpoint the portal shows: the v1 API is the modern route.
        return _Inferred("openai-v1", segs + ["openai", "v1"], None, None)
    return _Inferred("openai-compatible", segs + ["v1"], None, None)
