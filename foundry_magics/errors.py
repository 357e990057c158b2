"""The exception tree, and the mapping from an HTTP error response to it.

    FoundryError                 anything this package raises on purpose
    ├── ConfigurationError       bad connection / option / template: fix your input
    │   └── MissingKeyError      auth "key" but no key in memory or in the named variable
    ├── ConnectionFailed         could not reach the endpoint (DNS, refused, TLS, cut)
    ├── TimeoutError             no answer within the timeout / deadline (also: FoundryTimeoutError)
    ├── StreamError              a stream ended before the service said it was complete
    ├── ResponseError            a 2xx whose body is not what the API promises
    └── HTTPStatusError          the service answered with status >= 400
        ├── BadRequestError      400 (and 422)
        │   ├── ContentFilterError      the prompt or the completion was filtered
        │   └── ContextLengthError      prompt + max tokens exceed the model's window
        ├── AuthError            401 / 403, and credentials that cannot produce a token
        ├── NotFoundError        404: wrong deployment, route or api-version
        ├── RateLimitError       429 (`retry_after` seconds; `quota_block` when it is hours),
        │                        and an API Management gateway's 403 token quota (`quota_block`)
        └── ServerError          5xx

    KeyboardInterrupt (builtin)
    └── RunInterrupted           Ctrl-C stopped a DataFrame run (or a batch wait): says what was kept

Every message names the cause and the fix. No message, repr or attribute holds a secret:
keys never reach this module, and request headers are not kept.

In IPython/Jupyter both show as one block, not a traceback: `_render_traceback_` returns the
lines of `block(exc)` ("Title: cause", "Fix: hint"), the same the magics show. When
`show_tracebacks(True)` is on (`%config FoundryMagics.tracebacks = True`), the attribute is
absent, so IPython draws its usual full traceback.

RunInterrupted is a KeyboardInterrupt and not an Exception on purpose: `except Exception`
(ours and users') must not swallow Ctrl-C, and code catching KeyboardInterrupt still does.
It is not a FoundryError for the same reason; `except fm.FoundryError` does not catch Ctrl-C.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from foundry_magics.defaults import QUOTA_BLOCK_SECONDS

__all__ = [
    "FoundryError",
    "ConfigurationError",
    "MissingKeyError",
    "ConnectionFailed",
    "FoundryTimeoutError",
    "TimeoutError",
    "StreamError",
    "ResponseError",
    "HTTPStatusError",
    "BadRequestError",
    "ContentFilterError",
    "ContextLengthError",
    "AuthError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "RunInterrupted",
    "error_from_response",
    "block",
    "show_tracebacks",
    "first_line",
    "describe",
]


# --------------------------------------------------------------------------- display

_tracebacks = False  # set by `%config FoundryMagics.tracebacks` (notebook.magics), or show_tracebacks()


def show_tracebacks(on: bool | None = None) -> bool:
    """How IPython shows our errors: False (the default) one block, cause then fix; True the
    full traceback, for debugging. With an argument, set it; return the setting."""
    global _tracebacks
    if on is not None:
        _tracebacks = bool(on)
    return _tracebacks


_TITLES = {
    "UsageError": "Bad option",
    "ConfigurationError": "Configuration problem",
    "ImageError": "Image problem",
    "MissingKeyError": "Missing API key",
    "ConnectionFailed": "Cannot reach the endpoint",
    "TimeoutError": "Timed out",
    "StreamError": "The stream stopped early",
    "ResponseError": "Unexpected response",
    "AuthError": "Not authorized",
    "NotFoundError": "Not found",
    "RateLimitError": "Rate limited",
    "ContentFilterError": "Blocked by the content filter",
    "ContextLengthError": "Prompt too long",
    "ServerError": "Service error",
    "BadRequestError": "Bad request",
}


def block(exc: BaseException) -> tuple[str, str, str | None]:
    """(title, cause, fix) of the one block an error is shown as; fix is None when it has none."""
    title = next((_TITLES[c.__name__] for c in type(exc).__mro__ if c.__name__ in _TITLES), "Foundry error")
    cause = str(exc).strip() or type(exc).__name__
    hint = getattr(exc, "hint", None)
    if hint and cause.endswith(hint):
        cause = cause[: -len(hint)].rstrip()
    return title, cause, hint


def block_text(exc: BaseException) -> str:
    """The block as plain text: "Title: cause", then "Fix: hint" when there is one."""
    title, cause, hint = block(exc)
    return f"{title}: {cause}" + (f"\nFix: {hint}" if hint else "")


def _render(lines: Any) -> Any:
    """The `_render_traceback_` IPython looks for: absent (AttributeError, so hasattr() is False
    and IPython draws the traceback as usual) while show_tracebacks() is on."""
    if _tracebacks:
        raise AttributeError("_render_traceback_")
    return lines


# --------------------------------------------------------------------------- the tree


class FoundryError(Exception):
    """Base class. `hint` is the fix, shown on its own line after the cause."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message

    @property
    def _render_traceback_(self) -> Any:
        """IPython shows the error as this one block (cause, then fix), not a traceback."""
        return _render(lambda: block_text(self).splitlines())


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run or a wait. The message is one line: what was kept, how to go on
    (e.g. "Interrupted: 1,234 of 5,000 rows finished and cached; run the same call again to
    send only the rest."). IPython shows only that line. `report`: the run's report, if any."""

    def __init__(self, message: str, *, report: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.report = report

    def __str__(self) -> str:
        return self.message

    @property
    def _render_traceback_(self) -> Any:
        return _render(lambda: [self.message])


class ConfigurationError(FoundryError, ValueError):
    """Input the user can fix: a malformed URL, an unknown connection, a bad option."""


class MissingKeyError(ConfigurationError):
    pass


class ConnectionFailed(FoundryError):
    refused_on_loopback: bool = False  # nothing listens on that local port: not worth retrying (rest.retry)


class TimeoutError(FoundryError):  # noqa: A001 - the public name users know, shown in outputs' metadata
    pass


# The same class under a name our own modules use, so it is never confused with the builtin.
FoundryTimeoutError = TimeoutError


class StreamError(FoundryError):
    """A stream stopped early. `partial` is the text received before it stopped."""

    def __init__(self, message: str, *, partial: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.partial = partial


class ResponseError(FoundryError):
    pass


class HTTPStatusError(FoundryError):
    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after  # seconds the service asked us to wait, if it said

    def __str__(self) -> str:
        head = f"HTTP {self.status}"
        if self.code:
            head += f" {self.code}"
        text = f"{head}: {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return f"{text}\n{self.hint}" if self.hint else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class BadRequestError(HTTPStatusError):
    pass


class ContentFilterError(BadRequestError):
    """`categories` maps each category that fired to its severity (or True)."""

    def __init__(self, message: str, *, categories: Mapping[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.categories = dict(categories or {})


class ContextLengthError(BadRequestError):
    pass


class AuthError(HTTPStatusError):
    def __init__(self, message: str, *, status: int = 401, **kw: Any) -> None:
        super().__init__(message, status=status, **kw)
        # Set by the client when it switched to the other Entra scope: send once more, at once.
        self.scope_retry = False


class NotFoundError(HTTPStatusError):
    pass


class RateLimitError(HTTPStatusError):
    def __init__(self, message: str, *, quota_block: bool = False, **kw: Any) -> None:
        kw.setdefault("status", 429)
        super().__init__(message, **kw)
        self.quota_block = quota_block


class ServerError(HTTPStatusError):
    pass


# --------------------------------------------------------------------------- mapping

@dataclass
class _Envelope:
    code: str | None
    message: str
    inner_code: str | None
    filter_results: dict[str, Any]


def _parse_envelope(body: Any, text: str) -> _Envelope:
    """Azure's `{"error": {...}}`, OpenAI's, and plain-text bodies alike."""
    err: Any = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, str):  # some gateways: {"error": "message"}
        return _Envelope(None, err, None, {})
    if not isinstance(err, dict):
        if isinstance(body, dict) and ("message" in body or "detail" in body):
            # API Management and some local servers: {"statusCode": 401, "message": "..."}
            msg = body.get("message") or body.get("detail")
            return _Envelope(str(body.get("code") or "") or None, str(msg), None, {})
        return _Envelope(None, (text or "").strip()[:500] or "no error body", None, {})
    inner = err.get("innererror") or err.get("inner_error") or {}
    if not isinstance(inner, dict):
        inner = {}
    filters = inner.get("content_filter_result") or inner.get("content_filter_results") or {}
    if not isinstance(filters, dict):
        filters = {}
    code = err.get("code")
    return _Envelope(
        str(code) if code is not None else None,
        str(err.get("message") or "no message"),
        inner.get("code"),
        filters,
    )


def filtered_categories(results: Mapping[str, Any] | None) -> dict[str, Any]:
    """`{"violence": {"filtered": true, "severity": "medium"}, ...}` -> `{"violence": "medium"}`."""
    fired: dict[str, Any] = {}
    for name, value in (results or {}).items():
        if isinstance(value, dict) and value.get("filtered"):
            fired[name] = value.get("severity") or True
    return fired


_HINTS = {
    401: "Check the key (or the Entra ID token's scope) for this endpoint: "
    "`%foundry connections` shows where the key is read from.",
    403: "Your identity lacks a role on the resource, or network rules block this machine: "
    "ask for 'Cognitive Services OpenAI User' (projects: 'Azure AI User').",
    404: "Check the deployment or model name (`%foundry models`), the endpoint path and the api-version.",
}


def error_from_response(
    status: int,
    body_text: str,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    quota_block_after: float = QUOTA_BLOCK_SECONDS,
    gateway_quota: bool = False,
) -> HTTPStatusError:
    """Build the right exception for an HTTP error response (status >= 400).

    `gateway_quota`: the response came from an API Management gateway that accepted this key
    before (or said when to come back): a 403 there is its token quota, not a wrong key."""
    try:
        body: Any = json.loads(body_text) if body_text else None
    except ValueError:
        body = None
    env = _parse_envelope(body, body_text)
    code = env.code or env.inner_code
    kw: dict[str, Any] = dict(status=status, code=code, request_id=request_id, body=body, retry_after=retry_after)
    lowered = (env.code or "").lower()
    if status == 429:
        block = retry_after is not None and retry_after >= quota_block_after
        if block:
            hint = (
                f"The quota is exhausted for about {_human(retry_after)}: come back then, "
                "or raise the deployment's quota in the Foundry portal."
            )
        else:
            hint = "The service is rate limiting you: lower the concurrency or pass rpm=/tpm= budgets."
        return RateLimitError(env.message, quota_block=block, hint=hint, **kw)
    if status in (400, 422):
        if lowered == "content_filter" or env.inner_code == "ResponsibleAIPolicyViolation" or env.filter_results:
            cats = filtered_categories(env.filter_results)
            names = ", ".join(f"{k} ({v})" if v is not True else k for k, v in cats.items())
            hint = "The prompt was blocked by the content filter" + (f": {names}." if names else ".")
            hint += " Rephrase it, or adjust the deployment's content filter policy."
            return ContentFilterError(env.message, categories=cats, hint=hint, **kw)
        if lowered in ("context_length_exceeded", "string_above_max_length") or "maximum context length" in env.message:
            return ContextLengthError(
                env.message, hint="Shorten the prompt or the history (--new), or lower max_tokens.", **kw
            )
        return BadRequestError(env.message, hint=None, **kw)
    if status == 403 and gateway_quota:
        wait = retry_after if retry_after is not None else come_back_in(env.message)
        kw["retry_after"] = wait
        hint = (f"The API Management gateway's token quota for this key is used up: come back in about {_human(wait)}, "
                if wait is not None else
                "The API Management gateway's token quota for this key is used up for its period: come back later, ")
        hint += "or ask the gateway's owner for a larger quota (the azure-openai-token-limit policy's token-quota)."
        return RateLimitError(env.message, quota_block=True, hint=hint, **kw)
    if status in (401, 403):
        return AuthError(env.message, hint=_HINTS[status], **kw)
    if status == 404:
        return NotFoundError(env.message, hint=_HINTS[404], **kw)
    if status >= 500:
        return ServerError(env.message, hint="The service had a transient failure; retrying later usually works.", **kw)
    return HTTPStatusError(env.message, **kw)


_COME_BACK = re.compile(r"\bin\s+(?:(\d+):(\d{2}):(\d{2})|(\d+(?:\.\d+)?)\s*(seconds?|minutes?|hours?|days?)\b)",
                        re.IGNORECASE)


def come_back_in(message: str) -> float | None:
    """Seconds from a gateway's message ("Try again in 3600 seconds", "replenished in 01:00:00"), if it says."""
    m = _COME_BACK.search(message or "")
    if m is None:
        return None
    if m.group(1) is not None:
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    unit = m.group(5).lower().rstrip("s")
    return float(m.group(4)) * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]


def first_line(exc: BaseException | None) -> str:
    """The first line of an exception's message, or its class name when it has none."""
    if exc is None:
        return ""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def describe(exc: BaseException | None) -> str:
    """`ClassName: first line` - how a failure is recorded (history, run reports)."""
    if exc is None:
        return ""
    text = first_line(exc)
    return type(exc).__name__ if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "a while"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
