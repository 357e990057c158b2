"""Deterministic "model": reply text, schema-conforming JSON and embeddings.

Everything here is a pure function of its arguments (no randomness, no clock), so the
same request always gets the same reply. Free text starts with ``[emulated] ``.

Rules the semantic operators rely on (tests and tutorials know the truth from the text):

* Embeddings (`embed`): a feature-hashed bag of words, unit length - texts that share words
  are similar (cosine > 0), texts that share none are near 0, the same text is 1.
* A pair judgement (`pair_judgement`: structured output whose schema has one boolean
  property, as `df.foundry.join` asks): when the prompt holds two or more ID tokens - an
  upper-case code, a dash and digits, such as SKU-0042 or ORD-17 - the answer is true exactly
  when one ID occurs at least twice (the left and the right text name the same thing), else
  false. With fewer than two, this rule says nothing and the other rules answer. A join whose
  texts each carry one ID (a review naming SKU-0042, products titled by their SKU) therefore
  has a known truth.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections import Counter
from typing import Any

MARK = "[emulated] "

_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f']+")
_TOKEN = re.compile(r"\s*\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_DIRECTIVE = re.compile(r"#emulator:([a-z_]+)(?:=([^\s]+))?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being "
    "this that these those it its i you he she we they me my your our their his her them us "
    "do does did not no so than then there here what which who whom how why when where can "
    "could should would will shall may might must please about into over under also just very "
    "too any all some each more most other such only own same s t don".split()
)

_POSITIVE = frozenset(
    "good great love loved loving lovely excellent amazing awesome happy wonderful best fantastic "
    "like liked enjoy enjoyed nice perfect delighted pleased superb recommend brilliant beautiful "
    "glad fast helpful friendly easy impressive outstanding satisfied fun thanks thank works "
    "worked reliable favourite favorite incredible solid".split()
)
_NEGATIVE = frozenset(
    "bad terrible hate hated awful worst poor horrible disappointing disappointed sad angry "
    "broken slow boring useless annoying ugly fail failed fails failure refund rude expensive "
    "problem problems issue issues bug buggy crash crashed crashes waste wasted dirty "
    "late never worse unhappy frustrating frustrated difficult hard wrong missing cold noisy".split()
)
_NEGATORS = frozenset("not no never hardly isn't wasn't don't doesn't didn't can't won't aren't".split())

_SENTIMENT_LABELS = {"positive", "negative", "neutral", "mixed", "pos", "neg", "neu"}

_LEXICON = {
    "french": {"hello": "bonjour", "good": "bon", "morning": "matin", "thank": "merci", "thanks": "merci",
               "you": "vous", "yes": "oui", "no": "non", "the": "le", "cat": "chat", "dog": "chien",
               "world": "monde", "i": "je", "love": "aime", "is": "est", "and": "et", "day": "jour",
               "night": "nuit", "house": "maison", "water": "eau", "friend": "ami", "book": "livre",
               "please": "s'il vous plaît", "how": "comment", "are": "êtes", "my": "mon", "very": "très"},
    "spanish": {"hello": "hola", "good": "bueno", "morning": "mañana", "thank": "gracias", "thanks": "gracias",
                "you": "tú", "yes": "sí", "no": "no", "the": "el", "cat": "gato", "dog": "perro",
                "world": "mundo", "i": "yo", "love": "amo", "is": "es", "and": "y", "day": "día",
                "night": "noche", "house": "casa", "water": "agua", "friend": "amigo", "book": "libro",
                "please": "por favor", "how": "cómo", "are": "estás", "my": "mi", "very": "muy"},
    "german": {"hello": "hallo", "good": "gut", "morning": "Morgen", "thank": "danke", "thanks": "danke",
               "you": "du", "yes": "ja", "no": "nein", "the": "die", "cat": "Katze", "dog": "Hund",
               "world": "Welt", "i": "ich", "love": "liebe", "is": "ist", "and": "und", "day": "Tag",
               "night": "Nacht", "house": "Haus", "water": "Wasser", "friend": "Freund", "book": "Buch",
               "please": "bitte", "how": "wie", "are": "bist", "my": "mein", "very": "sehr"},
}


# --------------------------------------------------------------------------- helpers

def h32(s: str) -> int:
    """Stable 32-bit hash (Python's hash() is salted per process)."""
    return zlib.crc32(s.encode("utf-8", "surrogatepass"))


def tokens(text: str) -> list[str]:
    """Split text into stream tokens: one word with its leading whitespace each."""
    toks = _TOKEN.findall(text)
    if toks:
        tail = len(text) - sum(map(len, toks))
        if tail:
            toks[-1] += text[-tail:]
    elif text:
        toks = [text]
    return toks


def count_tokens(text: str) -> int:
    """The prompt-side token estimate: about four characters a token."""
    return (len(text) + 3) // 4


# Prompt caching, as Azure does it: a prompt of at least CACHE_MIN tokens whose prefix was seen
# before has that prefix cached, counted in blocks of CACHE_BLOCK tokens (CHARS_PER_TOKEN chars each).
CACHE_MIN = 1024
CACHE_BLOCK = 128
CHARS_PER_TOKEN = 4
_REASONING_MODEL = re.compile(r"^(?:o[1-9](?:-|$)|gpt-5(?!.*-chat))")


def is_reasoning_model(model: str | None) -> bool:
    """o1, o3, o4-mini, gpt-5, gpt-5-mini, ... (not gpt-5-chat): models that think before answering."""
    return bool(_REASONING_MODEL.match((model or "").lower().rsplit("/", 1)[-1]))


def reasoning_tokens(model: str | None, prompt: str) -> int:
    """A reasoning model's hidden reasoning tokens for `prompt`: 64 x (1 + crc32(prompt) mod 8),
    so between 64 and 512, the same every time for the same prompt; 0 for other models."""
    if not is_reasoning_model(model):
        return 0
    return 64 * (1 + h32(prompt) % 8)


def strip_directives(text: str) -> str:
    if "#emulator:" not in text:
        return text
    return re.sub(r"\s*#emulator:[a-z_]+(?:=[^\s]+)?", "", text).strip()


def directives(text: str) -> dict[str, str]:
    if "#emulator:" not in text:
        return {}
    return {m.group(1): (m.group(2) or "") for m in _DIRECTIVE.finditer(text)}


def first_sentence(text: str, max_words: int = 20) -> str:
    text = " ".join(text.split())
    sent = _SENTENCE_END.split(text, 1)[0] if text else ""
    words = sent.split()
    if len(words) > max_words:
        return " ".join(words[:max_words]) + "…"
    return sent


def words_of(text: str) -> list[str]:
    return _WORD.findall(text)


def keywords(text: str, n: int = 4) -> list[str]:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, w in enumerate(words_of(text)):
        lw = w.lower()
        if lw in STOPWORDS or len(lw) < 3 or lw.isdigit():
            continue
        counts[lw] += 1
        first.setdefault(lw, i)
    return sorted(counts, key=lambda w: (-counts[w], first[w]))[:n]


def sentiment(text: str) -> str:
    """Tiny lexicon scorer with negation: positive / negative / neutral / mixed."""
    pos = neg = 0
    prev = ""
    for w in words_of(text.lower()):
        flip = prev in _NEGATORS or prev.endswith("n't")
        if w in _POSITIVE:
            if flip:
                neg += 1
            else:
                pos += 1
        elif w in _NEGATIVE:
            if flip:
                pos += 1
            else:
                neg += 1
        prev = w
    if pos and neg and pos == neg:
        return "mixed"
    if pos > neg:
        return "positive"
    if neg > pos:
        return "negative"
    return "neutral"


_LABELLED = re.compile(
    r"(?:^|\n|[.!?]\s)\s*(?:text|review|input|sentence|comment|message|content|passage|document|tweet|"
    r"email|feedback|article|paragraph)\s*:\s*", re.IGNORECASE)


def _content_after_colon(text: str) -> str:
    """The material an instruction is about: after a 'Text:'-style label, or after the colon
    of a short 'Summarize: ...' head; else the whole text."""
    last = None
    for m in _LABELLED.finditer(text):
        last = m
    if last is not None and text[last.end():].strip():
        return text[last.end():].strip()
    head, sep, tail = text.partition(":")
    if sep and len(head.split()) <= 12 and tail.strip():
        return tail.strip()
    return text


# Weaker emulated models, so that evaluations (`df.foundry.evaluate`) show a real trade-off:
# a model whose name contains one of these answers that fraction of its label choices
# (classify, sentiment, mask, an enum field of a schema) with another label, the same one
# every time for the same text. Every other model always answers as `_choose_label` does.
WEAKER_MODELS = (("nano", 0.25), ("phi", 0.15))


def weakness(model: str | None) -> float:
    """The fraction of label choices `model` gets wrong on purpose (0 for most models)."""
    low = (model or "").lower()
    return next((frac for part, frac in WEAKER_MODELS if part in low), 0.0)


def choose_label(labels: list[Any], text: str, salt: str = "", model: str | None = None) -> Any:
    """Pick a label (`_choose_label`); a weaker `model` picks another one for a deterministic
    fraction of texts (`WEAKER_MODELS`)."""
    chosen = _choose_label(labels, text, salt)
    frac = weakness(model)
    if frac and len(labels) > 1 and (h32(f"weak\x00{model}\x00{salt}\x00{text}") % 10_000) < frac * 10_000:
        others = [x for x in labels if x != chosen]
        return others[h32("other\x00" + text) % len(others)]
    return chosen


def _choose_label(labels: list[Any], text: str, salt: str = "") -> Any:
    """Pick a label: sentiment lexicon for sentiment-like sets, else the one named in the
    text (ignoring a listing of several labels), else deterministically by hash."""
    if not labels:
        return None
    strs = [str(x) for x in labels]
    lowered = [s.lower() for s in strs]
    if len(labels) > 1 and sum(1 for s in lowered if s in _SENTIMENT_LABELS) >= 2:
        body = _strip_label_listing(text, lowered)
        s = sentiment(body)
        aliases = {"positive": ("positive", "pos"), "negative": ("negative", "neg"),
                   "neutral": ("neutral", "neu"), "mixed": ("mixed", "neutral", "neu")}[s]
        for a in aliases:
            if a in lowered:
                return labels[lowered.index(a)]
    body = _strip_label_listing(text, lowered).lower()
    best = None
    for i, s in enumerate(lowered):
        if not s:
            continue
        m = re.search(r"(?<![a-z0-9])" + re.escape(s) + r"(?![a-z0-9])", body)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), i)
    if best is not None:
        return labels[best[1]]
    return labels[h32(salt + "\x00" + text) % len(labels)]


