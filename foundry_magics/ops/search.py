"""Similarity and search: embeddings (cached per text) compared by cosine in numpy; no chat request.

    op = Similarity("text", "title")                      # column against column, row by row
    op = Similarity("text", text="delivery was late")     # a column against one text
    scores = op.run(op.plan(rows), convert)               # Outcome.values[None]: a float per distinct pair
    best = top_k(scores_per_row, 10)                       # search: the positions of the k best rows

A plan's distinct request is a distinct pair of values (identical rows are compared once); the
texts to embed are the distinct values of both sides together, sent in one embeddings run, so
every text is embedded once and comes from the cache afterwards: a column searched again sends
only the new query. Every mode of the core applies: online, `batch=True` (the embeddings
through the Batch API) and `estimate=True` (the embeddings run's estimate, nothing sent).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from foundry_magics.defaults import EMBED_CONCURRENCY
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops.operations import VALUE, Embed, Rows
from foundry_magics.ops.plan import Plan
from foundry_magics.ops.template import MISSING, Template, column_for

__all__ = ["Similarity", "top_k", "embed_texts_of", "as_text"]


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def top_k(scores: Any, k: int) -> Any:
    """Positions of the `k` highest scores, best first (equal scores in row order); NaN never chosen."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(scores))
    order = np.lexsort((valid, -scores[valid]))
    return valid[order[:max(0, int(k))]]


def check_k(k: Any, where: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) and not (hasattr(k, "item") and isinstance(k.item(), int)) \
            or int(k) < 1:
        raise ConfigurationError(f"{where} needs k, a whole number of rows >= 1, got {k!r}.",
                                 hint="For example k=10.")
    return int(k)


def embed_texts_of(op: Embed, texts: Sequence[str], conn: Any, label: str) -> Any:
    """An online embeddings run of distinct `texts` with `op`'s options (a RunResult whose
    `texts` are the vectors)."""
    from foundry_magics import engine

    o = op.options
    return engine.embed_texts(texts, connection=conn, model=o.get("model"), dimensions=o.get("dimensions"),
                              cache=o.get("cache", True), progress=op._progress(),
                              concurrency=min(o.get("concurrency") or EMBED_CONCURRENCY, 4), label=label)


class Similarity(Embed):
    """Cosine similarity of column `a` against column `b`, or against one `text`, row by row."""

    kind = "similarity"
    output = "score"

    def __init__(self, a: Any, b: Any = None, *, text: str | None = None, where: str | None = None,
                 **options: Any) -> None:
        super().__init__(where=where or "similarity()", **options)
        if (b is None) == (text is None):
            raise ConfigurationError(f"{self.where} compares with a second column or with one text.",
                                     hint='For example df.foundry.similarity("text", "title"), or '
                                          'df["text"].foundry.similarity("delivery was late").')
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ConfigurationError(f"{self.where} needs a text to compare with, got {text!r}.",
                                     hint='For example similarity("delivery was late").')
        self.a, self.b, self.text = a, b, text

    # -- planning: distinct pairs --------------------------------------------------------

    def plan(self, rows: Rows, namespace: Mapping[str, Any] | None = None) -> Plan:
        names = list(rows.names)
        wanted = [("a", self.a)] + ([("b", self.b)] if self.b is not None else [])
        fields: dict[str, Any] = {}
        for field, col in wanted:
            if rows.series and (col is None or col == rows.series_name):
                fields[field] = VALUE
                continue
            found = column_for(col, names) if isinstance(col, str) else (col if col in names else MISSING)
            if found is MISSING:
                shown = ", ".join(repr(str(c)) for c in names[:30]) + (f" (and {len(names) - 30} more)"
                                                                     if len(names) > 30 else "")
                raise ConfigurationError(f"{self.where}: {col!r} is not a column.", hint=f"Columns: {shown}.")
            fields[field] = found
        parts: list[Any] = [("a", "")] + (["\n", ("b", "")] if "b" in fields else [])
        tpl = Template("{a}\n{b}" if "b" in fields else "{a}", parts, list(fields), False)
        columns = {key: rows.column(key) for key in dict.fromkeys(fields.values())}
        return Plan(tpl, columns, rows.n, fields)

    def pairs(self, plan: Plan) -> tuple[list[str], list[str]]:
        """The texts of each distinct pair: (a side, b side)."""
        import pyarrow as pa

        take = pa.array(plan.first_pos, type=pa.int64())
        a = [as_text(v) for v in plan.columns[plan.fields["a"]].take(take).to_pylist()]
        if "b" in plan.fields:
            b = [as_text(v) for v in plan.columns[plan.fields["b"]].take(take).to_pylist()]
        else:
            b = [self.text] * plan.size  # type: ignore[list-item]
        return a, b

    # -- running: one embeddings run over the distinct texts of both sides ----------------

    def _union(self, plan: Plan) -> tuple[list[str], list[str], list[str]]:
        a, b = self.pairs(plan)
        return a, b, list(dict.fromkeys([*a, *b]))

    def _online(self, plan: Plan, conn: Any, label: str) -> Any:
        a, b, texts = self._union(plan)
        return self.scores(plan, a, b, texts, embed_texts_of(self, texts, conn, label))

    def _submit(self, plan: Plan, conn: Any, label: str, finish: Callable[[Any], Any]) -> Any:
        from foundry_magics.batch_api.submit import submit_embeddings

        a, b, texts = self._union(plan)
        o = self.options
        return submit_embeddings(texts, connection=conn, model=o.get("model"), dimensions=o.get("dimensions"),
                                 cache=o.get("cache", True), progress=self._progress(batch=True), label=label,
                                 poll_interval=o.get("poll_interval"),
                                 finish=lambda result: finish(self.scores(plan, a, b, texts, result)))

    def _estimate(self, plan: Plan, conn: Any) -> Any:
        from foundry_magics.engine.estimate import estimate_embeddings

        _, _, texts = self._union(plan)
        o = self.options
        return estimate_embeddings(texts, connection=conn, model=o.get("model"), dimensions=o.get("dimensions"),
                                   cache=o.get("cache", True), rows=plan.n, na_rows=plan.na_rows,
                                   batch_api=self.batch)

    def scores(self, plan: Plan, a: list[str], b: list[str], texts: list[str], result: Any) -> Any:
        """The embeddings run's result turned into the similarity run's: a score per distinct
        pair (None where a side has no vector, with the reason), the report counted in rows."""
        import numpy as np

        from foundry_magics.ops.vectors import cosine_rows

        where = {t: i for i, t in enumerate(texts)}
        vectors = list(result.texts)
        va = [vectors[where[t]] for t in a]
        vb = [vectors[where[t]] for t in b]
        sims = cosine_rows(va, vb) if plan.size else np.zeros(0)
        errors: dict[int, str] = {}
        out: list[Any] = []
        for i, s in enumerate(sims.tolist()):
            if s != s:  # NaN: a side without a vector
                reason = result.errors.get(where[a[i]]) or result.errors.get(where[b[i]]) or "no embedding"
                errors[i] = f"embedding: {reason}"
                out.append(None)
            else:
                out.append(float(s))
        report = result.report
        failed = int(sum(int(plan.weights[i]) for i in errors))
        report.rows, report.na_rows, report.unique = plan.n, plan.na_rows, plan.size
        report.done, report.failed = plan.n - plan.na_rows - failed, failed
        report.dedup_saved = max(0, plan.n - plan.na_rows - plan.size)
        result.texts, result.errors = out, errors
        return result
