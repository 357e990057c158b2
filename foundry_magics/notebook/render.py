"""What the magics show: reply objects, the live streaming display, error blocks, tables.

Display objects carry `_repr_mimebundle_` / `_repr_markdown_`, so they land in `Out` and `_`
like any value and render in JupyterLab, Notebook 7, VS Code and the terminal alike.
Nothing here sends requests or keeps state beyond one display.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from foundry_magics.rest.models import Reply

__all__ = [
    "ReplyView", "LiveView", "ErrorView", "Table", "RequestView", "Note",
    "show", "show_error", "put_code_in_next_cell", "UPDATE_INTERVAL",
]

UPDATE_INTERVAL = 0.1  # seconds between live updates: at most 10 per second
CURSOR = "▌"


def show(obj: Any) -> None:
    from IPython.display import display

    display(obj)


# ------------------------------------------------------------------------------ replies


def _meta(reply: Any, *, interrupted: bool = False, extra: Sequence[str] = ()) -> list[str]:
    bits: list[str] = list(reply.meta_bits()) if reply is not None else []
    if interrupted:
        bits.append("interrupted")
    bits.extend(extra)
    return bits


def _fenced(text: str, lang: str = "") -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text}\n{fence}"


class ReplyView(Reply):
    """A reply as shown in the notebook, and what lands in `Out` / `_`: a `Reply` (text, model,
    usage, latency, id, ...) plus how it is shown. `value` is what `-o VAR` stores."""

    def __init__(self, text: str, fmt: str = "markdown", *, reply: Reply | None = None, interrupted: bool = False,
                 error: BaseException | None = None, parsed: Any = None, parse_error: str | None = None,
                 note: str | None = None) -> None:
        base = reply if reply is not None else Reply(text=text)
        for f in dataclasses.fields(Reply):
            setattr(self, f.name, getattr(base, f.name))
        self.text = text
        self.format = fmt
        self.reply = reply
        self.interrupted = interrupted
        self.error = error
        self.parsed = parsed
        self.parse_error = parse_error
        self.note = note
        # The execution count of the cell whose output already shows this reply: that cell's
        # result (Out/_) is not displayed a second time; any later display is.
        self._echo_skip: int | None = None

    @property
    def value(self) -> Any:
        if self.format == "json" and self.parse_error is None and self.parsed is not None:
            return self.parsed
        return self.text

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.error is None and (self.reply is None or self.reply.complete)

    def metadata(self) -> dict[str, Any]:
        r = self.reply
        meta: dict[str, Any] = {"format": self.format, "interrupted": self.interrupted,
                                "complete": self.complete}
        if r is not None:
            meta.update(model=r.model, input_tokens=r.usage.input_tokens, output_tokens=r.usage.output_tokens,
                        latency=r.latency, emulated=r.emulated, connection=r.connection,
                        finish_reason=r.finish_reason, id=r.id)
        if self.error is not None:
            meta["error"] = type(self.error).__name__
        return {"foundry_magics": meta}

    def _finish_note(self) -> str | None:
        reason = getattr(self.reply, "finish_reason", None)
        if reason == "content_filter":
            return "The content filter stopped the reply here; rephrase the prompt to get a complete answer."
        if reason in ("length", "max_output_tokens"):
            return "The reply reached the token limit; raise --max-tokens for a complete answer."
        return None

    def _status_md(self) -> str:
        out = ""
        if self._finish_note():
            out += f"\n\n**⚠ Incomplete:** {self._finish_note()}"
        if self.interrupted:
            out += "\n\n**⏹ Interrupted** — the text above is the partial reply received so far."
        if self.error is not None:
            out += "\n\n" + ErrorView(self.error, partial=bool(self.text)).markdown()
        if self.parse_error:
            out += f"\n\n**⚠ Not valid JSON** ({self.parse_error}): shown as text; `-o` stored the text."
        if self.note:
            out += f"\n\n*{self.note}*"
        bits = _meta(self.reply)
        if bits:
            out += "\n\n<sub>" + " · ".join(bits) + "</sub>"
        return out

    def _status_plain(self) -> str:
        lines = []
        if self._finish_note():
            lines.append(f"[incomplete: {self._finish_note()}]")
        if self.interrupted:
            lines.append("[interrupted: partial reply]")
        if self.error is not None:
            lines.append(ErrorView(self.error, partial=bool(self.text)).plain())
        if self.parse_error:
            lines.append(f"[not valid JSON: {self.parse_error}]")
        if self.note:
            lines.append(f"[{self.note}]")
        bits = _meta(self.reply)
        if bits:
            lines.append("[" + " · ".join(bits) + "]")
        return ("\n\n" + "\n".join(lines)) if lines else ""

    def markdown(self) -> str:
        fmt, text = self.format, self.text
        if fmt == "json" and self.parse_error is None and self.parsed is not None:
            body = _fenced(json.dumps(self.parsed, indent=2, ensure_ascii=False), "json")
        elif fmt in ("text", "json"):
            body = _fenced(text)
        elif fmt == "code" and "```" not in text:
            body = _fenced(text)
        else:
            body = text
        return body + self._status_md()

    def plain(self) -> str:
        if self.format == "json" and self.parse_error is None and self.parsed is not None:
            body = json.dumps(self.parsed, indent=2, ensure_ascii=False)
        else:
            body = self.text
        return body + self._status_plain()

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        data: dict[str, Any] = {"text/plain": self.plain()}
        clean = self.complete and not self.parse_error
        if self.format == "text" and clean:
            pass  # plain text only: shown preformatted
        elif self.format == "json" and clean and self.parsed is not None:
            data["application/json"] = self.parsed if isinstance(self.parsed, (dict, list)) else {"value": self.parsed}
            data["text/markdown"] = self.markdown()
        elif self.format == "html" and clean:
            data["text/html"] = _strip_fence(self.text, "html") + _meta_html(self.reply)
        else:
            data["text/markdown"] = self.markdown()
        return data, self.metadata()

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if self._echo_skip is not None and shell is not None and shell.execution_count == self._echo_skip:
            self._echo_skip = None  # already on screen; the value still lands in Out/_
            return

        data, meta = self._repr_mimebundle_()
        display(data, metadata=meta, raw=True)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        head = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"<foundry reply {head!r}{' (interrupted)' if self.interrupted else ''}>"


def _strip_fence(text: str, lang: str) -> str:
    s = text.strip()
    if s.startswith("```"):
        first, _, rest = s.partition("\n")
        if first.strip("`").strip().lower() in ("", lang) and rest.rstrip().endswith("```"):
            return rest.rstrip()[:-3].rstrip("`").rstrip()
    return text


def _meta_html(reply: Any) -> str:
    bits = _meta(reply)
    return f'<div style="opacity:.6;font-size:smaller">{html.escape(" · ".join(bits))}</div>' if bits else ""


# ------------------------------------------------------------------------------ live streaming


class LiveView:
    """One display that grows while tokens arrive: at most one update per `interval`, then a
    final complete render. Created from the main thread (the cell's)."""

    def __init__(self, fmt: str = "markdown", *, waiting: str = "…", interval: float = UPDATE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from IPython.display import display

        self.format = fmt
        self.interval = interval
        self.clock = clock
        self.updates = 0
        self.first_update_at: float | None = None
        self._last = float("-inf")
        self._pending: str | None = None
        self.handle = display({"text/plain": waiting, "text/markdown": f"*{waiting}*"}, raw=True, display_id=True)

    def _bundle(self, text: str) -> dict[str, str]:
        if self.format in ("markdown", "code"):
            return {"text/plain": text + CURSOR, "text/markdown": text + CURSOR}
        if self.format == "json":
            return {"text/plain": text + CURSOR, "text/markdown": _fenced(text + CURSOR, "json")}
        return {"text/plain": text + CURSOR, "text/markdown": _fenced(text + CURSOR)}

    def update(self, text: str) -> bool:
        """Show `text` if the last update is at least `interval` old; True if it did."""
        now = self.clock()
        if now - self._last < self.interval:
            self._pending = text
            return False
        self._show(text, now)
        return True

    def _show(self, text: str, now: float) -> None:
        if self.handle is not None:
            self.handle.update(self._bundle(text), raw=True)
        self._last = now
        self._pending = None
        self.updates += 1
        if self.first_update_at is None:
            self.first_update_at = self.clock()  # after the update was published

    def finish(self, view: ReplyView) -> ReplyView:
        """Replace the growing text by the complete render of `view`."""
        if self.handle is not None:
            data, meta = view._repr_mimebundle_()
            self.handle.update(data, metadata=meta, raw=True)
            self.updates += 1
        self._pending = None
        return view


# ------------------------------------------------------------------------------ errors


def _split_error(exc: BaseException) -> tuple[str, str | None]:
    text = str(exc).strip() or type(exc).__name__
    hint = getattr(exc, "hint", None)
    if hint and text.endswith(hint):
        text = text[: -len(hint)].rstrip()
    return text, hint


_TITLES = {
    "UsageError": "Bad option",
    "ConfigurationError": "Configuration problem",
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


class ErrorView:
    """One readable block: what went wrong (cause) and what to do (fix). No traceback."""

    def __init__(self, exc: BaseException, *, partial: bool = False) -> None:
        self.exc = exc
        self.title = _TITLES.get(type(exc).__name__, "Foundry error")
        self.cause, self.hint = _split_error(exc)
        if self.hint is None and type(exc).__name__ == "UsageError":
            self.hint = "`%foundry help` lists the options."
        self.partial = partial

    def plain(self) -> str:
        out = f"{self.title}: {self.cause}"
        if self.hint:
            out += f"\nFix: {self.hint}"
        if self.partial:
            out += "\nThe partial text received is shown above."
        return out

    def markdown(self) -> str:
        out = f"**⚠ {self.title}:** {self.cause}"
        if self.hint:
            out += f"  \n**Fix:** {self.hint}"
        return out

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        body = f"<b>⚠ {html.escape(self.title)}:</b> {html.escape(self.cause)}"
        if self.hint:
            body += f"<br><b>Fix:</b> {html.escape(self.hint)}"
        box = ('<div style="border-left:4px solid #d9534f;padding:6px 10px;'
               f'background:rgba(217,83,79,.08);white-space:pre-wrap">{body}</div>')
        data = {"text/plain": self.plain(), "text/markdown": self.markdown(), "text/html": box}
        return data, {"foundry_magics": {"error": type(self.exc).__name__}}

    def __repr__(self) -> str:
        return self.plain()


def show_error(exc: BaseException) -> ErrorView:
    view = ErrorView(exc)
    show(view)
    return view


# ------------------------------------------------------------------------------ other displays


class Note:
    """A one-line message (notices, confirmations)."""

    def __init__(self, text: str, *, markdown: str | None = None) -> None:
        self.text = text
        self.md = markdown if markdown is not None else text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.text, "text/markdown": self.md}

    def __repr__(self) -> str:
        return self.text


class Table:
    """Rows of dicts as an HTML / Markdown / plain table."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
                 title: str | None = None, empty: str = "(nothing)") -> None:
        self.rows = [dict(r) for r in rows]
        self.columns = list(columns) if columns else (list(self.rows[0]) if self.rows else [])
        self.title = title
        self.empty = empty

    def _cells(self) -> list[list[str]]:
        return [["" if r.get(c) is None else str(r.get(c)) for c in self.columns] for r in self.rows]

    def plain(self) -> str:
        if not self.rows:
            return (self.title + "\n" if self.title else "") + self.empty
        cells = self._cells()
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        return (self.title + "\n" if self.title else "") + "\n".join(lines)

    def markdown(self) -> str:
        head = f"**{self.title}**\n\n" if self.title else ""
        if not self.rows:
            return head + self.empty

        def esc(v: str) -> str:
            return v.replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in self._cells()]
        return head + "\n".join(lines)

    def html(self) -> str:
        head = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        if not self.rows:
            return head + f"<p>{html.escape(self.empty)}</p>"
        th = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        trs = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(v)}</td>" for v in row) + "</tr>"
                      for row in self._cells())
        return f"{head}<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.plain(), "text/markdown": self.markdown(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.plain()


class RequestView(dict):
    """`--dry-run`: the request that would be sent (secrets already redacted by the client).
    A dict (`method`, `url`, `headers`, `json`) that shows itself as an HTTP request."""

    @property
    def request(self) -> dict[str, Any]:
        return self

    def plain(self) -> str:
        r = self.request
        headers = "\n".join(f"{k}: {v}" for k, v in r["headers"].items())
        body = json.dumps(r["json"], indent=2, ensure_ascii=False)
        return f"DRY RUN: nothing was sent.\n{r['method']} {r['url']}\n{headers}\n\n{body}"

    def markdown(self) -> str:
        r = self.request
        headers = "\n".join(f"{k}: {v}" for k, v in r["headers"].items())
        body = json.dumps(r["json"], indent=2, ensure_ascii=False)
        return ("**Dry run** — nothing was sent.\n\n"
                + _fenced(f"{r['method']} {r['url']}\n{headers}", "http") + "\n\n" + _fenced(body, "json"))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({"text/plain": self.plain(), "text/markdown": self.markdown()},
                {"foundry_magics": {"dry_run": True}})

    def __repr__(self) -> str:
        return self.plain()


def put_code_in_next_cell(ipython: Any, code: str) -> bool:
    """`-f code`: open a new cell below holding `code` (Jupyter), or prefill the next prompt."""
    if ipython is None or not code.strip():
        return False
    ipython.set_next_input(code, replace=False)
    return True