def _strip_label_listing(text: str, labels: list[str]) -> str:
    """Remove the span listing two or more labels (e.g. 'positive, negative or neutral')."""
    low = text.lower()
    hits = []
    for s in labels:
        if not s:
            continue
        for m in re.finditer(r"(?<![a-z0-9])" + re.escape(s) + r"(?![a-z0-9])", low):
            hits.append((m.start(), m.end()))
    if len(hits) < 2:
        return text
    hits.sort()
    # group hits separated only by punctuation / 'or' / 'and' / quotes
    sep = re.compile(r"^[\s,;/|'\"`\[\]()]*(?:or|and)?[\s,;/|'\"`\[\]()]*$")
    spans = []
    start, end, n = hits[0][0], hits[0][1], 1
    for a, b in hits[1:]:
        if sep.match(low[end:a]):
            end, n = b, n + 1
        else:
            if n >= 2:
                spans.append((start, end))
            start, end, n = a, b, 1
    if n >= 2:
        spans.append((start, end))
    for a, b in reversed(spans):
        text = text[:a] + " " + text[b:]
    return text


# --------------------------------------------------------------------------- free text

_LABEL_LIST = re.compile(
    r"(?:one of|into|labels?|categories|category|options|classes)\s*[:\-]?\s*\[?\s*"
    r"((?:['\"]?[\w\- ]{1,30}['\"]?\s*(?:,|\||/|\bor\b)\s*)+['\"]?[\w\-]{1,30}['\"]?)",
    re.IGNORECASE,
)


