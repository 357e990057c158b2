"""Display objects: bundles per format, the live display's bounded update rate, error blocks."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from foundry_magics.errors import ContentFilterError, MissingKeyError, StreamError
from foundry_magics.notebook import render
from foundry_magics.rest.models import Reply, Usage


@pytest.fixture(scope="module")
def shell():
    return InteractiveShell.instance()


def _reply(text="Hello **world**", **kw):
    kw.setdefault("model", "gpt-4o-mini")
    return Reply(text=text, finish_reason="stop", usage=Usage(3, 4), latency=0.5, emulated=True,
                 connection="emu", **kw)


def test_markdown_bundle_has_text_meta_and_metadata():
    view = render.ReplyView("Hello **world**", "markdown", reply=_reply())
    data, meta = view._repr_mimebundle_()
    assert data["text/markdown"].startswith("Hello **world**")
    assert "emulated · gpt-4o-mini · 3+4 tokens · 0.50 s" in data["text/markdown"]
    assert data["text/plain"].startswith("Hello **world**")
    m = meta["foundry_magics"]
    assert (m["model"], m["input_tokens"], m["output_tokens"], m["latency"], m["emulated"]) == (
        "gpt-4o-mini", 3, 4, 0.5, True)
    assert view._repr_markdown_() == data["text/markdown"]
    # The Reply's fields are reachable on the view (it is what lands in Out / _).
    assert view.model == "gpt-4o-mini" and view.usage.output_tokens == 4 and str(view) == "Hello **world**"


def test_text_json_html_code_formats():
    data, _ = render.ReplyView("plain", "text", reply=_reply("plain"))._repr_mimebundle_()
    assert set(data) == {"text/plain"}

    view = render.ReplyView('{"a": 1}', "json", reply=_reply('{"a": 1}'), parsed={"a": 1})
    data, _ = view._repr_mimebundle_()
    assert data["application/json"] == {"a": 1} and "```json" in data["text/markdown"]
    assert view.value == {"a": 1}

    bad = render.ReplyView("not json", "json", reply=_reply("not json"), parse_error="Expecting value")
    data, _ = bad._repr_mimebundle_()
    assert "application/json" not in data and "Not valid JSON" in data["text/markdown"] and bad.value == "not json"

    data, _ = render.ReplyView("```html\n<b>x</b>\n```", "html", reply=_reply())._repr_mimebundle_()
    assert data["text/html"].startswith("<b>x</b>")

    data, _ = render.ReplyView("print(1)", "code", reply=_reply())._repr_mimebundle_()
    assert data["text/markdown"].startswith("```\nprint(1)\n```")


def test_interrupted_and_failed_views_are_marked():
    view = render.ReplyView("partial te", "markdown", interrupted=True)
    data, meta = view._repr_mimebundle_()
    assert "partial te" in data["text/markdown"] and "Interrupted" in data["text/markdown"]
    assert "[interrupted: partial reply]" in data["text/plain"]
    assert meta["foundry_magics"]["interrupted"] is True and not view.complete

    err = StreamError("The stream was cut after 10 characters.", partial="partial te", hint="Run it again.")
    data, _ = render.ReplyView("partial te", "markdown", error=err)._repr_mimebundle_()
    assert "stream stopped early" in data["text/markdown"] and "Run it again." in data["text/markdown"]


def test_error_view_is_one_block_with_cause_and_fix():
    exc = MissingKeyError("No API key for emu: the environment variable FOO is not set.", hint="Set FOO.")
    view = render.ErrorView(exc)
    data, _ = view._repr_mimebundle_()
    assert data["text/plain"] == ("Missing API key: No API key for emu: the environment variable FOO is not set.\n"
                                  "Fix: Set FOO.")
    assert "Traceback" not in data["text/plain"] and "<script" not in data["text/html"]
    cf = ContentFilterError("The prompt was filtered.", status=400, code="content_filter",
                            categories={"violence": "medium"}, hint="Rephrase it.")
    assert render.ErrorView(cf).plain().startswith("Blocked by the content filter: HTTP 400 content_filter")


def test_live_view_updates_at_a_bounded_rate(shell):
    now = [0.0]
    with capture_output() as cap:
        live = render.LiveView("markdown", clock=lambda: now[0])
        text = ""
        for i in range(1000):  # 1000 tokens over 2 simulated seconds
            now[0] = i * 0.002
            text += "w "
            live.update(text)
        view = live.finish(render.ReplyView(text.strip(), "markdown"))
    assert live.first_update_at == 0.0  # the first token shows at once
    assert 18 <= live.updates <= 22  # ~10 per second, plus the final render
    assert len(cap.outputs) == live.updates + 1  # one display, the rest are updates of it
    final = cap.outputs[-1].data["text/plain"]
    assert final == view.plain() and render.CURSOR not in final


def test_reply_view_shown_live_is_not_echoed_in_the_same_cell(shell):
    view = render.ReplyView("x", "markdown")
    view._echo_skip = shell.execution_count
    with capture_output() as cap:
        view._ipython_display_()  # the cell's own result: suppressed
        view._ipython_display_()  # any later display: shown
    assert len(cap.outputs) == 1


def test_table_and_request_view():
    t = render.Table([{"a": 1, "b": "x|y"}], ["a", "b"], title="T")
    assert "| 1 | x\\|y |" in t.markdown() and "<td" in t.html() and "T" in t.plain()
    assert "nothing" in render.Table([], ["a"]).plain()
    req = {"method": "POST", "url": "http://h/v1/chat/completions", "headers": {"api-key": "***redacted***"},
           "json": {"messages": [{"role": "user", "content": "{x}"}]}}
    text = render.RequestView(req).plain()
    assert "nothing was sent" in text and "***redacted***" in text and '"{x}"' in text


def test_put_code_in_next_cell(shell):
    assert render.put_code_in_next_cell(shell, "print('hi')")
    assert shell.rl_next_input == "print('hi')"
    assert not render.put_code_in_next_cell(shell, "  ")


def test_truncated_or_filtered_replies_say_so():
    r = _reply("cut", model="m")
    r.finish_reason = "content_filter"
    data, _ = render.ReplyView("cut", "markdown", reply=r)._repr_mimebundle_()
    assert "content filter stopped the reply" in data["text/markdown"] and "incomplete" in data["text/plain"]
    r.finish_reason = "length"
    assert "--max-tokens" in render.ReplyView("cut", "markdown", reply=r).plain()


def test_reply_view_is_a_reply():
    view = render.ReplyView("hi", "markdown", reply=_reply("hi"))
    assert isinstance(view, Reply) and view.text == "hi" and view.complete and view.usage.total_tokens == 7
    bare = render.ReplyView("part", "markdown", interrupted=True)
    assert isinstance(bare, Reply) and bare.model is None and not bare.complete and bare.usage.total_tokens == 0
