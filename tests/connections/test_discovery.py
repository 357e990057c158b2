"""Connections discovered from the usual environment variables, shown with their source."""

from __future__ import annotations

import pytest

import foundry_magics as fm
from foundry_magics.connections import Connection, keys, session
from foundry_magics.connections.discovery import ENV_SOURCES, ENV_VARIABLES, discover
from foundry_magics.connections.registry import save_connection


@pytest.fixture(autouse=True)
def _no_remembered_keys():
    keys.clear()
    yield
    keys.clear()


def test_nothing_set_finds_nothing():
    assert discover({}) == ({}, [])


def test_azure_openai_with_key_and_deployment():
    found, problems = discover({
        "AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/",
        "AZURE_OPENAI_API_KEY": "k",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    })
    c = found["azure-openai"]
    assert problems == []
    assert (c.kind, c.endpoint, c.auth, c.api_key_env, c.model, c.source) == (
        "openai-v1", "https://res.openai.azure.com/openai/v1", "key", "AZURE_OPENAI_API_KEY", "gpt-4o",
        "env:AZURE_OPENAI_ENDPOINT")
    assert c.api_key is None  # the value is read when a request is sent, not here


def test_azure_openai_with_api_version_uses_deployment_routes():
    found, _ = discover({
        "AZURE_OPENAI_ENDPOINT": "https://res.cognitiveservices.azure.com",
        "OPENAI_API_VERSION": "2024-10-21",
        "AZURE_OPENAI_DEPLOYMENT_NAME": "gpt-4o-mini",
    })
    c = found["azure-openai"]
    assert (c.kind, c.api_version, c.model, c.auth) == ("azure-deployment", "2024-10-21", "gpt-4o-mini", "entra")


def test_azure_openai_without_key_uses_entra():
    found, _ = discover({"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/openai/v1"})
    assert found["azure-openai"].auth == "entra"
    assert found["azure-openai"].scope == "https://cognitiveservices.azure.com/.default"


@pytest.mark.parametrize("var", ["AZURE_AI_PROJECT_ENDPOINT", "PROJECT_ENDPOINT"])
def test_project_endpoint_is_entra_with_the_ai_scope(var):
    found, _ = discover({var: "https://res.services.ai.azure.com/api/projects/proj",
                         "AZURE_AI_MODEL_DEPLOYMENT_NAME": "gpt-4.1"})
    c = found["azure-ai-project"]
    assert (c.kind, c.auth, c.scope, c.api, c.model, c.source) == (
        "foundry-project", "entra", "https://ai.azure.com/.default", "responses", "gpt-4.1", f"env:{var}")


def test_the_first_project_variable_wins():
    found, _ = discover({"AZURE_AI_PROJECT_ENDPOINT": "https://a.services.ai.azure.com/api/projects/p1",
                         "PROJECT_ENDPOINT": "https://b.services.ai.azure.com/api/projects/p2"})
    assert found["azure-ai-project"].source == "env:AZURE_AI_PROJECT_ENDPOINT"


def test_inference_endpoint_with_and_without_credential():
    found, _ = discover({"AZURE_INFERENCE_ENDPOINT": "https://res.services.ai.azure.com/models",
                         "AZURE_INFERENCE_CREDENTIAL": "k", "AZURE_INFERENCE_MODEL": "Phi-4"})
    c = found["azure-inference"]
    assert (c.kind, c.auth, c.api_key_env, c.model, c.api_version) == (
        "foundry-models", "key", "AZURE_INFERENCE_CREDENTIAL", "Phi-4", "2025-04-01")
    found, _ = discover({"AZURE_INFERENCE_ENDPOINT": "https://res.services.ai.azure.com/models"})
    assert found["azure-inference"].auth == "entra"


def test_foundry_endpoint_own_variables():
    found, _ = discover({"FOUNDRY_ENDPOINT": "https://res.services.ai.azure.com/openai/v1",
                         "FOUNDRY_API_KEY": "k", "FOUNDRY_MODEL": "gpt-4.1-mini"})
    c = found["foundry"]
    assert (c.kind, c.auth, c.api_key_env, c.model, c.source) == (
        "openai-v1", "key", "FOUNDRY_API_KEY", "gpt-4.1-mini", "env:FOUNDRY_ENDPOINT")


