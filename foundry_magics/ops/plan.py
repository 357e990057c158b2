"""Planning a run over Arrow arrays: rows -> distinct requests, and results back onto rows.

    plan = Plan.build(tpl, columns={"text": pa_array}, rows=n, fields={"text": "text"})
    plan.requests()             # engine.Batch: `size` distinct requests, rendered chunk by chunk
    plan.spread_text(texts)     # per-distinct replies -> a pa.StringArray, one per row

How a plan is made, with no Python object per row:
1. every column the template reads is dictionary-encoded by Arrow (a null is "missing");
2. the codes of several columns (and of the image column) are combined and factorized, so
   identical rows share one code, in the order the rows first appear;
3. rows with a missing value get code -1: NA, no request;
4. rows whose image is missing or unreadable get code -1 too, with their reason (`skipped`),
   listed in the run's failures; the others run.
Rendering takes the first row of each distinct request (`first_pos`) a chunk at a time, so
only a chunk of prompts exists as Python strings at once.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from foundry_magics.ops.template import SERIES, Template

__all__ = ["Plan", "image_list", "arrow_column", "memory_pool"]


def arrow_column(values: Any) -> Any:
    """A pyarrow Array for a column given as an Array, ChunkedArray or Python list."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError):
        # mixed or unconvertible cells (objects, a mix of numbers and text): their text, as str() renders it
        return pa.array([None if _is_na(v) else str(v) for v in values], type=pa.string())


def memory_pool() -> Any:
    """Where the core's transient Arrow buffers go: the system allocator, which gives a large
    freed buffer back to the OS at once (Arrow's default pool keeps it, so a million-row
    dictionary encoding would stay in the process's memory for the rest of the session)."""
    import pyarrow as pa

    return pa.system_memory_pool()


