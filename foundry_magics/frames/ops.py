"""Prompts over DataFrame columns: templates, validation, NA, dedup, and results on the index.

What turns a frame into engine work and the engine's answers back into columns; the sending,
dedup across runs, retries and the cache are the engine's. pandas and numpy are imported
inside functions. The accessors (`foundry_magics.frames.accessor`) and `%%foundry --df` only
call into here.

How a run goes:
1. the template is parsed (`{col}`, `{col:spec}`, `{}` for the Series form, `{{`/`}}` literal)
   and every name is checked against the columns (and, in the magic, the user's variables)
   before anything is sent;
2. rows with a missing value in a used column get NA and no request;
3. rows are factorized on the used columns, so identical rows make one request (the
   engine de-duplicates identical rendered requests again, and the cache across runs);
4. the engine sends the distinct requests; results are spread back by position, so a custom
   or duplicate index lines up exactly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from foundry_magics import engine
from foundry_magics.defaults import (
    CHARS_PER_TOKEN,
    CLASSIFY_MAX_TOKENS,
    EMBED_CONCURRENCY,
    EXTRACT_MAX_TOKENS,
    REASONING_CAP_FLOOR,
    SUMMARIZE_CAP,
    TRANSLATE_CAP,
)
from foundry_magics.errors import ConfigurationError
from foundry_magics.rest.schemas import to_json_schema

__all__ = ["Template", "parse_template", "prompt", "classify", "extract", "embed", "summarize", "translate",
           "sentiment", "run_frame", "SUMMARIZE", "TRANSLATE", "SENTIMENT_LABELS"]

SUMMARIZE = "Summarize in one or two sentences: {}"
TRANSLATE = "Translate into {lang}, replying with the translation only: {}"
CLASSIFY = "Classify the text into one of these labels: {labels}. Text: {}"
SENTIMENT = "Classify the sentiment of this text as positive, negative or neutral: {}"
EXTRACT = "Extract these fields from the text: {fields}. Text: {}"
SENTIMENT_LABELS = ("positive", "negative", "neutral")

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_SERIES = object()  # the `{}` field


# ====================================================================== templates


@dataclass
class Template:
    text: str
    parts: list[Any]  # literal str, or (name | _SERIES, format spec)
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


def parse_template(text: str) -> Template:
    if not isinstance(text, str):
        raise ConfigurationError(f"The template must be a string, got {type(text).__name__}.")
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
                parts.append((_SERIES, spec))
            else:
                parts.append((field if not spec else name, spec))
                key = field if not spec else name
                if key not in names:
                    names.append(key)
    buf.append(text[pos:])
    tail = "".join(buf)
    if tail:
        parts.append(tail)
    return Template(text, parts, names, positional)


def _column_for(name: str, columns: Sequence[Any]) -> Any:
    """The column a template name refers to (exact, then as a number for integer labels)."""
    if name in columns:
        return name
    try:
        as_int = int(name)
    except ValueError:
        return _MISSING
    return as_int if as_int in columns else _MISSING


_MISSING = object()


def _resolve_names(tpl: Template, columns: Sequence[Any], namespace: Mapping[str, Any] | None,
                   series_name: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """name -> column, and name -> constant (from the namespace). Raises naming what is missing."""
    cols: dict[str, Any] = {}
    consts: dict[str, Any] = {}
    missing = []
    for name in tpl.names:
        col = _column_for(name, columns)
        if col is not _MISSING:
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
        raise ConfigurationError(f"The template uses {names}, which is not {what}.", hint=hint)
    return cols, consts


# ====================================================================== planning a run


class _Plan:
    """Rows -> distinct requests: codes per row (-1 = NA, no request), renderer per distinct."""

    def __init__(self, frame: Any, tpl: Template, cols: dict[str, Any], consts: dict[str, Any],
                 series_col: Any = None, images: Any = None) -> None:
        import numpy as np
        import pandas as pd

        self.frame = frame
        self.tpl = tpl
        self.consts = consts
        self.n = len(frame)
        used = list(dict.fromkeys([*cols.values(), *([series_col] if tpl.positional else [])]))
        self.fields = {name: col for name, col in cols.items()}
        self.series_col = series_col
        self.images = images  # per row (by position): image(s) attached to its request, or None
        self.cap_rule: Any = None  # prompt text -> its own max_tokens (summaries, translations)
        factors = [_factorize(frame[col]) for col in used]
        if images is not None:  # rows differing only in their image are different requests
            factors.append(_image_codes(images))
        codes: Any = None
        for c in factors:
            if codes is None:
                codes = c
                continue
            na = (codes < 0) | (c < 0)
            combined = codes * (int(c.max()) + 1 if len(c) else 1) + c
            new = np.full(self.n, -1, dtype=np.int64)
            keep = ~na
            if keep.any():
                new[keep] = pd.factorize(combined[keep])[0]
            codes = new
        if codes is None:  # no field at all: every row sends the same prompt
            codes = np.zeros(self.n, dtype=np.int64)
        self.codes = codes
        valid = np.flatnonzero(codes >= 0)
        vcodes = codes[valid]
        if len(vcodes):
            _, first = np.unique(vcodes, return_index=True)
            self.first_pos = valid[first]
            self.weights = np.bincount(vcodes, minlength=len(first))
        else:
            self.first_pos = np.zeros(0, dtype=np.int64)
            self.weights = np.zeros(0, dtype=np.int64)
        self.size = len(self.first_pos)
        self.na_rows = int(self.n - len(valid))
        self._used = used

    def render(self, idx: Sequence[int]) -> list[str]:
        pos = self.first_pos[list(idx)] if not isinstance(idx, range) else self.first_pos[idx.start:idx.stop]
        columns = {col: self.frame[col].iloc[pos].tolist() for col in self._used}
        out = []
        tpl = self.tpl
        for k in range(len(pos)):
            values = dict(self.consts)
            for name, col in self.fields.items():
                values[name] = columns[col][k]
            if tpl.positional:
                values[_SERIES] = columns[self.series_col][k]
            out.append(tpl.render_with(values))
        if self.images is None and self.cap_rule is None:
            return out
        return self._with_extras(out, pos)

    def _with_extras(self, texts: list[str], pos: Any) -> list[Any]:
        """Prompts with their images (read and encoded here, chunk by chunk) and own caps."""
        from foundry_magics.engine.prompts import Prompt
        from foundry_magics.rest.images import ImageError, image_urls

        cells = self.images.iloc[pos].tolist() if self.images is not None else [None] * len(texts)
        out = []
        for k, text in enumerate(texts):
            try:
                urls = tuple(image_urls(_image_list(cells[k]))) or None
            except ImageError as exc:
                raise _row_error(exc, self.frame.index[pos[k]]) from None
            out.append(Prompt(text, urls, self.cap_rule(text) if self.cap_rule is not None else None))
        return out

    def check_images(self) -> None:
        """Every image of the rows to send can be sent (read as little as possible), else one
        readable error naming the row and the path - before anything is sent."""
        from foundry_magics.rest.images import ImageError, check_image

        if self.images is None:
            return
        seen: set[Any] = set()
        cells = self.images.iloc[self.first_pos].tolist()
        for k, cell in enumerate(cells):
            for value in _image_list(cell):
                key = value if isinstance(value, (str, bytes)) else id(value)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    check_image(value)
                except ImageError as exc:
                    raise _row_error(exc, self.frame.index[self.first_pos[k]]) from None

    def batch(self) -> engine.Batch:
        return engine.Batch(self.size, self.render, self.weights, rows=self.n, na_rows=self.na_rows)

    def spread(self, per_unique: Sequence[Any]) -> Any:
        """Per-distinct values -> per-row object array (NA rows get None)."""
        import numpy as np

        arr = np.empty(self.size + 1, dtype=object)
        arr[: self.size] = per_unique
        arr[self.size] = None
        return arr[self.codes]  # code -1 picks the trailing None

    def failures(self, errors: Mapping[int, str], index: Any) -> list[tuple[Any, str]]:
        import numpy as np

        if not errors:
            return []
        bad = np.fromiter(errors.keys(), dtype=np.int64, count=len(errors))
        rows = np.flatnonzero(np.isin(self.codes, bad))
        labels = index[rows]
        return [(label, errors[int(self.codes[r])]) for label, r in zip(labels, rows)]


def _factorize(series: Any) -> Any:
    import numpy as np
    import pandas as pd

    try:
        codes, _ = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists, dicts): identical by their text
        na = series.isna().to_numpy()
        codes, _ = pd.factorize(series.map(repr, na_action="ignore").astype(object), use_na_sentinel=True)
        codes = np.where(na, -1, codes)
    return np.asarray(codes, dtype=np.int64)


def _image_list(cell: Any) -> list[Any]:
    """The images of one cell: none (NA, None, empty), one (path, URL, bytes, PIL), or a list."""
    import pandas as pd

    if cell is None or isinstance(cell, (list, tuple)) and not cell:
        return []
    if isinstance(cell, (list, tuple)):
        return [v for v in cell if v is not None]
    if not isinstance(cell, (str, bytes, bytearray, memoryview)) and not hasattr(cell, "save"):
        try:
            if pd.isna(cell):
                return []
        except (TypeError, ValueError):
            pass
    if hasattr(cell, "tolist") and not isinstance(cell, (bytes, str)) and not hasattr(cell, "save"):
        return [v for v in cell.tolist() if v is not None]  # a numpy array of paths
    return [cell]


def _image_codes(images: Any) -> Any:
    """Factor codes of an images column, in which a missing value means "no image" (not an NA row)."""

    def key(cell: Any) -> Any:
        items = [v if isinstance(v, (str, bytes)) else id(v) for v in _image_list(cell)]
        return "" if not items else (items[0] if len(items) == 1 else tuple(items))

    return _factorize(images.map(key).astype(object))


def _row_error(exc: Any, label: Any) -> Any:
    from foundry_magics.rest.images import ImageError

    return ImageError(f"Row {label!r}: {exc.message}", hint=exc.hint)


def _images_of(frame: Any, images: Any) -> Any:
    """`images=`: a column name of the frame, or a Series / list with one cell per row (by position)."""
    import pandas as pd

    if images is None:
        return None
    if isinstance(images, str) or (not isinstance(images, (list, tuple, pd.Series)) and images in frame.columns):
        if images not in frame.columns:
            shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:30])
            raise ConfigurationError(f"images={images!r} is not a column of the frame.",
                                     hint=f"Columns: {shown}. Pass images='column' holding paths, URLs or bytes.")
        return frame[images].reset_index(drop=True)
    if isinstance(images, pd.Series):
        if len(images) != len(frame):
            raise ConfigurationError(f"images= has {len(images):,} values for {len(frame):,} rows.",
                                     hint="Give one cell per row (a column of paths, URLs or bytes).")
        return images.reset_index(drop=True)
    if isinstance(images, (list, tuple)):
        if len(images) != len(frame):
            raise ConfigurationError(f"images= has {len(images):,} values for {len(frame):,} rows.",
                                     hint="Give one cell per row, or the name of a column: images='path'.")
        return pd.Series(list(images), dtype=object)
    raise ConfigurationError(f"images= must be a column name or one cell per row, got {type(images).__name__}.",
                             hint="e.g. df.foundry.prompt('Describe {name}', images='photo_path').")


# ====================================================================== running


def _frame_of(obj: Any) -> tuple[Any, Any]:
    """(frame, series column) for a DataFrame or a Series."""
    import pandas as pd

    if isinstance(obj, pd.Series):
        return obj.to_frame(name="__value__"), "__value__"
    if isinstance(obj, pd.DataFrame):
        return obj, None
    raise ConfigurationError(f"Expected a pandas DataFrame or Series, got {type(obj).__name__}.")


def _plan(obj: Any, template: str, namespace: Mapping[str, Any] | None, images: Any = None) -> _Plan:
    import pandas as pd

    frame, series_col = _frame_of(obj)
    image_cells = _images_of(frame, images)
    tpl = parse_template(template)
    if tpl.positional and series_col is None:
        raise ConfigurationError(
            "The template uses {}, which only works on a Series.",
            hint="Use df['column'].foundry.prompt('...{}...'), or name the column: {column}.",
        )
    if series_col is not None:
        name = obj.name
        columns = [name] if name is not None else []
        cols, consts = _resolve_names(tpl, columns, namespace, series_name=name if name is not None else "")
        cols = {k: series_col for k in cols}  # {series name} means the value too
    else:
        cols, consts = _resolve_names(tpl, list(frame.columns), namespace)
        dup = [c for c in set(cols.values()) if isinstance(frame[c], pd.DataFrame)]
        if dup:
            raise ConfigurationError(f"Column {dup[0]!r} appears more than once in the frame.",
                                     hint="Rename the duplicate columns first.")
    plan = _Plan(frame, tpl, cols, consts, series_col, images=image_cells)
    plan.check_images()
    return plan


def _request_spec(conn: Any, *, system: str | None = None, model: str | None = None, schema: Any = None,
                  temperature: float | None = None, max_tokens: int | None = None,
                  api: str | None = None) -> engine.RequestSpec:
    """What every request of a run shares (the run and its estimate build it the same way)."""
    op = api or getattr(conn, "api", None) or "chat"
    return engine.RequestSpec(op=op, system=system, model=model, schema=schema, temperature=temperature,
                              max_tokens=max_tokens)


def _go(plan: _Plan, *, label: str, cap: Any = None, **options: Any) -> Any:
    """`_run`, after the operation's default output cap (`cap`: a number, or (ratio, floor,
    ceiling) of the input's tokens; max_tokens=N or max_tokens=None given by the caller wins);
    with estimate=True, the `Estimate` of that run instead (nothing is sent)."""
    given = options.pop("_result", None)  # a Batch API job's results (wait=False): finish the call with them
    if given is not None:
        return given
    estimate = options.pop("estimate", False)
    if cap is not None and "max_tokens" not in options:
        from foundry_magics.connections.session import connection_for
        from foundry_magics.rest.routes import uses_max_completion_tokens

        reasoning = uses_max_completion_tokens(options.get("model") or connection_for(options.get("connection")).model)
        floor = REASONING_CAP_FLOOR if reasoning else 0  # hidden reasoning tokens count inside the cap
        if isinstance(cap, tuple):
            ratio, low, high = cap
            plan.cap_rule = lambda text: max(floor, min(high, max(low, math.ceil(len(text) / CHARS_PER_TOKEN * ratio))))
        else:
            options["max_tokens"] = max(floor, cap)
    if estimate:
        return _estimate(plan, **options)
    return _run(plan, label=label, **options)


def _estimate(plan: _Plan, *, connection: Any = None, cache: bool = True, batch: bool = False,
              system: str | None = None, model: str | None = None, schema: Any = None,
              temperature: float | None = None, max_tokens: int | None = None, api: str | None = None,
              **_run_only: Any) -> Any:
    """The Estimate of `_run(plan, ...)` with the same options (concurrency, rpm, progress... do not matter)."""
    from foundry_magics.connections.session import connection_for
    from foundry_magics.engine.estimate import estimate_batch

    conn = connection_for(connection)
    spec = _request_spec(conn, system=system, model=model, schema=schema, temperature=temperature,
                         max_tokens=max_tokens, api=api)
    return estimate_batch(plan.batch(), spec, connection=conn, cache=cache, batch_api=bool(batch))


def _run(plan: _Plan, *, label: str, system: str | None = None, model: str | None = None, connection: Any = None,
         concurrency: int | None = None, rpm: float | None = None, tpm: float | None = None, cache: bool = True,
         progress: Any = True, schema: Any = None, temperature: float | None = None,
         max_tokens: int | None = None, api: str | None = None, batch: bool = False, wait: bool = True,
         poll_interval: float | None = None) -> Any:
    from foundry_magics.connections.session import connection_for

    conn = connection_for(connection)
    spec = _request_spec(conn, system=system, model=model, schema=schema, temperature=temperature,
                         max_tokens=max_tokens, api=api)
    if batch:
        from foundry_magics.engine.batch import submit

        job = submit(plan.batch(), spec, connection=conn, cache=cache, progress=_display(progress, batch=True),
                     label=label, poll_interval=poll_interval)
        return job.result() if wait else job
    _online_only(wait, poll_interval)
    return engine.run_batch(plan.batch(), spec, connection=conn, concurrency=concurrency, rpm=rpm, tpm=tpm,
                            cache=cache, progress=_display(progress), label=label)


def _display(progress: Any, batch: bool = False) -> Any:
    """`progress=True`: the notebook's progress bar (the engine has no display of its own); for
    a Batch API job, the bar that also shows the job's status."""
    if progress is True:
        if batch:
            from foundry_magics.notebook.render import batch_progress

            return batch_progress
        from foundry_magics.notebook.progress import make

        return make
    return progress


