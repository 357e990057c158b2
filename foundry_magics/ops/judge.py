"""`mask` / `filter`: one yes/no judgement per distinct row, as structured output.

    op = Judge("The review mentions a delivery problem: {text}", kind="filter")
    plan = op.plan(rows); op.run(plan, convert)      # online, batch=True or estimate=True

The predicate is a template like any other (`{col}`; `{}` in the Series form); the request is
the predicate after a fixed instruction, with the schema `{"answer": boolean}`. A reply that is
no such object fails its row (NA in `mask`, left out of `filter`), with the reason in
`fm.last_run().failures`. Every option and mode of a prompt applies.
"""

from __future__ import annotations

from typing import Any, Sequence

from foundry_magics.defaults import JUDGE_MAX_TOKENS
from foundry_magics.ops import options as _options
from foundry_magics.ops.operations import Operation
from foundry_magics.ops.replies import JUDGEMENT, JUDGEMENT_SCHEMA, MISSING, read_bool, read_judgements
from foundry_magics.ops.template import escape

__all__ = ["Judge", "JUDGE", "JUDGE_SCHEMA", "ANSWER", "read_answer", "left_out"]

JUDGE = 'Decide whether the statement below is true. Reply with JSON: {"answer": true} or {"answer": false}.\n' \
        "Statement: "
ANSWER = JUDGEMENT  # the field of the judgement: {"answer": true}
JUDGE_SCHEMA = JUDGEMENT_SCHEMA  # one schema for every yes/no judgement (mask, filter, join)


def read_answer(text: str) -> bool | None:
    """True / False from a reply ({"answer": true}, or a bare true/false/yes/no); None if neither
    (`replies.read_bool`, which the join reads with too)."""
    value = read_bool(text)
    return None if value is MISSING else value


class Judge(Operation):
    """A boolean per row: `mask` gives it, `filter` keeps the rows where it is true."""

    kind = "mask"
    output = "fields"  # one field, ANSWER: a boolean column on every front-end (Spark included)
    default_cap = JUDGE_MAX_TOKENS
    allowed = _options.ROW_OPTIONS - {"schema"}

    def __init__(self, predicate: str, *, kind: str = "mask", where: str | None = None, **options: Any) -> None:
        self.kind = kind
        template = predicate if not isinstance(predicate, str) else escape(JUDGE) + predicate
        if isinstance(predicate, str) and not predicate.strip():
            template = predicate  # the template's own "is empty" error
        super().__init__(template, where=where or f"{kind}()", **options)
        self.predicate = predicate
        self.schema = JUDGE_SCHEMA

    def read(self, texts: Sequence[Any]) -> tuple[dict[Any, list], dict[int, str]]:
        answers, bad = read_judgements(texts)
        return {ANSWER: answers}, bad


def left_out(report: Any, what: str = "filter") -> None:
    """One warning line when a filter left rows out because their judgement failed (every front-end's filter)."""
    import logging

    failed = int(getattr(report, "failed", 0) or 0)
    if failed:
        logging.getLogger("foundry_magics").warning(
            "%s: %s left out because the judgement failed; fm.last_run().failures lists %s with the reason.",
            what, f"{failed:,} rows were" if failed != 1 else "1 row was", "them" if failed != 1 else "it")
