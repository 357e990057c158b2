"""Routes: which API a path is (with any gateway prefix), and the deployment table."""

from __future__ import annotations

import re
from typing import Any

DEFAULT_DEPLOYMENTS = ("gpt-4o-mini", "gpt-4.1-mini", "text-embedding-3-small")
_VERSIONS = {"gpt-4o-mini": "2024-07-18", "gpt-4.1-mini": "2025-04-14", "text-embedding-3-small": "1"}

API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2}(-preview)?|v1|latest|preview)$")
OPNAMES = {"chat.completions": "ChatCompletions_Create", "embeddings": "Embeddings_Create",
           "responses": "Responses_Create"}  # for Azure's 429 messages
POST_OPS = frozenset(OPNAMES)
BATCH_OPS = frozenset({"files", "files.one", "files.content", "batches", "batches.one", "batches.cancel"})


class Route:
    """kind: openai-v1 | openai-compatible | azure-deployment | azure-openai | foundry-models |
    foundry-project; op: chat.completions | responses | embeddings | models | info | deployments |
    responses.get; arg: the deployment (or project / response id; for the agent routes, a name or id, or
    (name, version) / (conversation id, item id))."""

    __slots__ = ("kind", "op", "arg", "version_required", "model_required")

    def __init__(self, kind: str, op: str, arg: str | tuple[str, str] | None, version_required: bool,
                 model_required: bool) -> None:
        self.kind = kind
        self.op = op
        self.arg = arg
        self.version_required = version_required
        self.model_required = model_required


def resolve(path: str) -> Route | None:
    """Map a path (with any gateway prefix) to a route, from its end."""
    segs = [s for s in path.split("/") if s]
    if not segs:
        return None
    arg = None
    if segs[-2:] == ["chat", "completions"]:
        op, base = "chat.completions", segs[:-2]
    elif segs[-1] in ("embeddings", "responses", "models", "info", "deployments"):
        op, base = segs[-1], segs[:-1]
    elif len(segs) >= 2 and segs[-2] == "responses":
        op, base, arg = "responses.get", segs[:-2], segs[-1]
    elif segs[-1] in ("files", "batches"):  # the Files and Batch APIs (emulator/batches.py)
        op, base = segs[-1], segs[:-1]
    elif len(segs) >= 2 and segs[-2] in ("files", "batches"):
        op, base, arg = segs[-2] + ".one", segs[:-2], segs[-1]
    elif len(segs) >= 3 and (segs[-3], segs[-1]) in (("files", "content"), ("batches", "cancel")):
        op, base, arg = f"{segs[-3]}.{segs[-1]}", segs[:-3], segs[-2]
    else:
        return None
    projectish = len(base) >= 3 and base[-3:-1] == ["api", "projects"]
    if base[-2:] == ["openai", "v1"]:
        in_project = len(base) >= 4 and base[-4:-3] == ["projects"]
        if op in ("info", "deployments"):
            return None
        return Route("foundry-project" if in_project else "openai-v1", op, arg, False, True)
    if base[-1:] == ["v1"]:
        if op in ("info", "deployments"):
            return None
        return Route("openai-compatible", op, arg, False, False)
    if len(base) >= 3 and base[-3:-1] == ["openai", "deployments"]:
        if op not in ("chat.completions", "embeddings"):
            return None
        return Route("azure-deployment", op, base[-1], True, False)
    if base[-1:] == ["openai"]:
        if op not in ("responses", "models", "responses.get") and op not in BATCH_OPS:
            return None
        in_project = len(base) >= 3 and base[-3:-2] == ["projects"]
        return Route("foundry-project" if in_project else "azure-openai", op, arg, True, op == "responses")
    if base[-1:] == ["models"] and op in ("chat.completions", "embeddings", "info"):
        return Route("foundry-models", op, None, True, False)
    if projectish and op == "deployments":
        return Route("foundry-project", op, base[-1], True, False)
    return None


def normalize_deployments(deps: Any) -> list[dict]:
    if deps is None:
        deps = DEFAULT_DEPLOYMENTS
    if isinstance(deps, str):
        deps = [d.strip() for d in deps.split(",") if d.strip()]
    if isinstance(deps, dict):
        deps = [dict(v, name=k) if isinstance(v, dict) else {"name": k, "model": v} for k, v in deps.items()]
    out = []
    for d in deps:
        if isinstance(d, str):
            d = {"name": d}
        name = str(d["name"])
        model = str(d.get("model") or d.get("modelName") or name)
        kind = d.get("kind") or ("embeddings" if "embed" in model.lower() else "chat")
        publisher = d.get("publisher") or d.get("modelPublisher") or (
            "OpenAI" if model.startswith(("gpt", "o1", "o3", "o4", "text-embedding")) else "Emulated")
        out.append({"name": name, "model": model, "kind": kind, "publisher": publisher,
                    "version": d.get("version") or _VERSIONS.get(model, "1")})
    return out
