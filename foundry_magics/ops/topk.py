"""`topk`: the k best rows for an instruction, best first, in O(n) requests plus O(k log n).

    op = TopK("The most useful review for a new buyer: {text}", k=5)
    ranking = op.run(op.plan(rows), convert)      # convert(Ranking): positions best first

1. Score: one request per distinct row (structured output `{"score": 0-100}`), concurrently,
   cached and de-duplicated like any prompt.
2. The head: the candidates are the `TOPK_HEAD * k` best scored rows and every row tied with
   the last of them (a row scored lower than k others cannot be in the top k). Among them a
   pairwise judge (`{"better": "A" | "B"}`) decides: a quickselect keeps the k best (each round
   compares the remaining candidates with one pivot, all at once: O(candidates) comparisons
   expected), then a quicksort orders them (O(k log k)). Comparisons are remembered, never
   asked twice.

When the model's judgements are consistent (a higher score never goes to a worse row, and the
comparisons follow one order) the result is the true top k in order. A row whose score failed
is not ranked; a comparison that failed falls back to the scores. Both are listed in
`fm.last_run().failures`.

`max_cost`: one budget for the whole call, scores and comparisons together. When it is used
up, the rows not scored are not ranked (listed in the failures with the reason), the
comparisons not asked are decided by the scores, and `fm.last_run().stopped` says so; the
ranking of what was decided is returned. Everything answered is cached: the same call with a
larger `max_cost` sends only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from foundry_magics.defaults import COMPARE_MAX_TOKENS, SCORE_MAX_TOKENS, TOPK_HEAD
from foundry_magics.errors import ConfigurationError
from foundry_magics.ops import options as _options
from foundry_magics.ops.operations import Operation
from foundry_magics.ops.plan import Plan
from foundry_magics.ops.replies import loads
from foundry_magics.ops.rounds import Tally, budget_of, is_budget_stop, send
from foundry_magics.ops.template import escape

__all__ = ["TopK", "Ranking", "SCORE", "COMPARE", "SCORE_SCHEMA", "COMPARE_SCHEMA", "check_k"]

SCORE = 'Rate from 0 to 100 how well the item below meets its criterion (100: best). Reply with JSON: {"score": N}.\n' \
        "Item: "
COMPARE = ('Which of the two items below meets its criterion better? Reply with JSON: {"better": "A"} or '
           '{"better": "B"}.\nA: ')
SCORE_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"],
                "additionalProperties": False}
COMPARE_SCHEMA = {"type": "object", "properties": {"better": {"type": "string", "enum": ["A", "B"]}},
                  "required": ["better"], "additionalProperties": False}


def check_k(k: Any, where: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        if hasattr(k, "item") and not isinstance(k, bool):
            return check_k(k.item(), where)
        raise ConfigurationError(f"{where}: k must be a positive whole number, got {k!r}.", hint="For example k=5.")
    return int(k)


def compare_prompt(a: str, b: str) -> str:
    return f"{COMPARE}{a}\nB: {b}"


@dataclass
class Ranking:
    """What topk gives a front-end: row positions, best first, and the run's report."""

    positions: list[int]
    report: Any
    failures: list[tuple[int, str]] = field(default_factory=list)  # (row position, reason)

    def label_failures(self, label_of: Callable[[Any], Sequence[Any]] | None = None) -> None:
        fails = self.failures
        if label_of is not None and fails:
            import numpy as np

            labels = label_of(np.array([p for p, _ in fails], dtype=np.int64))
            fails = [(lab, reason) for lab, (_, reason) in zip(labels, fails)]
        self.report.failures = list(fails)