def reply_text(user: str, *, system: str = "", turn: int = 1, first_user: str = "", model: str | None = None) -> str:
    """The free-text reply for the last user message (directives already stripped)."""
    from .operators import reduction  # agg's items / partial answers

    reduced = reduction(user)
    if reduced is not None:
        return reduced
    u = " ".join(user.split())
    low = u.lower()
    nwords = len(u.split())
    lead = MARK + (f"(turn {turn}) " if turn > 1 else "")
    extra: list[str] = []

    if re.search(r"\b(summari[sz]e|summary|tl;?dr)\b", low):
        content = _content_after_colon(u)
        body = f"**Summary:** {first_sentence(content, 25)}"
        kws = keywords(content)
        if len(content.split()) > 40 and kws:
            extra.append("- Key points: " + ", ".join(kws))
    elif m := re.search(r"\btranslate\b.*?\b(?:to|into)\s+([A-Za-z]+)", u, re.IGNORECASE):
        lang = m.group(1).capitalize()
        content = _content_after_colon(u)
        table = _LEXICON.get(lang.lower(), {})

        def tr(mw: re.Match[str]) -> str:
            w = mw.group(0)
            t = table.get(w.lower())
            if t is None:
                return w
            return t.capitalize() if w[:1].isupper() else t

        body = f"({lang}) " + re.sub(r"[A-Za-z']+", tr, content)
    elif re.search(r"sentiment\s*(?:of|for|in|:|\?)|(?:classify|analy[sz]e|rate|label|detect|what|determine)\b.{0,30}"
                   r"\bsentiment\b", low):
        content = _strip_label_listing(_content_after_colon(u), ["positive", "negative", "neutral", "mixed"])
        body = sentiment(content)
        if body == "mixed" and "mixed" not in low:
            body = "neutral"
    elif re.search(r"\b(classify|categori[sz]e|label)\b", low) and (lm := _LABEL_LIST.search(u)):
        labels = [x.strip(" '\"") for x in re.split(r",|\||/|\bor\b", lm.group(1)) if x.strip(" '\"")]
        content = _content_after_colon(u[lm.end():]) if u[lm.end():].strip() else u
        body = str(choose_label(labels, content, salt="classify", model=model))
    elif u.endswith("?"):
        body = f"Good question. You asked: “{first_sentence(u)}” ({_words(nwords)})."
        kws = keywords(u)
        if kws:
            extra.append("A real model would talk about " + ", ".join(kws) + " here.")
    elif not u:
        body = "I received an empty message."
    else:
        body = f"You said: “{first_sentence(u)}” ({_words(nwords)})."
        if nwords > 30:
            kws = keywords(u)
            if kws:
                extra.append("**Key terms:** " + ", ".join(kws))
        if nwords > 80:
            nsent = len([s for s in _SENTENCE_END.split(u) if s.strip()])
            extra.append(f"- Sentences: {nsent}\n- Characters: {len(u)}")

    if turn > 1 and first_user:
        extra.append(f"Earlier you said: “{first_sentence(first_user, 12)}”")
    if system:
        extra.append(f"_Instructions noted: “{first_sentence(system, 12)}”_")
    text = lead + body
    if extra:
        text += "\n\n" + "\n\n".join(extra)
    return text