def _online_only(wait: Any, poll_interval: Any) -> None:
    if wait is not True or poll_interval is not None:
        raise ConfigurationError("wait= and poll_interval= apply to Batch API jobs only.",
                                 hint="Add batch=True (half the price, results within 24 h), or leave them out.")


def _later(result: Any, finish: Any) -> Any:
    """What a call returns before its results: an Estimate as it is; a Batch API job submitted
    with wait=False, whose `result()` then finishes the call (`finish(BatchResult)`)."""
    from foundry_magics.engine.batch import BatchJob

    if isinstance(result, BatchJob):
        result.set_finish(finish)
    return result


def _texts_series(plan: _Plan, result: engine.BatchResult, index: Any, name: Any) -> Any:
    import pandas as pd

    values = plan.spread(result.texts)
    return pd.Series(pd.array(values, dtype="string"), index=index, name=name)


def _json_fields(plan: _Plan, result: engine.BatchResult, schema: Any) -> tuple[dict[str, list], dict[int, str]]:
    """Parse each distinct reply as JSON for `schema`: field -> per-distinct values; parse failures."""
    from foundry_magics.rest.schemas import validate

    js = to_json_schema(schema)
    fields = list((js.get("properties") or {}).keys())
    cols: dict[str, list] = {f: [None] * plan.size for f in fields}
    bad: dict[int, str] = {}
    for i, text in enumerate(result.texts):
        if text is None:
            continue
        value = _loads(text)
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


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    m = re.search(r"\{.*\}", text, re.S)  # a model that wrapped the JSON in prose or a code fence
    if m:
        try:
            return json.loads(m.group(0))
        except ValueError:
            return None
    return None


