"""Secret audit: a sentinel key (conftest: env FOUNDRY_TEST_KEY) used every way a user can,
then every artefact grepped for it.

* a scripted session in a real kernel (nbclient), saved with widget state: connect via the
  environment variable, paste into the picker, chat / stream / respond / embed / models,
  `--dry-run`, a conversation, DataFrame runs with the cache, errors (a wrong key, a missing
  variable, a 401), history and usage tables, reprs of every public object printed into the
  notebook, HTTP debug logging to a file; then the saved notebook, every file under
  FOUNDRY_MAGICS_HOME (registry, history.sqlite, cache.sqlite and their -wal / -shm files),
  the log file, IPython's own history and the working directory are grepped;
* in process: every error path's exception (str, repr, attributes, chained causes, and its
  rendered error block), the HTTP debug log for every key header and for Entra tokens, the
  dry-run output, and the reprs of public objects.

The tutorials (notebooks/*.ipynb) are also run here, in a kernel whose environment holds the
sentinel in FOUNDRY_TEST_KEY and in every key variable they or the discovery read, and their
saved copies (with widget state) and everything they wrote are grepped. Their outputs are
checked by the issue-6 harness (tests/test_notebooks.py), not here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
from pathlib import Path

import httpx
import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "eyJ-SENTINEL-ENTRA-TOKEN-0123456789-DO-NOT-LEAK"  # an Entra access token is a secret too
REDACTED = "***redacted***"


def variants(secret: str) -> list[bytes]:
    """The secret as it could appear in a file: plain, base64, and a distinctive middle part."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), raw[3:-3]]


def assert_clean(blob: bytes | str, secret: str, where: object) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for v in variants(secret):
        assert v not in data, f"the secret ({v[:12]!r}…) is in {where}"


def scan_tree(root: Path, secret: str) -> int:
    n = 0
    for f in root.rglob("*"):
        if f.is_file():
            n += 1
            assert_clean(f.read_bytes(), secret, f)
    return n


def chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def assert_exception_clean(exc: BaseException, secret: str) -> None:
    from foundry_magics.notebook.render import ErrorView

    for e in chain(exc):
        for text in (str(e), repr(e), repr(e.args), repr(vars(e)), str(getattr(e, "hint", ""))):
            assert_clean(text, secret, f"{type(e).__name__}")
    view = ErrorView(exc)
    data, meta = view._repr_mimebundle_()
    assert_clean(json.dumps(data) + json.dumps(meta), secret, "the rendered error block")


# =========================================================================== in a real kernel