def _words(n: int) -> str:
    return "1 word" if n == 1 else f"{n} words"


# --------------------------------------------------------------------------- JSON

_JSON_KEYS = re.compile(r"[\"'`]([A-Za-z_][A-Za-z0-9_]{0,40})[\"'`]")


def json_object_reply(user: str) -> Any:
    """json_object mode without a schema: keys quoted in the prompt, else a small object."""
    keys = list(dict.fromkeys(_JSON_KEYS.findall(user)))[:8]
    if keys:
        return {k: _string_for(k, user, {}) for k in keys}
    return {"reply": MARK.strip() + " " + first_sentence(user, 12), "word_count": len(user.split()),
            "sentiment": sentiment(user)}


class _Gen:
    def __init__(self, root: dict, text: str, model: str | None = None) -> None:
        self.root = root if isinstance(root, dict) else {}
        self.text = text
        self.model = model
        content = _content_after_colon(text)
        self.content = content
        self.numbers = [float(x) for x in _NUMBER.findall(content)]
        self.caps = _cap_runs(content)

    def resolve(self, s: Any) -> dict:
        seen = 0
        while isinstance(s, dict) and "$ref" in s and seen < 20:
            ref = s["$ref"]
            node: Any = self.root
            if ref.startswith("#"):
                for part in ref[1:].strip("/").split("/"):
                    if not part:
                        continue
                    part = part.replace("~1", "/").replace("~0", "~")
                    node = node.get(part, {}) if isinstance(node, dict) else {}
            else:
                node = {}
            s = node
            seen += 1
        return s if isinstance(s, dict) else {}

    def value(self, s: Any, name: str = "", depth: int = 0) -> Any:
        s = self.resolve(s)
        if depth > 12:
            return None
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            return choose_label(s["enum"], self.text, salt=name, model=self.model)
        for key in ("anyOf", "oneOf"):
            if isinstance(s.get(key), list) and s[key]:
                opts = [self.resolve(o) for o in s[key]]
                nonnull = [o for o in opts if o.get("type") != "null"] or opts
                return self.value(nonnull[0], name, depth + 1)
        if isinstance(s.get("allOf"), list) and s["allOf"]:
            merged: dict = {}
            for o in s["allOf"]:
                o = self.resolve(o)
                for k, v in o.items():
                    if k == "properties" and isinstance(v, dict):
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required" and isinstance(v, list):
                        merged.setdefault("required", []).extend(v)
                    else:
                        merged.setdefault(k, v)
            return self.value(merged, name, depth + 1)
        t = s.get("type")
        if isinstance(t, list):
            nonnull = [x for x in t if x != "null"]
            t = nonnull[0] if nonnull else "null"
        if t is None:
            t = "object" if "properties" in s else ("array" if "items" in s else "string")
        if t == "object":
            props = s.get("properties") or {}
            out = {}
            for k, sub in props.items():
                out[k] = self.value(sub, k, depth + 1)
            return out
        if t == "array":
            items = s.get("items") or {"type": "string"}
            lo = int(s.get("minItems", 0) or 0)
            hi = s.get("maxItems")
            n = max(lo, 2 if len(self.text.split()) < 20 else 3)
            if hi is not None:
                n = min(n, int(hi))
            item_s = self.resolve(items)
            if item_s.get("type", "string") == "string" and "enum" not in item_s and "const" not in item_s:
                kws = keywords(self.content, n) or ["item"]
                vals = [kws[i % len(kws)] + ("" if i < len(kws) else f" {i + 1}") for i in range(n)]
                return [self._limit(v, item_s) for v in vals]
            if "enum" in item_s and isinstance(item_s["enum"], list) and s.get("uniqueItems"):
                n = min(n, len(item_s["enum"]))
                first = choose_label(item_s["enum"], self.text, salt=name)
                rest = [e for e in item_s["enum"] if e != first]
                return [first] + rest[: n - 1]
            return [self.value(items, f"{name}[{i}]", depth + 1) for i in range(n)]
        if t == "integer":
            return int(self._number(s, name, integer=True))
        if t == "number":
            return self._number(s, name, integer=False)
        if t == "boolean":
            lname = name.lower()
            if any(k in lname for k in ("positive", "happy", "satisf")):
                return sentiment(self.text) == "positive"
            if any(k in lname for k in ("negative", "complaint", "angry")):
                return sentiment(self.text) == "negative"
            return bool(h32(name + "\x00" + self.text) & 1)
        if t == "null":
            return None
        return self._limit(_string_for(name, self.content, s, self.caps), s)

    def _limit(self, v: str, s: dict) -> str:
        mx = s.get("maxLength")
        if isinstance(mx, int) and len(v) > mx:
            v = v[:mx]
        mn = s.get("minLength")
        if isinstance(mn, int) and len(v) < mn:
            v = v + "x" * (mn - len(v))
        return v

    def _number(self, s: dict, name: str, integer: bool) -> float:
        lname = name.lower()
        lo = s.get("minimum", s.get("exclusiveMinimum"))
        hi = s.get("maximum", s.get("exclusiveMaximum"))
        val: float | None = None
        if any(k in lname for k in ("score", "confidence", "probability", "prob", "likelihood")) and not integer:
            base = {"positive": 0.9, "negative": 0.1, "neutral": 0.5, "mixed": 0.5}[sentiment(self.text)]
            if "confidence" in lname or "prob" in lname:
                base = 0.85
            val = base
        elif self.numbers and any(k in lname for k in ("age", "year", "count", "number", "num", "qty",
                                                           "quantity", "amount", "price", "total", "n_")):
            val = self.numbers[0]
        elif self.numbers and len(self.numbers) == 1:
            val = self.numbers[0]
        if val is None:
            a = float(lo) if lo is not None else 0.0
            b = float(hi) if hi is not None else (a + 100.0)
            frac = (h32(name + "\x01" + self.text) % 1000) / 1000.0
            val = a + (b - a) * frac
        if lo is not None and val < lo:
            val = float(lo)
        if hi is not None and val > hi:
            val = float(hi)
        if integer:
            iv = int(round(val))
            if s.get("exclusiveMinimum") is not None and iv <= s["exclusiveMinimum"]:
                iv = int(math.floor(s["exclusiveMinimum"])) + 1
            if s.get("exclusiveMaximum") is not None and iv >= s["exclusiveMaximum"]:
                iv = int(math.ceil(s["exclusiveMaximum"])) - 1
            return iv
        return round(val, 4)


