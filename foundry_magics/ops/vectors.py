"""Vectors in numpy: cosine similarity, row by row or all against all, and the k nearest.

    m = matrix(vectors)                 # (n, d) float32, unit rows; a missing vector is a row of zeros
    cosine_rows(a, b)                   # per-row cosine of two stacks: float64 in [-1, 1], NaN where missing
    nearest(left, right, k)             # for each left row, its k most similar right rows, best first

Pure numpy (imported on first use), no request: what `search`, `similarity` and the join's
shortlist compute once the embeddings are there.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["matrix", "cosine_rows", "nearest"]

_CHUNK = 1024  # left rows scored at a time: a (1024, n_right) float32 block


def matrix(vectors: Sequence[Any], dims: int | None = None) -> tuple[Any, Any]:
    """(unit-length float32 matrix, present mask): one row per vector; None (or a zero vector)
    is a row of zeros with present False."""
    import numpy as np

    if dims is None:
        dims = next((len(v) for v in vectors if v is not None and len(v)), 0)
    out = np.zeros((len(vectors), dims), dtype=np.float32)
    present = np.zeros(len(vectors), dtype=bool)
    for i, v in enumerate(vectors):
        if v is None:
            continue
        arr = np.asarray(v, dtype=np.float32)
        if arr.shape != (dims,):
            raise ValueError(f"vectors of different lengths: {arr.shape[0]} and {dims}")
        out[i] = arr
        present[i] = True
    norms = np.linalg.norm(out, axis=1)
    present &= norms > 0
    out[present] /= norms[present, None]
    return out, present


def cosine_rows(a: Sequence[Any], b: Sequence[Any]) -> Any:
    """Cosine similarity of a[i] and b[i] for each i: float64, NaN where either is missing."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"{len(a)} vectors against {len(b)}")
    if not len(a):
        return np.zeros(0, dtype=np.float64)
    ma, pa_ = matrix(a)
    mb, pb = matrix(b, ma.shape[1] if ma.shape[1] else None)
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"vectors of different lengths: {ma.shape[1]} and {mb.shape[1]}")
    out = np.einsum("ij,ij->i", ma.astype(np.float64), mb.astype(np.float64))
    out = np.clip(out, -1.0, 1.0)
    out[~(pa_ & pb)] = np.nan
    return out


def nearest(left: Any, right: Any, k: int, right_present: Any = None) -> tuple[Any, Any]:
    """For each row of `left` (unit rows, as `matrix` makes them) its `k` most similar rows of
    `right`, best first: (indices (n_left, k') int64, scores (n_left, k') float32), k' = min(k,
    rows of right that are present). Equal scores in right-row order. O(n_left * n_right) in
    blocks of _CHUNK left rows (a 1,000 x 1,000 shortlist is one matrix product)."""
    import numpy as np

    n_right = right.shape[0]
    cols = np.arange(n_right) if right_present is None else np.flatnonzero(right_present)
    kk = min(int(k), len(cols))
    idx = np.zeros((left.shape[0], kk), dtype=np.int64)
    scores = np.zeros((left.shape[0], kk), dtype=np.float32)
    if kk == 0:
        return idx, scores
    sub = right[cols]
    for start in range(0, left.shape[0], _CHUNK):
        block = left[start:start + _CHUNK] @ sub.T  # (chunk, len(cols))
        if kk < len(cols):
            part = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        else:
            part = np.broadcast_to(np.arange(len(cols)), (block.shape[0], len(cols))).copy()
        vals = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)  # best first; ties: the earlier right row
        part = np.take_along_axis(part, order, axis=1)
        idx[start:start + block.shape[0]] = cols[part]
        scores[start:start + block.shape[0]] = np.take_along_axis(block, part, axis=1)
    return idx, scores
