"""Property-based tests (hypothesis) that complement the example tests elsewhere:

* interpolation: unmatched names leave any text as written (only `{{x}}` escapes change),
  `{{name}}` is literal whatever the namespace holds, known names are substituted anywhere,
  and nothing in a template or a namespace value can make it raise;
* SSE: events with `event:` / `id:` / `retry:` fields, comments and multi-line data through
  any chunking and any newline style; a chat or Responses stream cut at any point is either
  the complete reply or a StreamError carrying exactly the text received;
* URL inference: the route part of a pasted URL does not change the connection's root, and
  pasting the root back in gives the same kind.
"""

from __future__ import annotations

import json
import keyword
import re
import string

import httpx
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

import foundry_magics as fm
from foundry_magics import errors
from foundry_magics.connections import Connection
from foundry_magics.errors import ConfigurationError
from foundry_magics.notebook.interpolate import interpolate, placeholders
from foundry_magics.rest.sse import Event, SSEDecoder

# ============================================================================ interpolation

CODE = string.ascii_letters + string.digits + " \n\t{}[]().,:;'\"!=_-+*/#$%<>|&^~`\\@?"
code_text = st.text(alphabet=CODE, max_size=120)
identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
brace_free = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=40)


def _escapes_only(text: str) -> str:
    """The reference: with no name matching, only `{{X}}` (X without braces or newline) changes, to `{X}`."""
    return re.sub(r"\{\{([^{}\n]*)\}\}", lambda m: "{" + m.group(1) + "}", text)


@settings(max_examples=400, deadline=None)
@given(text=code_text, names=st.lists(identifier, max_size=4), values=st.lists(st.integers(), max_size=4))
def test_names_that_do_not_occur_leave_the_text_as_written(text, names, values):
    ns = {f"zzq_{n}": v for n, v in zip(names, values)}
    assume(not any(name in text for name in ns))
    assert interpolate(text, ns) == _escapes_only(text)
    assert placeholders(text, ns) == []


@settings(max_examples=300, deadline=None)
@given(text=code_text.filter(lambda t: "{{" not in t and "}}" not in t))
def test_text_without_double_braces_round_trips_with_a_full_namespace_of_other_names(text):
    ns = {"unrelated": 1, "other_name": "x", "cfg": {"k": "v"}, "items": [1, 2, 3]}
    assume(not any(re.search(r"\{" + n + r"\b", text) for n in ns))
    assert interpolate(text, ns) == text


@settings(max_examples=300, deadline=None)
@given(name=identifier, value=st.one_of(st.integers(), st.text(max_size=20), st.floats(allow_nan=False)),
       before=brace_free, after=brace_free)
def test_double_braces_are_literal_whatever_the_namespace_holds(name, value, before, after):
    template = f"{before}{{{{{name}}}}}{after}"
    assert interpolate(template, {name: value}) == f"{before}{{{name}}}{after}"
    assert placeholders(template, {name: value}) == []


@settings(max_examples=300, deadline=None)
@given(name=identifier, value=st.one_of(st.integers(), st.text(max_size=30), st.booleans(), st.none()),
       before=brace_free, after=brace_free)
def test_a_known_name_is_replaced_by_its_str_anywhere(name, value, before, after):
    assert interpolate(f"{before}{{{name}}}{after}", {name: value}) == f"{before}{value}{after}"


class Exploding:
    def __str__(self):
        raise RuntimeError("boom")

    __format__ = __repr__ = __str__

    def __getattr__(self, item):
        raise RuntimeError("attribute boom")

    def __getitem__(self, item):
        raise RuntimeError("index boom")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.one_of(code_text, st.sampled_from(
    ["{bad}", "{bad.x}", "{bad[0]}", "{bad!r}", "{n:.2f}", "{n:zz}", "{s:>5}", "{d['k']}", "{d[\"k\"]}",
     "{lst[-1]}", "{lst[99]}", "{s.__class__}", "{{n}}", "{n!s:^9}"])), max_size=8))
def test_interpolation_never_raises_and_only_fills_lookups_that_work(parts):
    ns = {"bad": Exploding(), "n": 3.14159, "s": "ab", "d": {"k": "v"}, "lst": [1, 2]}
    template = "".join(parts)
    out = interpolate(template, ns)
    assert isinstance(out, str)
    for stays in ("{bad}", "{bad.x}", "{bad[0]}", "{bad!r}", "{n:zz}", "{lst[99]}", "{s.__class__}"):
        if template == stays:
            assert out == stays


# ============================================================================ SSE parser

field_text = st.text(alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)), max_size=16)
event_name = st.text(alphabet=string.ascii_letters + "._-", min_size=1, max_size=20)