def _string_for(name: str, text: str, s: dict, caps: list[str] | None = None) -> str:
    lname = name.lower()
    fmt = s.get("format") if isinstance(s, dict) else None
    if fmt == "date":
        return "2024-01-01"
    if fmt == "date-time":
        return "2024-01-01T00:00:00Z"
    if fmt == "email" or "email" in lname:
        return "user@example.com"
    if fmt in ("uri", "url") or lname in ("url", "link", "website"):
        return "https://example.com/"
    if fmt == "uuid":
        h = "%032x" % (h32(text) * 0x100000001)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"
    if "sentiment" in lname:
        return sentiment(text)
    if "language" in lname or lname in ("lang", "locale"):
        return "English"
    if caps is None:
        caps = _cap_runs(text)
    if any(k in lname for k in ("city", "country", "location", "place", "town", "region")):
        m = re.search(r"\b(?:in|from|at|to|near)\s+((?:[A-Z][\w'-]+\s?)+)", text)
        if m:
            return m.group(1).strip()
        return caps[-1] if caps else "Unknown"
    if any(k in lname for k in ("name", "person", "author", "company", "organization", "title", "entity", "who")):
        if caps:
            return caps[0]
        kws = keywords(text, 1)
        return kws[0].capitalize() if kws else "Unknown"
    if any(k in lname for k in ("summary", "description", "text", "reason", "explanation", "answer",
                                 "reply", "response", "content", "message", "rationale", "comment")):
        return first_sentence(text, 20) or "empty"
    if any(k in lname for k in ("translation", "translated")):
        return first_sentence(text, 20)
    if any(k in lname for k in ("keyword", "topic", "tag", "category", "label", "subject")):
        kws = keywords(text, 1)
        return kws[0] if kws else "general"
    kws = keywords(text, 3)
    return " ".join(kws) if kws else (first_sentence(text, 8) or name or "value")


