"""Packed requests (several rows in one request, `engine.packing`), answered item by item.

A packed request asks, by structured output, for `{"answers": [{"id": ..., "answer": ...}]}`
and its user message holds a TASK (a template whose `{name}` fields stand for an item's fields,
literal braces doubled) and ITEMS (one JSON object per line, each with an "id"). The emulator
puts each item's fields into the task, which gives back the row's own prompt, and answers it
exactly as it answers that prompt alone (the same `App._reply_for`, with the answer's schema,
or as free text when the answer is a string): so a packed run's answers equal an unpacked run's.

Faults (`pack_fault_rate`, `pack_faults`): each answer, at the rate, is corrupted by one of
`drop` (left out), `duplicate` (its id answered twice, the copy with another answer),
`shuffle` (moved elsewhere in the list: harmless to a client that matches by id), `rename`
(its id changed to one that names no item) or `garble` (an answer invalid for its schema).
Seeded: reproducible for a given seed and request order.
"""

from __future__ import annotations

import json
import re
from typing import Any

KINDS = ("drop", "duplicate", "shuffle", "rename", "garble")
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_TASK, _ITEMS = "\n\nTASK:\n", "\n\nITEMS:\n"


def answer_schema(schema: Any) -> Any:
    """The answer's schema when `schema` is a packed request's (else None)."""
    if not isinstance(schema, dict) or set((schema.get("properties") or {})) != {"answers"}:
        return None
    items = ((schema["properties"]["answers"] or {}).get("items") or {})
    props = items.get("properties") if isinstance(items, dict) else None
    if not isinstance(props, dict) or set(props) != {"id", "answer"}:
        return None
    return props["answer"] if isinstance(props["answer"], dict) else None


def parse(text: str) -> tuple[str, list[dict]] | None:
    """(task, items) of a packed user message, or None when it is not one."""
    head, sep, rest = text.partition(_TASK)
    if not sep:
        return None
    task, sep, lines = rest.rpartition(_ITEMS)
    if not sep:
        return None
    items = []
    for line in lines.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            return None
        if not isinstance(item, dict) or "id" not in item:
            return None
        items.append(item)
    return task, items


def render(task: str, item: dict) -> str:
    """The row's own prompt: the task with the item's fields put in."""
    def field(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        name = m.group(1)
        return str(item[name]) if name in item and name != "id" else tok

    return _FIELD.sub(field, task)


def reply(app: Any, job: dict) -> str | None:
    """The packed reply's JSON text (None when the request is not a packed one)."""
    schema = answer_schema(job.get("schema"))
    if schema is None:
        return None
    parsed = parse(job["last"])
    if parsed is None:
        return None
    task, items = parsed
    text_answer = schema.get("type") == "string" and "enum" not in schema and "const" not in schema
    answers = []
    for item in items:
        prompt = render(task, item)
        one = dict(job, last=prompt, first="", turn=1, schema=None if text_answer else schema,
                   mode="text" if text_answer else "json_schema")
        text, _ = app._reply_for(one)
        answers.append({"id": item["id"], "answer": text if text_answer else json.loads(text)})
    answers = corrupt(app, answers, text_answer)
    return json.dumps({"answers": answers}, ensure_ascii=False)


def corrupt(app: Any, answers: list[dict], text_answer: bool) -> list[dict]:
    rate = float(app.opts.get("pack_fault_rate") or 0.0)
    if rate <= 0 or not answers:
        return answers
    kinds = [k.strip() for k in str(app.opts.get("pack_faults") or ",".join(KINDS)).split(",") if k.strip() in KINDS]
    if not kinds:
        return answers
    rng = app.faults.rng
    out = list(answers)
    for a in answers:
        if not rng.random() < rate:
            continue
        kind = rng.choice(kinds)
        app._fault("pack_" + kind)
        if kind == "drop":
            out.remove(a)
        elif kind == "duplicate":
            other = rng.choice(answers)
            copy = {"id": a["id"], "answer": other["answer"] if other is not a else _garbled(text_answer)}
            out.insert(rng.randrange(len(out) + 1), copy)
        elif kind == "shuffle":
            out.remove(a)
            out.insert(rng.randrange(len(out) + 1), a)
        elif kind == "rename":
            out[out.index(a)] = {"id": f"{a['id']}x{rng.randrange(100)}", "answer": a["answer"]}
        else:  # garble
            out[out.index(a)] = {"id": a["id"], "answer": _garbled(text_answer)}
    return out


def _garbled(text_answer: bool) -> Any:
    return {"garbled": True} if text_answer else "garbled"
