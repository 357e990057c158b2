"""`pack=N` / `pack="auto"`: what an operation packs - the task, each row's fields, its reply schema.

    packing = packing_for(op, plan)          # an engine.packing.Packing, or None without pack=

The task is the template with the row's fields written `{name}` (literal braces doubled, the
constants of a cell's namespace written in), so that a model - and the emulator - gets each
row's own prompt back by putting the item's fields into it. An item holds each field as the
template renders it (`{price:.2f}` formatted). The answer schema is the one the unpacked request
asks for (`{"label": ...}` for classify, the `schema=` of prompt and extract), or text.
"""

from __future__ import annotations

from typing import Any, Sequence

from foundry_magics.errors import ConfigurationError
from foundry_magics.ops.template import SERIES, escape

__all__ = ["packing_for", "task_and_keys"]


def _key(name: Any, spec: str, taken: set[str]) -> str:
    base = "value" if name is SERIES else str(name)
    if name is SERIES and base in taken:
        base = "_value"
    return base if not spec else f"{base}:{spec}"


def task_and_keys(plan: Any) -> tuple[str, list[tuple[str, Any, str]]]:
    """(the task text, [(item key, template name, format spec)]) of a plan's template."""
    tpl = plan.tpl
    names = {str(n) for n in tpl.names}
    out: list[str] = []
    keys: list[tuple[str, Any, str]] = []
    seen: set[str] = set()
    for p in tpl.parts:
        if isinstance(p, str):
            out.append(escape(p))
            continue
        name, spec = p
        if name is not SERIES and name in plan.consts:  # a cell variable: the same for every row
            v = plan.consts[name]
            out.append(escape(format(v, spec) if spec else str(v)))
            continue
        key = _key(name, spec, names)
        out.append("{" + key + "}")
        if key not in seen:
            seen.add(key)
            keys.append((key, name, spec))
    return "".join(out), keys


def _items(plan: Any, keys: list[tuple[str, Any, str]]):
    def items(idx: Sequence[int]) -> list[dict[str, str]]:
        import pyarrow as pa

        pos = plan.first_pos[list(idx)]
        take = pa.array(pos, type=pa.int64())
        cols = {}
        for _key, name, _ in keys:
            col = plan.series_col if name is SERIES else plan.fields[name]
            if col not in cols:
                cols[col] = plan.columns[col].take(take).to_pylist()
        out = []
        for k in range(len(pos)):
            item = {}
            for key, name, spec in keys:
                v = cols[plan.series_col if name is SERIES else plan.fields[name]][k]
                item[key] = format(v, spec) if spec else str(v)
            out.append(item)
        return out

    return items


def packing_for(op: Any, plan: Any, conn: Any = None) -> Any:
    """The `engine.packing.Packing` of `op` over `plan` (None when the operation is not packed)."""
    size = op.options.get("pack")
    if size is None or size == 1:
        return None
    if plan.images is not None:
        raise ConfigurationError(f"{op.where} cannot pack rows with images (pack={size!r}).",
                                 hint="Leave pack= out for prompts with images: each row is one request.")
    from foundry_magics.engine.packing import Packing
    from foundry_magics.rest.schemas import to_json_schema

    schema = op.request_schema()
    task, keys = task_and_keys(plan)
    return Packing(size=size, task=task, items=_items(plan, keys),
                   answer_schema=to_json_schema(schema) if schema is not None else None)