def _cap_runs(text: str) -> list[str]:
    """Runs of capitalized words (likely names), e.g. ['John Smith', 'Paris']."""
    runs: list[str] = []
    cur: list[str] = []
    for w in re.findall(r"[\w'-]+|[^\w\s]", text):
        if w[:1].isupper() and w.lower() not in STOPWORDS:
            cur.append(w)
        else:
            if cur:
                runs.append(" ".join(cur))
            cur = []
    if cur:
        runs.append(" ".join(cur))
    return runs


def json_for_schema(schema: Any, text: str, model: str | None = None) -> Any:
    schema = schema if isinstance(schema, dict) else {}
    pair = _pair_reply(schema, text)  # the join's pair rule comes first (see the module's rules)
    if pair is not None:
        return pair
    from .operators import structured  # the semantic operators' rules (judgement, score, comparison)

    special = structured(schema, text)
    if special is not None:
        return special
    return _Gen(schema, text, model).value(schema, "")


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------- judgements

_ID_TOKEN = re.compile(r"(?<![\w-])[A-Z][A-Z0-9]*-\d+(?![\w-])")


def id_tokens(text: str) -> list[str]:
    """The ID tokens of a text, in order: SKU-0042, ORD-17 (upper-case code, dash, digits)."""
    return _ID_TOKEN.findall(text)


