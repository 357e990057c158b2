"""Models side by side (`-m A,B,C`, `fm.compare`), `--image` in cells, and a connection
without a model on a server that serves one (Foundry Local, llama.cpp)."""

from __future__ import annotations

import time

import pytest
from IPython.core.error import UsageError

from foundry_magics.emulator import Emulator
from foundry_magics.notebook.compare import Comparison, compare, run_comparison
from foundry_magics.notebook.magic_args import parse_cell
from foundry_magics.rest.base import forget_models

from magics_helpers import bodies, connect, ip, run  # noqa: F401 - ip is a fixture

pytestmark = pytest.mark.timeout(120)

MODELS = ["gpt-4o-mini", "gpt-4.1-mini", "phi-4"]


@pytest.fixture(scope="module")
def emu():
    e = Emulator(lifetime=300, latency=0.4, deployments=MODELS + ["text-embedding-3-small"])
    e.start()
    yield e
    e.stop()


@pytest.fixture
def conn(ip, emu):
    emu.configure(latency=0.4, token_delay=0.0)
    connect(ip, emu.url, "--auth none")
    return emu


def chat_bodies(emu, n):
    return [b for (_m, t, _h, b) in emu.requests[-n:] if "chat/completions" in t or "responses" in t]


def tiny_png() -> bytes:
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------- parsing


def test_options_parse():
    a = parse_cell("-m gpt-4o-mini,gpt-4.1-mini, -s terse", "Hi")
    assert a.models == ["gpt-4o-mini", "gpt-4.1-mini"] and a.model is None and a.system == "terse"
    a = parse_cell("--image a.png --image=https://x/y.png --image img", "Hi")
    assert a.images == ["a.png", "https://x/y.png", "img"]
    assert parse_cell("--df df --estimate", "{t}").estimate and parse_cell("-m one", "x").models is None
    for line, msg in [("-m gpt-4o,", "two or more models"), ("-m a,b --df df --out x", "DataFrame mode"),
                      ("--estimate", "DataFrame mode"), ("--df df --out x --image a --image b", "one column")]:
        with pytest.raises(UsageError, match=msg):
            parse_cell(line, "x")


# ---------------------------------------------------------------------- comparing


def test_three_models_at_once_side_by_side(ip, conn):
    t0 = time.perf_counter()
    ran = run(ip, f"%%foundry -m {','.join(MODELS)} -s 'Be brief' -o cmp\nName a colour")
    took = time.perf_counter() - t0
    assert ran.result.error_in_exec is None, ran.everything
    comp = ran.value
    assert isinstance(comp, Comparison) and ip.user_ns["cmp"] is comp
    assert took < 3 * 0.4, f"the requests were not sent at once ({took:.2f} s)"
    assert list(comp.replies) == MODELS and comp.complete and not comp.errors
    for m in MODELS:
        assert comp[m].model == m and comp[m].text.startswith("[emulated]") and comp[m].usage.output_tokens > 0
    sent = chat_bodies(conn, 3)
    assert sorted(b["model"] for b in sent) == sorted(MODELS)
    assert all(b["messages"][0] == {"role": "system", "content": "Be brief"} for b in sent)
    md = comp.markdown()
    assert md.count("<th") == 3 and all(f">{m}</th>" in md for m in MODELS)
    assert "tokens" in md and " s</sub>" in md and "sent at once" in md
    plain = ran.everything
    assert all(f"── {m}" in plain for m in MODELS)
    with pytest.raises(KeyError, match="not one of"):
        comp["gpt-5"]


