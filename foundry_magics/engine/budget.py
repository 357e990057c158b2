"""`max_cost`: a run stops before its spend could pass the amount.

The spend of a run at any moment is what its finished requests cost (their usage, at the
model's price) plus, for every request in flight, its upper bound: its input tokens counted
high (one token per UTF-8 byte of the text it carries - a token is never shorter than a byte -
and each image at its tile rule) plus its whole output cap (`max_tokens`; a request without
one counts `BUDGET_UNCAPPED_OUTPUT` tokens, or `BUDGET_UNCAPPED_REASONING_OUTPUT` for a
reasoning model, and the stop reason says so).

`Budget.reserve(bound)` books a request's upper bound before it is sent (waiting while requests
in flight may still free room), and `settle(bound, actual)` replaces the booking by what the
reply cost. When a request does not fit and nothing is in flight, the budget is exhausted: the
run stops, keeping every finished row. An attempt whose answer was lost on the way (a timeout,
a cut connection, a broken stream) may have been billed: it is settled at its upper bound.

The checks a face makes before anything is sent live here too: `require_price` (no price, no
budget) and `request_bound` (a single cell's request against `max_cost`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Mapping

from foundry_magics.defaults import (
    BUDGET_IMAGE_TOKENS,
    BUDGET_MESSAGE_TOKENS,
    BUDGET_UNCAPPED_OUTPUT,
    BUDGET_UNCAPPED_REASONING_OUTPUT,
)
from foundry_magics.errors import ConfigurationError

__all__ = ["Budget", "BudgetShare", "require_price", "input_bound", "output_cap", "uncapped_output", "request_bound",
           "check_request", "money", "may_be_billed"]

_EPSILON = 1e-12  # float sums of many small costs: an amount equal to the limit fits
_CAP_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def money(value: float, *, up: bool = False) -> str:
    """An amount as messages show it (no currency: max_cost has none): 0.0497, 0.00012. Rounded
    down (a spend never shows more than it was), or up (`up=True`: what something could cost)."""
    if value <= 0:
        return "0"
    digits = 4 if value >= 0.01 else 1 - math.floor(math.log10(value))  # 2 significant digits below 0.01
    scale = 10 ** digits
    rounded = (math.ceil if up else math.floor)(value * scale * (1 - 1e-12 if up else 1 + 1e-12)) / scale
    return f"{rounded:.{digits}f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------------- prices


def require_price(model: str | None, max_cost: float, where: str = "max_cost") -> Any:
    """The model's `Price`, or a ConfigurationError naming what to set: a budget needs a price."""
    from foundry_magics.store.prices import price_of, prices_path

    if not model:
        raise ConfigurationError(f"{where}={max_cost:g} needs the model's price, but no model is known.",
                                 hint="Name the model (model=... / -m NAME) and set its price with fm.set_prices.")
    price = price_of(model)
    if price is None:
        raise ConfigurationError(
            f"{where}={max_cost:g} needs the price of {model!r}, and none is set: nothing was sent.",
            hint=f'Set it per 1M input / output tokens: fm.set_prices({{"{model}": (0.15, 0.60)}}), '
                 f'or add the line "{model}" = [0.15, 0.60] to {prices_path()} (your own prices).')
    return price


# ---------------------------------------------------------------------- upper bounds of one request


def _image_bound(part: Mapping[str, Any]) -> int:
    from foundry_magics.defaults import IMAGE_BASE_TOKENS, IMAGE_UNKNOWN_TOKENS
    from foundry_magics.rest.images import image_tokens

    inner = part.get("image_url")
    url = inner.get("url") if isinstance(inner, Mapping) else inner
    detail = part.get("detail") or (inner.get("detail") if isinstance(inner, Mapping) else None)
    if detail == "low":
        return IMAGE_BASE_TOKENS
    if not isinstance(url, str) or not url.startswith("data:"):
        return BUDGET_IMAGE_TOKENS  # a link: its size is not known here
    tokens = image_tokens(url)
    return BUDGET_IMAGE_TOKENS if tokens == IMAGE_UNKNOWN_TOKENS else tokens


