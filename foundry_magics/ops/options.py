"""Options: one meaning everywhere, checked by one function before anything is sent.

Every front-end (a `%%foundry` cell, `df.foundry.*`, Polars, Spark, `fm.compare`,
`FoundryClient.chat`/`respond`/`dry_run`) passes its keyword options through `check`, which
returns them normalised (`temperature=1` -> 1.0) or raises one `ConfigurationError` naming the
option, what it got, and for a misspelt keyword "did you mean ...".

Which options a call takes is a set of names from the table below:

* REQUEST: what shapes one request (single calls and runs alike);
* RUN: how a run over many rows is sent (concurrency, budgets, cache, progress, `max_cost`: the
  run stops before its spend could pass the amount);
* MODE: where a run goes (online, the Batch API, an estimate that sends nothing - or, with
  `sample=N`, N requests to forecast the run).

This module imports nothing but `errors` and `defaults`, so the request builders (`rest/`)
can use it too.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterable, Mapping

from foundry_magics.errors import ConfigurationError

__all__ = ["REQUEST", "RUN", "MODE", "EMBED", "ROW_OPTIONS", "check", "check_value", "unknown_option"]


def _type_name(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_type_name(value)})" if not isinstance(value, str) else text


def _number(lo: float | None = None, hi: float | None = None, *, integer: bool = False, positive: bool = False,
            optional: bool = True, example: str = "") -> Callable[[str, Any], Any]:
    if integer:
        what = "a whole number"
    else:
        what = "a number"
    if positive:
        what = "a positive " + what.split(" ", 1)[1]
    elif lo is not None and hi is not None:
        what += f" from {lo:g} to {hi:g}"
    if optional:
        what += " or None"

    def convert(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        ok = not isinstance(value, bool) and isinstance(value, (int, float))
        if ok and integer and isinstance(value, float):
            ok = value.is_integer()
        if ok and value != value:  # NaN
            ok = False
        if ok and positive and value <= 0:
            ok = False
        if ok and lo is not None and value < lo:
            ok = False
        if ok and hi is not None and value > hi:
            ok = False
        if not ok:
            # numpy scalars are numbers too
            if hasattr(value, "item") and not isinstance(value, bool):
                try:
                    return convert(name, value.item())
                except ConfigurationError:
                    pass
            raise ConfigurationError(f"{name} must be {what}, got {_got(value)}.",
                                     hint=f"For example {name}={example}." if example else None)
        return int(value) if integer else value  # 1 stays 1: the request body (and its cache key) as given

    return convert


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and type(value).__name__.startswith("bool"):  # numpy.bool_
        return bool(value)
    raise ConfigurationError(f"{name} must be True or False, got {_got(value)}.",
                             hint=f"For example {name}=False.")


def _progress(name: str, value: Any) -> Any:
    """True / False, or a display (a factory `(total, label) -> display`, or one with `update`)."""
    if isinstance(value, bool) or callable(value) or hasattr(value, "update"):
        return value
    raise ConfigurationError(f"progress must be True or False, got {_got(value)}.",
                             hint="Pass progress=False to hide the progress bar.")


def _text(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    raise ConfigurationError(f"{name} must be a string or None, got {_got(value)}.",
                             hint=f'For example {name}="..." .' if name == "system" else None)


def _model(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"model must be a deployment or model name, got {_got(value)}.",
                                 hint='For example model="gpt-4.1-mini"; %foundry models lists them.')
    return value.strip()


def _api(name: str, value: Any) -> Any:
    if value is None or value in ("chat", "responses"):
        return value
    raise ConfigurationError(f"api must be 'chat' or 'responses', got {_got(value)}.",
                             hint="chat: chat completions; responses: the Responses API.")


def _connection(name: str, value: Any) -> Any:
    if value is None or isinstance(value, str) or hasattr(value, "endpoint"):
        return value
    raise ConfigurationError(f"connection must be a connection's name, a URL or an fm.Connection, got {_got(value)}.",
                             hint="%foundry connections lists the known ones.")


def _schema(name: str, value: Any) -> Any:
    if value is None:
        return None
    from foundry_magics.rest.schemas import to_json_schema  # no I/O; checks the shape once, readably

    to_json_schema(value)
    return value


def _pack(name: str, value: Any) -> Any:
    """Rows per request: None (one), a whole number from 1 to 100, or "auto" (engine.packing)."""
    if value is None or value == "auto" and isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, bool):  # numpy integers
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
        return value
    raise ConfigurationError(f'pack must be a whole number from 1 to 100, "auto" or None, got {_got(value)}.',
                             hint='For example pack=20 (20 rows to a request) or pack="auto".')


def _any(name: str, value: Any) -> Any:
    return value


# name -> checker. A checker returns the normalised value or raises ConfigurationError.
CHECKS: dict[str, Callable[[str, Any], Any]] = {
    # what shapes a request
    "system": _text,
    "model": _model,
    "connection": _connection,
    "temperature": _number(0, 2, example="0.2"),
    "max_tokens": _number(integer=True, positive=True, example="256"),
    "schema": _schema,
    "images": _any,  # a column, or one cell per row: checked row by row by the plan
    "api": _api,
    "dimensions": _number(integer=True, positive=True, example="256"),
    # how a run is sent
    "concurrency": _number(integer=True, positive=True, example="32"),
    "rpm": _number(positive=True, example="600"),
    "tpm": _number(positive=True, example="100000"),
    "cache": _bool,
    "progress": _progress,
    "parallelism": _number(integer=True, positive=True, example="8"),
    "max_cost": _number(positive=True, example="0.50"),  # in the prices' currency: engine.budget
    "pack": _pack,  # rows per request (engine.packing)
    # where it goes
    "batch": _bool,
    "wait": _bool,
    "poll_interval": _number(positive=True, example="60"),
    "estimate": _bool,
    "sample": _number(integer=True, positive=True, example="20"),  # estimate=True: answer N requests to forecast
}

REQUEST = frozenset({"system", "model", "connection", "temperature", "max_tokens", "schema", "images", "api"})
RUN = frozenset({"concurrency", "rpm", "tpm", "cache", "progress", "max_cost", "pack"})
MODE = frozenset({"batch", "wait", "poll_interval", "estimate", "sample"})
EMBED = frozenset({"model", "connection", "dimensions", "cache", "progress", "concurrency", "max_cost", *MODE})
ROW_OPTIONS = REQUEST | RUN | MODE  # what a DataFrame operation over rows takes


def unknown_option(name: str, allowed: Iterable[str], where: str) -> ConfigurationError:
    allowed = sorted(set(allowed))
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        hint = f"Did you mean {close[0]}=?"
    elif name in CHECKS:
        hint = f"{where} does not take {name}=. It takes: {', '.join(allowed)}."
    else:
        hint = f"{where} takes: {', '.join(allowed)}."
    return ConfigurationError(f"{where} got an unknown option {name}=.", hint=hint)


def check_value(name: str, value: Any) -> Any:
    """One option's value, normalised, or a ConfigurationError naming it."""
    checker = CHECKS.get(name, _any)
    return checker(name, value)


def check(options: Mapping[str, Any], allowed: Iterable[str], where: str) -> dict[str, Any]:
    """`options` normalised, checked against `allowed` names; raises on the first problem.

    `where` names the call in messages ("df.foundry.prompt()"). Options whose value is the
    default (None) are kept as they are.
    """
    allowed = frozenset(allowed)
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name not in allowed:
            raise unknown_option(name, allowed, where)
        out[name] = check_value(name, value)
    wait, poll = out.get("wait", True), out.get("poll_interval")
    if (wait is not True or poll is not None) and not out.get("batch") and "batch" in allowed:
        raise ConfigurationError("wait= and poll_interval= apply to Batch API jobs only.",
                                 hint="Add batch=True (half the price, results within 24 h), or leave them out.")
    if out.get("sample") is not None and not out.get("estimate") and "estimate" in allowed:
        raise ConfigurationError(f"sample= applies to estimates only (got sample={out['sample']} "
                                 "without estimate=True).",
                                 hint="Add estimate=True: it answers that many requests (cached for the run) to "
                                      "forecast the output, cost and time; or leave sample= out.")
    return out
