"""The ConnectionPicker, driven from code against the emulator (no browser).

A pasted key must work and then appear nowhere: not in any child widget's state, not in any
message the kernel sends to the browser, not in the registry, the history DB or any file
under FOUNDRY_MAGICS_HOME.
"""

from __future__ import annotations

import subprocess
import sys

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10: tomli, a dependency there
    import tomli as tomllib

import comm
import pytest
from comm import DummyComm

import foundry_magics as fm
from foundry_magics.connections import Connection, keys, session
from foundry_magics.connections.registry import registry_path, save_connection

SENT: list = []  # every message the widgets sent towards a browser


class RecordingComm(DummyComm):
    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        SENT.append((msg_type, data, buffers))


@pytest.fixture(autouse=True)
def _recording(monkeypatch):
    SENT.clear()
    keys.clear()
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    yield
    keys.clear()


@pytest.fixture(scope="module")
def keyed_emulator():
    """An emulator that demands the sentinel key (and accepts the Entra token 'tok-123')."""
    from foundry_magics.emulator import Emulator

    from conftest import SENTINEL_KEY

    emu = Emulator(api_key=SENTINEL_KEY, bearer_tokens=("tok-123",), lifetime=300)
    url = emu.start()
    yield url
    emu.stop()


def all_widgets(root):
    seen, stack = [], [root]
    while stack:
        w = stack.pop()
        seen.append(w)
        for name in ("children", "layout", "style"):
            child = getattr(w, name, None)
            if isinstance(child, (list, tuple)):
                stack.extend(child)
            elif child is not None and hasattr(child, "get_state"):
                stack.append(child)
    return seen


def assert_nowhere(picker, secret, home):
    for w in all_widgets(picker):
        assert secret not in repr(w.get_state()), type(w).__name__
        assert secret not in repr(w)
    assert secret not in repr(SENT)
    assert SENT, "the recording comm saw no messages: the check would be vacuous"
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in picker.status.value
    assert secret not in repr(picker.out.outputs)


def test_parts_are_named_as_the_design_says():
    p = fm.picker()
    import ipywidgets as w

    assert isinstance(p, fm.ConnectionPicker) and isinstance(p, w.VBox)
    for part in ("connections", "name", "endpoint", "auth", "key_env", "key", "key_header", "model",
                 "test_button", "save_button", "use_button", "status"):
        assert isinstance(getattr(p, part), w.DOMWidget), part
    assert isinstance(p.key, w.Password)
    assert {v for _, v in p.auth.options} == {"entra", "key", "none"}
    for b in (p.test_button, p.save_button, p.use_button):
        assert isinstance(b, w.Button)


def test_pasted_key_tests_saves_uses_and_then_appears_nowhere(keyed_emulator, sentinel_key, fm_home):
    p = fm.picker()
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.name.value = "emu-pasted"
    p.key.value = sentinel_key                      # as if pasted and the field left
    assert p.key.value == ""                        # cleared as soon as it was read
    assert "memory only" in p.status.value
    assert p.auth.value == "key"

    p.test_button.click()
    assert p.last_result.ok, p.status.value
    assert "gpt-4o-mini" in p.model.options and p.model.value == "gpt-4o-mini"
    assert "✓" in p.status.value

    p.save_button.click()
    assert "Saved" in p.status.value and "not written" in p.status.value
    data = tomllib.loads(registry_path().read_text())
    assert data["connections"]["emu-pasted"]["key_prompt"] is True
    assert data["connections"]["emu-pasted"]["model"] == "gpt-4o-mini"
    assert "emu-pasted" in {v for _, v in p.connections.options}

    p.use_button.click()
    current = fm.current_connection()
    assert current.name == "emu-pasted" and current.api_key is not None
    assert "Now using" in p.status.value

    # the pasted key works for real calls through the current connection, logged to history
    from foundry_magics.store.history import History

    history = History()
    with fm.FoundryClient(on_record=history.record) as client:
        reply = client.chat("Is the pasted key working?")
    assert reply.emulated and reply.text.startswith("[emulated]")
    assert history.count() >= 1
    history.close()
    # and connect("name") in the same kernel finds it
    assert fm.connect("emu-pasted").api_key.get() == sentinel_key

    assert (fm_home / "history.sqlite").exists() and registry_path().exists()
    assert_nowhere(p, sentinel_key, fm_home)


def test_use_then_save_is_one_current_row(keyed_emulator, sentinel_key):
    p = fm.picker()
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.name.value = "used-first"
    p.key.value = sentinel_key
    p.use_button.click()
    p.save_button.click()
    rows = session.describe_connections()
    assert [(r["name"], r["current"], r["key"]) for r in rows] == [("used-first", True, "in memory")]
    assert sentinel_key not in repr(rows)