def _array(values: Any) -> Any:
    """A pandas array with a nullable dtype where one fits (Int64, Float64, boolean, string)."""
    import pandas as pd

    try:
        return pd.array(values)
    except (TypeError, ValueError):
        return pd.array(values, dtype=object)


def _finish_report(plan: _Plan, result: engine.BatchResult, index: Any, extra: Mapping[int, str] | None = None) -> None:
    """Failures by row label (engine failures + post-processing ones) into the run report."""
    errors = dict(result.errors)
    report = result.report
    if extra:
        moved = sum(int(plan.weights[i]) for i in extra if i not in errors)
        report.done = max(0, report.done - moved)
        report.failed += moved
        errors.update(extra)
    report.failures = plan.failures(errors, index)


def _schema_frame(plan: _Plan, result: engine.BatchResult, schema: Any, index: Any,
                  prefix: str | None = None) -> Any:
    import pandas as pd

    cols, bad = _json_fields(plan, result, schema)
    _finish_report(plan, result, index, bad)
    data = {}
    for f, vals in cols.items():
        for i in bad:
            vals[i] = None
        name = f if prefix is None else (prefix if len(cols) == 1 else f"{prefix}_{f}")
        data[name] = _array(plan.spread(vals))
    return pd.DataFrame(data, index=index)


