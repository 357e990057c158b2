"""The SSE parser fed plain lists of lines, and the two stream dialects with Azure's quirks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from foundry_magics.errors import ResponseError, StreamError
from foundry_magics.rest.sse import ChatStreamState, Event, ResponsesStreamState, SSEDecoder, iter_events


def test_basic_fields_comments_and_multiline_data():
    lines = [": keep-alive", "event: update", "id: 7", "retry: 1500", "data: one", "data:two", "", "data: x", ""]
    events = list(iter_events(lines))
    assert events == [Event("update", "one\ntwo", "7", 1500), Event("message", "x", "7", None)]


def test_final_event_without_blank_line_is_flushed():
    assert [e.data for e in iter_events(["data: a", "", "data: b"])] == ["a", "b"]


def test_blank_lines_alone_dispatch_nothing():
    assert list(iter_events(["", "", ":comment", ""])) == []


def test_crlf_and_split_chunks():
    dec = SSEDecoder()
    out = dec.feed("data: he") + dec.feed("llo\r") + dec.feed("\n\r\ndata: 2\n\n")
    assert [e.data for e in out] == ["hello", "2"]


@settings(max_examples=300, deadline=None)
@given(payloads=st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                                 max_size=30), min_size=1, max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_chunking_gives_the_same_events(payloads, cuts, newline):
    text = "".join(f"data: {p}{newline}{newline}" for p in payloads)
    dec = SSEDecoder()
    got = []
    pos = 0
    for c in sorted(set(min(c, len(text)) for c in cuts)) + [len(text)]:
        got += dec.feed(text[pos:c])
        pos = c
    tail = dec.flush()
    got += [tail] if tail else []
    assert [e.data for e in got] == payloads  # only the one space after "data:" is dropped


def _chat(chunks):
    return [f"data: {json.dumps(c)}" if not isinstance(c, str) else f"data: {c}" for c in chunks]


def _lines_with_blanks(lines):
    out = []
    for line in lines:
        out += [line, ""]
    return out


def test_chat_stream_with_every_azure_quirk():
    chunks = [
        {"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]},
        {"id": "c1", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hello, "}}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {"content": "world"}, "finish_reason": None}]},
        {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        # annotation chunk after finish_reason: no delta at all
        {"id": "c1", "choices": [{"index": 0, "finish_reason": None, "content_filter_results": {"hate": {"filtered": False}}}]},
        {"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
        "[DONE]",
    ]
    state = ChatStreamState()
    deltas = [d for ev in iter_events(_lines_with_blanks(_chat(chunks))) if (d := state.feed(ev))]
    assert state.text == "Hello, world" and state.done
    assert state.finish_reason == "stop"
    assert (state.usage.input_tokens, state.usage.output_tokens) == (9, 2)
    assert [d.text for d in deltas if d.text] == ["Hello, ", "world"]
    assert state.model == "gpt-4o"


def test_chat_stream_content_filter_on_completion_records_categories():
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "partial"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter",
                      "content_filter_results": {"violence": {"filtered": True, "severity": "high"}}}]},
        "[DONE]",
    ]
    state = ChatStreamState()
    for ev in iter_events(_lines_with_blanks(_chat(chunks))):
        state.feed(ev)
    assert state.finish_reason == "content_filter" and state.filtered == {"violence": "high"}


def test_chat_stream_error_event_raises_with_partial_text():
    chunks = [{"choices": [{"index": 0, "delta": {"content": "half"}}]},
              {"error": {"code": "server_error", "message": "boom"}}]
    state = ChatStreamState()
    with pytest.raises(StreamError) as info:
        for ev in iter_events(_lines_with_blanks(_chat(chunks))):
            state.feed(ev)
    assert info.value.partial == "half" and "boom" in str(info.value)


def test_chat_stream_garbage_is_a_response_error():
    with pytest.raises(ResponseError):
        ChatStreamState().feed(Event(data="<html>"))


def _responses(events):
    lines = []
    for e in events:
        lines += [f"event: {e['type']}", f"data: {json.dumps(e)}", ""]
    return lines


def test_responses_stream_deltas_and_completion():
    final = {"id": "resp_1", "status": "completed", "model": "m",
             "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hi there"}]}],
             "usage": {"input_tokens": 3, "output_tokens": 2}}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress"}},
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hi"},
        {"type": "response.output_text.delta", "sequence_number": 2, "delta": " there"},
        {"type": "response.output_text.done", "sequence_number": 3, "text": "Hi there"},
        {"type": "response.completed", "sequence_number": 4, "response": final},
    ]
    state = ResponsesStreamState()
    deltas = [d for ev in iter_events(_responses(events)) if (d := state.feed(ev))]
    assert state.done and state.text == "Hi there" and state.id == "resp_1"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage.output_tokens == 2


@pytest.mark.parametrize("terminal, expected", [
    ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, "slow down"),
    ({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "died"}}}, "died"),
])
def test_responses_stream_failures_raise(terminal, expected):
    events = [{"type": "response.output_text.delta", "delta": "so far"}, terminal]
    state = ResponsesStreamState()
    with pytest.raises(StreamError) as info:
        for ev in iter_events(_responses(events)):
            state.feed(ev)
    assert expected in str(info.value) and info.value.partial == "so far"


def test_responses_incomplete_maps_to_length():
    state = ResponsesStreamState()
    ev = Event("response.incomplete", json.dumps({"type": "response.incomplete", "response": {
        "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}}))
    d = state.feed(ev)
    assert state.done and d.finish_reason == "length"