def pair_judgement(text: str) -> bool | None:
    """The join rule: with two or more ID tokens in the prompt, True when one of them occurs at
    least twice, else False; None (no rule) with fewer."""
    ids = id_tokens(text)
    if len(ids) < 2:
        return None
    return len(set(ids)) < len(ids)


def _pair_reply(schema: dict, text: str) -> Any:
    """{field: verdict} for a schema of one boolean property when the pair rule applies, else None."""
    props = schema.get("properties")
    if not isinstance(props, dict) or len(props) != 1:
        return None
    name, prop = next(iter(props.items()))
    if not isinstance(prop, dict) or prop.get("type") != "boolean":
        return None
    verdict = pair_judgement(text)
    return None if verdict is None else {name: verdict}


# --------------------------------------------------------------------------- embeddings

_FEATURE_CACHE: dict[str, int] = {}


def _feature(word: str) -> int:
    h = _FEATURE_CACHE.get(word)
    if h is None:
        if len(_FEATURE_CACHE) > 200_000:
            _FEATURE_CACHE.clear()
        h = _FEATURE_CACHE[word] = zlib.crc32(word.encode("utf-8", "surrogatepass"))
    return h


def embed(text: str, dims: int) -> list[float]:
    """Feature-hashed bag of words (light stemming, stopwords down-weighted), unit length."""
    vec = [0.0] * dims
    for w in _WORD.findall(text.lower()):
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        h = _feature(w)
        weight = 0.25 if w in STOPWORDS else 1.0
        if (h >> 20) & 1:
            vec[h % dims] -= weight
        else:
            vec[h % dims] += weight
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        h = h32(text)
        vec[h % dims] = 1.0
        return vec
    inv = 1.0 / norm
    return [x * inv for x in vec]


def embed_base64(vec: list[float]) -> str:
    import base64

    return base64.b64encode(struct.pack("<%df" % len(vec), *vec)).decode("ascii")