def prompt(obj: Any, template: str, *, schema: Any = None, namespace: Mapping[str, Any] | None = None,
           images: Any = None, _cap: Any = None, **options: Any) -> Any:
    """A prompt per row -> Series on obj.index (DataFrame with a column per field for `schema`).
    `images`: a column (or one cell per row) of paths, URLs, bytes or PIL images to attach;
    `estimate=True`: the `fm.Estimate` of the run instead, sending nothing."""
    plan = _plan(obj, template, namespace, images=images)
    result = _go(plan, label="prompt", schema=schema, cap=_cap, **options)
    if not isinstance(result, engine.BatchResult):  # estimate=True, or batch=True with wait=False
        return _later(result, lambda r: prompt(obj, template, schema=schema, namespace=namespace, images=images,
                                               _cap=_cap, _result=r, **options))
    if schema is not None:
        out = _schema_frame(plan, result, schema, obj.index)
    else:
        _finish_report(plan, result, obj.index)
        out = _texts_series(plan, result, obj.index, getattr(obj, "name", None) if _is_series(obj) else None)
    result.raise_if_stopped()
    return out


def _is_series(obj: Any) -> bool:
    import pandas as pd

    return isinstance(obj, pd.Series)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _match_label(text: str, labels: Sequence[Any]) -> Any:
    """The label a reply names: JSON {"label": ...}, the whole reply, or the one label it mentions."""
    norm = {_norm(str(lab)): lab for lab in labels}
    value = _loads(text) if "{" in text else None
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
    return _MISSING