def _is_na(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return type(v).__name__ in ("NAType", "NaTType")


def _codes(arr: Any) -> Any:
    """int64 codes per row, -1 for null; equal values share a code, in order of first appearance."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    pool = memory_pool()
    try:
        idx = pc.dictionary_encode(arr, memory_pool=pool).indices
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        # lists, structs, maps: identical by their text
        texts = [None if v is None else repr(v) for v in arr.to_pylist()]
        idx = pc.dictionary_encode(pa.array(texts, type=pa.string(), memory_pool=pool), memory_pool=pool).indices
    out = np.asarray(idx.to_numpy(zero_copy_only=False))
    if idx.null_count:
        out = np.where(np.isnan(out), -1, out)
    if arr.type == pa.float64() or arr.type == pa.float32():  # NaN is missing too, as in pandas
        nan = pc.is_nan(arr)
        nan_mask = pc.fill_null(nan, False).to_numpy(zero_copy_only=False)
        if nan_mask.any():
            out = np.where(nan_mask, -1, out)
    return np.asarray(out, dtype=np.int64)


def _first_seen(values: Any) -> Any:
    """Codes 0..k-1 for int64 `values`, numbered in order of first appearance."""
    import numpy as np

    if not len(values):
        return np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)].astype(np.int64)


def _combine(factors: list[Any], n: int) -> Any:
    import numpy as np

    codes: Any = None
    for c in factors:
        if codes is None:
            codes = c
            continue
        na = (codes < 0) | (c < 0)
        width = int(c.max()) + 1 if len(c) else 1
        combined = codes * width + c
        new = np.full(n, -1, dtype=np.int64)
        keep = ~na
        if keep.any():
            new[keep] = _first_seen(combined[keep])
        codes = new
    if codes is None:  # no field at all: every row sends the same prompt
        codes = np.zeros(n, dtype=np.int64)
    return codes


def image_list(cell: Any) -> list[Any]:
    """The images of one cell: none (NA, None, empty), one (path, URL, bytes, PIL), or a list."""
    if cell is None or isinstance(cell, (list, tuple)) and not cell:
        return []
    if isinstance(cell, (list, tuple)):
        return [v for v in cell if v is not None]
    if not isinstance(cell, (str, bytes, bytearray, memoryview)) and not hasattr(cell, "save"):
        if _is_na(cell):
            return []
        if hasattr(cell, "tolist"):  # a numpy array of paths
            return [v for v in cell.tolist() if v is not None]
    return [cell]


def _image_key(cell: Any) -> Any:
    items = [v if isinstance(v, (str, bytes)) else id(v) for v in image_list(cell)]
    return None if not items else (items[0] if len(items) == 1 else tuple(items))


class Plan:
    """Rows -> distinct requests: `codes` per row (-1: no request), `first_pos` of each
    distinct request, `weights` (rows per distinct request), and the reasons rows were skipped."""

    def __init__(self, tpl: Template, columns: Mapping[str, Any], rows: int, fields: Mapping[str, str],
                 consts: Mapping[str, Any] | None = None, series_col: str | None = None,
                 images: Sequence[Any] | None = None) -> None:
        import numpy as np

        self.tpl = tpl
        self.n = rows
        self.consts = dict(consts or {})
        self.fields = dict(fields)  # template name -> column key
        self.series_col = series_col
        series = [series_col] if tpl.positional and series_col is not None else []
        used = list(dict.fromkeys([*self.fields.values(), *series]))
        self.columns = {k: arrow_column(columns[k]) for k in used}
        self.images = images
        self.cap_rule: Callable[[str], int] | None = None  # prompt text -> its own max_tokens
        self.skipped: dict[int, str] = {}  # row position -> why it was not sent (images)
        factors = [_codes(self.columns[k]) for k in used]
        if images is not None:
            factors.append(self._image_codes(images))
        codes = _combine(factors, rows)
        valid = np.flatnonzero(codes >= 0)
        vcodes = codes[valid]
        if len(vcodes):
            _, first = np.unique(vcodes, return_index=True)
            self.first_pos = valid[first]
            self.weights = np.bincount(vcodes, minlength=len(first))
        else:
            self.first_pos = np.zeros(0, dtype=np.int64)
            self.weights = np.zeros(0, dtype=np.int64)
        self.codes = codes
        self.size = len(self.first_pos)
        self.na_rows = int(rows - len(valid) - len(self.skipped))
        self._used = used

    # -- images ------------------------------------------------------------------------

    def _image_codes(self, images: Sequence[Any]) -> Any:
        """Codes of the image cells; a row whose image is missing or unreadable gets -1 and a reason.
        Each distinct image is checked once (read as little as possible), before anything is sent."""
        import numpy as np

        from foundry_magics.rest.images import ImageError, check_image

        keys: dict[Any, int] = {}
        verdict: dict[Any, str | None] = {}
        out = np.empty(self.n, dtype=np.int64)
        for pos, cell in enumerate(images):
            key = _image_key(cell)
            if key is None:
                self.skipped[pos] = "no image (the images cell is empty): nothing was sent"
                out[pos] = -1
                continue
            if key not in verdict:
                problem = None
                for value in image_list(cell):
                    try:
                        check_image(value)
                    except ImageError as exc:
                        problem = f"image: {exc.message}"
                        break
                verdict[key] = problem
            if verdict[key] is not None:
                self.skipped[pos] = verdict[key]  # type: ignore[assignment]
                out[pos] = -1
                continue
            out[pos] = keys.setdefault(key, len(keys))
        return out

    # -- rendering ---------------------------------------------------------------------

    def render(self, idx: Sequence[int]) -> list[Any]:
        import pyarrow as pa

        pos = self.first_pos[idx.start:idx.stop] if isinstance(idx, range) else self.first_pos[list(idx)]
        take = pa.array(pos, type=pa.int64())
        values: dict[str | None, list[Any]] = {
            col: self.columns[col].take(take).to_pylist() for col in self._used}  # a chunk: small
        tpl = self.tpl
        base = dict(self.consts)
        out: list[Any] = []
        for k in range(len(pos)):
            row: dict[Any, Any] = dict(base)  # template names, and SERIES for {}
            for name, col in self.fields.items():
                row[name] = values[col][k]
            if tpl.positional:
                row[SERIES] = values[self.series_col][k]
            out.append(tpl.render_with(row))
        if self.images is None and self.cap_rule is None:
            return out
        return self._with_extras(out, pos)

    def _with_extras(self, texts: list[str], pos: Any) -> list[Any]:
        """Prompts with their images (read and encoded here, chunk by chunk) and own caps."""
        from foundry_magics.engine.prompts import Prompt
        from foundry_magics.rest.images import image_urls

        images = self.images
        out = []
        for k, text in enumerate(texts):
            urls = None
            if images is not None:
                urls = tuple(image_urls(image_list(images[int(pos[k])]))) or None
            out.append(Prompt(text, urls, self.cap_rule(text) if self.cap_rule is not None else None))
        return out

    def requests(self) -> Any:
        """The distinct requests, as the engine, the Batch API and estimates take them."""
        from foundry_magics.engine.prompts import Requests

        return Requests(self.size, self.render, self.weights, rows=self.n, na_rows=self.na_rows + len(self.skipped))

    def texts(self) -> list[str]:
        """Every distinct prompt's text (embeddings send the values themselves)."""
        return [p if isinstance(p, str) else p.text for p in self.render(range(self.size))]

    # -- results back onto rows ----------------------------------------------------------

    def spread(self, per_unique: Sequence[Any]) -> Any:
        """Per-distinct values -> per-row numpy object array (rows without a request get None)."""
        import numpy as np

        arr = np.empty(self.size + 1, dtype=object)
        arr[: self.size] = per_unique
        arr[self.size] = None
        return arr[self.codes]  # code -1 picks the trailing None

    def spread_arrow(self, per_unique: Sequence[Any], type: Any = None) -> Any:  # noqa: A002
        """Per-distinct values -> a pyarrow Array, one value per row (null without a request)."""
        import pyarrow as pa

        values = per_unique
        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = pa.array(per_unique, type=type, from_pandas=True)
        if self.identity:  # every row its own request, in order: no copy
            return values
        import pyarrow.compute as pc

        indices = pa.array(self.codes, mask=self.codes < 0, type=pa.int64())
        return pc.take(values, indices, memory_pool=memory_pool())

    @property
    def identity(self) -> bool:
        """Whether row i is distinct request i for every row (all distinct, none missing)."""
        if self.size != self.n:
            return False
        import numpy as np

        return bool(np.array_equal(self.codes, np.arange(self.n)))

    def failures(self, errors: Mapping[int, str]) -> list[tuple[int, str]]:
        """(row position, reason) for every row whose request failed, and every skipped row, in row order."""
        import numpy as np

        out: list[tuple[int, str]] = []
        if errors:
            bad = np.fromiter(errors.keys(), dtype=np.int64, count=len(errors))
            rows = np.flatnonzero(np.isin(self.codes, bad))
            out = [(int(r), errors[int(self.codes[r])]) for r in rows]
        if self.skipped:
            out.extend(self.skipped.items())
            out.sort(key=lambda item: item[0])
        return out