SESSION = [
    # 0: debug logging of everything HTTP to a file, and the extension
    """import json, logging, os
logging.basicConfig(filename=os.environ["FM_LOG"], level=logging.DEBUG, force=True,
                    format="%(name)s %(levelname)s %(message)s")
for name in ("foundry_magics", "httpx", "httpcore"):
    logging.getLogger(name).setLevel(logging.DEBUG)
%load_ext foundry_magics
import foundry_magics as fm
import pandas as pd
URL = os.environ["FM_EMU"] + "/openai/v1"
WRONG = os.environ["FM_EMU_WRONG"] + "/openai/v1"
""",
    # 1: connect through the environment variable, for each key header, and save
    """env_conn = fm.connect(URL, auth="key", api_key_env="FOUNDRY_TEST_KEY", model="gpt-4o-mini", save="audit-env")
bearer = fm.connect(URL, auth="key", api_key_env="FOUNDRY_TEST_KEY", key_header="Authorization",
                    model="gpt-4o-mini", save="audit-bearer")
apim = fm.connect(URL, auth="key", api_key_env="FOUNDRY_TEST_KEY", key_header="Ocp-Apim-Subscription-Key",
                  model="gpt-4o-mini", save="audit-apim")
for c in (env_conn, bearer, apim):
    with fm.FoundryClient(c) as client:
        print(repr(c), repr(client), repr(client.auth), client.chat("hello via " + c.key_header).text[:20])
        print(json.dumps(client.dry_run("chat", "dry")), json.dumps(client.dry_run("responses", "dry")))
fm.connect("audit-env")
""",
    "%foundry connections",
    # 3: the picker, with the key pasted into its Password field
    """p = fm.picker()
p.endpoint.value = URL
p.name.value = "audit-pasted"
p.key.value = os.environ["FOUNDRY_TEST_KEY"]   # as if pasted
p.test_button.click()
p.save_button.click()
p.use_button.click()
print(p.status.value)
print(repr(p), repr(fm.current_connection()))
p""",
    # 4-8: magics with the pasted key
    "%%foundry\nHello with the pasted key, streamed",
    "%%foundry --no-stream --api responses -o ans\nHello from the Responses API",
    "%%foundry --dry-run\nWhat would be sent?",
    "%%foundry --dry-run --api responses\nAnd to the Responses API?",
    "%%foundry --chat\nRemember the word cobalt.",
    "%%foundry --chat\nWhich word?",
    # 10: the Python API with the history hook, streams, embeddings, models
    """from foundry_magics.store.history import History
with fm.FoundryClient(on_record=History().record) as client:
    r = client.chat("python api")
    s = client.chat("python stream", stream=True)
    streamed = "".join(d.text for d in s)
    rr = client.respond("python respond")
    vecs = client.embed(["alpha", "beta"])
    names = client.models()
    print(repr(r), repr(s.reply), repr(rr), len(vecs), names[:2])
import asyncio
async def main():
    async with fm.AsyncFoundryClient() as ac:
        return await ac.chat("async api"), repr(ac)
print(await main())  # top-level await: the kernel runs a loop
""",
    # 11-12: DataFrames with the cache, both forms
    """df = pd.DataFrame({"text": ["I love it", "I hate it", "It is fine", None]})
out = df.foundry.prompt("Summarize: {text}")
print(out.tolist()); print(fm.last_run()); print(repr(fm.last_run()))
print(df["text"].foundry.sentiment().tolist())""",
    "%%foundry --df df --out summary\nSummarize briefly: {text}",
    # 13: errors: a wrong key (the sentinel sent to a server that expects another), a missing
    # variable, a 401, and the same errors as the magics render them
    """caught = []
for make in (
    lambda: fm.FoundryClient(fm.Connection.from_url(WRONG, api_key_env="FOUNDRY_TEST_KEY", model="m")).chat("x"),
    lambda: fm.FoundryClient(fm.Connection.from_url(WRONG, api_key=os.environ["FOUNDRY_TEST_KEY"], model="m")).chat("x"),
    lambda: fm.FoundryClient(fm.Connection.from_url(URL, api_key_env="FM_NOT_SET", model="m")).chat("x"),
    lambda: fm.FoundryClient().chat("x #emulator:status=401"),
    lambda: list(fm.FoundryClient(max_retries=0).chat("long answer please #emulator:stream_cut", stream=True)),
):
    try:
        make()
    except fm.FoundryError as e:
        caught.append((type(e).__name__, str(e), repr(e), repr(vars(e))))
print(json.dumps(caught, indent=1))
fm.connect(WRONG, auth="key", api_key_env="FOUNDRY_TEST_KEY", model="gpt-4o-mini", save="audit-wrong")
fm.connect("audit-pasted")""",
    "%%foundry -c audit-wrong\nThis must fail with 401",
    "%%foundry\nunauthorized #emulator:status=401",
    "%foundry history -n 50",
    "%foundry usage",
    "%foundry chat show",
    # 19: what the session knows, shown
    """from foundry_magics import session, keys
print(session.describe_connections()); print(session.known_connections()); print(keys.names())
print(fm.emulator.status())
p""",
]


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / "fm-audit"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "foundry-magics audit", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "fm-audit"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_scripted_session_in_a_kernel_leaves_the_key_in_no_artefact(tmp_path, fm_home, sentinel_key, kernel_name):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from conftest import AZURE_VARS

    work, ipython_dir, log = tmp_path / "work", tmp_path / "ipython", tmp_path / "http-debug.log"
    work.mkdir()
    with Emulator(process=True, api_key=sentinel_key, lifetime=200) as emu, \
            Emulator(process=True, api_key="a-different-key", lifetime=200) as wrong:
        env = {k: v for k, v in os.environ.items() if k not in AZURE_VARS}
        env.update(FOUNDRY_MAGICS_HOME=str(fm_home), FOUNDRY_TEST_KEY=sentinel_key, FM_EMU=emu.url,
                   FM_EMU_WRONG=wrong.url, FM_LOG=str(log), IPYTHONDIR=str(ipython_dir),
                   JUPYTER_PLATFORM_DIRS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src) for src in SESSION]
        client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=90, startup_timeout=90,
                                         store_widget_state=True, resources={"metadata": {"path": str(work)}})
        client.execute(env=env, cwd=str(work))
        served = emu.stats()["by_status"]
        refused = wrong.stats()["by_status"]

    # the session really ran, with the key, through every path
    errors_in_cells = [(i, o.get("ename")) for i, c in enumerate(nb.cells) for o in c.outputs
                       if o.output_type == "error"]
    assert errors_in_cells == [], errors_in_cells
    assert served.get("200", 0) >= 20 and served.get("401", 0) >= 1, served
    assert refused.get("401", 0) >= 3, refused  # the sentinel was presented to the wrong server
    text_of = lambda i: json.dumps(nb.cells[i].outputs)  # noqa: E731
    assert REDACTED in text_of(1) and REDACTED in text_of(6)  # the dry runs show redacted headers
    assert "Not authorized" in text_of(14) and "Fix:" in text_of(14)
    caught = json.loads("".join(o.get("text", "") for o in nb.cells[13].outputs if o.output_type == "stream"))
    assert [c[0] for c in caught] == ["AuthError", "AuthError", "MissingKeyError", "AuthError", "StreamError"]

    # every artefact
    saved = work / "audit.ipynb"
    nbformat.write(nb, str(saved))
    assert_clean(saved.read_bytes(), sentinel_key, saved)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert any(m["model_name"] == "PasswordModel" for m in state.values())  # widget state really saved
    assert_clean(json.dumps(state), sentinel_key, "widget state")
    names = {f.name for f in fm_home.rglob("*") if f.is_file()}
    assert {"connections.toml", "history.sqlite", "cache.sqlite"} <= names, names
    assert scan_tree(fm_home, sentinel_key) >= 3
    logged = log.read_bytes()
    assert_clean(logged, sentinel_key, log)
    # the log is not vacuous: requests were logged, with each key header redacted
    for header in (b"api-key", b"Authorization", b"Ocp-Apim-Subscription-Key"):
        assert header + b"': '" in logged or header + b"': 'Bearer" in logged, header
    assert logged.count(REDACTED.encode()) >= 10 and b"httpx" in logged
    scan_tree(ipython_dir, sentinel_key)
    scan_tree(work, sentinel_key)