def _walk(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, Mapping):
        if value.get("type") in ("image_url", "input_image"):
            return _image_bound(value)
        return BUDGET_MESSAGE_TOKENS + sum(_walk(k) + _walk(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return BUDGET_MESSAGE_TOKENS + sum(_walk(v) for v in value)
    return 0 if value is None or isinstance(value, bool) else len(str(value))


def input_bound(body: Mapping[str, Any]) -> int:
    """Input tokens a request body cannot exceed: a token per UTF-8 byte of every text in it
    (messages, instructions, the schema, the field names too) and each image at its tile rule."""
    return _walk({k: v for k, v in body.items() if k not in _CAP_KEYS and k not in ("stream", "stream_options")})


def output_cap(body: Mapping[str, Any]) -> int | None:
    for k in _CAP_KEYS:
        if isinstance(body.get(k), int) and not isinstance(body.get(k), bool):
            return body[k]
    return None


def uncapped_output(model: str | None) -> int:
    """The output tokens counted for a request without max_tokens."""
    from foundry_magics.rest.routes import uses_max_completion_tokens

    return BUDGET_UNCAPPED_REASONING_OUTPUT if uses_max_completion_tokens(model) else BUDGET_UNCAPPED_OUTPUT


def request_bound(price: Any, model: str | None, body: Mapping[str, Any], *, batch: bool = False) -> tuple[float, bool]:
    """(what the request can cost at most, whether it carries an output cap)."""
    cap = output_cap(body)
    out = cap if cap is not None else uncapped_output(model)
    return price.cost(input_bound(body), out, batch=batch), cap is not None


def check_request(model: str | None, body: Mapping[str, Any], max_cost: float) -> float:
    """A single request against `max_cost`: its upper bound, or a ConfigurationError (nothing sent)."""
    price = require_price(model, max_cost)
    bound, capped = request_bound(price, model, body)
    if bound > max_cost + _EPSILON:
        out = output_cap(body) if capped else uncapped_output(model)
        why = "" if capped else f" (no max_tokens: counted at {out:,} output tokens)"
        raise ConfigurationError(
            f"max_cost={max_cost:g}: this request could cost up to {money(bound, up=True)}{why}, more than the budget; "
            f"nothing was sent.",
            hint="Set a smaller --max-tokens, shorten the prompt, or raise --max-cost.")
    return bound


def may_be_billed(exc: BaseException) -> bool:
    """An attempt whose answer was lost after the service may have done the work."""
    from foundry_magics.errors import ConnectionFailed, FoundryTimeoutError, ResponseError, StreamError

    if isinstance(exc, ConnectionFailed) and getattr(exc, "refused_on_loopback", False):
        return False
    return isinstance(exc, (ConnectionFailed, FoundryTimeoutError, ResponseError, StreamError))


# ---------------------------------------------------------------------- the gate


class Budget:
    """The spend of one run against `limit`: settled costs plus the bounds of requests in flight.

    Used on the run's event loop only (no locks): `reserve` awaits, the rest are plain calls."""

    def __init__(self, limit: float, price: Any = None, *, model: str | None = None, batch: bool = False) -> None:
        self.limit = float(limit)
        self.price = price
        self.model = model
        self.batch = batch
        self.spent = 0.0  # finished attempts: their usage's cost (or their bound, when the answer was lost)
        self.reserved = 0.0  # bounds of the requests in flight
        self.inflight = 0
        self.peak = 0.0  # the highest spent + reserved seen: never above the limit
        self.exhausted = False
        self.refused: float | None = None  # the bound that did not fit
        self.uncapped = False  # a request without max_tokens was counted at the default cap
        self._waiters: list[asyncio.Future] = []

    # -- bounds -----------------------------------------------------------------------------

    def bound(self, body: Mapping[str, Any]) -> float:
        value, capped = request_bound(self.price, self.model, body, batch=self.batch)
        if not capped:
            self.uncapped = True
        return value

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return self.price.cost(input_tokens, output_tokens, batch=self.batch)

    # -- booking ------------------------------------------------------------------------------

    def try_reserve(self, amount: float) -> bool:
        """Book `amount` if spent + in flight + amount stays within the limit."""
        if self.exhausted:
            return False
        if self.spent + self.reserved + amount > self.limit + _EPSILON:
            if self.inflight == 0:  # nothing in flight can free room: the budget is used up
                self.exhausted = True
                self.refused = amount
                self._wake()
            return False
        self.reserved += amount
        self.inflight += 1
        self.peak = max(self.peak, self.spent + self.reserved)
        return True

    async def reserve(self, amount: float) -> bool:
        """Book `amount`, waiting while requests in flight may free room; False: the budget is used up."""
        while not self.try_reserve(amount):
            if self.exhausted:
                return False
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        return True

    def settle(self, amount: float, actual: float) -> None:
        """A booked request ended: its booking becomes what it cost (0 when it was never billed)."""
        self.inflight = max(0, self.inflight - 1)
        self.reserved = max(0.0, self.reserved - amount) if self.inflight else 0.0
        self.spent += actual
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- saying why -------------------------------------------------------------------------

    def reason(self) -> str:
        """Why the run stopped: `max_cost=0.05 reached (spent 0.0497)`."""
        if self.spent == 0 and self.refused is not None:
            text = (f"max_cost={self.limit:g} reached: one request could cost up to {money(self.refused, up=True)}, "
                    f"more than the budget (nothing was sent)")
        else:
            text = f"max_cost={self.limit:g} reached (spent {money(self.spent)})"
        if self.uncapped:
            text += (f"; requests without max_tokens were counted at {uncapped_output(self.model):,} output tokens "
                     f"each (set max_tokens to spend closer to max_cost)")
        return text


class BudgetShare:
    """One model's prices on a `Budget` that several runs spend together (an evaluation's
    prompts x models share one max_cost): bounds and costs at this model's price, the booking
    (reserve, settle, exhausted, reason) on the shared budget."""

    def __init__(self, shared: Budget, price: Any, model: str | None) -> None:
        self.shared = shared
        self.price = price
        self.model = model

    def bound(self, body: Mapping[str, Any]) -> float:
        value, capped = request_bound(self.price, self.model, body, batch=self.shared.batch)
        if not capped:
            self.shared.uncapped = True
        return value

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return self.price.cost(input_tokens, output_tokens, batch=self.shared.batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shared, name)
