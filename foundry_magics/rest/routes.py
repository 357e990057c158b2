"""URL, query and body per endpoint kind and operation. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from foundry_magics.connections.connection import Connection
from foundry_magics.errors import ConfigurationError

__all__ = ["Route", "route_for", "uses_max_completion_tokens", "models_from_listing"]

OPERATIONS = ("chat", "responses", "embeddings", "models")


@dataclass
class Route:
    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    model_in_body: bool = True


def _v1_like(root: str, op: str) -> Route:
    paths = {"chat": "/chat/completions", "responses": "/responses", "embeddings": "/embeddings", "models": "/models"}
    path = paths[op]
    return Route("GET" if op == "models" else "POST", root + path)


def route_for(conn: Connection, op: str, model: str | None) -> Route:
    if op not in OPERATIONS:
        raise ValueError(op)
    kind, root = conn.kind, conn.endpoint.rstrip("/")
    version = {"api-version": conn.api_version} if conn.api_version else {}
    if kind in ("openai-v1", "openai-compatible", "emulator"):
        route = _v1_like(root, op)
        if kind == "openai-v1" and conn.api_version:
            route.params = dict(version)  # e.g. api-version=preview on the v1 route
        return route
    if kind == "azure-deployment":
        if op == "models":
            return Route("GET", root + "/openai/models", version)
        if op == "responses":
            return Route("POST", root + "/openai/responses", version)
        if not model:
            raise ConfigurationError(
                "This Azure OpenAI connection has no deployment name.",
                hint="Pass model='DEPLOYMENT' (or -m DEPLOYMENT), or paste the URL that ends in /deployments/NAME/...",
            )
        path = "/chat/completions" if op == "chat" else "/embeddings"
        return Route("POST", f"{root}/openai/deployments/{model}{path}", version, model_in_body=False)
    if kind == "foundry-models":
        if op == "models":
            return Route("GET", root + "/info", version)
        if op == "responses":
            raise ConfigurationError(
                "The Foundry /models endpoint has no Responses API.",
                hint="Use --api chat, or connect to the resource's /openai/v1 endpoint for the Responses API.",
            )
        path = "/chat/completions" if op == "chat" else "/embeddings"
        return Route("POST", root + path, version)
    if kind == "foundry-project":
        if op == "models":
            return Route("GET", root + "/deployments", {"api-version": "v1"})
        if op == "responses" and conn.api_version:
            # The preview route a user pasted keeps its route and version.
            return Route("POST", root + "/openai/responses", version)
        return _v1_like(root + "/openai/v1", op)
    raise ConfigurationError(f"Unknown endpoint kind {kind!r}.")


def uses_max_completion_tokens(model: str | None) -> bool:
    """Reasoning models (o-series, gpt-5) reject max_tokens."""
    m = (model or "").lower().rsplit("/", 1)[-1]
    return m.startswith(("o1", "o3", "o4", "gpt-5"))


def models_from_listing(conn: Connection, body: Any) -> list[str]:
    """Names from a models/deployments listing, per kind."""
    if not isinstance(body, dict):
        return []
    if conn.kind == "foundry-models":
        name = body.get("model_name")
        return [str(name)] if name else []
    items = body.get("value") if conn.kind == "foundry-project" else body.get("data")
    if items is None:
        items = body.get("data") or body.get("value") or []
    names = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            name = item.get("name") or item.get("id")
            if name:
                names.append(str(name))
    return names