@st.composite
def sse_events(draw):
    """A list of event blocks: (event name | None, id | None, retry | None, data lines, comments)."""
    blocks = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        blocks.append(dict(
            event=draw(st.none() | event_name),
            id=draw(st.none() | field_text.filter(lambda s: "\0" not in s)),
            retry=draw(st.none() | st.integers(min_value=0, max_value=10**6)),
            data=draw(st.lists(field_text, max_size=3)),
            comment=draw(st.none() | field_text),
            order=draw(st.permutations(["event", "id", "retry", "data", "comment"])),
        ))
    return blocks


def serialize(blocks, newline: str, space: bool) -> str:
    sep = ": " if space else ":"
    out = []
    for b in blocks:
        for what in b["order"]:
            if what == "data":
                out += [f"data{sep}{d}" for d in b["data"]]
            elif what == "comment" and b["comment"] is not None:
                out.append(f":{b['comment']}")
            elif what in ("event", "id", "retry") and b[what] is not None:
                out.append(f"{what}{sep}{b[what]}")
        out.append("")  # the blank line that dispatches the event
    return "".join(line + newline for line in out)


def expected_events(blocks, space: bool) -> list[Event]:
    """WHATWG semantics: the last event id persists; a block without data lines dispatches nothing.
    Without the optional space after the colon, a value that itself starts with a space loses it."""

    def value(v: str) -> str:
        return v if space or not v.startswith(" ") else v[1:]

    events, last_id = [], None
    for b in blocks:
        if b["id"] is not None:
            last_id = value(b["id"])
        if not b["data"]:
            continue
        events.append(Event(event=value(b["event"]) if b["event"] is not None and value(b["event"]) else "message",
                            data="\n".join(value(d) for d in b["data"]), id=last_id,
                            retry=b["retry"]))
    return events


def feed_in_chunks(text: str, cuts: list[int]) -> list[Event]:
    dec = SSEDecoder()
    got, pos = [], 0
    for c in sorted({min(c, len(text)) for c in cuts}) + [len(text)]:
        got += dec.feed(text[pos:c])
        pos = c
    tail = dec.flush()
    return got + ([tail] if tail else [])


@settings(max_examples=400, deadline=None)
@given(blocks=sse_events(), cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), space=st.booleans())
def test_event_id_retry_fields_and_comments_survive_any_chunking(blocks, cuts, newline, space):
    text = serialize(blocks, newline, space)
    assert feed_in_chunks(text, cuts) == expected_events(blocks, space)


@settings(max_examples=200, deadline=None)
@given(blocks=sse_events(), newline=st.sampled_from(["\n", "\r\n"]))
def test_one_character_at_a_time_equals_all_at_once(blocks, newline):
    text = serialize(blocks, newline, True)
    assert feed_in_chunks(text, list(range(len(text)))) == feed_in_chunks(text, [])


# ---------------------------------------------------------------------------- streams cut anywhere

pieces_strategy = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8),
                           min_size=1, max_size=8)


