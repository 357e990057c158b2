"""Templates: `{col}`, `{col:spec}`, `{}` (the Series form's value), `{{` / `}}` literal braces,
and qualified names `{side.col}` for operations over several inputs (`{left.text}` in a join).

Parsed once, checked against the input's columns (and, in a cell, the user's variables)
before anything is sent; rendered row by row by the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from foundry_magics.errors import ConfigurationError

__all__ = ["Template", "parse_template", "resolve_names", "resolve_qualified", "split_qualified", "escape", "SERIES",
           "MISSING"]

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name  # pickled by name: a template shipped to Spark executors keeps `SERIES` itself


SERIES = _Marker("SERIES")  # the `{}` field
MISSING = _Marker("MISSING")  # "no such thing": a name that is no column, a reply that is no label


@dataclass
class Template:
    text: str
    parts: list[Any]  # literal str, or (name | SERIES, format spec)
    names: list[str]  # distinct field names, in order (without `{}`)
    positional: bool  # uses `{}`

    def render_with(self, values: Mapping[Any, Any]) -> str:
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                name, spec = p
                v = values[name]
                out.append(format(v, spec) if spec else str(v))
        return "".join(out)

    @property
    def literal(self) -> str:
        """The text outside the fields (the instructions every row shares)."""
        return "".join(p for p in self.parts if isinstance(p, str))


def escape(text: str) -> str:
    """`text` as a template literal: braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


def parse_template(text: str) -> Template:
    if not isinstance(text, str):
        raise ConfigurationError(f"The template must be a string, got {type(text).__name__}.",
                                 hint='Write it with column names in braces, e.g. "Summarize: {text}".')
    if not text.strip():
        raise ConfigurationError("The template is empty.",
                                 hint='Write it with column names in braces, e.g. "Summarize: {text}".')
    parts: list[Any] = []
    names: list[str] = []
    positional = False
    pos = 0
    buf: list[str] = []
    for m in _FIELD.finditer(text):
        buf.append(text[pos:m.start()])
        pos = m.end()
        tok = m.group(0)
        if tok == "{{":
            buf.append("{")
        elif tok == "}}":
            buf.append("}")
        elif tok in ("{", "}"):
            raise ConfigurationError(
                f"Unbalanced {tok!r} at position {m.start()} of the template.",
                hint="Write {{ and }} for literal braces; {column} inserts a column.",
            )
        else:
            field = m.group(1).strip()
            spec = ""
            name = field
            if ":" in field and not field.startswith(":"):
                name, _, spec = field.partition(":")
                name = name.strip()
            if buf:
                parts.append("".join(buf))
                buf = []
            if name == "" and not spec.strip(":"):
                positional = True
                parts.append((SERIES, spec))
            else:
                key = field if not spec else name
                parts.append((key, spec))
                if key not in names:
                    names.append(key)
    buf.append(text[pos:])
    tail = "".join(buf)
    if tail:
        parts.append(tail)
    return Template(text, parts, names, positional)


def column_for(name: str, columns: Sequence[Any]) -> Any:
    """The column a template name refers to (exact, then as a number for integer labels)."""
    if name in columns:
        return name
    try:
        as_int = int(name)
    except ValueError:
        return MISSING
    return as_int if as_int in columns else MISSING


def resolve_names(tpl: Template, columns: Sequence[Any], namespace: Mapping[str, Any] | None,
                  series_name: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """name -> column, and name -> constant (from the namespace). Raises naming what is missing."""
    cols: dict[str, Any] = {}
    consts: dict[str, Any] = {}
    missing = []
    for name in tpl.names:
        col = column_for(name, columns)
        if col is not MISSING:
            cols[name] = col
        elif namespace is not None and name in namespace:
            consts[name] = namespace[name]
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(repr(str(c)) for c in list(columns)[:30])
        more = f" (and {len(columns) - 30} more)" if len(columns) > 30 else ""
        what = "a column or a variable" if namespace is not None else "a column"
        names = ", ".join("{" + m + "}" for m in missing)
        if series_name is not None or (len(columns) == 1 and tpl.positional):
            hint = "In the Series form write {} for the value; write {{ and }} for literal braces."
        else:
            hint = f"Columns: {shown}{more}. Write {{{{ and }}}} for literal braces."
        are = "are not" if len(missing) > 1 else "is not"
        what = what if len(missing) == 1 else what.replace("a column", "columns").replace("a variable", "variables")
        raise ConfigurationError(f"The template uses {names}, which {are} {what}.", hint=hint)
    return cols, consts


def split_qualified(name: str, sides: Sequence[str]) -> tuple[str, str] | None:
    """`"left.text"` -> ("left", "text") when "left" is one of `sides`; None for any other name
    (a plain `{col}`, or a column whose own label has a dot: `{price.usd}`)."""
    side, dot, rest = name.partition(".")
    if dot and side.strip() in sides and rest.strip():
        return side.strip(), rest.strip()
    return None


def resolve_qualified(tpl: Template, sides: Mapping[str, Sequence[Any]]) -> dict[str, tuple[str, Any]]:
    """Template name -> (side, column) for a template over several inputs, each name written
    `{side.col}` (`sides`: side -> its column labels). Raises naming every name that is not
    qualified by a side or not a column of its side, with that side's columns."""
    out: dict[str, tuple[str, Any]] = {}
    unqualified: list[str] = []
    missing: dict[str, list[str]] = {}
    for name in tpl.names:
        got = split_qualified(name, list(sides))
        if got is None:
            unqualified.append(name)
            continue
        side, col_name = got
        col = column_for(col_name, sides[side])
        if col is MISSING:
            missing.setdefault(side, []).append(name)
        else:
            out[name] = (side, col)
    example = " and ".join("{" + f"{s}.column" + "}" for s in sides)
    if tpl.positional or unqualified:
        braced = ", ".join("{" + n + "}" for n in unqualified) or "{}"
        raise ConfigurationError(f"The template uses {braced}, which does not say whose column it is.",
                                 hint=f"Name each column with its side: {example}. Write {{{{ and }}}} for "
                                      "literal braces.")
    for side, names in missing.items():
        cols = list(sides[side])
        shown = ", ".join(repr(str(c)) for c in cols[:30]) + (f" (and {len(cols) - 30} more)" if len(cols) > 30 else "")
        listed = ", ".join("{" + n + "}" for n in names)
        are = "are not columns" if len(names) > 1 else "is not a column"
        raise ConfigurationError(f"The template uses {listed}, which {are} of the {side} frame.",
                                 hint=f"Columns of the {side} frame: {shown}.")
    return out