def _norm(s: str) -> str:
    return re.sub(r"[\s\"'`.!*_:]+", " ", s).strip().lower()


def classify(series: Any, labels: Sequence[Any], *, template: str | None = None,
             **options: Any) -> Any:
    """One label per value -> categorical Series; NA when the reply is none of the labels."""
    import pandas as pd

    labels = list(dict.fromkeys(labels)) if not isinstance(labels, str) else [labels]
    if len(labels) < 2:
        raise ConfigurationError("classify() needs at least two labels.",
                                 hint="For example classify(['positive', 'negative', 'neutral']).")
    if template is None:
        template = CLASSIFY.replace("{labels}", _escape(", ".join(map(str, labels))))
    images = options.pop("images", None)
    plan = _plan(series, template, None, images=images)
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": [str(x) for x in labels]}},
              "required": ["label"], "additionalProperties": False}
    result = _go(plan, label="classify", schema=schema, cap=CLASSIFY_MAX_TOKENS, **options)
    if not isinstance(result, engine.BatchResult):  # estimate=True, or batch=True with wait=False
        return _later(result, lambda r: classify(series, labels, template=template, images=images, _result=r,
                                                 **options))
    chosen: list[Any] = [None] * plan.size
    bad: dict[int, str] = {}
    for i, text in enumerate(result.texts):
        if text is None:
            continue
        lab = _match_label(text, labels)
        if lab is _MISSING:
            bad[i] = f"the reply is none of the labels: {text[:80]!r}"
        else:
            chosen[i] = lab
    _finish_report(plan, result, series.index, bad)
    values = plan.spread(chosen)
    out = pd.Series(pd.Categorical(values, categories=labels), index=series.index, name=series.name)
    result.raise_if_stopped()
    return out


