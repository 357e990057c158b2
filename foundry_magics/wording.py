"""Counts and articles in messages, said right: "1 request", "2 requests", "an int", "a str".

Pure and dependency-free, so every layer (core and faces) may use it.
"""

from __future__ import annotations

__all__ = ["plural", "counted", "article"]

_IRREGULAR = {"retry": "retries", "entry": "entries", "query": "queries", "was": "were", "is": "are", "has": "have"}
# Words starting with a vowel letter but a consonant sound ("a user"), and the reverse ("an hour").
_A_BEFORE = ("uni", "use", "usa", "uri", "url", "one", "eu")
_AN_BEFORE = ("hour", "honest", "ndarray", "html", "http", "xml")


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """`word` for a count of 1, else its plural (`many`, a known irregular one, or word + "s")."""
    if n == 1:
        return word
    return many or _IRREGULAR.get(word) or word + "s"


def counted(n: int | float, word: str, many: str | None = None) -> str:
    """"1 request", "2,048 requests", "1 retry", "3 retries" (thousands separated)."""
    shown = f"{n:,}" if isinstance(n, int) else f"{n:,g}"
    return f"{shown} {plural(n, word, many)}"


def article(word: str) -> str:
    """"an int", "a str", "an emulator", "a URL": `word` with the indefinite article it takes."""
    low = word.lower()
    if low.startswith(_AN_BEFORE):
        return f"an {word}"
    if low.startswith(_A_BEFORE):
        return f"a {word}"
    return f"{'an' if low[:1] and low[0] in 'aeiou' else 'a'} {word}"
