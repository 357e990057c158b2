"""Azure / OpenAI wire shapes: error envelopes, chat completions (+ SSE chunks), Responses
objects (+ stream events), embeddings and model lists. Builds bytes; knows no HTTP."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

from . import brain
from .wire import uuid4_hex

FINGERPRINT = "foundry-emulator"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_SAFE = {"filtered": False, "severity": "safe"}
PROMPT_FILTER_OK = {
    "hate": _SAFE, "jailbreak": {"filtered": False, "detected": False}, "self_harm": _SAFE,
    "sexual": _SAFE, "violence": _SAFE,
}
COMPLETION_FILTER_OK = {
    "hate": _SAFE, "protected_material_code": {"filtered": False, "detected": False},
    "protected_material_text": {"filtered": False, "detected": False}, "self_harm": _SAFE,
    "sexual": _SAFE, "violence": _SAFE,
}
_VIOLENCE = {"filtered": True, "severity": "medium"}
PROMPT_FILTER_HIT = dict(PROMPT_FILTER_OK, violence=_VIOLENCE)
COMPLETION_FILTER_HIT = dict(COMPLETION_FILTER_OK, violence=_VIOLENCE)
PROMPT_FILTER_RESULTS = [{"prompt_index": 0, "content_filter_results": PROMPT_FILTER_OK}]

_J_PROMPT_FILTER_RESULTS = _dumps(PROMPT_FILTER_RESULTS)
_J_COMPLETION_OK = _dumps(COMPLETION_FILTER_OK)
_J_COMPLETION_HIT = _dumps(COMPLETION_FILTER_HIT)


def new_id(prefix: str) -> str:
    return prefix + uuid4_hex()


# --------------------------------------------------------------------------- errors

_SUPPORT = "https://go.microsoft.com/fwlink/?linkid=2213926"

STATUS_ERRORS: dict[int, tuple[str | None, str]] = {
    400: ("BadRequest", "Bad request (emulated)."),
    401: ("401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                 "valid key for an active subscription and use a correct regional API endpoint for your resource."),
    403: ("403", "Access denied due to Virtual Network/Firewall rules."),
    404: ("404", "Resource not found"),
    408: ("Timeout", "The operation was timeout."),
    409: ("409", "Conflict (emulated)."),
    422: ("422", "Unprocessable entity (emulated)."),
    429: ("429", "Rate limit is exceeded. Try again in 1 seconds."),
    500: (None, "The server had an error processing your request. Sorry about that! You can retry your request, "
                f"or contact us through an Azure support request at: {_SUPPORT} if you keep seeing this error."),
    502: ("502", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unable to process your request. Please try again later."),
    504: ("Timeout", "The operation was timeout."),
}


def error_body(code: str | None, message: str, **extra: Any) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    err.update(extra)
    return _dumps({"error": err}).encode()


def status_error_body(status: int) -> bytes:
    code, message = STATUS_ERRORS.get(status, (str(status), _phrase(status) + " (emulated)."))
    if status == 500:
        return error_body(None, message, type="server_error", param=None)
    return error_body(code, message)


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> bytes:
    return error_body(code, message, type="invalid_request_error", param=param)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


CONTENT_FILTER_MESSAGE = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read "
    "our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")


def content_filter_body() -> bytes:
    return error_body("content_filter", CONTENT_FILTER_MESSAGE, type=None, param="prompt", status=400,
                      innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": PROMPT_FILTER_HIT})


def context_length_body(limit: int, got: int, param: str = "messages") -> bytes:
    return invalid_request(
        f"This model's maximum context length is {limit} tokens. However, your messages resulted in {got} tokens. "
        "Please reduce the length of the messages.", param=param, code="context_length_exceeded")


# --------------------------------------------------------------------------- chat completions

def _template(text: str) -> str:
    return text.replace("%", "%%")


# a chat.completion is the same JSON every time but for a few values: format those into the rest,
# encoded once (the bytes are exactly _dumps() of the object; tests/test_emulator.py checks)
_CHAT_COMPLETION = (
    '{"id":"%s","object":"chat.completion","created":%d,"model":%s,"system_fingerprint":'
    + _template(_dumps(FINGERPRINT))
    + ',"choices":[{"index":0,"finish_reason":%s,"logprobs":null,"message":{"role":"assistant","content":%s,'
    '"refusal":null,"annotations":[]},"content_filter_results":%s}],"usage":{"prompt_tokens":%d,'
    '"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d},'
    '"completion_tokens_details":{"reasoning_tokens":%d}},"prompt_filter_results":'
    + _template(_J_PROMPT_FILTER_RESULTS) + "}")


def _usage(usage: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(prompt, completion, cached, reasoning) from (prompt, completion[, cached[, reasoning]]);
    cached tokens are a part of the prompt's, reasoning tokens a part of the completion's."""
    p, c, *rest = usage
    return p, c, (rest[0] if rest else 0), (rest[1] if len(rest) > 1 else 0)