def test_a_key_typed_in_the_browser_is_never_echoed_or_sent_back(sentinel_key, fm_home):
    p = fm.picker()
    SENT.clear()
    # exactly what the frontend sends when the Password field loses focus
    p.key._handle_msg({"content": {"data": {"method": "update", "state": {"value": sentinel_key},
                                            "buffer_paths": []}}, "buffers": []})
    assert p.key.value == ""
    assert p._secret is not None and p._secret.get() == sentinel_key
    kinds = [(t, d.get("method")) for t, d, _ in SENT if d]
    assert ("comm_msg", "update") in kinds  # the field was cleared in the browser too...
    assert not any(d.get("method") == "echo_update" and "value" in d.get("state", {}) for _, d, _ in SENT if d)
    assert_nowhere(p, sentinel_key, fm_home)  # ...and nothing carried the key


def test_setting_the_key_from_code_never_sends_it_to_the_browser(sentinel_key, fm_home):
    p = fm.picker()
    SENT.clear()
    with p.key.hold_sync():
        p.key.value = sentinel_key
    assert p.key.value == ""
    assert_nowhere(p, sentinel_key, fm_home)


def test_wrong_key_shows_the_error_and_fix_not_the_key(keyed_emulator, fm_home):
    p = fm.picker()
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.key.value = "sk-WRONG-KEY-123456"
    p.test_button.click()
    assert not p.last_result.ok
    assert "401" in p.status.value and "✗" in p.status.value
    assert "Check the key" in p.status.value
    assert "sk-WRONG-KEY-123456" not in p.status.value
    assert_nowhere(p, "sk-WRONG-KEY-123456", fm_home)


def test_key_from_a_variable(keyed_emulator, sentinel_key, fm_home):
    p = fm.picker()
    p.endpoint.value = keyed_emulator + "/openai/deployments/gpt-4.1-mini/chat/completions?api-version=2024-10-21"
    assert p.model.value == "gpt-4.1-mini"
    assert "azure-deployment" in p.info.value and "2024-10-21" in p.info.value
    p.auth.value = "key"
    p.key_env.value = "FOUNDRY_TEST_KEY"
    p.test_button.click()
    assert p.last_result.ok and p.last_result.checked == "models+chat", p.status.value
    p.name.value = "deploy"
    p.save_button.click()
    saved = tomllib.loads(registry_path().read_text())["connections"]["deploy"]
    assert saved["api_key_env"] == "FOUNDRY_TEST_KEY" and "key_prompt" not in saved
    assert saved["kind"] == "azure-deployment" and saved["api_version"] == "2024-10-21"
    assert_nowhere(p, sentinel_key, fm_home)


def test_missing_key_variable_is_explained(keyed_emulator):
    p = fm.picker()
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.auth.value = "key"
    p.key_env.value = "SURELY_NOT_SET_VAR"
    p.test_button.click()
    assert "SURELY_NOT_SET_VAR is not set" in p.status.value
    assert "paste the key" in p.status.value


def test_selecting_a_saved_connection_fills_the_form_and_use_switches(emulator_url):
    save_connection("local", Connection.from_url(emulator_url + "/v1", model="gpt-4.1-mini"))
    save_connection("other", Connection.from_url("http://127.0.0.1:9/v1"))
    p = fm.picker()
    labels = dict((v, label) for label, v in p.connections.options)
    assert "local" in labels and "other" in labels and "emulator" in labels
    p.connections.value = "local"
    assert (p.name.value, p.endpoint.value, p.auth.value, p.model.value) == (
        "local", emulator_url + "/v1", "none", "gpt-4.1-mini")
    p.use_button.click()
    assert fm.current_connection().name == "local"
    rows = {r["name"]: r for r in session.describe_connections()}
    assert rows["local"]["current"] is True and rows["other"]["current"] is False
    p.connections.value = "other"
    p.test_button.click()
    assert "Could not reach" in p.status.value
    p.connections.value = ""  # "New connection…"
    assert p.endpoint.value == "" and p.name.value == ""


def test_the_builtin_emulator_can_be_picked():
    p = fm.picker()
    p.connections.value = "emulator"
    p.use_button.click()
    assert fm.current_connection().is_emulator
    p.test_button.click()
    assert p.last_result.ok and p.last_result.emulated


