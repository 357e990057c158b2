"""The bad-input catalogue: for every public entry point, each bad input gets one readable
message that names the cause and the fix, as the exact exception class (or, in the magics,
one rendered block with no traceback); nothing is sent, nothing is half-written, and the
session (connection, registry, DataFrame, shell) is as it was.

Entry points: Connection.from_url / fields, fm.connect (names, URLs, --save), FoundryClient
(constructor and calls), schemas, the registry file behind every command that reads or
writes it, the `%%foundry` / `%foundry` magics, and the DataFrame accessors / `--df` mode.
Cases already pinned elsewhere (test_connections, test_registry, test_magics,
test_magics_commands, test_widgets) are not repeated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.connections.registry import registry_path
from foundry_magics.frames.accessor import run_frame
from foundry_magics.rest import schemas

from magics_helpers import ip, run  # noqa: F401 - ip is a fixture

V1 = "https://r.openai.azure.com/openai/v1"
LOCAL = "http://localhost:1/v1"
FIX_WORDS = ("use ", "give ", "pass ", "set ", "must ", "write ", "rename ", "check ", "e.g.", "for example",
             "define ", "paste ", "wrap ", "convert ", "known connections", "a valid endpoint", "raise ",
             "shorten ", "put ", "quote ", "lists the", "needs ")


def names_a_fix(exc: BaseException) -> bool:
    text = str(exc).lower()
    return bool(getattr(exc, "hint", None)) or any(w in text for w in FIX_WORDS)


@pytest.fixture(scope="module")
def emu():
    from foundry_magics.emulator import Emulator

    e = Emulator(lifetime=600)
    e.start()
    yield e
    e.stop()


def emu_conn(emu) -> fm.Connection:
    return fm.Connection.from_url(f"{emu.url}/openai/v1", auth="none", model="gpt-4o-mini")


# =========================================================================== the Python API

CASES = [
    # (id, call, exact class, words of the cause)
    ("url-empty", lambda: fm.Connection.from_url(""), errors.ConfigurationError, "empty"),
    ("url-none", lambda: fm.Connection.from_url(None), errors.ConfigurationError, "empty"),
    ("url-scheme", lambda: fm.Connection.from_url("ftp://r/openai/v1"), errors.ConfigurationError, "scheme 'ftp'"),
    ("url-words", lambda: fm.Connection.from_url("my endpoint"), errors.ConfigurationError, "is not a URL"),
    ("url-port", lambda: fm.Connection.from_url("https://r:99999/v1"), errors.ConfigurationError, "invalid port"),
    ("url-no-host", lambda: fm.Connection.from_url("https:///openai/v1"), errors.ConfigurationError, "no host"),
    ("auth", lambda: fm.Connection.from_url(V1, auth="password"), errors.ConfigurationError, "Unknown auth"),
    ("kind", lambda: fm.Connection.from_url(V1, kind="bogus"), errors.ConfigurationError, "Unknown endpoint kind"),
    ("api", lambda: fm.Connection.from_url(V1, api="completions"), errors.ConfigurationError, "Unknown api"),
    ("key-header", lambda: fm.Connection.from_url(V1, key_header="api key"), errors.ConfigurationError,
     "Invalid key header"),
    ("secret-empty", lambda: fm.Secret("  "), errors.ConfigurationError, "non-empty"),
    ("name-unknown", lambda: fm.connect("nope"), errors.ConfigurationError, "Unknown connection 'nope'"),
    ("name-empty", lambda: fm.connect(""), errors.ConfigurationError, "connection name or an endpoint URL"),
    ("save-bad-name", lambda: fm.connect(LOCAL, save="bad name"), errors.ConfigurationError, "not a valid name"),
    ("save-reserved", lambda: fm.connect(LOCAL, save="emulator"), errors.ConfigurationError, "reserved"),
    ("timeout-zero", lambda: fm.FoundryClient(fm.Connection.from_url(LOCAL), timeout=0), errors.ConfigurationError,
     "timeout"),
    ("retries-negative", lambda: fm.FoundryClient(fm.Connection.from_url(LOCAL), max_retries=-1),
     errors.ConfigurationError, "max_retries"),
    ("missing-key", lambda: fm.FoundryClient(fm.Connection.from_url(V1, api_key_env="FM_NOT_SET_ANYWHERE")),
     errors.MissingKeyError, "FM_NOT_SET_ANYWHERE is not set"),
    ("nothing-to-send", lambda: fm.FoundryClient(fm.Connection.from_url(LOCAL, model="m")).chat(),
     errors.ConfigurationError, "prompt is empty"),
    ("respond-empty", lambda: fm.FoundryClient(fm.Connection.from_url(LOCAL, model="m")).respond(""),
     errors.ConfigurationError, "prompt is empty"),
    ("no-model", lambda: fm.FoundryClient(fm.Connection.from_url(LOCAL)).chat("hi"), errors.ConfigurationError,
     "No model chosen"),
    ("embed-non-string", lambda: fm.FoundryClient(fm.Connection.from_url(LOCAL, model="m")).embed(["a", 1]),
     errors.ConfigurationError, "Embeddings need strings"),
    ("schema-not-mapping", lambda: schemas.to_json_schema(42), errors.ConfigurationError, "must be a mapping"),
    ("schema-empty", lambda: schemas.to_json_schema({}), errors.ConfigurationError, "no fields"),
    ("schema-type", lambda: schemas.to_json_schema({"a": complex}), errors.ConfigurationError,
     "Unsupported schema type"),
    pytest.param("schema-json", lambda: schemas.to_json_schema("{nope"), errors.ConfigurationError,
                 "not valid JSON", id="schema-json"),
]


@pytest.mark.parametrize("cid, call, exc, cause",
                         [c if hasattr(c, "marks") else pytest.param(*c, id=c[0]) for c in CASES])
def test_python_api_bad_input_is_one_readable_configuration_error(cid, call, exc, cause, fm_home):
    with pytest.raises(errors.FoundryError) as info:
        call()
    e = info.value
    assert type(e) is exc
    assert isinstance(e, ValueError)  # ConfigurationError is a ValueError too: `except ValueError` works
    assert cause in str(e), str(e)
    assert names_a_fix(e), f"no fix named in: {e}"
    assert "\n" not in e.message.strip(), "the cause is one line; the fix goes in the hint"
    assert not registry_path().exists()  # nothing was written on the way


def test_a_failed_connect_keeps_the_current_connection(emu, fm_home):
    good = fm.connect(emu_conn(emu))
    for bad in (lambda: fm.connect("nope"), lambda: fm.connect("ftp://x"), lambda: fm.connect(LOCAL, save="a b"),
                lambda: fm.connect(LOCAL, auth="password")):
        with pytest.raises(errors.ConfigurationError):
            bad()
        assert fm.current_connection() == good
    assert not registry_path().exists()


@pytest.mark.parametrize("url", ["https://my host.openai.azure.com/openai/v1", "http://localhost:1/v1 my-key"])
def test_url_with_whitespace_inside_is_a_configuration_error(url):
    with pytest.raises(errors.ConfigurationError):
        fm.Connection.from_url(url)


def test_client_timeout_of_the_wrong_type_is_a_configuration_error():
    with pytest.raises(errors.ConfigurationError):
        fm.FoundryClient(fm.Connection.from_url(LOCAL), timeout="soon")


def test_chat_with_an_empty_prompt_sends_nothing(emu):
    emu.reset_stats()
    with fm.FoundryClient(emu_conn(emu)) as c:
        with pytest.raises(errors.ConfigurationError):
            c.chat("   ")
    assert emu.stats()["requests"] == 0


# =========================================================================== registry behind every face

CORRUPT = '[connections.a]\nendpoint = "http://x/v1"\nthis is not toml\n'


def test_a_corrupt_registry_is_named_by_every_magic_and_never_rewritten(ip, emu, fm_home):  # noqa: F811
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CORRUPT)
    before = path.read_bytes()
    for code in (f"%foundry connect {emu.url}/openai/v1 --auth none --save b", "%foundry connect a",
                 "%foundry connections", "%%foundry\nHello", "%%foundry -c a\nHello"):
        ran = run(ip, code)
        assert ran.result.error_in_exec is None, (code, ran.everything)
        text = ran.everything
        assert "Traceback" not in text and str(path) in text and "line 3" in text, (code, text)
        assert "Fix:" in text, (code, text)
        assert path.read_bytes() == before, code
    # an explicit URL does not need the registry: the shell is still fully usable
    ok = run(ip, f"%%foundry --no-stream -m gpt-4o-mini -c {emu.url}/openai/v1\nStill working?")
    assert ok.value is not None and ok.value.text.startswith("[emulated] ")
    assert path.read_bytes() == before


def test_a_corrupt_registry_stops_a_dataframe_run_before_sending(emu, fm_home):
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CORRUPT)
    df = pd.DataFrame({"text": ["a", "b"]})
    emu.reset_stats()
    with pytest.raises(errors.ConfigurationError) as info:
        df.foundry.prompt("Say {text}", progress=False)  # connection=None: the registry's default
    assert "line 3" in str(info.value) and emu.stats()["requests"] == 0
    assert list(df.columns) == ["text"] and path.read_text() == CORRUPT


# =========================================================================== the magics

MAGIC_CASES = [
    ("%%foundry --max-tokens -5\nhi", "max_tokens must be a positive whole number"),
    ("%%foundry --max-tokens abc\nhi", "--max-tokens needs a whole number"),
    ("%%foundry --api foo\nhi", "--api must be one of chat, responses"),
    ("%%foundry -t 3\nhi", "temperature must be a number from 0 to 2"),
    ("%%foundry -o 1abc\nhi", "needs a Python variable name"),
    ("%%foundry --chat ''\nhi", "--chat NAME needs a non-empty name"),
    ("%%foundry -s\nhi", "-s/--system needs a value"),
    ("%%foundry extra words\nhi", "Unexpected text on the %%foundry line"),
    ("%%foundry --no-stream --stream\nhi", "given twice"),
    ("%%foundry --schema '{bad json'\nhi", "neither a variable name nor valid JSON"),
    ("%%foundry --schema '[1, 2]'\nhi", "A schema must be a mapping, got list"),
    ("%%foundry --df frame --out col --dry-run\n{text}", "cannot be used with --df"),
    ("%%foundry --df frame --out col\n{nope}", "The template uses {nope}"),
    ("%%foundry --df frame --out col\nunbalanced {text", "Unbalanced '{'"),
    ("%%foundry --df frame --out col --concurrency 0\n{text}", "concurrency must be a positive whole number"),
    ("%foundry connect", "needs a connection name or an endpoint URL"),
    ("%foundry connect --model x", "Put the connection NAME or URL first"),
    ("%foundry connect ftp://x/v1", "Unsupported URL scheme 'ftp'"),
    ("%foundry connect nope", "Unknown connection 'nope'"),
    ("%foundry connect http://localhost:1/v1 --save 'bad name'", "not a valid name"),
    ("%foundry connect http://localhost:1/v1 --auth password", "--auth must be one of entra, key, none"),
    ("%foundry connect http://localhost:1/v1 --key-header 'a b'", "Invalid key header"),
    ("%foundry connect http://localhost:1/v1 --bogus 1", "Unknown option --bogus"),
    ("%foundry use", "needs a model name"),
    ("%foundry history -n abc", "-n needs a whole number"),
    ("%foundry history -n 0", "-n must be at least 1"),
    ("%foundry history --x", "Unknown option --x"),
    ("%foundry -m", "-m/--model needs a value"),
    ("%foundry -t 9 hi", "temperature must be a number from 0 to 2"),
    ("%foundry --df frame hi", "DataFrame mode needs the cell form"),
]


@pytest.mark.parametrize("code, cause", MAGIC_CASES, ids=[c[0].split("\n")[0] for c in MAGIC_CASES])
def test_magic_bad_input_is_one_block_and_the_shell_stays_usable(ip, emu, fm_home, code, cause):  # noqa: F811
    connected = run(ip, f"%foundry connect {emu.url}/openai/v1 --auth none --model gpt-4o-mini --save good")
    assert connected.result.error_in_exec is None
    frame = pd.DataFrame({"text": ["a", "b"]})
    ip.user_ns["frame"] = frame
    registry = registry_path().read_bytes()
    current = fm.current_connection()
    emu.reset_stats()

    ran = run(ip, code)
    assert ran.result.error_in_exec is None and ran.result.error_before_exec is None, ran.everything
    assert len(ran.outputs) == 1, [o.data.get("text/plain") for o in ran.outputs]
    block = ran.outputs[0]
    plain = block.data["text/plain"]
    assert plain.split(":", 1)[0] in ("Bad option", "Configuration problem", "Missing API key"), plain
    assert cause in plain and "\nFix: " in plain, plain
    assert "Traceback" not in ran.everything and ran.stderr == ""
    assert block.metadata["foundry_magics"]["error"] in ("UsageError", "ConfigurationError")

    # nothing sent, nothing written, nothing changed
    assert emu.stats()["requests"] == 0
    assert registry_path().read_bytes() == registry
    assert fm.current_connection() == current
    assert ip.user_ns["frame"] is frame and list(frame.columns) == ["text"]
    # the shell is still usable, for Python and for the magic
    assert ip.run_cell("six_times_seven = 6 * 7").success and ip.user_ns["six_times_seven"] == 42
    after = run(ip, "%%foundry --no-stream\nStill usable?")
    assert after.value is not None and after.value.complete


def test_out_variable_that_is_a_keyword_is_refused(ip, emu):  # noqa: F811
    run(ip, f"%foundry connect {emu.url}/openai/v1 --auth none --model gpt-4o-mini")
    ran = run(ip, "%%foundry --no-stream -o class\nhi")
    assert "needs a Python variable name" in ran.everything


@pytest.mark.parametrize("code", ["%%foundry -c 'https://[::1/v1'\nhi", "%foundry connect 'https://[::1/v1'"])
def test_half_pasted_ipv6_url_is_one_block(ip, code):  # noqa: F811
    ran = run(ip, code)
    assert ran.result.error_in_exec is None and "Traceback" not in ran.everything
    assert "Configuration problem" in ran.everything


# =========================================================================== DataFrames


def reset(emu):
    emu.reset_stats()
    return emu


@pytest.mark.parametrize("template, obj, cause", [
    ("Say {txt}", "df", "The template uses {txt}, which is not a column"),
    ("Say {text", "df", "Unbalanced '{'"),
    ("Say {}", "df", "only works on a Series"),
    ("Say {foo}", "series", "The template uses {foo}"),
    (42, "df", "must be a string"),
])
def test_bad_templates_fail_before_sending_and_leave_the_frame_alone(emu, template, obj, cause):
    df = pd.DataFrame({"text": ["a", "b"], "n": [1, 2]})
    before = df.copy()
    target = df if obj == "df" else df["text"]
    reset(emu)
    with pytest.raises(errors.ConfigurationError) as info:
        target.foundry.prompt(template, connection=emu_conn(emu), progress=False)
    assert cause in str(info.value) and names_a_fix(info.value)
    with pytest.raises(errors.ConfigurationError):
        run_frame(df, template if isinstance(template, str) else "{x}", out="result", connection=emu_conn(emu),
                  progress=False)
    assert emu.stats()["requests"] == 0
    pd.testing.assert_frame_equal(df, before)  # no partial write: no "result" column


@pytest.mark.parametrize("kwargs, cause", [
    ({"schema": 42}, "must be a mapping"),
    ({"schema": {}}, "no fields"),
    ({"schema": "{bad"}, "not valid JSON"),
    ({"concurrency": 0}, "concurrency must be a positive whole number"),
    ({"rpm": -1}, "rpm must be a positive number"),
    ({"tpm": "fast"}, "tpm must be a positive number"),
    ({"api": "bogus"}, "api must be 'chat' or 'responses'"),
    ({"connection": "nope"}, "Unknown connection 'nope'"),
])
def test_bad_run_options_fail_before_sending_and_leave_the_frame_alone(emu, kwargs, cause):
    df = pd.DataFrame({"text": ["a", "b"]})
    before = df.copy()
    kwargs = {"connection": emu_conn(emu), **kwargs}
    reset(emu)
    for call in (lambda: df.foundry.prompt("Say {text}", progress=False, **kwargs),
                 lambda: run_frame(df, "Say {text}", out="result", progress=False, **kwargs)):
        with pytest.raises(errors.ConfigurationError) as info:
            call()
        assert cause in str(info.value)
    assert emu.stats()["requests"] == 0
    pd.testing.assert_frame_equal(df, before)


def test_other_accessor_mistakes(emu):
    s = pd.Series(["a", "b"])
    reset(emu)
    with pytest.raises(errors.ConfigurationError, match="at least two labels"):
        s.foundry.classify(["only"], connection=emu_conn(emu))
    with pytest.raises(errors.ConfigurationError, match="needs a language"):
        s.foundry.translate("  ", connection=emu_conn(emu))
    with pytest.raises(errors.ConfigurationError, match="appears more than once"):
        pd.DataFrame([[1, 2]], columns=["a", "a"]).foundry.prompt("{a}", connection=emu_conn(emu))
    assert emu.stats()["requests"] == 0


def test_empty_template_is_refused_by_the_accessor(emu):
    reset(emu)
    with pytest.raises(errors.ConfigurationError):
        pd.DataFrame({"text": ["a", "b"]}).foundry.prompt("  ", connection=emu_conn(emu), progress=False)
    assert emu.stats()["requests"] == 0


def test_awkward_frames_get_every_row_its_own_answer(emu):
    """NA of every kind, empty frames, duplicate index, non-string values, a huge cell."""
    conn = emu_conn(emu)
    P = dict(connection=conn, progress=False, cache=False)

    def clean(prompts):
        with fm.FoundryClient(conn) as c:
            return [c.chat(p).text for p in prompts]

    # empty frames: nothing sent, an empty result on the (empty) index
    reset(emu)
    empty = pd.DataFrame({"text": pd.Series([], dtype=object)}).foundry.prompt("Say {text}", **P)
    assert len(empty) == 0 and emu.stats()["requests"] == 0
    assert len(pd.Series([], dtype=object).foundry.prompt("Say {}", **P)) == 0

    # NA of every kind: NA out, no request, counted in the report
    na = pd.DataFrame({"text": ["x", None, np.nan, pd.NA, pd.NaT, "y"]}, index=[5, 5, 3, 3, 1, 1])
    reset(emu)
    out = na.foundry.prompt("Say {text}", **P)
    assert emu.stats()["requests"] == 2 and fm.last_run().na_rows == 4
    assert out.index.equals(na.index)
    assert out.isna().tolist() == [False, True, True, True, True, False]
    assert out.iloc[[0, 5]].tolist() == clean(["Say x", "Say y"])

    # non-string values: rendered with str(), each its own answer, unhashable cells included
    values = [1, 2.5, True, [1, 2], {"k": 1}, pd.Timestamp("2024-01-02"), b"raw", np.int64(7), 10**30]
    s = pd.Series(values, dtype=object, index=list("abcdefghi"))
    got = s.foundry.prompt("Describe {}", **P)
    assert got.tolist() == clean([f"Describe {v}" for v in values])

    # a huge cell: that row fails with a readable reason, the others are answered
    huge = pd.Series(["word " * 200_000, "small"], index=["big", "ok"])
    res = huge.foundry.prompt("Say {}", **P)
    report = fm.last_run()
    assert pd.isna(res["big"]) and res["ok"] == clean(["Say small"])[0]
    assert [label for label, _ in report.failures] == ["big"]
    assert "ContextLengthError" in report.failures[0][1] and "maximum context length" in report.failures[0][1]
    assert not report.stopped  # one bad row does not stop the run
