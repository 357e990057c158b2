"""`agg`: one answer over any number of rows (with `by=`, one per group), folded to fit the context.

    op = Agg("What do customers complain about most? {text}", by="product")
    result = op.run(op.plan(rows), convert)        # convert(Aggregate): texts per group

1. Each row becomes an item: the values the template names (one value, or `name: value; ...`).
   Rows with a missing value have nothing to say and are counted as NA.
2. The items of a group are packed in row order into requests that fit the model's context
   window (`AGG_WINDOW_SHARE` of it, less the output cap): the instruction once, then the
   numbered items. Each request is answered.
3. While a group has more than one answer, the answers are packed and combined the same way
   ("partial answers"), until one remains. No row is left out: every item is in exactly one
   request of each level.

The window is the model's known one (`defaults.CONTEXT_WINDOWS`), else one learnt from a
context-length error of this process, else `AGG_ASSUMED_WINDOW`, tried with one request first.
A request refused as too long teaches the window (the error names it) and is split and sent
again: a context-length error never reaches the user. An item too long for the window alone is
shortened to fit (and said so in `fm.last_run().failures`, though it is kept).

`max_cost`: one budget for every level. agg never returns an answer made from part of the
rows without saying so: when the budget stops it before every group has its one answer, the
call raises a `FoundryError` naming the amount and how many rows were not folded into an
answer (`fm.last_run()` is the report, `stopped` says why). What was answered is cached, so
the same call with a larger `max_cost` sends only the rest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from foundry_magics.defaults import (
    AGG_ASSUMED_WINDOW,
    AGG_MAX_TOKENS,
    AGG_WINDOW_SHARE,
    CHARS_PER_TOKEN,
    CONTEXT_WINDOWS,
)
from foundry_magics.errors import ConfigurationError, FoundryError
from foundry_magics.ops import options as _options
from foundry_magics.ops.operations import Operation, Rows
from foundry_magics.ops.plan import Plan
from foundry_magics.ops.rounds import Tally, budget_of, is_budget_stop, send
from foundry_magics.ops.template import SERIES, parse_template

__all__ = ["Agg", "Aggregate", "context_window", "learn_window", "GROUP", "FOLD", "ITEMS", "PARTIALS"]

ITEMS = "Items:"
PARTIALS = "Partial answers:"
GROUP = "{instruction}\n\nAnswer once, for all {m} items below together (each item gives {what} of one row).\n\n"
FOLD = ("{instruction}\n\nBelow are {m} partial answers, each for a part of the rows. Combine them into one answer "
        "for all the rows.\n\n")
_ITEM_TOKENS = 4  # "[12] " and the line break, per item
_CONTEXT = re.compile(r"maximum context length is (\d[\d,]*)", re.I)

_learnt: dict[tuple[str, str], int] = {}  # (endpoint, model) -> window learnt from a context-length error


def context_window(model: str | None, endpoint: str = "") -> tuple[int, bool]:
    """(window in tokens, known): learnt here, else known by name (exact or longest prefix), else assumed."""
    name = (model or "").strip().lower()
    if (endpoint, name) in _learnt:
        return _learnt[(endpoint, name)], True
    if name in CONTEXT_WINDOWS:
        return CONTEXT_WINDOWS[name], True
    best = max((k for k in CONTEXT_WINDOWS if name.startswith(k + "-")), key=len, default=None)
    if best is not None:
        return CONTEXT_WINDOWS[best], True
    return AGG_ASSUMED_WINDOW, False


def learn_window(model: str | None, endpoint: str, reason: str, tried: int) -> int:
    """The window a context-length error names (else half of what was tried), remembered."""
    m = _CONTEXT.search(reason or "")
    window = int(m.group(1).replace(",", "")) if m else max(256, tried // 2)
    _learnt[(endpoint, (model or "").strip().lower())] = window
    return window


def _is_context(reason: str | None) -> bool:
    return reason is not None and (reason.startswith("ContextLengthError") or "maximum context length" in reason)


def _tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


@dataclass
class _Item:
    text: str
    rows: list[int]  # row positions the item speaks for


@dataclass
class Aggregate:
    """What agg gives a front-end: per group (in order of first appearance) its label and answer."""

    labels: list[Any]  # group keys (one None group without by=)
    texts: list[Any]  # answer per group, None where every request of the group failed
    report: Any
    model: str | None = None
    connection: str | None = None
    failures: list[tuple[int, str]] = field(default_factory=list)

    def label_failures(self, label_of: Callable[[Any], Sequence[Any]] | None = None) -> None:
        fails = self.failures
        if label_of is not None and fails:
            import numpy as np

            labels = label_of(np.array([p for p, _ in fails], dtype=np.int64))
            fails = [(lab, reason) for lab, (_, reason) in zip(labels, fails)]
        self.report.failures = list(fails)

    def reply(self, index: int = 0) -> Any:
        """The answer of one group as an `fm.Reply` (text, model, the whole run's usage)."""
        from foundry_magics.rest.models import EMULATED_PREFIX, Reply, Usage

        text = self.texts[index] or ""
        r = self.report
        return Reply(text=text, model=self.model, finish_reason="stop",
                     usage=Usage(r.input_tokens, r.output_tokens), emulated=text.startswith(EMULATED_PREFIX),
                     connection=self.connection)


class Agg(Operation):
    """Rows -> one answer (per group), folded to fit the model's context."""

    kind = "agg"
    output = "text"
    default_cap = AGG_MAX_TOKENS
    allowed = _options.ROW_OPTIONS - {"schema", "images"}

    def __init__(self, instruction: str, *, by: Any = None, where: str | None = None, **options: Any) -> None:
        where = where or "agg()"
        tpl = parse_template(instruction)
        self.by = by
        self.instruction_template = tpl
        super().__init__(_item_template(tpl), where=where, **options)
        self.instruction = instruction

    # -- planning ------------------------------------------------------------------------

    def plan(self, rows: Rows, namespace: Mapping[str, Any] | None = None) -> Plan:
        plan = super().plan(rows, namespace)
        plan.consts_text = {k: str(v) for k, v in plan.consts.items()}  # type: ignore[attr-defined]
        if self.by is None:
            plan.groups = None  # type: ignore[attr-defined]
            return plan
        by = self.by
        if rows.series or by not in list(rows.names):
            import difflib

            names = [str(n) for n in rows.names]
            close = difflib.get_close_matches(str(by), names, n=1)
            hint = f"Did you mean by={close[0]!r}?" if close else f"Columns: {', '.join(map(repr, names[:30]))}."
            raise ConfigurationError(f"{self.where}: by={by!r} is not a column of the frame.", hint=hint)
        from foundry_magics.ops.plan import arrow_column

        arr = arrow_column(rows.column(by))
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(arr)
        import numpy as np

        idx = enc.indices.to_numpy(zero_copy_only=False)
        codes = np.where(np.isnan(idx), -1, idx).astype(np.int64) if enc.indices.null_count else idx.astype(np.int64)
        labels = enc.dictionary.to_pylist()
        # groups in order of first appearance; a missing key is a group of its own (no row left out)
        if (codes < 0).any():
            codes = np.where(codes < 0, len(labels), codes)
            labels = labels + [None]
        plan.groups = (codes, labels)  # type: ignore[attr-defined]
        return plan

    def instruction_text(self, plan: Plan) -> str:
        out = []
        consts = getattr(plan, "consts_text", {})
        for p in self.instruction_template.parts:
            if isinstance(p, str):
                out.append(p)
            elif p[0] is SERIES:
                out.append("<value>")
            elif p[0] in consts:
                out.append(consts[p[0]])
            else:
                out.append(f"<{p[0]}>")
        return "".join(out).strip()

    def _what(self, plan: Plan) -> str:
        names = [n for n in self.instruction_template.names if n not in getattr(plan, "consts_text", {})]
        if self.instruction_template.positional or not names:
            return "the value"
        return " and ".join(f"<{n}>" for n in names)

    # -- items and packs -------------------------------------------------------------------

    def _groups(self, plan: Plan) -> tuple[list[Any], list[list[_Item]]]:
        import numpy as np

        texts = [t if isinstance(t, str) else t.text for t in plan.render(range(plan.size))] if plan.size else []
        texts = [" ".join(t.split()) for t in texts]
        groups = getattr(plan, "groups", None)
        if groups is None:
            labels: list[Any] = [None]
            gcodes = np.zeros(plan.n, dtype=np.int64)
        else:
            gcodes, labels = groups
        items: list[list[_Item]] = [[] for _ in labels]
        for pos in range(plan.n):
            code = int(plan.codes[pos])
            if code >= 0:
                items[int(gcodes[pos])].append(_Item(texts[code], [pos]))
        order = list(dict.fromkeys(int(g) for g in gcodes)) if plan.n else list(range(len(labels)))
        return [labels[g] for g in order], [items[g] for g in order]

    def _cap(self) -> int:
        cap = self.options.get("max_tokens", AGG_MAX_TOKENS)
        return cap if cap is not None else AGG_MAX_TOKENS

    def _budget(self, window: int, header: str) -> int:
        return max(64, int(window * AGG_WINDOW_SHARE) - self._cap() - _tokens(header) - 16)

    def _pack(self, items: list[_Item], budget: int) -> tuple[list[list[_Item]], list[_Item]]:
        """Items in order, into packs of at most `budget` tokens; at least two per pack when there are
        several (so every level halves at least). Returns the packs and the items that were shortened."""
        shortened: list[_Item] = []
        limit = budget if len(items) <= 1 else budget // 2
        fitted = []
        for it in items:
            if _tokens(it.text) + _ITEM_TOKENS > limit:
                keep = max(16, (limit - _ITEM_TOKENS - 2) * CHARS_PER_TOKEN)
                it = _Item(it.text[:keep] + "…", it.rows)
                shortened.append(it)
            fitted.append(it)
        packs: list[list[_Item]] = []
        cur: list[_Item] = []
        used = 0
        for it in fitted:
            t = _tokens(it.text) + _ITEM_TOKENS
            if cur and used + t > budget:
                packs.append(cur)
                cur, used = [], 0
            cur.append(it)
            used += t
        if cur:
            packs.append(cur)
        return packs, shortened

    def _prompt(self, instruction: str, what: str, level: int, items: list[_Item]) -> str:
        head = (GROUP if level == 0 else FOLD).format(instruction=instruction, m=len(items), what=what)
        lines = "\n".join(f"[{j}] {it.text}" for j, it in enumerate(items, 1))
        return f"{head}{ITEMS if level == 0 else PARTIALS}\n{lines}"

    # -- running -------------------------------------------------------------------------

    def run(self, plan: Plan, convert: Callable[[Any], Any], *, label: str | None = None) -> Any:
        conn = self.connection()
        label = label or self.kind
        if self.batch:
            raise ConfigurationError(f"{self.where} runs in rounds (answers, then answers folded together): "
                                     "batch=True does not apply; nothing was sent.",
                                     hint="Run it online (leave batch out), or price it with estimate=True.")
        model = self.options.get("model") or getattr(conn, "model", None)
        endpoint = getattr(conn, "endpoint", "") or ""
        instruction, what = self.instruction_text(plan), self._what(plan)
        labels, groups = self._groups(plan)
        if self.estimate:
            return self._estimate_first(plan, conn, model, endpoint, instruction, what, groups)
        fold = _Fold(self, conn, model, endpoint, instruction, what, label)
        texts = fold.run(groups)
        done = plan.n - plan.na_rows - len({p for p, _ in fold.failures if p not in fold.kept})
        failures = sorted(fold.failures, key=lambda f: f[0])
        report = fold.tally.report(rows=plan.n, done=done, failed=plan.n - plan.na_rows - done, na_rows=plan.na_rows,
                                   unique=plan.size, failures=failures)
        if fold.over is not None:  # max_cost: never a partial answer returned as if whole
            left = len(fold.unread)
            what = (f"{left:,} of {plan.n - plan.na_rows:,} rows were not read" if left else
                    "the partial answers were not all folded together")
            raise FoundryError(
                f"{self.where}: {fold.over}: {what}, so no answer is returned (agg does not answer for part of "
                f"the rows).",
                hint="What was answered is cached: run the same call with a larger max_cost to send only the rest "
                     "(estimate=True prices it).")
        result = Aggregate(labels, texts, report, model=report.model or model, connection=report.connection,
                           failures=failures)
        value = convert(result)
        if fold.stopped is not None:
            fold.stopped.report = report
            fold.stopped.raise_if_stopped()
        return value

    def _estimate_first(self, plan: Plan, conn: Any, model: Any, endpoint: str, instruction: str, what: str,
                        groups: list[list[_Item]]) -> Any:
        """The first level's requests, exactly as they would be packed now; the folds are a note."""
        from foundry_magics.engine.estimate import estimate_batch
        from foundry_magics.engine.prompts import Requests, RequestSpec

        window, _ = context_window(model, endpoint)
        header = self._prompt(instruction, what, 0, [])
        prompts: list[str] = []
        for items in groups:
            packs, _ = self._pack(items, self._budget(window, header))
            prompts += [self._prompt(instruction, what, 0, p) for p in packs]
        o = self.options
        spec = RequestSpec(op=o.get("api") or getattr(conn, "api", None) or "chat", system=o.get("system"),
                           model=o.get("model"), temperature=o.get("temperature"), max_tokens=self._cap())
        est = estimate_batch(Requests(len(prompts), lambda idx: [prompts[i] for i in idx], rows=plan.n,
                                      na_rows=plan.na_rows), spec, connection=conn, cache=o.get("cache", True))
        folds = max(0, len(prompts) - len(groups))
        if folds:
            est.notes.append(f"First level only: folding the {len(prompts):,} answers into "
                             f"{len(groups):,} adds about {math.ceil(folds / 2):,}-{folds:,} requests.")
        return est


def _item_template(tpl: Any) -> str:
    """The per-row item: the value, or `name: value; ...` for several names."""
    if tpl.positional and not tpl.names:
        return "{}"
    names = list(tpl.names)
    if tpl.positional:
        names = [*names]
        return "{}" if not names else "; ".join(["{}"] + [f"{n}: {{{n}}}" for n in names])
    if len(names) == 1:
        return "{" + names[0] + "}"
    if not names:
        return tpl.text
    return "; ".join(f"{n}: {{{n}}}" for n in names)


class _Fold:
    """The levels of one agg run, every group at once."""

    def __init__(self, op: Agg, conn: Any, model: Any, endpoint: str, instruction: str, what: str,
                 label: str) -> None:
        self.op, self.conn, self.model, self.endpoint = op, conn, model, endpoint
        self.instruction, self.what, self.label = instruction, what, label
        self.tally = Tally()
        self.failures: list[tuple[int, str]] = []
        self.kept: set[int] = set()  # rows listed in failures only because their text was shortened
        self.stopped: Any = None
        self.window, self.known = context_window(model, endpoint)
        self.spend = budget_of(op)  # the one budget of every level under max_cost
        self.over: str | None = None  # why max_cost stopped the folding
        self.unread: set[int] = set()  # rows of first-level requests max_cost kept from being sent

    def budget(self, level: int) -> int:
        return self.op._budget(self.window, self.op._prompt(self.instruction, self.what, level, []))

    def run(self, groups: list[list[_Item]]) -> list[Any]:
        final: list[Any] = [None] * len(groups)
        pending = {g: items for g, items in enumerate(groups) if items}
        level = 0
        while pending and self.stopped is None and self.over is None:
            answers = self.round(pending, level)
            nxt = {}
            for g in pending:
                outs = answers.get(g, [])
                if len(outs) <= 1:
                    final[g] = outs[0].text if outs else None
                else:
                    nxt[g] = outs
            pending = nxt
            level += 1
        return final

    def round(self, pending: dict[int, list[_Item]], level: int) -> dict[int, list[_Item]]:
        """Every pending group's items of one level, packed and answered (in order); a request
        refused as too long is packed again smaller and resent."""
        todo: list[tuple[int, tuple, list[_Item]]] = []
        for g, items in pending.items():
            todo += [(g, (n,), p) for n, p in enumerate(self.pack(items, level))]
        answers: dict[tuple[int, tuple], _Item] = {}
        while todo and self.stopped is None and self.over is None:
            if not self.known and len(todo) > 1:  # one request first: does the assumed window hold?
                first, rest = todo[:1], todo[1:]
                again = self.send(first, level, answers, progress=False)
                if again:  # too long: the window is learnt; everything else is packed again
                    todo = again + self.repack(rest, level)
                else:
                    self.known = True
                    todo = rest
                continue
            todo = self.send(todo, level, answers)
        out: dict[int, list[_Item]] = {}
        for (g, _), item in sorted(answers.items(), key=lambda kv: kv[0]):
            out.setdefault(g, []).append(item)
        return out

    def pack(self, items: list[_Item], level: int) -> list[list[_Item]]:
        packs, shortened = self.op._pack(items, self.budget(level))
        if level == 0:
            self._shortened([pos for it in shortened for pos in it.rows])
        return packs

    def _shortened(self, rows: list[int]) -> None:
        for pos in rows:
            if pos not in self.kept:
                self.failures.append((pos, "kept, but shortened to fit the model's context window"))
                self.kept.add(pos)

    def repack(self, todo: list[tuple[int, tuple, list[_Item]]], level: int, *,
               force: bool = False) -> list[tuple[int, tuple, list[_Item]]]:
        """Packs again for the current window; `force`: each one was refused, so it gets smaller."""
        out = []
        for g, key, p in todo:
            parts = self.pack(p, level)
            if force and len(parts) == 1:  # our count says it fits, the service says not: halve it
                if len(p) > 1:
                    parts = [p[: len(p) // 2], p[len(p) // 2:]]
                else:
                    it = p[0]
                    if level == 0:
                        self._shortened(it.rows)
                    parts = [[_Item(it.text[: max(16, len(it.text) // 2)] + "…", it.rows)]]
            out += [(g, key + ((n,) if len(parts) > 1 else ()), q) for n, q in enumerate(parts)]
        return out

    def send(self, todo: list[tuple[int, tuple, list[_Item]]], level: int, answers: dict, *,
             progress: bool = True) -> list[tuple[int, tuple, list[_Item]]]:
        """Send `todo`, put the answers in `answers`; return what must be sent again."""
        prompts = [self.op._prompt(self.instruction, self.what, level, p) for _, _, p in todo]
        what = "answers" if level == 0 else f"folding, level {level}"
        result = send(self.op, self.conn, prompts, max_tokens=self.op._cap(), label=f"{self.label}: {what}",
                      progress=progress, budget=self.spend)
        self.tally.add(result.report)
        fatal = result.error
        if result.report.interrupted or (fatal is not None and not _is_context(_describe(fatal))):
            self.stopped = result
            return []
        too_long: list[tuple[int, tuple, list[_Item]]] = []
        unsent: list[tuple[int, tuple, list[_Item]]] = []
        for j, (g, key, p) in enumerate(todo):
            text = result.texts[j]
            if text is not None:
                answers[(g, key)] = _Item(" ".join(text.split()), [r for it in p for r in it.rows])
                continue
            reason = result.errors.get(j)
            if is_budget_stop(reason):  # max_cost: the call stops (agg.run says so)
                self.over = reason[len("not sent: "):]
                if level == 0:
                    self.unread.update(r for it in p for r in it.rows)
            elif reason is None:  # not sent: the run stopped early (its first requests were all too long)
                unsent.append((g, key, p))
            elif _is_context(reason):
                tried = _tokens(prompts[j]) + self.op._cap()
                self.window = min(self.window, learn_window(self.model, self.endpoint, reason, tried))
                self.known = True
                too_long.append((g, key, p))
            else:
                for pos in (r for it in p for r in it.rows):
                    self.failures.append((pos, f"left out of the answer: {reason}"))
        if not too_long:
            return unsent
        return self.repack(too_long, level, force=True) + self.repack(unsent, level)


def _describe(exc: BaseException) -> str:
    from foundry_magics.errors import describe

    return describe(exc)