def chat_events(pieces: list[str]) -> list[str]:
    """An Azure-shaped chat stream, one string per event (blank line included)."""
    chunks = [{"id": "c", "model": "m", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]},
              {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
               for p in pieces]
    chunks += [{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
               {"id": "c", "model": "m", "choices": [{"index": 0, "content_filter_results": {}}]},
               {"id": "c", "model": "m", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": len(pieces)}}]
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


def responses_events(pieces: list[str]) -> list[str]:
    text = "".join(pieces)
    resp = {"id": "resp_1", "model": "m", "status": "in_progress", "output": []}
    evs = [("response.created", {"type": "response.created", "response": resp})]
    evs += [("response.output_text.delta", {"type": "response.output_text.delta", "delta": p}) for p in pieces]
    done = dict(resp, status="completed", usage={"input_tokens": 2, "output_tokens": len(pieces)},
                output=[{"type": "message", "content": [{"type": "output_text", "text": text}]}])
    evs.append(("response.completed", {"type": "response.completed", "response": done}))
    return [f"event: {t}\ndata: {json.dumps(d)}\n\n" for t, d in evs]


def run_stream(op: str, body: bytes):
    """Stream `body` through the real sync client; ('ok', text) or ('cut', StreamError)."""
    handler = lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)  # noqa: E731
    conn = fm.Connection.from_url("http://localhost:9/v1", auth="none", model="m")
    with fm.FoundryClient(conn, transport=httpx.MockTransport(handler), max_retries=0) as c:
        s = c.chat("x", stream=True) if op == "chat" else c.respond("x", stream=True)
        try:
            seen = "".join(d.text for d in s)
        except errors.StreamError as e:
            assert s.reply is None and e.partial == s.text
            return "cut", e
        assert s.reply is not None and s.reply.text == seen == s.text
        return "ok", s.reply.text


def _received_text(op: str, events: list[str], n: int, pieces: list[str]) -> str:
    """The text carried by the first n whole events."""
    first_piece = 2 if op == "chat" else 1
    return "".join(pieces[: max(0, min(len(pieces), n - first_piece))])


@settings(max_examples=150, deadline=None)
@given(op=st.sampled_from(["chat", "responses"]), pieces=pieces_strategy, data=st.data())
def test_stream_cut_at_any_event_boundary_is_whole_or_a_stream_error_with_exactly_what_arrived(op, pieces, data):
    events = chat_events(pieces) if op == "chat" else responses_events(pieces)
    n = data.draw(st.integers(min_value=0, max_value=len(events)))
    outcome, value = run_stream(op, "".join(events[:n]).encode())
    terminal = len(events) - (1 if op == "chat" else 0)  # chat ends at [DONE]; responses at completed
    if n >= len(events) or (op == "responses" and n >= terminal):
        assert outcome == "ok" and value == "".join(pieces)
    else:
        assert outcome == "cut", f"a stream cut after {n}/{len(events)} events was reported complete"
        assert value.partial == _received_text(op, events, n, pieces)
        assert "incomplete" in value.hint


@settings(max_examples=150, deadline=None)
@given(op=st.sampled_from(["chat", "responses"]), pieces=pieces_strategy,
       where=st.floats(min_value=0.0, max_value=1.0))
@example(op="chat", pieces=["Hello", " world"], where=0.5)
def test_stream_cut_at_any_byte_is_whole_or_a_stream_error(op, pieces, where):
    body = "".join(chat_events(pieces) if op == "chat" else responses_events(pieces)).encode()
    cut = int(len(body) * where)
    try:
        outcome, value = run_stream(op, body[:cut])
    except errors.ResponseError as e:  # what happens today: the partial text is lost
        raise AssertionError(f"cut at byte {cut}/{len(body)}: {e}") from None
    if outcome == "cut":
        assert "".join(pieces).startswith(value.partial)
    else:
        assert value == "".join(pieces)


# ============================================================================ URL inference

host = st.sampled_from(["r.openai.azure.com", "r.cognitiveservices.azure.com", "r.services.ai.azure.com",
                        "gw.azure-api.net", "127.0.0.1:8000", "localhost:5273", "[::1]:9000"])
segment = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=10).filter(
    lambda s: s not in ("openai", "models", "v1", "api", "projects", "deployments"))
prefix = st.lists(segment, max_size=2).map(lambda xs: "".join("/" + x for x in xs))


@settings(max_examples=300, deadline=None)
@given(host=host, prefix=prefix, project=segment,
       kind_root=st.sampled_from(["openai-v1", "foundry-models", "foundry-project", "openai-compatible"]),
       route=st.sampled_from(["", "/", "/chat/completions", "/responses", "/embeddings", "/models"]),
       query=st.sampled_from(["", "?x=1"]))
def test_route_suffix_never_changes_the_root_and_the_root_pastes_back(host, prefix, project, kind_root, route, query):
    roots = {"openai-v1": "/openai/v1", "foundry-models": "/models", "foundry-project": f"/api/projects/{project}",
             "openai-compatible": "/v1"}
    if kind_root == "foundry-project" and route in ("/chat/completions", "/responses", "/embeddings", "/models"):
        route = "/openai/v1" + route
    if kind_root == "foundry-models" and route in ("/models", "/responses"):
        route = "/info"  # /models has chat/completions, embeddings and info only
    root_url = f"https://{host}{prefix}{roots[kind_root]}"
    c = Connection.from_url(root_url + route + query)
    assert c.kind == kind_root
    assert c.endpoint == root_url
    again = Connection.from_url(c.endpoint)
    assert (again.kind, again.endpoint) == (c.kind, c.endpoint)
    assert Connection.from_dict(c.to_dict()) == c
    assert "responses" not in route or c.api == "responses"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60))
@example("[::1:8000/v1")
def test_from_url_on_printable_junk_is_a_connection_or_a_configuration_error(text):
    for candidate in (text, "https://" + text, "http://localhost/" + text):
        try:
            c = Connection.from_url(candidate)
        except ConfigurationError as e:
            assert type(e) is ConfigurationError and str(e).strip() and e.hint  # names the cause and shows what a valid endpoint looks like
            continue
        assert c.endpoint.startswith(("http://", "https://"))
