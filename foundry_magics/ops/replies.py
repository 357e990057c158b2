"""Reading replies: JSON objects for a schema, a label among labels.

What an operation makes of the text a model sent back, shared by every front-end and mode.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from foundry_magics.ops.template import MISSING

__all__ = ["loads", "match_label", "json_fields", "schema_fields", "read_bool", "read_judgements", "JUDGEMENT",
           "JUDGEMENT_SCHEMA", "MISSING"]


def loads(text: str) -> Any:
    """The JSON value of a reply, also when the model wrapped it in prose or a code fence; None if none."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    m = re.search(r"\{.*\}", text, re.S)
    if m:
        try:
            return json.loads(m.group(0))
        except ValueError:
            return None
    return None


def _norm(s: str) -> str:
    return re.sub(r"[\s\"'`.!*_:]+", " ", s).strip().lower()


def match_label(text: str, labels: Sequence[Any]) -> Any:
    """The label a reply names: JSON {"label": ...}, the whole reply, or the one label it
    mentions; MISSING when it names none (or several)."""
    norm = {_norm(str(lab)): lab for lab in labels}
    value = loads(text) if "{" in text else None
    if isinstance(value, dict):
        v = value.get("label", next(iter(value.values()), None) if len(value) == 1 else None)
        if v is not None and _norm(str(v)) in norm:
            return norm[_norm(str(v))]
    whole = _norm(text)
    if whole in norm:
        return norm[whole]
    low = text.lower()
    found = [lab for key, lab in norm.items()
             if key and re.search(r"(?<![\w])" + re.escape(key) + r"(?![\w])", low)]
    if len(found) == 1:
        return found[0]
    return MISSING


def schema_fields(schema: Any) -> list[str]:
    from foundry_magics.rest.schemas import to_json_schema

    return list((to_json_schema(schema).get("properties") or {}).keys())


def json_fields(texts: Sequence[Any], schema: Any) -> tuple[dict[str, list], dict[int, str]]:
    """Each reply parsed as JSON for `schema`: field -> per-reply values, and reasons for the
    replies that are not such an object (None replies are skipped: they failed already)."""
    from foundry_magics.rest.schemas import to_json_schema, validate

    js = to_json_schema(schema)
    fields = list((js.get("properties") or {}).keys())
    cols: dict[str, list] = {f: [None] * len(texts) for f in fields}
    bad: dict[int, str] = {}
    for i, text in enumerate(texts):
        if text is None:
            continue
        value = loads(text)
        if not isinstance(value, dict):
            bad[i] = f"the reply is not a JSON object: {text[:80]!r}"
            continue
        problems = validate(value, js)
        if problems and not any(f in value for f in fields):
            bad[i] = "the reply does not match the schema: " + "; ".join(problems[:3])
            continue
        for f in fields:
            cols[f][i] = value.get(f)
    return cols, bad


# A yes/no judgement (join; the shape mask/filter can share): structured output, one boolean.
JUDGEMENT = "answer"
JUDGEMENT_SCHEMA = {"type": "object", "properties": {JUDGEMENT: {"type": "boolean"}}, "required": [JUDGEMENT],
                    "additionalProperties": False}
_YES = frozenset({"true", "yes", "y", "1"})
_NO = frozenset({"false", "no", "n", "0"})


def read_bool(text: Any) -> Any:
    """The yes/no of a judgement reply: JSON {"answer": true} (any single boolean field), a bare
    true / false / yes / no; MISSING when the reply says neither."""
    if isinstance(text, bool):
        return text
    if not isinstance(text, str):
        return MISSING
    value = loads(text) if "{" in text else None
    if isinstance(value, dict):
        v = value.get(JUDGEMENT, next(iter(value.values()), None) if len(value) == 1 else None)
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and _norm(v) in _YES | _NO:
            return _norm(v) in _YES
        return MISSING
    word = _norm(text)
    if word in _YES:
        return True
    if word in _NO:
        return False
    return MISSING


def read_judgements(texts: Sequence[Any]) -> tuple[list[Any], dict[int, str]]:
    """Per-reply yes/no values (None where the reply failed or is no judgement), and the reasons
    for the replies that are not one: what mask/filter and join make of their replies."""
    out: list[Any] = [None] * len(texts)
    bad: dict[int, str] = {}
    for i, text in enumerate(texts):
        if text is None:
            continue
        verdict = read_bool(text)
        if verdict is MISSING:
            bad[i] = f"the reply is not a yes/no judgement: {str(text)[:80]!r}"
        else:
            out[i] = verdict
    return out, bad
