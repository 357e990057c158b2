"""A Spark job stopped by one of our errors, shown as that error: one readable block, no wall.

When a task stops on a fatal error (wrong key, unknown deployment, quota block), Spark fails
the action with `pyspark.errors.PythonException`, whose text is the Python worker's
traceback ending in our `foundry_magics.errors.<Class>: <message>\\n<fix>`. Only that text
crosses from the executor, so this module reads the error back from it:

* `foundry_error(exc)`: the `FoundryError` (same class, message and fix) a Spark exception
  carries, or None;
* `readable_errors()`: a context manager that re-raises such an exception as that error
  (for scripts and jobs: `with fm.spark.readable_errors(): out.write.parquet(path)`);
* in IPython / Jupyter (Fabric and Databricks notebooks included), `install()` gives
  PySpark's PythonException a `_render_traceback_` (IPython's hook for exceptions that draw
  themselves) that draws ours as the same block `%%foundry` shows: cause, then "Fix:". Any
  other PythonException draws exactly as before.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

from foundry_magics import errors as _errors
from foundry_magics.errors import FoundryError, HTTPStatusError

__all__ = ["foundry_error", "readable_errors", "install", "render_lines", "rebuild"]

_LAST = re.compile(r"^foundry_magics\.errors\.(\w+): ", re.M)
_HTTP = re.compile(r"^HTTP (\d{3})(?: (\S+))?: (.*?)(?: \(request id ([^)]*)\))?$")
_AFTER = re.compile(r"\n\s*(?:JVM stacktrace:|Traceback \(most recent call last\):|During handling of the above"
                    r"|The above exception was the direct cause)")


def foundry_error(exc: BaseException | None) -> FoundryError | None:
    """The FoundryError behind a failed Spark action (walking causes too), else None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, FoundryError):
            return exc
        found = _from_text(_text_of(exc))
        if found is not None:
            found.spark_traceback = _text_of(exc)  # type: ignore[attr-defined]  # the worker's traceback, for whoever wants it
            return found
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _text_of(exc: BaseException) -> str:
    params = None
    try:
        params = exc.getMessageParameters()  # type: ignore[attr-defined]  # PySparkException
    except Exception:  # noqa: BLE001
        pass
    if isinstance(params, dict) and isinstance(params.get("traceback"), str):
        return params["traceback"]
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return ""


def _from_text(text: str) -> FoundryError | None:
    matches = list(_LAST.finditer(text or ""))
    if not matches:
        return None
    m = matches[-1]
    body = text[m.end():]
    cut = _AFTER.search(body)
    if cut is not None:  # another exception followed ours: it is not what stopped the task
        if not body[cut.start():].lstrip().startswith("JVM stacktrace:"):
            return None
        body = body[:cut.start()]
    cls = getattr(_errors, m.group(1), None)
    if not (isinstance(cls, type) and issubclass(cls, FoundryError)):
        cls = FoundryError
    return rebuild(cls, body.strip())


def rebuild(cls: type[FoundryError], text: str) -> FoundryError:
    """An instance of `cls` whose str() is `text` again (message on the first line, fix after)."""
    first, _, hint = text.partition("\n")
    exc = cls.__new__(cls)
    Exception.__init__(exc, first)
    exc.message = first
    exc.hint = hint.strip() or None
    if isinstance(exc, HTTPStatusError):
        m = _HTTP.match(first)
        exc.status = int(m.group(1)) if m else 0
        exc.code = m.group(2) if m else None
        exc.message = m.group(3) if m else first
        exc.request_id = m.group(4) if m else None
        exc.body = None
        exc.retry_after = None
        if isinstance(exc, _errors.RateLimitError):
            exc.quota_block = "quota" in text.lower()
        if isinstance(exc, _errors.ContentFilterError):
            exc.categories = {}
    if isinstance(exc, _errors.StreamError):
        exc.partial = ""
    return exc


@contextlib.contextmanager
def readable_errors() -> Iterator[None]:
    """Re-raise a Spark failure caused by our error as that error (with its fix), not Spark's wall."""
    try:
        yield
    except FoundryError:
        raise
    except Exception as exc:
        ours = foundry_error(exc)
        if ours is None:
            raise
        raise ours from None


def render_lines(exc: FoundryError) -> list[str]:
    lines = _errors.block_text(exc).splitlines()  # the block the magics and every raised FoundryError show
    lines.append("(Raised in a Spark task, which stopped the job. Replies that arrived before it are in the cache: "
                 "running the action again sends only the rest.)")
    return lines


def _render_traceback_(self: BaseException) -> Any:
    ours = foundry_error(self)
    if ours is None or _errors.show_tracebacks():  # not ours, or %config FoundryMagics.tracebacks = True
        raise AttributeError("_render_traceback_")  # hasattr() is False: IPython draws it as usual
    return lambda: render_lines(ours)


def install() -> None:
    """Give PySpark's PythonException (classic and Spark Connect: their common base) our drawing."""
    import sys

    base = sys.modules.get("pyspark.errors.exceptions.base")
    if base is None:
        return
    cls = getattr(base, "PythonException", None)
    if cls is None or isinstance(cls.__dict__.get("_render_traceback_"), _Drawing):
        return
    cls._render_traceback_ = _Drawing()


class _Drawing:
    """A data-less descriptor: the bound drawing for our errors, AttributeError for the others."""

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        return _render_traceback_(obj)
