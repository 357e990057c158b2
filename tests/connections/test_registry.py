"""The registry file: round trips, never a secret, corrupt files, atomic and concurrent writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10: tomli, a dependency there
    import tomli as tomllib

import pytest

from foundry_magics.connections import Connection, keys, session
from foundry_magics.connections.registry import (
    Registry,
    delete_connection,
    registry_path,
    rename_connection,
    save_connection,
    set_default,
)
from foundry_magics.errors import ConfigurationError

URLS = [
    "https://res.openai.azure.com/openai/v1",
    "https://res.cognitiveservices.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-05-01-preview",
    "https://res.services.ai.azure.com/models/chat/completions?api-version=2025-04-01",
    "https://res.services.ai.azure.com/api/projects/proj",
    "https://res.services.ai.azure.com/api/projects/proj/openai/responses?api-version=2025-11-15-preview",
    "https://gw.azure-api.net/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
    "http://localhost:5273/v1",
    "http://127.0.0.1:8080",
]


@pytest.fixture(autouse=True)
def _no_remembered_keys():
    keys.clear()
    yield
    keys.clear()


@pytest.mark.parametrize("url", URLS)
def test_round_trip_every_kind(url):
    conn = Connection.from_url(url, model="m1") if "deployments" not in url else Connection.from_url(url)
    save_connection("c1", conn)
    loaded = Registry.load().connections["c1"]
    assert loaded == conn.replace(name="c1")
    assert loaded.source == "registry"
    # and again: what was loaded writes back byte for byte
    before = registry_path().read_bytes()
    reg = Registry.load()
    reg.put("c1", loaded)
    reg.save()
    assert registry_path().read_bytes() == before


def test_layout_default_and_tables():
    save_connection("a", Connection.from_url("https://res.openai.azure.com/openai/v1", model="gpt-4.1-mini"))
    save_connection("b", Connection.from_url("http://localhost:5273/v1", model="phi-4"), make_default=True)
    data = tomllib.loads(registry_path().read_text())
    assert data["default"] == "b"
    assert set(data["connections"]) == {"a", "b"}
    assert data["connections"]["a"]["endpoint"] == "https://res.openai.azure.com/openai/v1"
    assert data["connections"]["a"]["api_key_env"] == "AZURE_OPENAI_API_KEY"
    assert data["connections"]["b"]["auth"] == "none"
    assert session.current_connection().name == "b"  # the registry default is what is used


def test_first_saved_becomes_default_but_later_ones_do_not():
    save_connection("a", Connection.from_url("http://localhost:1/v1"))
    save_connection("b", Connection.from_url("http://localhost:2/v1"))
    assert Registry.load().default == "a"


def test_pasted_key_is_never_written(sentinel_key):
    conn = Connection.from_url("https://res.openai.azure.com/openai/v1", api_key=sentinel_key, model="gpt-4o")
    saved = save_connection("pasted", conn)
    text = registry_path().read_text()
    assert sentinel_key not in text
    data = tomllib.loads(text)["connections"]["pasted"]
    assert data["key_prompt"] is True
    assert data["auth"] == "key"
    assert data["api_key_env"] == "AZURE_OPENAI_API_KEY"  # where it will be read from next time
    assert "api_key" not in data
    assert saved.api_key is not None  # ...but this process keeps it in memory
    reg = Registry.load()
    assert reg.key_prompt == {"pasted"}
    assert reg.connections["pasted"].api_key is None
    # connect("pasted") in the same process finds the remembered key
    assert session.resolve("pasted").api_key.get() == sentinel_key
    rows = {r["name"]: r for r in session.describe_connections()}
    assert rows["pasted"]["key"] == "in memory"
    # a fresh process (simulated): the key is gone and the table says what to do
    keys.clear()
    rows = {r["name"]: r for r in session.describe_connections()}
    assert rows["pasted"]["key"] == "paste it again (picker) or set $AZURE_OPENAI_API_KEY"
    assert not any(sentinel_key in str(r) for r in rows.values())
    # saving it again with a key variable (no key in memory) drops key_prompt
    save_connection("pasted", reg.connections["pasted"].replace(api_key_env="FOUNDRY_TEST_KEY"))
    assert "key_prompt" not in tomllib.loads(registry_path().read_text())["connections"]["pasted"]
    assert {r["name"]: r for r in session.describe_connections()}["pasted"]["key"] == "$FOUNDRY_TEST_KEY set"


def test_connect_save_goes_through_the_registry(sentinel_key, emulator_url):
    conn = session.connect(emulator_url + "/openai/v1", save="emu", auth="key", api_key_env="FOUNDRY_TEST_KEY")
    assert conn.name == "emu"
    assert session.current_connection() == conn
    assert Registry.load().connections["emu"].api_key_env == "FOUNDRY_TEST_KEY"
    assert sentinel_key not in registry_path().read_text()


# ---------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("garbage, line", [
    ('default = "a"\n[connections.a]\nendpoint = "http://x/v1"\nthis is not toml\n', 4),
    ('default = "a"\n\n[connections.a\nendpoint = 1\n', 3),
    ('[connections.a]\nendpoint = "http://x/v1"\n[connections.a]\nendpoint = "http://y/v1"\n', 3),
])
def test_corrupt_file_names_the_line_and_is_never_overwritten(garbage, line):
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text(garbage)
    before = path.read_bytes()
    with pytest.raises(ConfigurationError) as err:
        Registry.load()
    assert f"line {line}" in err.value.message
    assert str(path) in err.value.message
    assert "left as it is" in err.value.hint
    for attempt in (
        lambda: save_connection("b", Connection.from_url("http://localhost:1/v1")),
        lambda: session.connect("http://localhost:1/v1", save="b"),
        lambda: delete_connection("a"),
        lambda: set_default(None),
    ):
        with pytest.raises(ConfigurationError):
            attempt()
        assert path.read_bytes() == before
    # and a registry object loaded before the corruption cannot overwrite it either
    assert sorted(os.listdir(path.parent)) in (["connections.toml"], ["connections.toml", "connections.toml.lock"])


def test_stale_object_does_not_overwrite_a_file_corrupted_meanwhile():
    save_connection("a", Connection.from_url("http://localhost:1/v1"))
    reg = Registry.load()
    registry_path().write_text("oops = [\n")
    reg.put("b", Connection.from_url("http://localhost:2/v1"))
    with pytest.raises(ConfigurationError, match="line 1"):
        reg.save()
    assert registry_path().read_text() == "oops = [\n"


def test_bad_table_names_its_line_and_field():
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text('default = "ok"\n\n[connections.ok]\nendpoint = "http://x/v1"\n\n'
                    '[connections.bad]\nendpoint = "http://y/v1"\nmodle = "gpt-4o"\n')
    with pytest.raises(ConfigurationError) as err:
        Registry.load()
    assert "line 6" in err.value.message and "[connections.bad]" in err.value.message
    assert "modle" in err.value.message
    assert "model" in err.value.hint


def test_bad_values_are_explained():
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text('[connections.a]\nendpoint = "ftp://x"\n')
    with pytest.raises(ConfigurationError, match="scheme"):
        Registry.load()
    path.write_text('[connections.a]\nendpoint = "http://x/v1"\nauth = "password"\n')
    with pytest.raises(ConfigurationError, match="auth"):
        Registry.load()
    path.write_text('default = 3\n')
    with pytest.raises(ConfigurationError, match="default"):
        Registry.load()
    path.write_text('colour = "blue"\n')
    with pytest.raises(ConfigurationError, match="colour"):
        Registry.load()
    path.write_bytes(b'[connections.a]\nendpoint = "http://x/\xff"\n')
    with pytest.raises(ConfigurationError, match="line 2"):
        Registry.load()


def test_other_spellings_are_read():
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text('[connections.a]\nurl = "https://res.openai.azure.com/openai/v1"\nkey_env = "MY_KEY"\n'
                    'deployment = "gpt-4o"\nheader = "Ocp-Apim-Subscription-Key"\n')
    conn = Registry.load().connections["a"]
    assert (conn.endpoint, conn.api_key_env, conn.model, conn.key_header) == (
        "https://res.openai.azure.com/openai/v1", "MY_KEY", "gpt-4o", "Ocp-Apim-Subscription-Key")
    # written back in the canonical spelling
    save_connection("b", Connection.from_url("http://localhost:1/v1"))
    assert 'api_key_env = "MY_KEY"' in path.read_text() and "key_env =" not in path.read_text().replace("api_key_env", "")


def test_quoted_table_names_are_read():
    path = registry_path()
    path.parent.mkdir(parents=True)
    path.write_text('default = "my.conn"\n[connections."my.conn"]\nendpoint = "http://localhost:1/v1"\n')
    reg = Registry.load()
    assert reg.default == "my.conn" and "my.conn" in reg.connections


# ---------------------------------------------------------------------- edits


def test_delete_rename_default():
    for n in ("a", "b", "c"):
        save_connection(n, Connection.from_url(f"http://localhost:{ord(n)}/v1"))
    set_default("b")
    assert Registry.load().default == "b"
    rename_connection("b", "bee")
    reg = Registry.load()
    assert reg.default == "bee" and "b" not in reg.connections and reg.connections["bee"].name == "bee"
    delete_connection("bee")
    reg = Registry.load()
    assert set(reg.connections) == {"a", "c"} and reg.default in {"a", "c"}
    with pytest.raises(ConfigurationError, match="No saved connection named 'zzz'") as err:
        delete_connection("zzz")
    assert "a, c" in err.value.hint
    with pytest.raises(ConfigurationError, match="already exists"):
        rename_connection("a", "c")


def test_rename_moves_a_remembered_key(sentinel_key):
    save_connection("a", Connection.from_url("http://localhost:1/v1", api_key=sentinel_key))
    rename_connection("a", "b")
    assert keys.lookup("a") is None and keys.lookup("b").get() == sentinel_key
    assert Registry.load().key_prompt == {"b"}


@pytest.mark.parametrize("name", ["", "has space", "dot.ted", "emulator", 'q"', "x]"])
def test_invalid_names(name):
    with pytest.raises(ConfigurationError, match="name"):
        save_connection(name, Connection.from_url("http://localhost:1/v1"))
    assert not registry_path().exists()


def test_no_file_is_written_by_reading():
    assert Registry.load().connections == {}
    session.describe_connections()
    assert not registry_path().exists()


# ---------------------------------------------------------------------- atomic, concurrent


def test_a_failed_write_leaves_the_old_file(monkeypatch):
    save_connection("a", Connection.from_url("http://localhost:1/v1"))
    before = registry_path().read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", boom)
        with pytest.raises(OSError):
            save_connection("b", Connection.from_url("http://localhost:2/v1"))
    assert registry_path().read_bytes() == before
    assert not [p for p in registry_path().parent.iterdir() if p.name.startswith(".connections-")]


def test_two_processes_saving_at_once_keep_every_entry(fm_home):
    script = textwrap.dedent("""
        import sys
        from foundry_magics.connections import Connection
        from foundry_magics.connections.registry import save_connection
        who = sys.argv[1]
        for i in range(25):
            save_connection(f"{who}-{i}", Connection.from_url(f"http://localhost:{1000 + i}/v1", model=who))
    """)
    env = {**os.environ, "FOUNDRY_MAGICS_HOME": str(fm_home)}
    procs = [subprocess.Popen([sys.executable, "-c", script, who], env=env) for who in ("p", "q", "r")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    reg = Registry.load()
    assert len(reg.connections) == 75
    assert reg.connections["q-24"].model == "q"


def test_stale_registry_object_merges_instead_of_clobbering():
    reg1 = Registry.load()
    reg2 = Registry.load()
    reg1.put("one", Connection.from_url("http://localhost:1/v1"))
    reg2.put("two", Connection.from_url("http://localhost:2/v1"))
    reg1.save()
    reg2.save()
    assert set(Registry.load().connections) == {"one", "two"}