def extract(series: Any, fields: Any, *, template: str | None = None, **options: Any) -> Any:
    """Structured fields from each value -> DataFrame, a column per field."""
    js = to_json_schema(fields)
    names = ", ".join((js.get("properties") or {}).keys())
    if template is None:
        template = EXTRACT.replace("{fields}", _escape(names))
    images = options.pop("images", None)
    plan = _plan(series, template, None, images=images)
    result = _go(plan, label="extract", schema=fields, cap=EXTRACT_MAX_TOKENS, **options)
    if not isinstance(result, engine.BatchResult):  # estimate=True, or batch=True with wait=False
        return _later(result, lambda r: extract(series, fields, template=template, images=images, _result=r,
                                                **options))
    out = _schema_frame(plan, result, fields, series.index)
    result.raise_if_stopped()
    return out


def summarize(series: Any, **options: Any) -> Any:
    """Output capped in proportion to the input (SUMMARIZE_CAP) unless max_tokens= is given."""
    return prompt(series, SUMMARIZE, _cap=SUMMARIZE_CAP, **options)


def translate(series: Any, lang: str, **options: Any) -> Any:
    if not isinstance(lang, str) or not lang.strip():
        raise ConfigurationError("translate() needs a language, e.g. translate('French').")
    return prompt(series, TRANSLATE.replace("{lang}", _escape(lang.strip())), _cap=TRANSLATE_CAP, **options)


