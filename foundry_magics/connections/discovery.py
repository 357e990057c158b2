"""Connections found in the usual environment variables. Never reads a key's value.

| connection name    | endpoint variable                              | key / model variables |
|--------------------|------------------------------------------------|-----------------------|
| `foundry`          | `FOUNDRY_ENDPOINT` (this project's own)        | `FOUNDRY_API_KEY`, `FOUNDRY_MODEL` |
| `azure-openai`     | `AZURE_OPENAI_ENDPOINT`                        | `AZURE_OPENAI_API_KEY`, `OPENAI_API_VERSION`, `AZURE_OPENAI_DEPLOYMENT` |
| `azure-ai-project` | `AZURE_AI_PROJECT_ENDPOINT` / `PROJECT_ENDPOINT` | Entra ID; `AZURE_AI_MODEL_DEPLOYMENT_NAME` |
| `azure-inference`  | `AZURE_INFERENCE_ENDPOINT`                     | `AZURE_INFERENCE_CREDENTIAL`, `AZURE_INFERENCE_MODEL` |

Each connection's `source` is `env:VARIABLE`. Without its key variable an Azure endpoint
uses Entra ID (as the Azure SDKs do); a local OpenAI-compatible server uses no auth.
Only the *presence* of a key variable is checked here: the value is read when a request is sent.
"""  # noqa: E501 - the table keeps one row a line

from __future__ import annotations

import os
from typing import Any, Mapping

from foundry_magics.connections.connection import Connection
from foundry_magics.defaults import DEFAULT_KEY_ENV, ENV_SOURCES, ENV_VARIABLES
from foundry_magics.errors import ConfigurationError

__all__ = ["discover", "ENV_SOURCES", "ENV_VARIABLES"]

_LOCAL_KINDS = ("openai-compatible", "emulator")


def _has(env: Mapping[str, str], var: str) -> bool:
    return bool((env.get(var) or "").strip())


def _get(env: Mapping[str, str], *names: str) -> str | None:
    for var in names:
        value = (env.get(var) or "").strip()
        if value:
            return value
    return None


def _key_or_entra(kind: str, key_var: str, env: Mapping[str, str]) -> dict[str, Any]:
    """auth fields: the key variable when it is set, else Entra ID for Azure kinds, none for local ones."""
    if _has(env, key_var):
        return {"auth": "key", "api_key_env": key_var}
    if kind in _LOCAL_KINDS:
        return {"auth": "none"}  # never send an unrelated key (e.g. OPENAI_API_KEY) to a local server
    fallback = DEFAULT_KEY_ENV.get(kind)
    if fallback and _has(env, fallback):
        return {"auth": "key", "api_key_env": fallback}
    return {"auth": "entra"}


def _one(name: str, var: str, env: Mapping[str, str]) -> Connection:
    url = env[var].strip()
    src = f"env:{var}"
    inferred = Connection.from_url(url)
    if var == "FOUNDRY_ENDPOINT":
        fields = _key_or_entra(inferred.kind, "FOUNDRY_API_KEY", env)
        return Connection.from_url(url, name=name, source=src, model=_get(env, "FOUNDRY_MODEL"), **fields)
    if var == "AZURE_OPENAI_ENDPOINT":
        fields = _key_or_entra(inferred.kind, "AZURE_OPENAI_API_KEY", env)
        fields["model"] = _get(env, "AZURE_OPENAI_DEPLOYMENT", "AZURE_OPENAI_DEPLOYMENT_NAME")
        version = _get(env, "OPENAI_API_VERSION")
        if inferred.kind == "openai-v1" and version and "/openai/v1" not in url.lower():
            # The AzureOpenAI SDK convention: resource endpoint + api-version -> deployment routes.
            return Connection.from_url(url, kind="azure-deployment", api_version=version, name=name, source=src,
                                       **fields)
        if inferred.kind == "azure-deployment" and version and "api-version" not in url:
            fields["api_version"] = version
        return Connection.from_url(url, name=name, source=src, **fields)
    if var in ("AZURE_AI_PROJECT_ENDPOINT", "PROJECT_ENDPOINT"):
        model = _get(env, "AZURE_AI_MODEL_DEPLOYMENT_NAME", "MODEL_DEPLOYMENT_NAME")
        return Connection.from_url(url, name=name, source=src, auth="entra", model=model)
    # AZURE_INFERENCE_ENDPOINT
    fields = _key_or_entra(inferred.kind, "AZURE_INFERENCE_CREDENTIAL", env)
    return Connection.from_url(url, name=name, source=src, model=_get(env, "AZURE_INFERENCE_MODEL"), **fields)


def discover(env: Mapping[str, str] | None = None) -> tuple[dict[str, Connection], list[str]]:
    """Connections from environment variables, and one problem line per variable that is unusable."""
    env = os.environ if env is None else env
    found: dict[str, Connection] = {}
    problems: list[str] = []
    for name, var in ENV_SOURCES:
        if name in found or not _has(env, var):
            continue
        try:
            found[name] = _one(name, var, env)
        except ConfigurationError as exc:
            problems.append(f"${var} is not a usable endpoint: {exc.message}")
    return found, problems
