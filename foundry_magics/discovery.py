"""Connections found in the usual environment variables. Never reads a key's value."""

from __future__ import annotations

import os
from typing import Mapping

from .connections import Connection
from .errors import ConfigurationError

__all__ = ["discover", "ENV_SOURCES"]

# (connection name, endpoint variable) in priority order: the first one set is the default.
ENV_SOURCES = (
    ("foundry", "FOUNDRY_ENDPOINT"),
    ("azure-openai", "AZURE_OPENAI_ENDPOINT"),
    ("azure-ai-project", "AZURE_AI_PROJECT_ENDPOINT"),
    ("azure-ai-project", "PROJECT_ENDPOINT"),
    ("azure-inference", "AZURE_INFERENCE_ENDPOINT"),
)


def _one(name: str, var: str, env: Mapping[str, str]) -> Connection:
    url = env[var].strip()
    src = f"env:{var}"
    if var == "FOUNDRY_ENDPOINT":
        fields = {"model": env.get("FOUNDRY_MODEL") or None}
        if env.get("FOUNDRY_API_KEY"):
            fields.update(auth="key", api_key_env="FOUNDRY_API_KEY")
        return Connection.from_url(url, name=name, source=src, **fields)
    if var == "AZURE_OPENAI_ENDPOINT":
        deployment = env.get("AZURE_OPENAI_DEPLOYMENT") or env.get("AZURE_OPENAI_DEPLOYMENT_NAME") or None
        version = env.get("OPENAI_API_VERSION") or None
        fields = {"model": deployment}
        fields.update(auth="key", api_key_env="AZURE_OPENAI_API_KEY") if env.get("AZURE_OPENAI_API_KEY") else fields.update(auth="entra")
        probe = Connection.from_url(url)
        if probe.kind == "openai-v1" and version and "/openai/v1" not in url:
            # The AzureOpenAI SDK convention: resource endpoint + api-version -> deployment routes.
            return Connection.from_url(url, kind="azure-deployment", api_version=version, name=name, source=src, **fields)
        return Connection.from_url(url, name=name, source=src, **fields)
    if var in ("AZURE_AI_PROJECT_ENDPOINT", "PROJECT_ENDPOINT"):
        model = env.get("AZURE_AI_MODEL_DEPLOYMENT_NAME") or env.get("MODEL_DEPLOYMENT_NAME") or None
        return Connection.from_url(url, name=name, source=src, auth="entra", model=model)
    # AZURE_INFERENCE_ENDPOINT
    fields = {"model": env.get("AZURE_INFERENCE_MODEL") or None}
    if env.get("AZURE_INFERENCE_CREDENTIAL"):
        fields.update(auth="key", api_key_env="AZURE_INFERENCE_CREDENTIAL")
    else:
        fields.update(auth="entra")
    return Connection.from_url(url, name=name, source=src, **fields)


def discover(env: Mapping[str, str] | None = None) -> tuple[dict[str, Connection], list[str]]:
    """Connections from environment variables, and one problem line per variable that is unusable."""
    env = os.environ if env is None else env
    found: dict[str, Connection] = {}
    problems: list[str] = []
    for name, var in ENV_SOURCES:
        if name in found or not env.get(var, "").strip():
            continue
        try:
            found[name] = _one(name, var, env)
        except ConfigurationError as exc:
            problems.append(f"${var} is not a usable endpoint: {exc.message}")
    return found, problems
