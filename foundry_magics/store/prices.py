"""Prices per model, and what a usage costs. Nothing is built in: prices change, differ by
region, contract and deployment type, and a wrong built-in price is worse than none.

    fm.set_prices({"gpt-4.1-mini": (0.40, 1.60)})           # per 1M input / output tokens
    fm.set_prices({"gpt-4o": {"input": 2.5, "output": 10, "batch_input": 1.25, "batch_output": 5}})
    fm.set_prices({...}, save=True)                         # also into $FOUNDRY_MAGICS_HOME/prices.toml
    fm.set_prices(None)                                     # forget this session's prices

`prices.toml` (read when it changes; session prices given with `set_prices` win):

    currency = "USD"            # optional, shown beside costs
    "gpt-4.1-mini" = [0.40, 1.60]
    [gpt-4o]
    input = 2.50
    output = 10.00
    batch_input = 1.25          # optional: else the Batch API costs BATCH_PRICE_FACTOR (half)

A model is found by its name as given, then case-insensitively, then without a publisher
prefix (`openai/gpt-4o`), then by the longest priced name it starts with followed by `-`
(`gpt-4o-2024-08-06` -> `gpt-4o`, `gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`), so both a
deployment name and the model name a reply carries find the same price.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from foundry_magics.defaults import BATCH_PRICE_FACTOR, PRICES_FILE, home
from foundry_magics.errors import ConfigurationError

__all__ = ["Price", "set_prices", "get_prices", "price_of", "cost", "format_cost", "prices_path", "currency"]


@dataclass(frozen=True)
class Price:
    """Per 1M tokens."""

    input: float
    output: float
    batch_input: float | None = None
    batch_output: float | None = None

    def cost(self, input_tokens: float, output_tokens: float, *, batch: bool = False) -> float:
        pin, pout = self.input, self.output
        if batch:
            pin = self.batch_input if self.batch_input is not None else pin * BATCH_PRICE_FACTOR
            pout = self.batch_output if self.batch_output is not None else pout * BATCH_PRICE_FACTOR
        return (input_tokens * pin + output_tokens * pout) / 1_000_000


_lock = threading.Lock()
_session: dict[str, Price] = {}
_file_cache: tuple[Any, dict[str, Price], str | None] | None = None  # (stamp, prices, currency)
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
        unknown = set(value) - {"input", "output", "batch_input", "batch_output"}
        if unknown or "input" not in value or "output" not in value:
            raise ConfigurationError(
                f"The price of {model!r} needs 'input' and 'output' (optionally 'batch_input', 'batch_output'); "
                f"got {sorted(value)}.", hint='e.g. {"input": 2.5, "output": 10}')
        return Price(_number(value["input"], model, "input"), _number(value["output"], model, "output"),
                     *(None if value.get(k) is None else _number(value[k], model, k.replace("_", " "))
                       for k in ("batch_input", "batch_output")))
    raise ConfigurationError(f"The price of {model!r} must be (input, output) per 1M tokens, got {value!r}.",
                             hint='set_prices({"gpt-4.1-mini": (0.40, 1.60)})')


def set_prices(prices: Mapping[str, Any] | None = None, *, save: bool = False, currency: str | None = None,
               **by_name: Any) -> dict[str, Price]:
    """Set prices per 1M input / output tokens for this session (`save=True`: also in prices.toml).

    `set_prices({"gpt-4.1-mini": (0.40, 1.60)})`, `set_prices(gpt4o=(2.5, 10))` (names that are
    identifiers), a table per model with `input`, `output` and optional `batch_input` /
    `batch_output`. `set_prices(None)` forgets the session's prices (prices.toml stays).
    Returns every price now known."""
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
        doc = _read_doc(path)
        for model, p in parsed.items():
            entry: dict[str, float] = {"input": p.input, "output": p.output}
            if p.batch_input is not None:
                entry["batch_input"] = p.batch_input
            if p.batch_output is not None:
                entry["batch_output"] = p.batch_output
            doc[model] = entry
        if currency:
            doc["currency"] = currency.strip()
        atomic_write(path, tomli_w.dumps(doc))


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}.",
                                 hint='Fix the file, e.g. "gpt-4.1-mini" = [0.40, 1.60], or delete it.') from None


def _from_file() -> tuple[dict[str, Price], str | None]:
    """prices.toml, re-read when its modification time or size changes."""
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
    doc = _read_doc(path) if stamp[1] is not None else {}
    cur = doc.pop("currency", None)
    table = doc.pop("prices", None)  # also accepted: every price under one [prices] table
    if isinstance(table, Mapping):
        doc.update(table)
    prices = {}
    for model, value in doc.items():
        try:
            prices[model] = _price(model, value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc.message}", hint=exc.hint) from None
    with _lock:
        _file_cache = (stamp, prices, cur if isinstance(cur, str) else None)
    return prices, _file_cache[2]


def get_prices() -> dict[str, Price]:
    """Every known price: prices.toml, then this session's (which win)."""
    file_prices, _ = _from_file()
    with _lock:
        return {**file_prices, **_session}


def currency() -> str:
    _, cur = _from_file()
    with _lock:
        return _session_currency or cur or "USD"


def price_of(model: str | None, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model` (see the module doc for how names match), or None."""
    if not model:
        return None
    prices = get_prices() if prices is None else prices
    if not prices:
        return None
    if model in prices:
        return prices[model]
    lower = {k.lower(): v for k, v in prices.items()}
    name = str(model).lower()
    for candidate in (name, name.rsplit("/", 1)[-1]):
        if candidate in lower:
            return lower[candidate]
        best = max((k for k in lower if candidate.startswith(k + "-")), key=len, default=None)
        if best is not None:
            return lower[best]
    return None


def cost(model: str | None, input_tokens: float, output_tokens: float, *, batch: bool = False,
         prices: Mapping[str, Price] | None = None) -> float | None:
    """What `input_tokens` + `output_tokens` of `model` cost, or None when its price is unknown."""
    p = price_of(model, prices)
    return None if p is None else p.cost(input_tokens, output_tokens, batch=batch)


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