def chat_completion(model: str, content: str, finish: str, usage: tuple[int, ...], *,
                    filtered: bool = False) -> bytes:
    p, c, cached, reasoning = _usage(usage)
    return (_CHAT_COMPLETION % (
        new_id("chatcmpl-"), int(time.time()), _dumps(model), _dumps(finish), _dumps(content),
        _J_COMPLETION_HIT if filtered else _J_COMPLETION_OK, p, c, p + c, cached, reasoning)).encode()


def chat_chunks(model: str, toks: list[str], finish: str, usage: tuple[int, ...] | None, *,
                filtered: bool = False) -> list[bytes]:
    """SSE events (already framed as 'data: ...\\n\\n') in Azure's order."""
    tail = ('],"created":%d,"id":%s,"model":%s,"object":"chat.completion.chunk","system_fingerprint":"%s"}'
            % (int(time.time()), _dumps(new_id("chatcmpl-")), _dumps(model), FINGERPRINT))
    out = [b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
           + _J_PROMPT_FILTER_RESULTS.encode() + b"}\n\n"]
    frame = ('data: {"choices":[{"content_filter_results":{},"delta":%s,"finish_reason":%s,"index":0,"logprobs":null}'
             + tail + "\n\n")
    out.append((frame % ('{"content":"","refusal":null,"role":"assistant"}', "null")).encode())
    for t in toks:
        out.append((frame % ('{"content":' + _dumps(t) + "}", "null")).encode())
    out.append((frame % ("{}", _dumps(finish))).encode())
    total = sum(len(t) for t in toks)
    annot = ('data: {"choices":[{"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":%d},'
             '"content_filter_results":%s,"finish_reason":null,"index":0}'
             % (total, _J_COMPLETION_HIT if filtered else _J_COMPLETION_OK))
    out.append((annot + tail + "\n\n").encode())
    if usage is not None:
        p, c, cached, reasoning = _usage(usage)
        u = _dumps({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                    "prompt_tokens_details": {"cached_tokens": cached},
                    "completion_tokens_details": {"reasoning_tokens": reasoning}})
        out.append(("data: {\"choices\":[" + tail[:-1] + ',"usage":' + u + "}\n\n").encode())
    out.append(b"data: [DONE]\n\n")
    return out


# --------------------------------------------------------------------------- Responses API

