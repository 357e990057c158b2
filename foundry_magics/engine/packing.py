"""Packing several rows into one request, with the cache kept per row.

    packing = Packing(size=20, task="Classify ...: {text}", items=plan_items, answer_schema={...})
    run_requests(requests, spec, pack=packing)        # engine.runner: a PackedRun

How it keeps every row's answer its own:

* The feeder keys and looks up every distinct ROW request exactly as an unpacked run does
  (`RequestKeys`, the cache, dedup against requests in flight): re-runs, dedup and interrupts
  behave as always, and a row answered in a pack is never sent again.
* The requests that miss the cache are grouped into packs: one request with the instructions
  once (the system prompt; the template with each field written `{name}`) and the rows as
  items `{"id": ..., "name": value, ...}`, asking (structured output) for
  `{"answers": [{"id": ..., "answer": <the operation's own reply schema>}]}`.
* `match` takes an answer by its id only: an id that is missing, unknown or given twice, or an
  answer that is not valid for the row's schema, is not used; those rows are sent again in
  packs half the size, finally alone (the row's own unpacked request). Nothing is assigned by
  position. A pack that fails (an error after its retries, a content filter, a cut-off reply)
  is split the same way, so a row only ever fails for its own request.
* Each answer is cached under its row's own key as the text the unpacked request would have
  produced (`{"label": "x"}` for classify, the text for a prompt), so reading replies is unchanged.
* `pack="auto"`: rows are added while the pack stays within AUTO_INPUT_TOKENS input tokens and
  AUTO_ROWS rows; with any size the summed output caps stay within the model's output limit.
  The size is halved for the rest of the run when a pack comes back cut off, unreadable or
  with more than a quarter of its answers unusable.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from foundry_magics.engine.prompts import PromptRun, RequestSpec, estimate_tokens
from foundry_magics.errors import describe

__all__ = ["Packing", "PackedRun", "match", "pack_prompt", "pack_schema", "group", "AUTO_ROWS", "AUTO_INPUT_TOKENS",
           "OUTPUT_LIMIT", "PACK_INTRO"]

AUTO_ROWS = 50  # pack="auto": at most this many rows in a request
AUTO_INPUT_TOKENS = 2_000  # ... and about this many input tokens
OUTPUT_LIMIT = 16_384  # a model's output limit when none is known (gpt-4o's; gpt-4.1 has 32,768)
ITEM_OUTPUT_OVERHEAD = 16  # output tokens per answer beyond the answer itself: {"id": "...", "answer": ...}
PACK_OUTPUT_OVERHEAD = 16

PACK_INTRO = ("Do the TASK below once for each item of ITEMS, separately: in the task, a name in braces stands for "
              "that item's field of the same name. Answer every item exactly once, in \"answers\": each answer with "
              "the item's \"id\" unchanged and, as \"answer\", what the task asks for that item alone.")


@dataclass
class Packing:
    """How to pack a run's rows: `size` (rows per request, or "auto"), the `task` (the template,
    each field written `{name}`, literal braces doubled), `items(indices)` (each distinct request's
    fields: name -> text), `answer_schema` (one row's reply schema; None: free text)."""

    size: Any
    task: str
    items: Callable[[Sequence[int]], list[dict[str, str]]]
    answer_schema: Mapping[str, Any] | None = None
    output_limit: int = OUTPUT_LIMIT

    @property
    def auto(self) -> bool:
        return self.size == "auto"

    @property
    def max_rows(self) -> int:
        return AUTO_ROWS if self.auto else int(self.size)

    def schema(self) -> dict[str, Any]:
        return pack_schema(self.answer_schema)

    def to_text(self, answer: Any) -> str:
        """The text the row's unpacked request would have had: the string, or the JSON object."""
        if self.answer_schema is None:
            return answer
        return json.dumps(answer, ensure_ascii=False)

    def problem(self, answer: Any) -> str | None:
        """Why `answer` is not a valid reply for one row (None: it is)."""
        if self.answer_schema is None:
            return None if isinstance(answer, str) else f"expected text, got {type(answer).__name__}"
        from foundry_magics.rest.schemas import validate

        problems = validate(answer, self.answer_schema)
        return "; ".join(problems[:2]) if problems else None


def pack_schema(answer_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The structured output of a packed request: one answer per id."""
    answer = dict(answer_schema) if answer_schema is not None else {"type": "string"}
    return {"type": "object", "additionalProperties": False, "required": ["answers"],
            "properties": {"answers": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["id", "answer"],
                "properties": {"id": {"type": "string"}, "answer": answer}}}}}


def pack_prompt(task: str, items: Sequence[Mapping[str, Any]]) -> str:
    """The user message of a packed request: the instructions once, then one JSON line per item."""
    lines = "\n".join(json.dumps(dict(item), ensure_ascii=False) for item in items)
    return f"{PACK_INTRO}\n\nTASK:\n{task}\n\nITEMS:\n{lines}"


def item_id(key: bytes, taken: set[str]) -> str:
    """A short id derived from the row's request key: the same row has the same id in every pack
    (never a position), unique within its pack."""
    base = format(zlib.crc32(key) & 0xFFFFFF, "06x")
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}-{n}"
    taken.add(out)
    return out


# ---------------------------------------------------------------------- matching


def match(text: Any, ids: Sequence[str], problem: Callable[[Any], str | None]) -> tuple[dict[str, Any], dict[str, str]]:
    """The answers of a packed reply by id, and why each other id has none.

    Only an answer whose id is one of `ids`, given exactly once, and valid (`problem(answer)` is
    None) is taken. Entries that are no object, have no id or an unknown one are ignored; an id
    given twice loses both answers. Never by position."""
    reasons: dict[str, str] = {}
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    entries = value.get("answers") if isinstance(value, dict) else None
    if not isinstance(entries, list):
        return {}, {i: "the packed reply had no readable answers" for i in ids}
    wanted = set(ids)
    seen: dict[str, list[Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or "answer" not in entry:
            continue
        rid = entry.get("id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or rid not in wanted:
            continue  # unknown: no row's answer
        seen.setdefault(rid, []).append(entry["answer"])
    answers: dict[str, Any] = {}
    for rid in ids:
        got = seen.get(rid)
        if not got:
            reasons[rid] = "no answer for its id in the packed reply"
        elif len(got) > 1:
            reasons[rid] = "its id was answered more than once in the packed reply"
        else:
            why = problem(got[0])
            if why is not None:
                reasons[rid] = f"its answer in the packed reply is not valid: {why}"
            else:
                answers[rid] = got[0]
    return answers, reasons


# ---------------------------------------------------------------------- grouping


class Entry:
    """A row request waiting for a pack: its distinct index, key, prompt, body, its fields (the
    item, rendered when packs are formed), its output cap and its estimated input tokens."""

    __slots__ = ("i", "key", "prompt", "body", "item", "cap", "tokens")

    def __init__(self, i: int, key: bytes, prompt: Any, body: dict[str, Any], cap: int | None, tokens: int) -> None:
        self.i, self.key, self.prompt, self.body, self.cap, self.tokens = i, key, prompt, body, cap, tokens
        self.item: dict[str, str] | None = None


def _item_tokens(item: Mapping[str, Any]) -> int:
    return len(json.dumps(dict(item), ensure_ascii=False)) // 4 + 4  # + the id


def group(entries: Sequence[Entry], packing: Packing, task_tokens: int, limit: int | None = None,
          final: bool = True) -> tuple[list[list[Entry]], list[Entry]]:
    """Entries (with their items) -> full packs, and what is left for the next ones (all of it
    in packs when `final`). A pack holds at most `limit` rows (default: the packing's), and with
    "auto" about AUTO_INPUT_TOKENS input tokens; the output caps summed stay within the limit."""
    most = limit or packing.max_rows
    packs: list[list[Entry]] = []
    cur: list[Entry] = []
    tokens = task_tokens
    out = PACK_OUTPUT_OVERHEAD
    for e in entries:
        t = _item_tokens(e.item or {})
        o = (e.cap or 0) + ITEM_OUTPUT_OVERHEAD
        full = len(cur) >= most or (cur and out + o > packing.output_limit) or (
            cur and packing.auto and tokens + t > AUTO_INPUT_TOKENS)
        if full:
            packs.append(cur)
            cur, tokens, out = [], task_tokens, PACK_OUTPUT_OVERHEAD
        cur.append(e)
        tokens += t
        out += o
    if cur and final:
        packs.append(cur)
        cur = []
    return packs, cur


def packed_cap(entries: Sequence[Entry]) -> int | None:
    """The packed request's output cap: the rows' caps summed, with room for the ids (None if a row has none)."""
    if any(e.cap is None for e in entries):
        return None
    return sum(e.cap for e in entries) + ITEM_OUTPUT_OVERHEAD * len(entries) + PACK_OUTPUT_OVERHEAD  # type: ignore[misc]


# ---------------------------------------------------------------------- the run


class PackedRun(PromptRun):
    """A PromptRun whose cache misses go out N rows to a request (see the module doc)."""

    def __init__(self, batch: Any, spec: RequestSpec, conn: Any, packing: Packing, **options: Any) -> None:
        super().__init__(batch, spec, conn, **options)
        self.packing = packing
        self.buffer: list[Entry] = []
        self.limit_rows = packing.max_rows  # lowered under "auto" when packs come back incomplete
        self.task_tokens = len(pack_prompt(packing.task, [])) // 4 + len(spec.system or "") // 4 + 8
        self.pack_opts = dict(spec.options(), schema=packing.schema())
        self.rows_sent = 0  # distinct requests answered by a reply (packed or alone)
        self.pack_requests = 0  # packed requests answered
        self.pack_retried = 0  # rows sent again after a pack did not answer them
        self.unpacked_tokens = 0  # what the rows answered in packs would have sent alone (estimated)
        self.packed_tokens = 0  # what those packs sent

    # -- feeding: misses go to the buffer, packs to the queue ------------------------------

    async def _enqueue(self, queue: asyncio.Queue, key: bytes, prompt: Any, body: dict[str, Any], i: int) -> None:
        cap = (prompt.max_tokens if not isinstance(prompt, str) else None) or self.spec.max_tokens
        self.buffer.append(Entry(i, key, prompt, body, cap, estimate_tokens(prompt, self.spec) - (cap or 0)))
        if len(self.buffer) >= self.limit_rows * 4:
            await self._flush_packs(queue, final=False)

    async def _end_feed(self, queue: asyncio.Queue) -> None:
        await self._flush_packs(queue, final=True)

    async def _flush_packs(self, queue: asyncio.Queue, final: bool) -> None:
        todo = [e for e in self.buffer if e.item is None]
        if todo:
            for e, item in zip(todo, self.packing.items([e.i for e in todo])):
                e.item = item
        packs, self.buffer = group(self.buffer, self.packing, self.task_tokens, self.limit_rows, final)
        for pack in packs:
            await queue.put(pack)

    # -- sending ---------------------------------------------------------------------------

    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            item = await queue.get()
            if item is None or self.stopped is not None:
                return
            try:
                await self._pack(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not a service error: fail these rows, keep the run going
                for e in item:
                    if e.key in self.inflight:
                        self.fail(self.inflight.pop(e.key, ()), f"unexpected error: {describe(exc)}")

    async def _pack(self, entries: list[Entry]) -> None:
        if self.stopped is not None:
            return
        if len(entries) > self.limit_rows:  # the size was lowered since this pack was formed
            packs, _ = group(entries, self.packing, self.task_tokens, self.limit_rows)
            await asyncio.gather(*(self._pack(p) for p in packs))
            return
        if len(entries) == 1:
            await self._alone(entries[0])
            return
        taken: set[str] = set()
        ids = [item_id(e.key, taken) for e in entries]
        text = pack_prompt(self.packing.task, [{"id": rid, **(e.item or {})} for rid, e in zip(ids, entries)])
        cap = packed_cap(entries)
        kw = dict(self.pack_opts, max_tokens=cap)
        _, body = self.client.build(self.spec.op, text, **kw)
        est = len(text) // 4 + len(self.spec.system or "") // 4 + (cap or 0) + 1
        budget = self.budget
        bound = budget.bound(body) if budget is not None else None
        send = self.client.send_built
        op = self.spec.op
        reply = await self.send(lambda: send(op, self.route, body), est, (), bound)
        if reply is None:
            if self.stopped is not None:  # the run stopped: these rows are left as not sent
                for e in entries:
                    self.inflight.pop(e.key, None)
                return
            answers: dict[str, Any] = {}  # the pack failed: its rows go again, in smaller packs
            incomplete = True
        else:
            usage = reply.usage
            self.in_tokens += usage.input_tokens
            self.out_tokens += usage.output_tokens
            self.cached_tokens += usage.cached_input_tokens
            self.reasoning_tokens += usage.reasoning_tokens
            self.pack_requests += 1
            if reply.finish_reason in ("length", "content_filter"):
                answers, incomplete = {}, True
            else:
                answers, _ = match(reply.text, ids, self.packing.problem)
                incomplete = len(answers) < len(ids) * 0.75
            if answers:
                self._store(entries, ids, answers, reply)
        bad = [e for rid, e in zip(ids, entries) if rid not in answers]
        if not bad:
            return
        if incomplete and self.packing.auto:
            self.limit_rows = max(1, min(self.limit_rows, len(entries) // 2))
        self.pack_retried += len(bad)
        smaller = max(1, len(entries) // 2)
        packs = [bad[k:k + smaller] for k in range(0, len(bad), smaller)]
        await asyncio.gather(*(self._pack(p) for p in packs))

    def _store(self, entries: list[Entry], ids: list[str], answers: dict[str, Any], reply: Any) -> None:
        from foundry_magics.store.cache import CachedReply

        n = len(entries)
        usage = reply.usage
        in_share, out_share = usage.input_tokens // n, usage.output_tokens // n
        answered = 0
        for rid, e in zip(ids, entries):
            if rid not in answers:
                continue
            text = self.packing.to_text(answers[rid])
            answered += 1
            self.unpacked_tokens += e.tokens
            self.cache.put(e.key, self.spec.op, CachedReply(text, "stop", in_share, out_share, reply.model))
            self.rows_sent += 1
            self.succeed(self.inflight.pop(e.key, ()), text)
        self.packed_tokens += usage.input_tokens * answered // n
        if self.cache.pending >= 500:
            self.flush()

    async def _alone(self, e: Entry) -> None:
        """The row's own unpacked request, exactly as an unpacked run sends it."""
        budget = self.budget
        bound = budget.bound(e.body) if budget is not None else None
        send = self.client.send_built
        op = self.spec.op
        reply = await self.send(lambda: send(op, self.route, e.body), estimate_tokens(e.prompt, self.spec),
                                self.inflight.get(e.key, ()), bound)
        if reply is not None:
            self.rows_sent += 1
            self._finish_ok(e.key, reply)
        else:
            self.inflight.pop(e.key, None)

    # -- reporting -------------------------------------------------------------------------

    def report(self) -> Any:
        rep = super().report()
        rep.pack = self.packing.size
        rep.rows_per_request = round(self.rows_sent / self.sent, 2) if self.sent else 0.0
        rep.pack_retried = self.pack_retried
        rep.pack_saved_tokens = max(0, self.unpacked_tokens - self.packed_tokens)
        return rep

