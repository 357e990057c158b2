"""How the emulator answers the semantic operators: deterministic rules, so tests know the truth.

Recognised by the request's shape (what `ops/judge.py`, `ops/topk.py` and `ops/agg.py` send;
a user's own request of the same shape gets the same rules):

* **judgement** (mask / filter): structured output whose schema has the one property
  ``answer`` (boolean). The statement is the text after ``Statement:`` (else the whole
  message); its *criterion* is the part before its first colon, the *row* the part after.
  The answer is true when a marker of the criterion occurs in the row as a word (case and a
  plural ``s`` ignored). The markers are the words quoted in the criterion ('refund' or
  "refund"), else its words of four or more letters that are neither stopwords nor generic
  (review, text, mentions, customer, product, ... : ``GENERIC``). No colon: false.
  ``"The review asks for a 'refund': {text}"`` is true exactly for the rows saying "refund".
* **score** (topk): a schema with the one property ``score`` (integer or number). The item
  is the text after ``Item:``; its value is the first number after the criterion's colon (else
  a pseudo-number in [0, 100) from a hash of the text); the score is the value rounded and
  clamped to 0-100.
* **comparison** (topk): a schema with the one property ``better`` (enum A / B): the item
  after ``A:`` against the one after ``B:``; the larger value wins, equal values are decided
  by a hash of the text (identical texts: A). Scores never contradict comparisons, so topk
  must return the items with the largest numbers, in order.
* **reduction** (agg): a free-text message with numbered lines ``[1] ...`` after ``Items:``
  or ``Partial answers:``. The reply is ``[emulated] N rows (ids 3-7, 9): mostly about w1,
  w2, w3.``: N counts the rows (items; for partial answers, the sum of their N), the ids are
  each item's leading number (``17: ...``, ``#17 ...``, ``id: 17; ...``; shown only when every
  item has one; partial answers merge theirs), the words are the commonest key words. So a
  test can check that every row reached the final answer.
* **context windows**: a model whose name ends in ``-<N>k`` (``tiny-4k``) has a window of
  N,000 tokens (prompt + max_tokens, counted as characters / 4); any other has 128,000. Over
  it: HTTP 400 ``context_length_exceeded`` naming the window, as Azure OpenAI answers.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

__all__ = ["structured", "reduction", "context_window", "judge", "score", "compare", "GENERIC",
           "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 128_000
GENERIC = frozenset(
    "review reviews text texts mention mentions mentioned talks talk says said customer customers product "
    "products item items statement describes describe contains contain about row rows comment comments "
    "message writer author user users buyer buyers asks asking wants reports report".split())
_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f']+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"|“([^”]+)”")
_WINDOW = re.compile(r"-(\d+)k$", re.I)
_LINE = re.compile(r"^\[(\d+)\] ?(.*)$")
_LEADING_ID = re.compile(r"^\W*(?:id\W*)?#?(\d+)\b", re.I)
_ROWS = re.compile(r"(\d[\d,]*) rows?\b")
_IDS = re.compile(r"\(ids ([\d, \-]+)\)")
_LABEL = re.compile(r"(?:^|; )[A-Za-z_][\w ]{0,30}: ")
_ABOUT = re.compile(r"mostly about (.*?)\.?$")


def context_window(model: str | None) -> int:
    m = _WINDOW.search(model or "")
    return int(m.group(1)) * 1000 if m else DEFAULT_WINDOW


# --------------------------------------------------------------------------- structured output


def _single(schema: Any) -> tuple[str, dict] | None:
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties")
    if not isinstance(props, dict) or len(props) != 1:
        return None
    name, prop = next(iter(props.items()))
    return (name, prop) if isinstance(prop, dict) else None


def structured(schema: Any, text: str) -> Any:
    """The operator's JSON reply, or None when the request is not an operator's."""
    one = _single(schema)
    if one is None:
        return None
    name, prop = one
    if name == "answer" and prop.get("type") == "boolean":
        return {"answer": judge(text)}
    if name == "score" and prop.get("type") in ("integer", "number"):
        value = score(text)
        return {"score": int(round(value)) if prop.get("type") == "integer" else value}
    if name == "better" and sorted(map(str, prop.get("enum") or [])) == ["A", "B"]:
        return {"better": compare(text)}
    return None


def _after(text: str, label: str) -> str:
    i = text.find(label)
    return text[i + len(label):].strip() if i >= 0 else text.strip()


def _split(statement: str) -> tuple[str, str] | None:
    head, sep, tail = statement.partition(":")
    if not sep or len(head.split()) > 15:
        return None
    return head, tail


def _norm(word: str) -> str:
    w = word.lower().strip("'")
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def markers(criterion: str) -> set[str]:
    quoted = [a or b or c for a, b, c in _QUOTED.findall(criterion)]
    if quoted:
        return {_norm(w) for q in quoted for w in _WORD.findall(q)}
    from .brain import STOPWORDS

    return {_norm(w) for w in _WORD.findall(criterion)
            if len(w) >= 4 and w.lower() not in STOPWORDS and w.lower() not in GENERIC}


def judge(text: str) -> bool:
    parts = _split(_after(text, "Statement:"))
    if parts is None:
        return False
    head, row = parts
    wanted = markers(head)
    return bool(wanted & {_norm(w) for w in _WORD.findall(row)})


def _value(item: str) -> tuple[float, int]:
    from .brain import h32

    parts = _split(item)
    content = (parts[1] if parts else item).strip()
    m = _NUMBER.search(content)
    value = float(m.group(0)) if m else (h32(content) % 10_000) / 100.0
    return value, h32(content)


def score(text: str) -> float:
    value, _ = _value(_after(text, "Item:"))
    return max(0.0, min(100.0, value))


def compare(text: str) -> str:
    body = text
    a_at = body.find("\nA: ")
    start = a_at + 4 if a_at >= 0 else (3 if body.startswith("A: ") else -1)
    b_at = body.find("\nB: ", max(start, 0))
    if start < 0 or b_at < 0:
        return "A"
    a, b = body[start:b_at].strip(), body[b_at + 4:].strip()
    return "A" if _value(a) >= _value(b) else "B"


# --------------------------------------------------------------------------- agg


def _ranges(ids: set[int]) -> str:
    out: list[str] = []
    run: list[int] = []
    for i in sorted(ids):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def parse_ranges(text: str) -> set[int]:
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        a, _, b = part.partition("-")
        if b:
            ids.update(range(int(a), int(b) + 1))
        else:
            ids.add(int(a))
    return ids


def reduction(message: str) -> str | None:
    """The agg reply for a message listing items or partial answers; None for any other message."""
    for label, partial in (("\nItems:\n", False), ("\nPartial answers:\n", True)):
        at = message.find(label)
        if at < 0:
            continue
        lines = [m.group(2) for m in (_LINE.match(x) for x in message[at + len(label):].split("\n")) if m]
        if not lines:
            return None
        return _combine(lines) if partial else _first(lines)
    return None


def _first(items: list[str]) -> str:
    from .brain import keywords

    ids: set[int] | None = set()
    for it in items:
        m = _LEADING_ID.match(it)
        if m is None:
            ids = None
            break
        ids.add(int(m.group(1)))  # type: ignore[union-attr]
    text = " ".join(_LABEL.sub(" ", it) for it in items)  # "id: 17; text: ..." -> the values only
    return _say(len(items), ids, keywords(text, 3))


def _combine(partials: list[str]) -> str:
    total = 0
    ids: set[int] | None = set()
    words: Counter[str] = Counter()
    for p in partials:
        m = _ROWS.search(p)
        n = int(m.group(1).replace(",", "")) if m else 1
        total += n
        got = _IDS.search(p)
        if got is None or ids is None:
            ids = None
        else:
            ids |= parse_ranges(got.group(1))
        about = _ABOUT.search(p)
        if about:
            for w in about.group(1).split(","):
                if w.strip():
                    words[w.strip()] += n
    return _say(total, ids, [w for w, _ in words.most_common(3)])


def _say(n: int, ids: set[int] | None, words: list[str]) -> str:
    from .brain import MARK

    head = f"{MARK}{n:,} rows" if n != 1 else f"{MARK}1 row"
    if ids:
        head += f" (ids {_ranges(ids)})"
    return head + (f": mostly about {', '.join(words)}." if words else ".")
