"""Prices per model, and what a usage costs. Nothing is built in: prices change, differ by
region, contract and deployment type, and a wrong built-in price is worse than none.

    fm.set_prices({"gpt-4.1-mini": (0.40, 1.60)})           # per 1M input / output tokens
    fm.set_prices({"gpt-4.1-mini": {"input": 0.40, "cached_input": 0.10, "output": 1.60}})
    fm.set_prices({"gpt-4o": {"input": 2.5, "output": 10, "batch_input": 1.25, "batch_output": 5}})
    fm.set_prices({...}, save=True)                         # also into $FOUNDRY_MAGICS_HOME/prices.toml
    fm.set_prices(None)                                     # forget this session's prices

`prices.toml` (read when it changes; session prices given with `set_prices` win):

    currency = "USD"            # optional, shown beside costs
    "gpt-4.1-mini" = [0.40, 1.60]
    [gpt-4o]
    input = 2.50
    cached_input = 1.25         # optional: else cached input tokens cost the input price
    output = 10.00
    batch_input = 1.25          # optional: else the Batch API costs BATCH_PRICE_FACTOR (half)

Cached input tokens (a part of the input tokens) cost `cached_input` when it is given, else the
input price (`cached_note` says so where a cost is shown); through the Batch API they cost
`cached_input` x BATCH_PRICE_FACTOR, never more than the batch input price.

A price applies to a model by its exact name (as given, then case-insensitively, then without
a publisher prefix such as `openai/`), or to a reply's dated model name `NAME-YYYY-MM-DD`
(`gpt-4o-2024-08-06` -> `gpt-4o`), so a deployment name and the model name a reply carries
find the same price. Never by family: `gpt-4o-mini` does not take `gpt-4o`'s price.

A prices.toml that does not parse (or holds a malformed price) is one warning naming the file
and its line, logged once per version of the file; its prices are then unknown (`problem()`
says why, for the faces to show), and nothing else fails: costs show as unknown.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from foundry_magics.defaults import BATCH_PRICE_FACTOR, PRICES_FILE, home
from foundry_magics.errors import ConfigurationError

__all__ = ["Price", "set_prices", "get_prices", "price_of", "cost", "format_cost", "prices_path", "currency",
           "problem", "cached_note"]

log = logging.getLogger("foundry_magics")

_FIELDS = ("input", "output", "batch_input", "batch_output", "cached_input")


@dataclass(frozen=True)
class Price:
    """Per 1M tokens. `cached_input`: the price of cached input tokens (None: the input price)."""

    input: float
    output: float
    batch_input: float | None = None
    batch_output: float | None = None
    cached_input: float | None = None

    def cost(self, input_tokens: float, output_tokens: float, *, batch: bool = False,
             cached_input_tokens: float = 0) -> float:
        """What the tokens cost. `cached_input_tokens` are a part of `input_tokens`."""
        pin, pout = self.input, self.output
        pcached = self.cached_input if self.cached_input is not None else pin
        if batch:
            pin = self.batch_input if self.batch_input is not None else pin * BATCH_PRICE_FACTOR
            pout = self.batch_output if self.batch_output is not None else pout * BATCH_PRICE_FACTOR
            pcached = min(pin, self.cached_input * BATCH_PRICE_FACTOR) if self.cached_input is not None else pin
        cached = min(max(0.0, float(cached_input_tokens or 0)), float(input_tokens))
        return ((input_tokens - cached) * pin + cached * pcached + output_tokens * pout) / 1_000_000


_lock = threading.Lock()
_session: dict[str, Price] = {}
# (stamp, prices, currency, problem, short problem): what prices.toml held when it had this stamp
_file_cache: tuple[Any, dict[str, Price], str | None, str | None, str | None] | None = None
_session_currency: str | None = None


def prices_path() -> Path:
    return home() / PRICES_FILE


def _number(value: Any, model: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"The {what} price of {model!r} must be a number of 0 or more, got {value!r}.",
                                 hint='Prices are per 1M tokens: set_prices({"gpt-4.1-mini": (0.40, 1.60)}).')
    return float(value)


def _price(model: Any, value: Any) -> Price:
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(f"A price needs a model name, got {model!r}.",
                                 hint='set_prices({"gpt-4.1-mini": (0.40, 1.60)})')
    if isinstance(value, Price):
        return value
    if isinstance(value, (list, tuple)) and len(value) in (2, 4):
        nums = [_number(v, model, w) for v, w in zip(value, ("input", "output", "batch input", "batch output"))]
        return Price(*nums)
    if isinstance(value, Mapping):
        unknown = set(value) - set(_FIELDS)
        if unknown or "input" not in value or "output" not in value:
            raise ConfigurationError(
                f"The price of {model!r} needs 'input' and 'output' (optionally 'cached_input', 'batch_input', "
                f"'batch_output'); got {sorted(value)}.",
                hint='e.g. {"input": 0.40, "cached_input": 0.10, "output": 1.60}')
        optional = {k: None if value.get(k) is None else _number(value[k], model, k.replace("_", " "))
                    for k in ("batch_input", "batch_output", "cached_input")}
        return Price(_number(value["input"], model, "input"), _number(value["output"], model, "output"), **optional)
    raise ConfigurationError(f"The price of {model!r} must be (input, output) per 1M tokens, got {value!r}.",
                             hint='set_prices({"gpt-4.1-mini": (0.40, 1.60)})')


def set_prices(prices: Mapping[str, Any] | None = None, *, save: bool = False, currency: str | None = None,
               **by_name: Any) -> dict[str, Price]:
    """Set prices per 1M input / output tokens for this session (`save=True`: also in prices.toml).

    `set_prices({"gpt-4.1-mini": (0.40, 1.60)})`, `set_prices(gpt4o=(2.5, 10))` (names that are
    identifiers), a table per model with `input`, `output` and optional `cached_input`,
    `batch_input` / `batch_output`. `set_prices(None)` forgets the session's prices (prices.toml
    stays). Returns every price now known. Costs shown afterwards use them, also the costs of
    work done before (estimates, replies, runs, comparisons, `fm.usage()`)."""
    global _session_currency
    if prices is None and not by_name:
        with _lock:
            _session.clear()
            _session_currency = None
        return get_prices()
    if prices is not None and not isinstance(prices, Mapping):
        raise ConfigurationError(f"set_prices takes a dict of model -> (input, output), got {type(prices).__name__}.",
                                 hint='set_prices({"gpt-4.1-mini": (0.40, 1.60)})')
    parsed = {m.strip(): _price(m, v) for m, v in {**dict(prices or {}), **by_name}.items()}
    if currency is not None and (not isinstance(currency, str) or not currency.strip()):
        raise ConfigurationError("currency must be a short text such as 'USD'.")
    if save:
        _save(parsed, currency)
    with _lock:
        _session.update(parsed)
        if currency:
            _session_currency = currency.strip()
    return get_prices()


def _save(parsed: dict[str, Price], currency: str | None) -> None:
    import tomli_w

    from foundry_magics.connections.registry import atomic_write, locked

    path = prices_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path):
        doc = _read_doc(path)  # a broken file is an error here: saving would overwrite what it holds
        for model, p in parsed.items():
            entry: dict[str, float] = {"input": p.input, "output": p.output}
            for k in ("cached_input", "batch_input", "batch_output"):
                if getattr(p, k) is not None:
                    entry[k] = getattr(p, k)
            doc[model] = entry
        if currency:
            doc["currency"] = currency.strip()
        atomic_write(path, tomli_w.dumps(doc))


def _toml() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    tomllib = _toml()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message names the line: "... (at line 3, column 9)"
        raise ConfigurationError(f"{path} is not valid TOML: {exc}.",
                                 hint='Fix the file, e.g. "gpt-4.1-mini" = [0.40, 1.60], or delete it.') from None


def _read_doc(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    return {} if text is None else _parse(path, text)


def _line_of(text: str, key: str) -> int | None:
    """The line of prices.toml where `key` is given (`key = ...` or `[key]`), for the warning."""
    pattern = re.compile(r'^\s*(?:\[\s*(?:prices\s*\.\s*)?)?["\']?' + re.escape(key) + r'["\']?\s*(?:=|\])')
    for n, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return n
    return None


def _from_file() -> tuple[dict[str, Price], str | None]:
    """prices.toml, re-read when its modification time or size changes. A file that does not
    parse, or a malformed price in it, is one warning (per version of the file): the prices it
    fails to give are unknown, nothing raises."""
    global _file_cache
    path = prices_path()
    try:
        st = path.stat()
        stamp: Any = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (str(path), None, None)
    with _lock:
        if _file_cache is not None and _file_cache[0] == stamp:
            return _file_cache[1], _file_cache[2]
    prices: dict[str, Price] = {}
    cur: Any = None
    problems: list[str] = []
    short: list[str] = []
    try:
        text = _read_text(path) if stamp[1] is not None else None
        doc = {} if text is None else _parse(path, text)
    except ConfigurationError as exc:
        text, doc = None, {}
        problems.append(exc.message)
        at = re.search(r"line (\d+)", exc.message)
        short.append(f"{path.name} does not parse" + (f" (line {at.group(1)})" if at else ""))
    cur = doc.pop("currency", None)
    table = doc.pop("prices", None)  # also accepted: every price under one [prices] table
    if isinstance(table, Mapping):
        doc.update(table)
    for model, value in doc.items():
        try:
            prices[model] = _price(model, value)
        except ConfigurationError as exc:
            line = _line_of(text or "", model)
            problems.append(f"{path}{f' line {line}' if line else ''}: {exc.message}")
            short.append(f"{path.name}{f' line {line}' if line else ''}: the price of {model!r} is malformed")
    problem_text = None
    if problems:
        problem_text = "; ".join(problems)
        log.warning("%s Costs that need %s are unknown until it is fixed (or deleted).",
                    problem_text if problem_text.endswith(".") else problem_text + ".",
                    "its prices" if not prices else "the prices it fails to give")
    with _lock:
        _file_cache = (stamp, prices, cur if isinstance(cur, str) else None, problem_text,
                       "; ".join(short) if short else None)
    return prices, _file_cache[2]


def problem(*, short: bool = False) -> str | None:
    """Why prices.toml gives no (or not every) price - it does not parse, or a price in it is
    malformed - or None when it is fine (or absent). The warning was logged once already.
    `short=True`: a few words for a footer ("prices.toml does not parse (line 3)")."""
    _from_file()
    with _lock:
        cache = _file_cache
    if cache is None:
        return None
    return cache[4] if short else cache[3]


def get_prices() -> dict[str, Price]:
    """Every known price: prices.toml, then this session's (which win). Never raises for a
    broken prices.toml (see `problem()`)."""
    file_prices, _ = _from_file()
    with _lock:
        return {**file_prices, **_session}


def currency() -> str:
    _, cur = _from_file()
    with _lock:
        return _session_currency or cur or "USD"


_DATED = re.compile(r"^(.+)-\d{4}-\d{2}-\d{2}$")


def price_of(model: str | None, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model`, or None: its exact name (as given, case-insensitively, without a
    publisher prefix `openai/`), else - for a reply's dated name `NAME-YYYY-MM-DD` - NAME's.
    Never a family's price: `gpt-4o-mini` is not priced as `gpt-4o`."""
    if not model:
        return None
    prices = get_prices() if prices is None else prices
    if not prices:
        return None
    if model in prices:
        return prices[model]
    lower: dict[str, Price] = {}
    for k, v in prices.items():  # exact (lower-cased) names first, then priced names without a publisher
        lower.setdefault(k.strip().lower(), v)
    for k, v in prices.items():
        lower.setdefault(k.strip().lower().rsplit("/", 1)[-1], v)
    name = str(model).strip().lower()
    candidates = list(dict.fromkeys((name, name.rsplit("/", 1)[-1])))
    for candidate in candidates:
        if candidate in lower:
            return lower[candidate]
    for candidate in candidates:
        dated = _DATED.match(candidate)
        if dated and dated.group(1) in lower:
            return lower[dated.group(1)]
    return None


