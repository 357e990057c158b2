"""Structured output: a Python field mapping or a JSON Schema, as the API wants it."""

from __future__ import annotations

import json
import typing
from typing import Any, Mapping

from foundry_magics.errors import ConfigurationError

__all__ = ["to_json_schema", "chat_response_format", "responses_text_format", "validate"]

_PY_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _field_schema(tp: Any, where: str) -> dict[str, Any]:
    if isinstance(tp, type) and tp in _PY_TYPES:
        return {"type": _PY_TYPES[tp]}
    if isinstance(tp, str) and tp in ("string", "integer", "number", "boolean"):
        return {"type": tp}
    if isinstance(tp, (list, tuple)) and tp and all(isinstance(x, str) for x in tp):
        return {"type": "string", "enum": list(tp)}
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return {"type": "string", "enum": [str(x) for x in typing.get_args(tp)]}
    if origin in (list, typing.List):
        (item,) = typing.get_args(tp) or (str,)
        return {"type": "array", "items": _field_schema(item, where + "[]")}
    if isinstance(tp, Mapping):
        return _object_schema(tp, where)
    raise ConfigurationError(
        f"Unsupported schema type for {where!r}: {tp!r}.",
        hint="Use str, int, float, bool, list[str], a list of allowed strings, a nested dict, or a JSON Schema.",
    )


def _object_schema(fields: Mapping[str, Any], where: str = "schema") -> dict[str, Any]:
    if not fields:
        raise ConfigurationError("The schema has no fields.", hint='Give at least one field, e.g. {"label": str}.')
    props = {}
    for name, tp in fields.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"Schema field names must be strings, got {name!r}.")
        props[name] = _field_schema(tp, name)
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def to_json_schema(schema: Any) -> dict[str, Any]:
    """Accepts a JSON Schema dict, a JSON string of one, or a `{"field": type}` mapping."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ConfigurationError(f"The schema is not valid JSON: {exc}.",
                                     hint='Give a JSON Schema object or a {"field": type} mapping.') from None
    if not isinstance(schema, Mapping):
        raise ConfigurationError(
            f"A schema must be a mapping, got {type(schema).__name__}.",
            hint='Use {"field": type} or a JSON Schema object.',
        )
    if schema.get("type") == "object" and isinstance(schema.get("properties"), Mapping):
        return dict(schema)
    return _object_schema(schema)


def chat_response_format(schema: Any, name: str = "reply") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": to_json_schema(schema)}}


def responses_text_format(schema: Any, name: str = "reply") -> dict[str, Any]:
    return {"format": {"type": "json_schema", "name": name, "strict": True, "schema": to_json_schema(schema)}}


def validate(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """A small structural check (types, required, enum): the problems found, empty if none."""
    problems: list[str] = []
    _check(value, schema, "$", problems)
    return problems


def _check(value: Any, schema: Mapping[str, Any], path: str, out: list[str]) -> None:
    t = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} is not one of {schema['enum']}")
        return
    ok = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        None: lambda v: True,
    }.get(t, lambda v: True)
    if not ok(value):
        out.append(f"{path}: expected {t}, got {type(value).__name__}")
        return
    if t == "object":
        for req in schema.get("required", []):
            if req not in value:
                out.append(f"{path}.{req}: missing")
        for k, sub in (schema.get("properties") or {}).items():
            if k in value:
                _check(value[k], sub, f"{path}.{k}", out)
    elif t == "array" and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", out)
