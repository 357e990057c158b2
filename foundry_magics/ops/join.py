"""The semantic join: the pairs of two frames that a model judges to match a predicate.

    op = Join("{left.text} is about the product {right.title}", shortlist="auto")
    op.bind(left_rows, right_rows)                 # names checked against both sides, nothing sent
    li, ri = op.candidates(left_rows, right_rows)  # every pair, or each left row's K nearest right rows
    plan = op.pair_plan(left_rows, right_rows, li, ri)
    result = op.run(plan, convert)                 # one yes/no per distinct pair (structured output)
    keep = op.matches(outcome)                     # positions in (li, ri) judged true, in order

* The predicate names columns as `{left.col}` and `{right.col}` (`template.resolve_qualified`).
* `shortlist=K`: each left row is judged only against its K most similar right rows by
  embeddings of `on=(left_col, right_col)` (default: the first column each side of the
  predicate names), cached per text, compared by cosine in numpy (`ops.vectors.nearest`);
  `shortlist=None` judges every pair; "auto" (the default) is K = AUTO_K when the cross product
  exceeds AUTO_PAIRS pairs, else every pair. A left row whose `on` value is missing has no
  pair (like a missing value anywhere); one whose embedding failed is listed in the failures.
* A pair is a row of the judgement plan: identical pairs are judged once, a pair with a missing
  value sends nothing (no match), a pair whose reply is not a yes/no fails and is listed in
  `fm.last_run().failures` by (left label, right label).
* Modes as for every operation: online, `batch=True` (the judgements through the Batch API;
  the shortlist's embeddings are sent online first), `estimate=True` (the judgements' estimate;
  with a shortlist, over K right rows per left row as they would be sent, the shortlist's own
  embeddings not counted and nothing sent).
* `max_cost`: one budget for the whole call, the shortlist's embeddings (at the embedding
  model's price: it needs one too) and the judgements together. When it runs out, the rest is
  not sent: left rows without a shortlist and pairs not judged are listed in the failures with
  the reason (`not sent: max_cost=... reached`), `fm.last_run().stopped` says so, and the pairs
  judged true so far are returned. With `batch=True`, the judgements' job gets what the
  embeddings left of the amount.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from foundry_magics.defaults import CLASSIFY_MAX_TOKENS
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import options as _options
from foundry_magics.ops.operations import Embed, Operation, Outcome, Rows
from foundry_magics.ops.plan import Plan
from foundry_magics.ops.replies import JUDGEMENT_SCHEMA, read_judgements
from foundry_magics.ops.template import escape, resolve_qualified

__all__ = ["Join", "joined_names", "JUDGE", "AUTO_K", "AUTO_PAIRS", "SIDES"]

JUDGE = "Is the following statement true? Answer with a boolean.\n\n"
AUTO_K = 10  # shortlist="auto": K right rows per left row ...
AUTO_PAIRS = 10_000  # ... when the cross product has more pairs than this
SIDES = ("left", "right")
_EMBED_ONLY = ("embed_model", "dimensions")


class Join(Operation):
    """One yes/no judgement per distinct (left row, right row) pair of the candidates."""

    kind = "join"
    output = "bool"
    default_cap = CLASSIFY_MAX_TOKENS
    allowed = (_options.ROW_OPTIONS - {"schema", "images"}) | frozenset(_EMBED_ONLY)

    def __init__(self, predicate: str, *, shortlist: Any = "auto", on: Any = None, where: str | None = None,
                 **options: Any) -> None:
        if not isinstance(predicate, str):
            raise ConfigurationError(f"The join predicate must be a string, got {type(predicate).__name__}.",
                                     hint='For example "{left.text} is about the product {right.title}".')
        super().__init__(escape(JUDGE) + predicate, where=where or "join()", **options)
        if self.options.get("embed_model") is not None:
            self.options["embed_model"] = _options.check_value("model", self.options["embed_model"])
        self.shortlist = shortlist
        if shortlist is not None and shortlist != "auto" and (
                isinstance(shortlist, bool) or not isinstance(shortlist, int) or shortlist < 1):
            raise ConfigurationError(f"shortlist must be 'auto', a whole number >= 1 or None, got {shortlist!r}.",
                                     hint="shortlist=10 judges each left row against its 10 most similar right rows; "
                                          "shortlist=None judges every pair.")
        if on is not None and (not isinstance(on, (tuple, list)) or len(on) != 2):
            raise ConfigurationError(f"on= must be a pair of columns (left, right), got {on!r}.",
                                     hint='For example on=("text", "title").')
        self.on_arg = on
        self.names: dict[str, tuple[str, Any]] = {}
        self.on: tuple[Any, Any] = (None, None)
        self.k: int | None = None
        self.embed_report: Any = None  # the shortlist's embeddings run
        self.spend: Any = None  # the call's one budget under max_cost (embeddings and judgements)

    def request_schema(self) -> Any:
        return JUDGEMENT_SCHEMA

    # -- names, before anything is sent ----------------------------------------------------

    def bind(self, left: Rows, right: Rows) -> "Join":
        """Check the predicate's names and `on` against both frames; fix the shortlist's K."""
        self.names = resolve_qualified(self.template, {"left": list(left.names), "right": list(right.names)})
        first = {side: next((col for s, col in self.names.values() if s == side), None) for side in SIDES}
        absent = [side for side in SIDES if first[side] is None]
        if absent:
            raise ConfigurationError(f"The join predicate names no column of the {absent[0]} frame.",
                                     hint="Name a column of each side: {left.text} ... {right.title}.")
        if self.on_arg is None:
            self.on = (first["left"], first["right"])
        else:
            on = []
            for side, rows, col in zip(SIDES, (left, right), self.on_arg):
                if col not in list(rows.names):
                    shown = ", ".join(repr(str(c)) for c in list(rows.names)[:30])
                    raise ConfigurationError(f"on=: {col!r} is not a column of the {side} frame.",
                                             hint=f"Columns of the {side} frame: {shown}.")
                on.append(col)
            self.on = (on[0], on[1])
        pairs = left.n * right.n
        if self.shortlist == "auto":
            self.k = AUTO_K if pairs > AUTO_PAIRS else None
        else:
            self.k = self.shortlist
        if self.k is not None and self.k >= right.n:
            self.k = None  # K covers every right row: every pair
        return self

    def join(self, left: Rows, right: Rows, convert: Callable[[Any, Any], Any],
             left_labels: Callable[[Any], Sequence[Any]], right_labels: Callable[[Any], Sequence[Any]],
             label: str | None = None) -> Any:
        """The whole join: names checked, candidates (the shortlist's embeddings sent online),
        the judgements run in the options' mode; `convert(left positions, right positions)` of
        the matching pairs gives the front-end's frame."""
        from foundry_magics.ops.rounds import budget_of

        self.bind(left, right)
        self.spend = None if self.estimate else budget_of(self)
        li, ri, unlisted = self.candidates(left, right)
        plan = self.pair_plan(left, right, li, ri)

        def finish(outcome: Outcome) -> Any:
            return convert(*self.finish(outcome, li, ri, unlisted, left_labels, right_labels))

        return self.run(plan, finish, label=label)

    # -- the candidate pairs ---------------------------------------------------------------

    def candidates(self, left: Rows, right: Rows) -> tuple[Any, Any, list[tuple[int, str]]]:
        """(left positions, right positions) of the pairs to judge, in left-row order (each
        left row's shortlist best first), and (left position, reason) of left rows without a
        shortlist."""
        import numpy as np

        if self.k is None or self.estimate:
            if self.k is None:
                li = np.repeat(np.arange(left.n, dtype=np.int64), right.n)
                ri = np.tile(np.arange(right.n, dtype=np.int64), left.n)
                return li, ri, []
            # estimate=True: K right rows per left row, spread over the right frame (nothing is sent)
            step = max(1, right.n // self.k)
            li = np.repeat(np.arange(left.n, dtype=np.int64), self.k)
            ri = (np.arange(left.n * self.k, dtype=np.int64) * step) % right.n
            return li, ri, []
        return self._shortlist(left, right)

    def _shortlist(self, left: Rows, right: Rows) -> tuple[Any, Any, list[tuple[int, str]]]:
        import numpy as np

        from foundry_magics import engine
        from foundry_magics.defaults import EMBED_CONCURRENCY
        from foundry_magics.ops.search import as_text
        from foundry_magics.ops.vectors import matrix, nearest

        lcol, rcol = (_pylist(left.column(self.on[0])), _pylist(right.column(self.on[1])))
        texts = list(dict.fromkeys(as_text(v) for v in [*lcol, *rcol] if not _missing(v)))
        embed = Embed(where=self.where, **self._embed_options())
        o = embed.options
        concurrency = min(o.get("concurrency") or EMBED_CONCURRENCY, 4)
        result = engine.embed_texts(texts, connection=embed.connection(), model=o.get("model"),
                                    dimensions=o.get("dimensions"), cache=o.get("cache", True),
                                    progress=embed._progress(), concurrency=concurrency,
                                    label=f"{self.kind} shortlist", budget=self.spend)
        result.raise_if_stopped()
        self.embed_report = result.report
        where = {t: i for i, t in enumerate(texts)}
        vectors = result.texts

        def side(values: list[Any]) -> Any:
            return [None if _missing(v) else vectors[where[as_text(v)]] for v in values]

        lv, rv = side(lcol), side(rcol)
        dims = next((len(v) for v in [*lv, *rv] if v is not None), 0)
        lm, lp = matrix(lv, dims)
        rm, rp = matrix(rv, dims)
        idx, _ = nearest(lm, rm, int(self.k), right_present=rp)  # type: ignore[arg-type]
        keep = np.flatnonzero(lp)
        li = np.repeat(keep, idx.shape[1])
        ri = idx[keep].reshape(-1)
        # a missing `on` value: nothing to compare, no pair (as a missing value sends nothing);
        # an embedding that failed: listed with its reason
        missing = [(int(i), f"no shortlist: the embedding of its {self.on[0]!r} value failed: "
                    + str(result.errors.get(where[as_text(lcol[i])], "no vector")))
                   for i in np.flatnonzero(~lp) if not _missing(lcol[i])]
        return li.astype(np.int64), ri.astype(np.int64), missing

    def _submit(self, plan: Plan, conn: Any, label: str, finish: Callable[[Any], Any]) -> Any:
        """The judgements' Batch API job, under what the embeddings left of max_cost."""
        if self.spend is None or not self.spend.spent:
            return super()._submit(plan, conn, label, finish)
        from foundry_magics.engine.budget import money

        left = self.spend.limit - self.spend.spent
        if left <= 0 or self.spend.exhausted:
            raise ConfigurationError(
                f"{self.where}: max_cost={self.spend.limit:g}: the shortlist's embeddings spent "
                f"{money(self.spend.spent)}, nothing is left for the judgements; the job was not submitted.",
                hint="Raise max_cost (the embeddings are cached: they are not paid twice).")
        kept = self.options["max_cost"]
        self.options["max_cost"] = left
        try:
            return super()._submit(plan, conn, label, finish)
        finally:
            self.options["max_cost"] = kept

    def _embed_options(self) -> dict[str, Any]:
        o = self.options
        out = {"model": o.get("embed_model"), "dimensions": o.get("dimensions"), "cache": o.get("cache", True),
               "progress": o.get("progress", True)}
        if o.get("connection") is not None:
            out["connection"] = o["connection"]
        return out

    # -- the judgement plan ----------------------------------------------------------------

    def pair_plan(self, left: Rows, right: Rows, li: Any, ri: Any) -> Plan:
        """The judgements of pairs (li[j], ri[j]): a plan over rows named `left.col` / `right.col`."""
        import pyarrow as pa

        from foundry_magics.ops.plan import arrow_column

        takes = {"left": pa.array(li, type=pa.int64()), "right": pa.array(ri, type=pa.int64())}
        sides = {"left": left, "right": right}

        def column(name: str) -> Any:
            side, col = self.names[name]
            return arrow_column(sides[side].column(col)).take(takes[side])

        return self.plan(Rows(names=list(self.names), n=len(li), column=column))

    # -- reading the replies ---------------------------------------------------------------

    def read(self, texts: Sequence[Any]) -> tuple[dict[Any, list], dict[int, str]]:
        out, bad = read_judgements(texts)
        return {None: out}, bad

    @staticmethod
    def matches(outcome: Outcome) -> Any:
        """Positions of the candidate pairs judged true, in candidate order."""
        import numpy as np

        verdicts = outcome.rows()
        return np.flatnonzero(np.fromiter((v is True for v in verdicts), dtype=bool, count=len(verdicts)))

    def finish(self, outcome: Outcome, li: Any, ri: Any, unlisted: list[tuple[int, str]],
               left_labels: Callable[[Any], Sequence[Any]], right_labels: Callable[[Any], Sequence[Any]]
               ) -> tuple[Any, Any]:
        """(left positions, right positions) of the matching pairs; the pairs that could not be
        judged (and left rows without a shortlist) go into the report's failures by (left label,
        right label) - or (left label, None) - and one line says how many."""
        import numpy as np

        fails = outcome.failures()
        report = outcome.report
        listed: list[tuple[Any, str]] = []
        if fails:
            pos = np.fromiter((p for p, _ in fails), dtype=np.int64, count=len(fails))
            lab_l, lab_r = left_labels(li[pos]), right_labels(ri[pos])
            listed = [((a, b), reason) for a, b, (_, reason) in zip(lab_l, lab_r, fails)]
        if unlisted:
            labs = left_labels(np.fromiter((p for p, _ in unlisted), dtype=np.int64, count=len(unlisted)))
            listed += [((lab, None), reason) for lab, (_, reason) in zip(labs, unlisted)]
        report.failures = listed
        if listed:
            import logging

            what = []
            if fails:
                what.append(f"{len(fails):,} pair{'s' if len(fails) != 1 else ''} could not be judged")
            if unlisted:
                what.append(f"{len(unlisted):,} left row{'s' if len(unlisted) != 1 else ''} had no shortlist")
            logging.getLogger("foundry_magics").warning(
                "join: %s (not in the result); fm.last_run().failures lists them with the reason.", " and ".join(what))
        keep = self.matches(outcome)
        return li[keep], ri[keep]


def joined_names(left: Sequence[Any], right: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Column names of a join's result: left's then right's; a name on both sides gets _left / _right."""
    both = set(left) & set(right)
    return ([f"{c}_left" if c in both else c for c in left], [f"{c}_right" if c in both else c for c in right])


def _pylist(values: Any) -> list[Any]:
    if hasattr(values, "to_pylist"):
        return values.to_pylist()
    return list(values)


def _missing(v: Any) -> bool:
    """NA as the plan counts it: None, NaN, pandas' NA / NaT."""
    if v is None:
        return True
    if isinstance(v, float) and v != v:
        return True
    return type(v).__name__ in ("NAType", "NaTType")