def cost(model: str | None, input_tokens: float, output_tokens: float, *, batch: bool = False,
         prices: Mapping[str, Price] | None = None, cached_input_tokens: float = 0) -> float | None:
    """What `input_tokens` + `output_tokens` of `model` cost, or None when its price is unknown.
    `cached_input_tokens` (a part of `input_tokens`) cost the `cached_input` price where given."""
    p = price_of(model, prices)
    if p is None:
        return None
    return p.cost(input_tokens, output_tokens, batch=batch, cached_input_tokens=cached_input_tokens)


def cached_note(models: Any, cached_input_tokens: float = 1, prices: Mapping[str, Price] | None = None) -> str:
    """"" - or, when cached input tokens were priced at the input price because a model's price
    has no `cached_input`, the words that say so (for a report's cost line)."""
    if not cached_input_tokens:
        return ""
    names = [models] if isinstance(models, str) or models is None else list(models)
    plain = []
    for m in names:
        p = price_of(m, prices)
        if p is not None and p.cached_input is None and m not in plain:
            plain.append(m)
    if not plain:
        return ""
    return f"cached input tokens at the input price (no cached_input price for {', '.join(map(str, plain))})"


def format_cost(value: float | None, cur: str | None = None) -> str:
    """`$0.0123` (USD), `0.0123 EUR`; "" when unknown. Small amounts keep 2 significant digits."""
    if value is None:
        return ""
    cur = cur or currency()
    if value == 0:
        text = "0.00"
    elif value >= 1:
        text = f"{value:,.2f}"
    elif value < 1e-6:
        text = "0.000001"
        return f"<${text}" if cur.upper() == "USD" else f"<{text} {cur}"
    else:
        text = f"{value:.{max(2, 1 - math.floor(math.log10(value)))}f}"
    return f"${text}" if cur.upper() == "USD" else f"{text} {cur}"