class TopK(Operation):
    """Score every distinct row, then rerank the head with pairwise judgements."""

    kind = "topk"
    output = "fields"
    default_cap = SCORE_MAX_TOKENS
    allowed = _options.ROW_OPTIONS - {"schema", "images"}

    def __init__(self, instruction: str, k: int = 5, *, where: str | None = None, **options: Any) -> None:
        where = where or "topk()"
        self.k = check_k(k, where)
        template = escape(SCORE) + instruction if isinstance(instruction, str) and instruction.strip() else instruction
        super().__init__(template, where=where, **options)
        self.instruction = instruction
        self.schema = SCORE_SCHEMA
        self.spend: Any = None  # the call's one budget under max_cost (scores and comparisons)

    def read(self, texts: Sequence[Any]) -> tuple[dict[Any, list], dict[int, str]]:
        scores: list[Any] = [None] * len(texts)
        bad: dict[int, str] = {}
        for i, text in enumerate(texts):
            if text is None:
                continue
            value = loads(text) if "{" in text else text.strip()
            if isinstance(value, dict):
                value = value.get("score")
            try:
                number = float(value)
            except (TypeError, ValueError):
                bad[i] = f"the reply is not a score: {text[:80]!r}"
                continue
            if number != number:
                bad[i] = f"the reply is not a score: {text[:80]!r}"
                continue
            scores[i] = number
        return {"score": scores}, bad

    # -- running -------------------------------------------------------------------------

    def run(self, plan: Plan, convert: Callable[[Any], Any], *, label: str | None = None) -> Any:
        conn = self.connection()
        self._apply_cap(plan, conn)
        label = label or self.kind
        if self.estimate:
            est = self._estimate(plan, conn)
            head_rows = min(plan.size, TOPK_HEAD * self.k)
            est.notes.append(f"Scoring only: topk then compares about {2 * head_rows + self.k * 4:,} pairs among the "
                             f"{head_rows:,} best scored rows (more when many rows tie).")
            return est
        if self.batch:
            raise ConfigurationError(f"{self.where} runs in rounds (scores, then comparisons): batch=True does not "
                                     "apply; nothing was sent.",
                                     hint="Run it online (leave batch out), or price it with estimate=True.")
        tally = Tally()
        self.spend = budget_of(self)
        result = self._online(plan, conn, label)
        tally.add(result.report)
        values, bad = self.read(result.texts)
        errors = dict(result.errors)
        for i, reason in bad.items():
            errors[i] = reason
        failures = [(pos, f"not ranked (no score): {reason}") for pos, reason in plan.failures(errors)]
        scored = [i for i, s in enumerate(values["score"]) if s is not None]

        def finish(order: list[int], extra: list[tuple[int, str]]) -> Any:
            done = int(sum(int(plan.weights[i]) for i in scored))
            report = tally.report(rows=plan.n, done=done, failed=plan.n - plan.na_rows - done,
                                  na_rows=plan.na_rows, unique=plan.size,
                                  failures=sorted(failures + extra, key=lambda f: f[0]))
            return Ranking(self._positions(plan, order), report, sorted(failures + extra, key=lambda f: f[0]))

        if result.error is not None or result.report.interrupted:
            ranking = finish([], [])
            result.report = ranking.report
            result.raise_if_stopped()
        head = _Head(self, conn, plan, values["score"], scored, tally, label)
        order = head.select()
        if head.unasked:
            tally.stopped = (f"{tally.stopped or 'stopped'}; {head.unasked:,} comparisons were not asked "
                             f"(the scores decided them)")
        ranking = finish(order, head.failures)
        value = convert(ranking)
        if head.stopped is not None:
            head.stopped.report = ranking.report
            head.stopped.raise_if_stopped()
        return value

    def _positions(self, plan: Plan, order: list[int]) -> list[int]:
        """Rows of the distinct requests in `order`, best first (identical rows side by side), at most k."""
        import numpy as np

        out: list[int] = []
        for i in order:
            rows = np.flatnonzero(plan.codes == i).tolist()
            out.extend(rows[: self.k - len(out)])
            if len(out) >= self.k:
                break
        return out


