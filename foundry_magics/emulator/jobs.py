"""Request bodies -> validated "jobs" (what to generate), with OpenAI/Azure 400s for bad input.

A job is a plain dict: the api, model, prompt text, last user text, system text, turn, token
limit, output mode / schema and stream flags. Errors are raised as `Fail(reply)`.
"""

from __future__ import annotations

from typing import Any

from . import shapes
from .wire import Reply

JSON_CT = ("content-type", "application/json")
MAX_EMBED_INPUTS = 2048
DEFAULT_DIMS = 64


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    out.append(t)
        return "\n".join(out)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


class Fail(Exception):
    """Raised inside handlers to answer with an error reply."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


def _dict(value: Any) -> dict:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def err(status: int, body: bytes, headers: list | None = None, *, delay: float = 0.0) -> Reply:
    h = [JSON_CT]
    if headers:
        h.extend(headers)
    return Reply(status, h, body, delay=delay)


def chat_job(body: dict, model: str) -> dict:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise Fail(err(400, shapes.invalid_request(
            "'messages' is a required property" if msgs is None else "[] is too short - 'messages'", "messages")))
    system_parts, users, texts = [], [], []
    for m in msgs:
        if not isinstance(m, dict):
            raise Fail(err(400, shapes.invalid_request("Invalid type for 'messages': expected an object.", "messages")))
        t = _text_of(m.get("content"))
        texts.append(t)
        role = m.get("role")
        if role in ("system", "developer"):
            system_parts.append(t)
        elif role == "user":
            users.append(t)
    last = users[-1] if users else (texts[-1] if texts else "")
    max_tokens = int_param(body, "max_completion_tokens") or int_param(body, "max_tokens")
    rf = _dict(body.get("response_format"))
    schema = None
    mode = rf.get("type", "text")
    if mode == "json_schema":
        schema = _dict(_dict(rf.get("json_schema")).get("schema"))
    so = _dict(body.get("stream_options"))
    return {
        "api": "chat", "model": model, "prompt": "\n".join(texts), "last": last, "system": "\n".join(system_parts),
        "turn": max(1, len(users)), "first": users[0] if len(users) > 1 else "", "max_tokens": max_tokens,
        "mode": mode, "schema": schema, "stream": bool(body.get("stream")),
        "include_usage": bool(so.get("include_usage")),
    }


def responses_job(body: dict, model: str, store: Any) -> dict:
    inp = body.get("input")
    instructions = body.get("instructions")
    system_parts = [instructions] if isinstance(instructions, str) and instructions else []
    users, texts = [], []
    if isinstance(inp, str):
        users.append(inp)
        texts.append(inp)
    elif isinstance(inp, list):
        for item in inp:
            if isinstance(item, str):
                users.append(item)
                texts.append(item)
                continue
            if not isinstance(item, dict):
                continue
            t = _text_of(item.get("content")) if "content" in item else _text_of(item.get("output"))
            texts.append(t)
            role = item.get("role")
            if role in ("system", "developer"):
                system_parts.append(t)
            elif role == "user" or (role is None and item.get("type") in ("input_text",)):
                users.append(t if "content" in item else item.get("text", ""))
    elif inp is None and not body.get("previous_response_id"):
        raise Fail(err(400, shapes.invalid_request("Missing required parameter: 'input'.", "input",
                                                   "missing_required_parameter")))
    prev_id = body.get("previous_response_id")
    prev = None
    if prev_id:
        prev = store.get(prev_id)
        if prev is None:
            raise Fail(err(400, shapes.invalid_request(
                f"Previous response with id '{prev_id}' not found.", "previous_response_id",
                "previous_response_not_found")))
        store.move_to_end(prev_id)
    turn = (prev["turn"] if prev else 0) + max(1, len(users))
    first = prev["first"] if prev else (users[0] if len(users) > 1 else "")
    fmt = _dict(_dict(body.get("text")).get("format"))
    mode = fmt.get("type", "text") if fmt else "text"
    schema = _dict(fmt.get("schema")) if mode == "json_schema" else None
    # What the service counts as input: the instructions, then the input items (as chat's system
    # message comes first), so that prompt tokens and prompt caching see the instructions too.
    prompt = "\n".join(texts)
    billed = "\n".join([instructions, *texts]) if isinstance(instructions, str) and instructions else prompt
    return {
        "api": "responses", "model": model, "prompt": billed, "last": users[-1] if users else prompt,
        "system": "\n".join(system_parts), "turn": turn, "first": first,
        "max_tokens": int_param(body, "max_output_tokens"), "mode": mode, "schema": schema,
        "stream": bool(body.get("stream")), "instructions": instructions, "previous": prev_id,
        "prev_context": (prev["context"] if prev else 0), "fmt": fmt,
        "store": body.get("store", True) is not False, "metadata": body.get("metadata"),
    }


def embeddings_job(body: dict, model: str) -> dict:
    inp = body.get("input")
    if isinstance(inp, str):
        texts = [inp]
    elif isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
        texts = [" ".join(f"tok{x}" for x in inp)]
    elif isinstance(inp, list):
        texts = []
        for x in inp:
            if isinstance(x, str):
                texts.append(x)
            elif isinstance(x, list) and all(isinstance(y, int) for y in x):
                texts.append(" ".join(f"tok{y}" for y in x))
            else:
                texts = None
                break
    else:
        texts = None
    if not texts or any(t == "" for t in texts):
        raise Fail(err(400, shapes.invalid_request("'$.input' is invalid. Please check the API reference: "
                                                   "https://platform.openai.com/docs/api-reference.", "input")))
    if len(texts) > MAX_EMBED_INPUTS:
        raise Fail(err(400, shapes.invalid_request(
            f"Too many inputs. The max number of inputs is {MAX_EMBED_INPUTS}.  We hope to increase the number "
            "of inputs per request soon. Please contact us through an Azure support request at: "
            "https://go.microsoft.com/fwlink/?linkid=2213926 for further questions.")))
    dims = body.get("dimensions")
    if dims is None:
        dims = DEFAULT_DIMS
    elif not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 4096:
        raise Fail(err(400, shapes.invalid_request(f"Invalid value for 'dimensions': {dims!r}.", "dimensions")))
    enc = body.get("encoding_format") or "float"
    if enc not in ("float", "base64"):
        raise Fail(err(400, shapes.invalid_request(f"Invalid value for 'encoding_format': {enc!r}.",
                                                   "encoding_format")))
    # directives are read from the first input only (keeps big batches cheap)
    return {"api": "embeddings", "model": model, "texts": texts, "dims": dims, "b64": enc == "base64",
            "prompt": texts[0], "last": texts[0], "stream": False, "max_tokens": None}


def int_param(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise Fail(err(400, shapes.invalid_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {v!r} instead.",
            name, "integer_below_min_value")))
    return v