def test_local_server_never_gets_an_unrelated_key():
    found, _ = discover({"FOUNDRY_ENDPOINT": "http://localhost:5273/v1", "OPENAI_API_KEY": "sk-openai"})
    c = found["foundry"]
    assert (c.kind, c.auth) == ("openai-compatible", "none")


def test_apim_gateway_gets_the_subscription_header():
    found, _ = discover({"AZURE_OPENAI_ENDPOINT": "https://gw.azure-api.net/openai/v1", "AZURE_OPENAI_API_KEY": "k"})
    assert found["azure-openai"].key_header == "Ocp-Apim-Subscription-Key"


def test_a_bad_variable_is_a_problem_line_not_a_crash():
    found, problems = discover({"AZURE_OPENAI_ENDPOINT": "res.openai.azure.com",
                                "FOUNDRY_ENDPOINT": "http://localhost:1234/v1"})
    assert list(found) == ["foundry"]
    assert len(problems) == 1 and problems[0].startswith("$AZURE_OPENAI_ENDPOINT is not a usable endpoint")


def test_every_source_variable_is_documented():
    assert {var for _, var in ENV_SOURCES} <= set(ENV_VARIABLES)
    import foundry_magics.connections.discovery as d

    for var in ENV_VARIABLES:
        assert var in d.__doc__ or var in ("AZURE_OPENAI_DEPLOYMENT_NAME", "MODEL_DEPLOYMENT_NAME")


# ---------------------------------------------------------------------- through the session


def test_discovered_connections_are_listed_with_source_and_never_the_key(monkeypatch, sentinel_key):
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", sentinel_key)
    monkeypatch.setenv("AZURE_INFERENCE_ENDPOINT", "https://res.services.ai.azure.com/models")
    rows = {r["name"]: r for r in session.describe_connections()}
    assert rows["azure-openai"]["source"] == "env:AZURE_OPENAI_ENDPOINT"
    assert rows["azure-openai"]["key"] == "$AZURE_OPENAI_API_KEY set"
    assert rows["azure-openai"]["current"] is True  # nothing saved: the first discovered one is used
    assert rows["azure-inference"]["key"] == "entra" and rows["azure-inference"]["current"] is False
    assert sentinel_key not in repr(rows)
    assert sentinel_key not in repr(session.known_connections())


def test_missing_key_variable_is_shown_as_missing(monkeypatch):
    monkeypatch.setenv("FOUNDRY_ENDPOINT", "https://res.services.ai.azure.com/openai/v1")
    save_connection("saved", Connection.from_url("https://x.openai.azure.com/openai/v1", api_key_env="NOT_SET_VAR"))
    rows = {r["name"]: r for r in session.describe_connections()}
    assert rows["saved"]["key"] == "$NOT_SET_VAR missing"
    assert rows["saved"]["current"] is True  # the registry default comes before the environment
    assert rows["foundry"]["source"] == "env:FOUNDRY_ENDPOINT"


def test_registry_names_shadow_discovered_ones(monkeypatch):
    monkeypatch.setenv("FOUNDRY_ENDPOINT", "http://localhost:1/v1")
    save_connection("foundry", Connection.from_url("http://localhost:2/v1"))
    assert session.known_connections()["foundry"].endpoint == "http://localhost:2/v1"


def test_env_connection_works_end_to_end(monkeypatch, sentinel_key):
    from foundry_magics.emulator import Emulator

    with Emulator(api_key=sentinel_key, lifetime=60) as emu:
        url = emu.url
        monkeypatch.setenv("FOUNDRY_ENDPOINT", url + "/openai/v1")
        monkeypatch.setenv("FOUNDRY_API_KEY", sentinel_key)
        monkeypatch.setenv("FOUNDRY_MODEL", "gpt-4.1-mini")
        conn = fm.current_connection()
        assert (conn.name, conn.source) == ("foundry", "env:FOUNDRY_ENDPOINT")
        with fm.FoundryClient() as client:
            reply = client.chat("hello there")
        assert reply.emulated and reply.model.startswith("gpt-4.1-mini")
        assert fm.connect("foundry").api_key_env == "FOUNDRY_API_KEY"


def test_unusable_variables_are_logged_once_per_listing(monkeypatch, caplog):
    monkeypatch.setenv("PROJECT_ENDPOINT", "not a url")
    with caplog.at_level("WARNING", logger="foundry_magics"):
        session.known_connections()
    assert "$PROJECT_ENDPOINT is not a usable endpoint" in caplog.text