class _Head:
    """The pairwise rerank of the best scored candidates (see the module docstring)."""

    def __init__(self, op: TopK, conn: Any, plan: Plan, scores: list[Any], scored: list[int], tally: Tally,
                 label: str) -> None:
        self.op, self.conn, self.plan, self.scores, self.tally = op, conn, plan, scores, tally
        self.label = label
        self.order = sorted(scored, key=lambda i: (-scores[i], i))  # by score, then row order
        self.rank = {i: r for r, i in enumerate(self.order)}
        self.memo: dict[tuple[int, int], bool] = {}  # (a, b) -> a is better than b
        self.texts: dict[int, str] = {}
        self.failures: list[tuple[int, str]] = []
        self.stopped: Any = None  # the RunResult of a round that was stopped (Ctrl-C, a fatal error)
        self.unasked = 0  # comparisons max_cost kept from being asked (the scores decided them)

    def candidates(self, k: int) -> list[int]:
        if not self.order:
            return []
        m = min(len(self.order), max(k, TOPK_HEAD * k))
        cut = self.scores[self.order[m - 1]]
        return [i for i in self.order if self.scores[i] >= cut]

    def select(self) -> list[int]:
        k = min(self.op.k, len(self.order))
        cands = self.candidates(k)
        if len(cands) <= 1:
            return cands[:k]
        self._texts(cands)
        chosen: list[int] = []
        pool, need = cands, k
        while need > 0 and pool and self.stopped is None:
            if len(pool) <= need:
                chosen += pool
                break
            pivot = self.pivot(pool, need)
            others = [x for x in pool if x != pivot]
            self.ask([(x, pivot) for x in others])
            better = [x for x in others if self.better(x, pivot)]
            worse = [x for x in others if not self.better(x, pivot)]
            if len(better) >= need:
                pool = better
            else:
                chosen += better + [pivot]
                need -= len(better) + 1
                pool = worse
        return self.sort(chosen)[: k]

    def pivot(self, pool: list[int], need: int) -> int:
        """The `need`-th best by score when the scores cut cleanly there (one round then settles it
        when they are right); inside a block of equal scores, which say nothing, a pseudo-random one."""
        s = self.scores
        at = s[pool[need - 1]]
        if need == len(pool) or s[pool[need]] != at:
            if need == 1 or s[pool[need - 2]] != at:
                return pool[need - 1]
        block = [x for x in pool if s[x] == at]
        return block[(len(pool) * 7919 + need * 104729) % len(block)]

    def sort(self, items: list[int]) -> list[int]:
        """Quicksort by the pairwise judge, one round of comparisons per level (all segments at once)."""
        segments: list[tuple[bool, list[int]]] = [(False, sorted(items, key=lambda i: self.rank[i]))]
        while any(not done and len(seg) > 1 for done, seg in segments) and self.stopped is None:
            pairs = []
            for done, seg in segments:
                if not done and len(seg) > 1:
                    pivot = seg[len(seg) // 2]
                    pairs += [(x, pivot) for x in seg if x != pivot]
            self.ask(pairs)
            nxt: list[tuple[bool, list[int]]] = []
            for done, seg in segments:
                if done or len(seg) <= 1:
                    nxt.append((True, seg))
                    continue
                pivot = seg[len(seg) // 2]
                nxt.append((False, [x for x in seg if x != pivot and self.better(x, pivot)]))
                nxt.append((True, [pivot]))
                nxt.append((False, [x for x in seg if x != pivot and not self.better(x, pivot)]))
            segments = [s for s in nxt if s[1]]
        return [i for _, seg in segments for i in seg]

    # -- comparisons -----------------------------------------------------------------------

    def _texts(self, items: list[int]) -> None:
        rendered = self.plan.render(list(items))
        for i, text in zip(items, rendered):
            text = text if isinstance(text, str) else text.text
            prefix = SCORE
            self.texts[i] = text[len(prefix):] if text.startswith(prefix) else text

    def better(self, a: int, b: int) -> bool:
        if (a, b) in self.memo:
            return self.memo[(a, b)]
        if (b, a) in self.memo:
            return not self.memo[(b, a)]
        return self.rank[a] < self.rank[b]  # not judged (failed, or stopped): the scores decide

    def ask(self, pairs: list[tuple[int, int]]) -> None:
        todo = list(dict.fromkeys((a, b) for a, b in pairs if (a, b) not in self.memo and (b, a) not in self.memo))
        if not todo or self.stopped is not None:
            return
        spend = self.op.spend
        if spend is not None and spend.exhausted:  # max_cost used up: the scores decide
            self.unasked += len(todo)
            return
        prompts = [compare_prompt(self.texts[a], self.texts[b]) for a, b in todo]
        result = send(self.op, self.conn, prompts, schema=COMPARE_SCHEMA, max_tokens=COMPARE_MAX_TOKENS,
                      label=f"{self.label}: comparisons", budget=spend)
        self.tally.add(result.report)
        rows = self.plan.first_pos
        for j, (a, b) in enumerate(todo):
            text = result.texts[j]
            choice = _choice(text) if text is not None else None
            if choice is None:
                why = result.errors.get(j) or (f"the reply names neither A nor B: {text[:60]!r}" if text else None)
                if is_budget_stop(why):
                    self.unasked += 1
                elif why:
                    self.failures.append((int(rows[a]), f"a comparison failed, the scores decided: {why}"))
                continue
            self.memo[(a, b)] = choice == "A"
        if result.error is not None or result.report.interrupted:
            self.stopped = result


def _choice(text: str) -> str | None:
    value = loads(text) if "{" in text else text.strip().strip("\"'`.")
    if isinstance(value, dict):
        value = value.get("better")
    if isinstance(value, str) and value.strip().upper() in ("A", "B"):
        return value.strip().upper()
    return None
