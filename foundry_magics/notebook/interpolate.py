"""Prompt interpolation, done once and by us (never by IPython): pure, no I/O.

Rules, chosen so that code with braces reaches the model unchanged:

* `{name}` is replaced by `str(value)` when `name` is in the namespace; attribute and index
  access work (`{df.shape}`, `{items[0]}`, `{cfg["key"]}`), as do a conversion and a format
  spec (`{x!r}`, `{price:.2f}`).
* `{{name}}` is the escape: it becomes the literal `{name}`, whatever the namespace holds.
  More generally `{{…}}` around text with no brace and no newline becomes `{…}`.
* Anything else is left exactly as written: `{unknown}`, `{"a": {"b": 1}}`, `function() { }`,
  a lone `{{` or `}}`, a lookup or format that fails.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

__all__ = ["interpolate", "placeholders"]

# `{{ ... }}`: the escape (checked first), then a placeholder `{expr[!c][:spec]}`.
_ESCAPE = r"\{\{(?P<esc>[^{}\n]*)\}\}"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_INDEX = r"\[(?:-?\d+|'[^'\]\n]*'|\"[^\"\]\n]*\")\]"
_EXPR = rf"{_NAME}(?:\.{_NAME}|{_INDEX})*"
_FIELD = rf"\{{(?P<expr>{_EXPR})(?:!(?P<conv>[rsa]))?(?::(?P<spec>[^{{}}\n]*))?\}}"
_TOKEN = re.compile(f"{_ESCAPE}|{_FIELD}")
_STEP = re.compile(rf"\.({_NAME})|\[(-?\d+)\]|\['([^'\]\n]*)'\]|\[\"([^\"\]\n]*)\"\]")

_MISSING = object()


def _lookup(expr: str, namespace: Mapping[str, Any]) -> Any:
    """Resolve `a.b[0]["k"]` against `namespace`, or _MISSING. Never evaluates code."""
    head = re.match(_NAME, expr)
    assert head is not None
    name = head.group(0)
    if name not in namespace:
        return _MISSING
    value = namespace[name]
    for m in _STEP.finditer(expr, head.end()):
        attr, idx, key1, key2 = m.groups()
        try:
            if attr is not None:
                if attr.startswith("__"):
                    return _MISSING
                value = getattr(value, attr)
            elif idx is not None:
                value = value[int(idx)]
            else:
                value = value[key1 if key1 is not None else key2]
        except Exception:  # AttributeError, KeyError, IndexError, TypeError, a property that raised…
            return _MISSING
    return value


def _render(value: Any, conv: str | None, spec: str | None) -> str | None:
    try:
        if conv == "r":
            value = repr(value)
        elif conv == "a":
            value = ascii(value)
        elif conv == "s":
            value = str(value)
        return format(value, spec or "")
    except Exception:  # a spec that does not fit the value (e.g. TypeScript `{x: number}`)
        return None


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """`template` with known `{names}` replaced (see the module doc for the exact rules)."""

    def sub(m: re.Match[str]) -> str:
        if m.group("esc") is not None:
            return "{" + m.group("esc") + "}"
        value = _lookup(m.group("expr"), namespace)
        if value is _MISSING:
            return m.group(0)
        text = _render(value, m.group("conv"), m.group("spec"))
        return m.group(0) if text is None else text

    return _TOKEN.sub(sub, template)


def placeholders(template: str, namespace: Mapping[str, Any]) -> list[str]:
    """The placeholder expressions in `template` that `namespace` would fill, in order."""
    out = []
    for m in _TOKEN.finditer(template):
        if m.group("expr") and _lookup(m.group("expr"), namespace) is not _MISSING:
            out.append(m.group("expr"))
    return out