def response_object(rid: str, model: str, text: str, *, status: str, incomplete: str | None,
                    usage: tuple[int, ...], instructions: Any, previous: str | None, max_output: Any,
                    fmt: Any, store: bool, msg_id: str, created: int, metadata: Any = None) -> dict:
    p, c, cached, reasoning = _usage(usage)
    return {
        "id": rid, "object": "response", "created_at": created, "status": status, "background": False,
        "error": None, "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": instructions, "max_output_tokens": max_output, "model": model,
        "output": [{
            "type": "message", "id": msg_id, "status": "completed" if status == "completed" else "incomplete",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }],
        "parallel_tool_calls": True, "previous_response_id": previous,
        "reasoning": {"effort": None, "summary": None}, "store": store, "temperature": 1.0,
        "text": {"format": fmt or {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled",
        "usage": {"input_tokens": p, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": c,
                  "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": p + c},
        "user": None, "metadata": metadata or {},
    }


def response_events(resp: dict, toks: list[str]) -> list[bytes]:
    """`event: TYPE` + `data: {...}` frames for a streamed response, ending with
    response.completed (or response.incomplete). No [DONE]."""
    seq = 0
    out: list[bytes] = []

    def emit(typ: str, payload: str) -> None:
        nonlocal seq
        out.append(('event: %s\ndata: {"type":"%s","sequence_number":%d,%s}\n\n' % (typ, typ, seq, payload)).encode())
        seq += 1

    item = resp["output"][0]
    msg_id = item["id"]
    text = item["content"][0]["text"]
    pending = dict(resp, status="in_progress", output=[], usage=None, incomplete_details=None)
    emit("response.created", '"response":' + _dumps(pending))
    emit("response.in_progress", '"response":' + _dumps(pending))
    emit("response.output_item.added", '"output_index":0,"item":' + _dumps(
        {"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []}))
    ids = '"item_id":%s,"output_index":0,"content_index":0' % _dumps(msg_id)
    emit("response.content_part.added", ids + ',"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}')
    for t in toks:
        emit("response.output_text.delta", ids + ',"delta":' + _dumps(t) + ',"logprobs":[]')
    emit("response.output_text.done", ids + ',"text":' + _dumps(text) + ',"logprobs":[]')
    emit("response.content_part.done", ids + ',"part":' + _dumps(item["content"][0]))
    emit("response.output_item.done", '"output_index":0,"item":' + _dumps(item))
    final = "response.completed" if resp["status"] == "completed" else "response." + resp["status"]
    emit(final, '"response":' + _dumps(resp))
    return out


def dumps(obj: Any) -> bytes:
    return _dumps(obj).encode()


# --------------------------------------------------------------------------- embeddings

def embeddings_body(model: str, texts: list[str], dims: int, b64: bool) -> bytes:
    parts = []
    ptoks = 0
    for i, t in enumerate(texts):
        vec = brain.embed(t, dims)
        ptoks += max(1, brain.count_tokens(t))
        if b64:
            emb = '"' + brain.embed_base64(vec) + '"'
        else:
            emb = "[" + ",".join(repr(round(x, 8)) for x in vec) + "]"
        parts.append('{"object":"embedding","index":%d,"embedding":%s}' % (i, emb))
    return ('{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}'
            % (",".join(parts), _dumps(model), ptoks, ptoks)).encode()


def embedding_tokens(texts: list[str]) -> int:
    return sum(max(1, brain.count_tokens(t)) for t in texts)


# --------------------------------------------------------------------------- models

CREATED = 1721172741


def openai_models(deps: list[dict]) -> bytes:
    return dumps({"object": "list", "data": [
        {"id": d["name"], "object": "model", "created": CREATED, "owned_by": d["publisher"].lower()} for d in deps]})


def azure_models(deps: list[dict]) -> bytes:
    data = []
    for d in deps:
        chat = d["kind"] == "chat"
        data.append({
            "id": d["model"], "object": "model", "created_at": CREATED, "status": "succeeded",
            "capabilities": {"fine_tune": False, "inference": True, "completion": False,
                             "chat_completion": chat, "embeddings": not chat},
            "lifecycle_status": "generally-available",
            "deprecation": {"inference": CREATED + 2 * 365 * 86400},
        })
    return dumps({"data": data, "object": "list"})


def project_deployments(deps: list[dict]) -> bytes:
    return dumps({"value": [
        {"name": d["name"], "type": "ModelDeployment", "modelName": d["model"], "modelVersion": d["version"],
         "modelPublisher": d["publisher"],
         "capabilities": {"chat_completion": "true"} if d["kind"] == "chat" else {"embeddings": "true"},
         "sku": {"name": "GlobalStandard", "capacity": 100}, "connectionName": None} for d in deps]})


def model_info(d: dict) -> bytes:
    return dumps({"model_name": d["model"], "model_type": "chat-completion" if d["kind"] == "chat" else "embeddings",
                  "model_provider_name": d["publisher"]})