KEY_VARIABLES = ("FOUNDRY_TEST_KEY", "AZURE_OPENAI_API_KEY", "AZURE_INFERENCE_CREDENTIAL", "APIM_SUBSCRIPTION_KEY",
                 "FOUNDRY_API_KEY", "OPENAI_API_KEY", "AZURE_AI_API_KEY")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tutorials_with_the_sentinel_in_every_key_variable_leak_nothing(tmp_path, fm_home, sentinel_key,
                                                                        kernel_name):
    import shutil

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from conftest import AZURE_VARS

    work, ipython_dir = tmp_path / "notebooks", tmp_path / "ipython"
    shutil.copytree(ROOT / "notebooks", work)
    env = {k: v for k, v in os.environ.items() if k not in AZURE_VARS}
    env.update({var: sentinel_key for var in KEY_VARIABLES})
    env.update(FOUNDRY_MAGICS_HOME=str(fm_home), IPYTHONDIR=str(ipython_dir), JUPYTER_PLATFORM_DIRS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ran = 0
    for path in sorted(work.glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=120, startup_timeout=90,
                                         store_widget_state=True, resources={"metadata": {"path": str(work)}})
        client.execute(env=env, cwd=str(work))
        out = tmp_path / f"executed-{path.name}"
        nbformat.write(nb, str(out))
        assert_clean(out.read_bytes(), sentinel_key, out)
        ran += sum(1 for c in nb.cells if c.cell_type == "code" and c.get("outputs"))
    assert ran >= 20  # the tutorials really ran
    for root in (fm_home, ipython_dir, work):
        scan_tree(root, sentinel_key)


# =========================================================================== in process


@pytest.fixture(scope="module")
def keyed():
    """An emulator that demands the sentinel key, or the sentinel Entra token."""
    from conftest import SENTINEL_KEY

    with Emulator(process=True, api_key=SENTINEL_KEY, bearer_tokens=[TOKEN], lifetime=300) as emu:
        yield emu


class StaticToken:
    def get_token(self, *scopes, **kw):
        import time
        from types import SimpleNamespace

        return SimpleNamespace(token=TOKEN, expires_on=time.time() + 3600)


def key_connections(url: str):
    base = f"{url}/openai/v1"
    return {
        "api-key": fm.Connection.from_url(base, api_key_env="FOUNDRY_TEST_KEY", model="gpt-4o-mini"),
        "Authorization": fm.Connection.from_url(base, api_key_env="FOUNDRY_TEST_KEY", key_header="Authorization",
                                                model="gpt-4o-mini"),
        "Ocp-Apim-Subscription-Key": fm.Connection.from_url(base, api_key_env="FOUNDRY_TEST_KEY",
                                                            key_header="Ocp-Apim-Subscription-Key",
                                                            model="gpt-4o-mini"),
        "pasted": fm.Connection.from_url(base, api_key=os.environ["FOUNDRY_TEST_KEY"], model="gpt-4o-mini"),
    }


@pytest.fixture
def debug_log(tmp_path):
    path = tmp_path / "debug.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(n) for n in ("foundry_magics", "httpx", "httpcore")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    yield path
    for lg, (level, _) in zip(loggers, saved):
        lg.removeHandler(handler)
        lg.setLevel(level)
    handler.close()


def test_debug_http_logging_redacts_every_key_header_and_token(keyed, sentinel_key, debug_log, fm_home):
    import pandas as pd

    for name, conn in key_connections(keyed.url).items():
        with fm.FoundryClient(conn, timeout=10) as c:
            assert c.chat(f"hello {name}").emulated
            assert "".join(d.text for d in c.chat(f"stream {name}", stream=True))

        async def main(conn=conn, name=name):
            async with fm.AsyncFoundryClient(conn, timeout=10) as ac:
                return await ac.respond(f"async {name}")

        assert asyncio.run(main()).text
    entra = fm.Connection.from_url(f"{keyed.url}/openai/v1", auth="entra", model="gpt-4o-mini")
    with fm.FoundryClient(entra, credential=StaticToken(), timeout=10) as c:
        assert c.chat("hello entra").text
    df = pd.DataFrame({"text": ["one", "two", "three"]})
    out = df.foundry.prompt("Echo: {text}", connection=key_connections(keyed.url)["api-key"], progress=False)
    assert out.notna().all()

    logged = debug_log.read_bytes()
    assert_clean(logged, sentinel_key, "the debug log")
    assert_clean(logged, TOKEN, "the debug log")
    for header in ("api-key", "Ocp-Apim-Subscription-Key"):
        assert f"'{header}': '{REDACTED}'".encode() in logged, header
    assert f"'Authorization': 'Bearer {REDACTED}'".encode() in logged
    assert b"httpx INFO HTTP Request: POST" in logged  # httpx's own log lines were captured too
    assert_clean(b"".join(f.read_bytes() for f in fm_home.rglob("*") if f.is_file()), sentinel_key, "home")


def test_every_error_path_keeps_the_key_out_of_the_exception(keyed, sentinel_key):
    base = f"{keyed.url}/openai/v1"
    conns = key_connections(keyed.url)
    caught: list[BaseException] = []

    def expect(exc_type, fn):
        with pytest.raises(exc_type) as info:
            fn()
        caught.append(info.value)

    with Emulator(process=True, api_key="a-different-key", lifetime=60) as wrong:
        for conn in key_connections(wrong.url).values():  # the sentinel presented to the wrong server
            with fm.FoundryClient(conn, timeout=5) as c:
                expect(errors.AuthError, lambda: c.chat("x"))
                expect(errors.AuthError, lambda: list(c.chat("x", stream=True)))
    expect(errors.MissingKeyError,
           lambda: fm.FoundryClient(fm.Connection.from_url(base, api_key_env="FM_UNSET_VAR", model="m")))
    with fm.FoundryClient(conns["pasted"], timeout=5, max_retries=0) as c:
        expect(errors.ContentFilterError, lambda: c.chat("x #emulator:content_filter"))
        expect(errors.ContextLengthError, lambda: c.chat("x #emulator:context_length"))
        expect(errors.ServerError, lambda: c.chat("x #emulator:status=503"))
        expect(errors.AuthError, lambda: c.chat("x #emulator:status=403"))
        expect(errors.StreamError, lambda: list(c.chat("a long answer please #emulator:stream_cut", stream=True)))
        expect(errors.ConnectionFailed, lambda: c.chat("x #emulator:stream_cut"))
    down = fm.Connection.from_url("http://127.0.0.1:9/openai/v1", api_key=sentinel_key, model="m")
    with fm.FoundryClient(down, timeout=2, max_retries=0) as c:
        expect(errors.ConnectionFailed, lambda: c.chat("x"))
    keyed.configure(latency=2.0)
    try:
        with fm.FoundryClient(conns["Authorization"], timeout=0.3, max_retries=0) as c:
            expect(errors.TimeoutError, lambda: c.chat("x"))
    finally:
        keyed.configure(latency=0.0)
    assert len(caught) == 17
    for exc in caught:
        assert_exception_clean(exc, sentinel_key)


def test_a_server_echoing_the_key_does_not_put_it_in_the_error(sentinel_key):
    def echo(request: httpx.Request) -> httpx.Response:
        got = request.headers.get("api-key") or request.headers.get("authorization", "")
        return httpx.Response(401, json={"error": {"code": "invalid_api_key",
                                                   "message": f"Incorrect API key provided: {got}."}})

    conn = fm.Connection.from_url("http://localhost:9/v1", auth="key", api_key_env="FOUNDRY_TEST_KEY", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(echo)) as c:
        with pytest.raises(errors.AuthError) as info:
            c.chat("x")
    assert "Incorrect API key provided" in str(info.value)
    assert_exception_clean(info.value, sentinel_key)


def test_dry_run_shows_every_key_header_redacted(keyed, sentinel_key):
    for name, conn in key_connections(keyed.url).items():
        with fm.FoundryClient(conn) as c:
            for api in ("chat", "responses"):
                req = c.dry_run(api, "dry", system="s", temperature=0.1)
                assert_clean(json.dumps(req), sentinel_key, f"dry run {name}")
                header = conn.key_header
                assert req["headers"][header] == (f"Bearer {REDACTED}" if header == "Authorization" else REDACTED)
    entra = fm.Connection.from_url(f"{keyed.url}/openai/v1", auth="entra", model="gpt-4o-mini")
    with fm.FoundryClient(entra, credential=StaticToken()) as c:
        req = c.dry_run("chat", "dry")
        assert req["headers"]["Authorization"] == f"Bearer {REDACTED}"
        assert_clean(json.dumps(req), TOKEN, "entra dry run")
    from foundry_magics.notebook.render import RequestView

    view = RequestView(req)
    assert_clean(view.plain() + view.markdown(), TOKEN, "the dry-run display")


def test_reprs_of_public_objects_never_show_the_key(keyed, sentinel_key, fm_home):
    from foundry_magics.connections import keys, session
    from foundry_magics.connections.registry import Registry
    from foundry_magics.rest.auth import auth_for
    from foundry_magics.rest.client import CallRecord

    records: list[CallRecord] = []
    conns = key_connections(keyed.url)
    objects: list[object] = [fm.Secret(sentinel_key)]
    for conn in conns.values():
        objects += [conn, conn.to_dict(), auth_for(conn)]
        with fm.FoundryClient(conn, on_record=records.append) as c:
            reply = c.chat("repr me")
            stream = c.chat("repr me", stream=True)
            list(stream)
            objects += [c, reply, reply.raw, stream, stream.reply, c.dry_run("chat", "x")]
    objects += records
    keys.remember("named", sentinel_key)
    saved = fm.connect(conns["pasted"], save="named")
    objects += [saved, session.describe_connections(), session.known_connections(), keys.names(),
                Registry.load(), Registry.load().to_toml(), fm.current_connection()]
    with Emulator(api_key=sentinel_key, bearer_tokens=[TOKEN], lifetime=30) as emu:
        objects += [emu, emu.stats()]
    objects.append(fm.emulator.status())
    p = fm.picker()
    p.endpoint.value = f"{keyed.url}/openai/v1"
    p.key.value = sentinel_key
    objects += [p, p.connection(), p.status.value] + [w.get_state() for w in p.children]
    for obj in objects:
        assert_clean(repr(obj), sentinel_key, type(obj).__name__)
        assert_clean(str(obj), sentinel_key, type(obj).__name__)
    assert p.connection().api_key.get() == sentinel_key  # the key is really held (in memory)
    scan_tree(fm_home, sentinel_key)