def sentiment(series: Any, **options: Any) -> Any:
    return classify(series, list(SENTIMENT_LABELS), template=SENTIMENT, **options)


def embed(series: Any, *, model: str | None = None, dimensions: int | None = None, connection: Any = None,
          cache: bool = True, progress: Any = True, concurrency: int | None = None, **_ignored: Any) -> Any:
    """One vector per value -> Series of numpy arrays (None where the value is missing)."""
    plan = _plan(series, "{}", None)
    texts = plan.render(range(0, plan.size))
    if _ignored.get("estimate"):  # the Estimate of this run: nothing is sent
        from foundry_magics.engine.estimate import estimate_embeddings

        return estimate_embeddings(texts, connection=connection, model=model, dimensions=dimensions, cache=cache,
                                   rows=plan.n, na_rows=plan.na_rows, batch_api=bool(_ignored.get("batch")))
    if _ignored.get("batch"):  # through the Batch API: one text per line
        from foundry_magics.engine.batch import submit_embeddings

        job = submit_embeddings(texts, connection=connection, model=model, dimensions=dimensions, weights=plan.weights,
                                rows=plan.n, na_rows=plan.na_rows, cache=cache, progress=_display(progress, batch=True),
                                poll_interval=_ignored.get("poll_interval"),
                                finish=lambda r: _vectors(plan, r, series))
        return job.result() if _ignored.get("wait", True) else job
    _online_only(_ignored.get("wait", True), _ignored.get("poll_interval"))
    result = engine.embed_texts(texts, connection=connection, model=model, dimensions=dimensions, cache=cache,
                                progress=_display(progress), concurrency=min(concurrency or EMBED_CONCURRENCY, 4),
                                weights=plan.weights,
                                rows=plan.n, na_rows=plan.na_rows)
    return _vectors(plan, result, series)


def _vectors(plan: _Plan, result: engine.BatchResult, series: Any) -> Any:
    """Per-distinct vectors -> a Series of numpy arrays on the series' index (None where NA / failed)."""
    import pandas as pd

    _finish_report(plan, result, series.index)
    out = pd.Series(plan.spread(result.texts), index=series.index, name=series.name, dtype=object)
    result.raise_if_stopped()
    return out


# ====================================================================== the magic's entry point


def run_frame(df: Any, template: str, *, out: str, schema: Any = None, system: str | None = None,
              model: str | None = None, connection: Any = None, concurrency: int | None = None,
              rpm: float | None = None, tpm: float | None = None, cache: bool = True, progress: Any = True,
              namespace: Mapping[str, Any] | None = None, **options: Any) -> engine.RunReport:
    """`%%foundry --df DF --out COL`: write the result column(s) into `df` in place; return the report.

    With `schema`, one column per field: `COL` for a single field, else `COL_field`. What
    finished is written even when the run is interrupted or stopped (then it re-raises).
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigurationError(f"--df needs a pandas DataFrame, got {type(df).__name__}.")
    if (not isinstance(out, str) or not out.strip()) and not options.get("estimate"):
        raise ConfigurationError("Name the output column: --out COL.")
    out = (out or "").strip()
    plan = _plan(df, template, namespace, images=options.pop("images", None))
    result = _go(plan, label=out, system=system, model=model, connection=connection, concurrency=concurrency,
                 rpm=rpm, tpm=tpm, cache=cache, progress=progress, schema=schema, **options)
    if not isinstance(result, engine.BatchResult):  # estimate=True: an Estimate, nothing sent or written
        return _later(result, lambda r: run_frame(df, template, out=out, schema=schema, system=system, model=model,
                                                  connection=connection, cache=cache, progress=progress,
                                                  namespace=namespace, _result=r, **options))
    if schema is not None:
        frame = _schema_frame(plan, result, schema, df.index, prefix=out)
        for name in frame.columns:
            df[name] = frame[name].array
    else:
        _finish_report(plan, result, df.index)
        df[out] = _texts_series(plan, result, df.index, out).array
    result.raise_if_stopped()
    return result.report