def test_each_model_keeps_its_own_conversation(ip, conn):
    first = run(ip, "%%foundry -m gpt-4o-mini,phi-4 --chat --new\nMy name is Ada").value
    ran = run(ip, "%%foundry -m gpt-4o-mini,phi-4 --chat\nWhat is my name?")
    assert ran.result.error_in_exec is None, ran.everything
    second = chat_bodies(conn, 2)
    assert len(second) == 2
    for b in second:
        msgs = b["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        assert msgs[0]["content"] == "My name is Ada" and msgs[1]["content"] == first.texts[b["model"]]
    from foundry_magics.notebook import prompting

    convs = prompting.prompter().conversations
    assert {"default@gpt-4o-mini", "default@phi-4"} <= set(convs.names())
    assert convs.get("default@phi-4").turns == 2


def test_formats_errors_and_cost(ip, conn):
    conn.configure(latency=0.0)
    from foundry_magics.store.prices import set_prices

    set_prices({"gpt-4o-mini": (0.15, 0.60)})
    try:
        ran = run(ip, "%%foundry -m gpt-4o-mini,phi-4 -f json\nGive me a JSON object with a colour")
        comp = ran.value
        assert comp.format == "json" and all(isinstance(r.value, dict) for r in comp.replies.values())
        costs = comp.costs()
        assert costs["gpt-4o-mini"] > 0 and costs["phi-4"] is None
        assert "$" in comp.markdown()
    finally:
        set_prices(None)
    ran = run(ip, "%%foundry -m gpt-4o-mini,no-such-model\nHello #emulator:status=404")
    comp = ran.value
    assert set(comp.errors) == {"gpt-4o-mini", "no-such-model"}  # the directive fails both, alone
    assert "Not found" in comp.markdown() and "Traceback" not in ran.everything


def test_one_failing_column_leaves_the_others(ip, emu):
    strict = Emulator(lifetime=60, strict_models=True, deployments=["gpt-4o-mini"])
    strict.start()
    try:
        connect(ip, strict.url, "--auth none")
        comp = run(ip, "%%foundry -m gpt-4o-mini,missing-model\nHi").value
        assert list(comp.replies) == ["gpt-4o-mini"] and list(comp.errors) == ["missing-model"]
        assert not comp.complete and "⚠" in comp.markdown()
        with pytest.raises(KeyError, match="failed"):
            comp["missing-model"]
    finally:
        strict.stop()


def test_streams_into_the_columns_of_one_display(ip, conn):
    from IPython.utils.capture import capture_output

    from foundry_magics.notebook import prompting
    from foundry_magics.notebook.magic_args import parse_cell as parse

    conn.configure(latency=0.0, token_delay=0.02)
    p = prompting.prompter()
    calls = p.prepare_compare(parse("-m gpt-4o-mini,phi-4", "Write twenty words about streams"), {},
                              prompting.Settings(stream=True))
    with capture_output() as cap:
        comp = run_comparison(p, calls, live=True)
    texts = [o.data.get("text/markdown", "") for o in cap.outputs]
    assert len(texts) >= 3, texts
    assert "waiting for" in texts[0] and any("▌" in t for t in texts[1:-1])
    assert "▌" not in texts[-1] and texts[-1] == comp.markdown() and comp.complete


def test_fm_compare_from_python(ip, conn, tmp_path):
    conn.configure(latency=0.0)
    url = conn.url + "/openai/v1"
    comp = compare("Describe it", models=["gpt-4o-mini", "phi-4"], connection=url, images=[tiny_png()],
                   system="terse", temperature=0)
    assert isinstance(comp, Comparison) and list(comp.replies) == ["gpt-4o-mini", "phi-4"]
    for b in chat_bodies(conn, 2):
        content = b["messages"][-1]["content"]
        assert b["temperature"] == 0 and content[0]["text"] == "Describe it" and content[1]["type"] == "image_url"
    assert "<table" in comp._repr_mimebundle_()[0]["text/markdown"]
    with pytest.raises(ValueError, match="two or more"):
        compare("x", models=["one"])


def test_dry_run_shows_each_request(ip, conn):
    before = conn.stats()["requests"]
    ran = run(ip, "%%foundry -m gpt-4o-mini,phi-4 --dry-run\nHi")
    assert ran.everything.count("DRY RUN") == 2 and conn.stats()["requests"] == before


# ---------------------------------------------------------------------- images in cells


def test_image_option_paths_urls_and_variables(ip, conn, tmp_path):
    conn.configure(latency=0.0)
    path = tmp_path / "dot.png"
    path.write_bytes(tiny_png())
    ip.user_ns["img"] = tiny_png()
    ran = run(ip, f"%%foundry --image {path} --image https://example.com/x.png --image img -m gpt-4o-mini\n"
                  "What do you see?")
    assert ran.result.error_in_exec is None, ran.everything
    parts = bodies(conn, "/chat/completions")[-1]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[2]["image_url"]["url"] == "https://example.com/x.png"
    assert parts[3] == parts[1]
    ran = run(ip, "%%foundry --api responses --image img -m gpt-4o-mini\nAnd now?")
    inp = bodies(conn, "/responses")[-1]["input"]
    assert inp[-1]["content"][1]["type"] == "input_image"
    # history and the one readable error
    before = conn.stats()["requests"]
    ran = run(ip, f"%%foundry --image {tmp_path / 'missing.png'} -m gpt-4o-mini\nWhat is it?")
    assert "Image problem" in ran.everything and "missing.png" in ran.everything and "Traceback" not in ran.everything
    ip.user_ns["n"] = 42
    ran = run(ip, "%%foundry --image n -m gpt-4o-mini\nWhat is it?")
    assert "holds an int, not an image" in ran.everything
    assert conn.stats()["requests"] == before


# ---------------------------------------------------------------------- a server with one model


def test_a_server_with_one_model_answers_without_model_and_says_so_once(ip):
    forget_models()
    local = Emulator(lifetime=60, deployments=["phi-4-mini"])
    url = local.start()
    try:
        ran = run(ip, f"%foundry connect {url}/v1")
        assert "no default model" in ran.everything
        first = run(ip, "%%foundry\nHello")
        assert first.result.error_in_exec is None and first.value.model == "phi-4-mini", first.everything
        assert "serves only 'phi-4-mini'" in first.everything
        second = run(ip, "%%foundry --no-stream\nAgain")
        assert second.value.model == "phi-4-mini" and "serves only" not in second.everything
        listed = [t for (_m, t, _h, _b) in local.requests if t.endswith("/models")]
        assert len(listed) == 1  # asked once
        import pandas as pd

        ip.user_ns["df"] = pd.DataFrame({"t": ["a", "b"]})
        ran = run(ip, "%%foundry --df df --out s\nSay {t}")
        assert ran.result.error_in_exec is None and ip.user_ns["df"]["s"].notna().all(), ran.everything
    finally:
        local.stop()
        forget_models()


def test_a_server_with_several_models_lists_them(ip):
    forget_models()
    several = Emulator(lifetime=60, deployments=["llama-3-8b", "qwen-2.5-7b"])
    url = several.start()
    try:
        run(ip, f"%foundry connect {url}/v1")
        ran = run(ip, "%%foundry\nHello")
        assert "serves 2 models: llama-3-8b, qwen-2.5-7b" in ran.everything and "-m llama-3-8b" in ran.everything
        assert "Traceback" not in ran.everything
        assert run(ip, "%%foundry -m qwen-2.5-7b\nHello").value.model == "qwen-2.5-7b"
    finally:
        several.stop()
        forget_models()


def test_comparisons_count_in_usage(ip, conn):
    conn.configure(latency=0.0)
    from foundry_magics.notebook import prompting

    prompting.prompter().usage.reset()
    run(ip, "%%foundry -m gpt-4o-mini,phi-4\nHi")
    rows = {r["model"]: r for r in prompting.prompter().usage.rows()}
    assert rows["gpt-4o-mini"]["calls"] == rows["phi-4"]["calls"] == 1 and rows[""]["calls"] == 2
