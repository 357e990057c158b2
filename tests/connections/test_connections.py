"""URL inference (the DESIGN table), validation, and keeping secrets out of reprs and dicts."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings, strategies as st

from foundry_magics import Connection, Secret
from foundry_magics.errors import ConfigurationError, FoundryError


@pytest.mark.parametrize(
    "url, kind, endpoint, model, api_version, api",
    [
        # Azure OpenAI v1
        ("https://r.openai.azure.com/openai/v1/", "openai-v1", "https://r.openai.azure.com/openai/v1", None, None, "chat"),
        ("https://r.openai.azure.com/openai/v1/chat/completions", "openai-v1", "https://r.openai.azure.com/openai/v1", None, None, "chat"),
        ("https://r.services.ai.azure.com/openai/v1/responses", "openai-v1", "https://r.services.ai.azure.com/openai/v1", None, None, "responses"),
        # the resource endpoint as the portal shows it
        ("https://r.openai.azure.com/", "openai-v1", "https://r.openai.azure.com/openai/v1", None, None, "chat"),
        # legacy deployments, pasted from Microsoft's docs
        ("https://R.cognitiveservices.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-05-01-preview",
         "azure-deployment", "https://R.cognitiveservices.azure.com", "gpt-4o", "2024-05-01-preview", "chat"),
        ("https://r.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21",
         "azure-deployment", "https://r.openai.azure.com", "emb", "2024-10-21", "chat"),
        # Foundry /models
        ("https://r.services.ai.azure.com/models", "foundry-models", "https://r.services.ai.azure.com/models", None, "2025-04-01", "chat"),
        ("https://r.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview",
         "foundry-models", "https://r.services.ai.azure.com/models", None, "2024-05-01-preview", "chat"),
        # Foundry projects
        ("https://R.services.ai.azure.com/api/projects/P", "foundry-project", "https://R.services.ai.azure.com/api/projects/P", None, None, "responses"),
        ("https://R.services.ai.azure.com/api/projects/P/openai/responses?api-version=2025-11-15-preview",
         "foundry-project", "https://R.services.ai.azure.com/api/projects/P", None, "2025-11-15-preview", "responses"),
        ("https://R.services.ai.azure.com/api/projects/P/openai/v1/responses",
         "foundry-project", "https://R.services.ai.azure.com/api/projects/P", None, None, "responses"),
        # local OpenAI-compatible servers
        ("http://localhost:5273/v1", "openai-compatible", "http://localhost:5273/v1", None, None, "chat"),
        ("http://127.0.0.1:8080", "openai-compatible", "http://127.0.0.1:8080/v1", None, None, "chat"),
        ("http://127.0.0.1:8000/v1/chat/completions", "openai-compatible", "http://127.0.0.1:8000/v1", None, None, "chat"),
        # API Management in front of a backend: the prefix is kept
        ("https://gw.azure-api.net/aoai/openai/deployments/gpt4/chat/completions?api-version=2024-10-21",
         "azure-deployment", "https://gw.azure-api.net/aoai", "gpt4", "2024-10-21", "chat"),
        # the same rules on a loopback emulator
        ("http://127.0.0.1:5000/openai/deployments/d1/chat/completions?api-version=2024-10-21",
         "azure-deployment", "http://127.0.0.1:5000", "d1", "2024-10-21", "chat"),
        ("http://127.0.0.1:5000/api/projects/p1", "foundry-project", "http://127.0.0.1:5000/api/projects/p1", None, None, "responses"),
    ],
)
def test_from_url_infers_kind_from_path(url, kind, endpoint, model, api_version, api):
    c = Connection.from_url(url)
    assert (c.kind, c.endpoint, c.model, c.api_version, c.api) == (kind, endpoint, model, api_version, api)


def test_defaults_by_kind():
    assert Connection.from_url("https://r.services.ai.azure.com/api/projects/P").auth == "entra"
    assert Connection.from_url("https://r.services.ai.azure.com/api/projects/P").scope == "https://ai.azure.com/.default"
    aoai = Connection.from_url("https://r.openai.azure.com/openai/v1")
    assert (aoai.auth, aoai.api_key_env, aoai.key_header) == ("key", "AZURE_OPENAI_API_KEY", "api-key")
    assert aoai.scope == "https://cognitiveservices.azure.com/.default"
    local = Connection.from_url("http://localhost:5273/v1")
    assert local.auth == "none"
    apim = Connection.from_url("https://gw.azure-api.net/x/openai/v1")
    assert apim.key_header == "Ocp-Apim-Subscription-Key"


def test_explicit_fields_win():
    c = Connection.from_url("https://r.openai.azure.com/openai/v1", model="gpt-4.1-mini", auth="entra",
                            api="responses", key_header="authorization")
    assert (c.model, c.auth, c.api) == ("gpt-4.1-mini", "entra", "responses")
    assert c.key_header == "Authorization"
    forced = Connection.from_url("http://127.0.0.1:9/openai/v1", kind="emulator")
    assert forced.kind == "emulator" and forced.endpoint == "http://127.0.0.1:9/openai/v1"
    dep = Connection.from_url("https://r.openai.azure.com", kind="azure-deployment", model="d")
    assert dep.endpoint == "https://r.openai.azure.com" and dep.api_version == "2024-10-21"


@pytest.mark.parametrize("bad", ["", "   ", "not a url", "ftp://host/x", "https://", "http://:80", "https://h:99999", None, 42])
def test_malformed_urls_say_what_a_valid_endpoint_looks_like(bad):
    with pytest.raises(ConfigurationError) as info:
        Connection.from_url(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FoundryError)
    assert "https://RESOURCE.openai.azure.com/openai/v1" in str(info.value)


def test_bad_fields_are_named():
    with pytest.raises(ConfigurationError, match="Unknown auth"):
        Connection.from_url("http://localhost:1/v1", auth="password")
    with pytest.raises(ConfigurationError, match="Unknown endpoint kind"):
        Connection.from_url("http://localhost:1/v1", kind="bogus")
    with pytest.raises(ConfigurationError, match="Unknown connection field"):
        Connection.from_dict({"endpoint": "http://localhost:1/v1", "colour": "red"}, name="x")
    with pytest.raises(ConfigurationError, match="Invalid key header"):
        Connection.from_url("http://localhost:1/v1", key_header="bad header:")


def test_round_trip_through_dict_keeps_everything_but_the_secret():
    c = Connection.from_url("https://gw.azure-api.net/x/openai/deployments/d/chat/completions?api-version=2024-10-21",
                            name="gw", api_key_env="GW_KEY", api_key="sk-secret-value")
    d = c.to_dict()
    assert "api_key" not in d and "sk-secret-value" not in repr(d)
    back = Connection.from_dict(d, name="gw")
    assert back == c  # equality ignores the in-memory key
    assert back.api_key is None and c.api_key is not None


def test_secret_never_shows():
    c = Connection.from_url("http://localhost:1/v1", api_key="sk-secret-value")
    assert "sk-secret-value" not in repr(c) and "sk-secret-value" not in str(c)
    assert "sk-secret-value" not in repr(c.api_key) and "sk-secret-value" not in str(c.api_key)
    assert c.api_key.get() == "sk-secret-value"
    assert c.auth == "key" and c.key_source() == "key in memory"
    with pytest.raises(TypeError):
        pickle.dumps(c)
    with pytest.raises(ConfigurationError):
        Secret("  ")


_seg = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(prefix=st.lists(_seg.filter(lambda s: s not in ("openai", "models", "v1", "api")), max_size=3),
       dep=_seg, version=st.from_regex(r"20[0-9]{2}-[01][0-9]-[0-3][0-9](-preview)?", fullmatch=True),
       host=st.sampled_from(["r.openai.azure.com", "127.0.0.1:5000", "gw.azure-api.net", "localhost"]))
def test_deployment_urls_round_trip_for_any_prefix(prefix, dep, version, host):
    base = "/".join(prefix)
    url = f"https://{host}/{base + '/' if base else ''}openai/deployments/{dep}/chat/completions?api-version={version}"
    c = Connection.from_url(url)
    assert c.kind == "azure-deployment" and c.model == dep and c.api_version == version
    assert c.endpoint == f"https://{host}" + (f"/{base}" if base else "")
    # what the registry saves infers back to the same connection
    assert Connection.from_dict(c.to_dict()) == c


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_from_url_never_raises_anything_but_configuration_error(text):
    try:
        c = Connection.from_url(text)
    except ConfigurationError:
        return
    assert c.kind in ("openai-v1", "azure-deployment", "foundry-models", "foundry-project", "openai-compatible")