def test_saved_with_a_pasted_key_asks_for_it_again_after_a_restart(keyed_emulator, sentinel_key):
    save_connection("pasted", Connection.from_url(keyed_emulator + "/openai/v1", api_key=sentinel_key))
    keys.clear()  # what a kernel restart does
    p = fm.picker()
    p.connections.value = "pasted"
    assert "paste it again" in p.status.value
    p.test_button.click()
    assert not p.last_result.ok
    p.key.value = sentinel_key
    p.test_button.click()
    assert p.last_result.ok


def test_endpoint_inference_sets_auth_and_header():
    p = fm.picker()
    p.endpoint.value = "http://localhost:5273/v1"
    assert p.auth.value == "none" and p.key.layout.display == "none"
    p.endpoint.value = "https://res.services.ai.azure.com/api/projects/proj"
    assert p.auth.value == "entra"
    p.endpoint.value = "https://gw.azure-api.net/openai/v1"
    assert p.auth.value == "key" and p.key_header.value == "Ocp-Apim-Subscription-Key"
    assert p.key.layout.display is None
    # a choice the user made is kept
    p.auth.value = "entra"
    p.endpoint.value = "https://res.openai.azure.com/openai/v1"
    assert p.auth.value == "entra"
    p.endpoint.value = "not a url"
    assert "not a URL" in p.info.value


def test_user_errors_are_one_readable_block():
    p = fm.picker()
    p.save_button.click()
    assert "Give the connection a name" in p.status.value
    p.name.value = "x"
    p.save_button.click()
    assert "endpoint URL is empty" in p.status.value
    p.endpoint.value = "http://localhost:1/v1"
    p.name.value = "bad name"
    p.save_button.click()
    assert "not a valid name" in p.status.value and "Traceback" not in p.status.value
    assert not registry_path().exists()


def test_corrupt_registry_is_reported_not_overwritten():
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text("[connections.a\n")
    p = fm.picker()
    assert "line 1" in p.status.value
    p.endpoint.value = "http://localhost:1/v1"
    p.name.value = "b"
    p.save_button.click()
    assert "line 1" in p.status.value
    assert path.read_text() == "[connections.a\n"


class _Static:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken("tok-123", 4102444800)


def test_entra_reports_which_credential_answered(keyed_emulator):
    from azure.identity import ChainedTokenCredential, EnvironmentCredential

    p = fm.picker(credential=ChainedTokenCredential(EnvironmentCredential(), _Static()))
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.auth.value = "entra"
    p.test_button.click()
    assert p.last_result.ok, p.status.value
    assert p.last_result.credential_name == "_Static (via ChainedTokenCredential)"
    assert "token from _Static" in p.status.value


def test_entra_says_why_no_credential_answered_in_one_line(keyed_emulator, monkeypatch):
    from azure.identity import ChainedTokenCredential, EnvironmentCredential

    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(var, raising=False)
    p = fm.picker(credential=ChainedTokenCredential(EnvironmentCredential()))
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.auth.value = "entra"
    p.test_button.click()
    error = p.last_result.error
    assert "\n" not in error
    assert error.startswith("No credential in ChainedTokenCredential gave a token: EnvironmentCredential: ")
    assert "az login" in p.status.value  # the fix


def test_default_credential_chain_fails_fast_offline(keyed_emulator, monkeypatch):
    """The real DefaultAzureCredential, with its slow network members excluded: one line."""
    from azure.identity import DefaultAzureCredential

    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(var, raising=False)
    cred = DefaultAzureCredential(exclude_managed_identity_credential=True, exclude_cli_credential=True,
                                  exclude_powershell_credential=True, exclude_developer_cli_credential=True,
                                  exclude_visual_studio_code_credential=True,
                                  exclude_shared_token_cache_credential=True)
    p = fm.picker(credential=cred)
    p.endpoint.value = keyed_emulator + "/openai/v1"
    p.auth.value = "entra"
    p.test_button.click()
    assert "No credential in DefaultAzureCredential gave a token" in p.last_result.error
    assert "EnvironmentCredential" in p.last_result.error and "\n" not in p.last_result.error


def test_import_stays_light():
    code = ("import sys, foundry_magics as fm; "
            "assert 'ipywidgets' not in sys.modules; "
            "p = fm.picker; assert 'ipywidgets' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_hiding_the_key_rows_leaves_the_rest_of_the_form_visible():
    # Regression: one Layout shared by every row hid the whole form when auth became "none".
    from foundry_magics.notebook.widgets import ConnectionPicker

    p = ConnectionPicker()
    p.auth.value = "none"
    assert p.key.layout.display == "none"
    for part in (p.connections, p.name, p.endpoint, p.model):
        assert part.layout.display != "none"
    assert len({id(part.layout) for part in (p.name, p.endpoint, p.key_env, p.key, p.key_header, p.model)}) == 6
