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
    "show", "show_error", "put_code_in_next_cell", "UPDATE_INTERVAL", "usage_table",
    "BatchProgress", "batch_progress", "batch_jobs_table",
]

UPDATE_INTERVAL = 0.1  # seconds between live updates: at most 10 per second
CURSOR = "▌"


def show(obj: Any) -> None:
    from IPython.display import display

    display(obj)


# ------------------------------------------------------------------------------ replies


def _meta(reply: Any, *, interrupted: bool = False, extra: Sequence[str] = ()) -> list[str]:
    bits: list[str] = list(reply.meta_bits()) if reply is not None else []
    cost = _cost_bit(reply)
    if cost:
        bits.append(cost)
    if interrupted:
        bits.append("interrupted")
    bits.extend(extra)
    return bits


def _cost_bit(reply: Any) -> str:
    """The cost of a reply, priced now, where its model's price is known (fm.set_prices /
    prices.toml), saying when its cached input tokens cost the input price; "cost unknown: ..."
    when prices.toml is broken; else ""."""
    usage = getattr(reply, "usage", None)
    if usage is None or not usage.total_tokens:
        return ""
    try:
        from foundry_magics.store.prices import cost, format_cost, price_of, problem

        cached = getattr(usage, "cached_input_tokens", 0) or 0
        value = cost(reply.model, usage.input_tokens, usage.output_tokens, cached_input_tokens=cached)
        if value is None:
            why = problem(short=True)
            return f"cost unknown: {why}" if why else ""
        price = price_of(reply.model)
        plain = bool(cached) and price is not None and price.cached_input is None
        return format_cost(value) + (" (cached tokens at the input price)" if plain else "")
    except Exception:  # noqa: BLE001 - pricing must not hide the reply
        return ""


def usage_table(rows: Sequence[Mapping[str, Any]]) -> "Table":
    """`%foundry usage`: one row per connection and model, then the total; cost where priced.
    The total sums what is priced; the title names what is not."""
    from foundry_magics.store.prices import format_cost, problem

    shown = []
    total_row: Mapping[str, Any] = {}
    for r in rows:
        d = dict(r)
        d["seconds"] = f"{r.get('seconds', 0.0):.2f}"
        if r.get("connection") == "total":
            total_row = r
            known = r.get("cost")
            d["cost"] = format_cost(known) if known is not None else "?"
            if known is not None and r.get("unpriced"):
                d["cost"] += " + ?"
        else:
            d["cost"] = format_cost(r.get("cost")) if r.get("cost") is not None else "?"
        shown.append(d)
    cols = ["connection", "model", "calls", "runs", "rows", "requests", "cache_hits", "errors", "interrupted",
            "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "seconds", "cost"]
    title = ("Usage this session (calls: cells, comparisons and direct client calls; runs: DataFrame runs, "
             "embeddings, batches; cached input and reasoning tokens are parts of the input and output)")
    why = problem(short=True)
    unpriced = list(total_row.get("unpriced") or [])
    if unpriced:
        title += (f" · the total leaves out {', '.join(unpriced)}: no price known"
                  + (f" ({why})" if why else " (fm.set_prices or prices.toml)"))
    elif any(r.get("cost") is None and r.get("connection") != "total" for r in rows):
        title += " · cost ?: no price known" + (f" ({why})" if why else " (fm.set_prices or prices.toml)")
    plain = list(total_row.get("cached_at_input_price") or [])
    if plain:
        title += f" · cached input tokens of {', '.join(plain)} at the input price (no cached_input price)"
    return Table(shown, cols, title=title)


# ------------------------------------------------------------------------------ agents: tools and sources

TOOL_MARK = "🔧"
_TOOL_NAMES = {"web_search_call": "web search", "file_search_call": "file search",
               "code_interpreter_call": "code interpreter", "mcp_call": "MCP", "mcp_list_tools": "MCP",
               "function_call": "function", "function_call_output": "function output",
               "image_generation_call": "image generation", "computer_call": "computer"}


def _tool_words(tc: Any) -> tuple[str, str, str]:
    name = _TOOL_NAMES.get(tc.type, tc.type.replace("_call", "").replace("_", " "))
    status = tc.status if tc.status and tc.status != "completed" else ""
    return name, getattr(tc, "detail", "") or "", status


def tool_line(tc: Any) -> str:
    """One short line for a tool call: `🔧 web search: searched the web for “…”` (+ its status if unusual)."""
    name, detail, status = _tool_words(tc)
    line = f"{TOOL_MARK} {name}" + (f": {detail}" if detail else "")
    return line + (f" ({status})" if status else "")


def _tools_md(tools: Sequence[Any]) -> str:
    """Tool calls above the text: one line each (markdown hard breaks), then a blank line."""
    if not tools:
        return ""
    lines = []
    for tc in tools:
        name, detail, status = _tool_words(tc)
        line = f"{TOOL_MARK} *{_md_escape(name)}*" + (f" — {_md_escape(detail)}" if detail else "")
        lines.append(line + (f" ({status})" if status else ""))
    return "<sub>" + "<br>".join(lines) + "</sub>\n\n"


def _md_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\`*_[]<>|" else c for c in text)


def _link_url(url: Any) -> str | None:
    """An http(s) URL made safe for a markdown link target, else None (never a javascript: link)."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        return None
    return "".join({" ": "%20", "(": "%28", ")": "%29", "<": "%3C", ">": "%3E", '"': "%22"}.get(c, c) for c in url)


def with_citation_marks(text: str, citations: Sequence[Any]) -> str:
    """The text with a clickable `[n]` after each cited span (where the service said where)."""
    marks = sorted(((c.end, c) for c in citations if isinstance(getattr(c, "end", None), int)
                    and 0 <= c.end <= len(text)), key=lambda m: m[0], reverse=True)
    for end, c in marks:
        url = _link_url(c.url)
        mark = f"[[{c.n}]]({url})" if url else f"[{c.n}]"
        text = text[:end] + mark + text[end:]
    return text


def _citations_md(citations: Sequence[Any]) -> str:
    """Numbered footnotes with clickable links (files by name)."""
    if not citations:
        return ""
    lines = []
    for c in citations:
        url = _link_url(c.url)
        title = _md_escape(str(c.title))
        file_id = getattr(c, "file_id", None)
        lines.append(f"{c.n}. [{title}]({url})" if url else f"{c.n}. {title} (file{': ' + file_id if file_id else ''})")
    return "\n\n**Sources**\n\n" + "\n".join(lines)


def _citations_plain(citations: Sequence[Any]) -> str:
    if not citations:
        return ""
    return "\n\nSources:\n" + "\n".join(f"[{c.n}] {c.title}" + (f" — {c.url}" if c.url else " (file)")
                                         for c in citations)


def _citations_html(citations: Sequence[Any]) -> str:
    if not citations:
        return ""
    items = []
    for c in citations:
        url = _link_url(c.url)
        title = html.escape(str(c.title))
        items.append(f'<li><a href="{html.escape(url)}" target="_blank" rel="noopener">{title}</a></li>' if url
                     else f"<li>{title} (file)</li>")
    return "<div><b>Sources</b><ol>" + "".join(items) + "</ol></div>"


def _tools_html(tools: Sequence[Any]) -> str:
    if not tools:
        return ""
    return "".join(f'<div style="opacity:.7;font-size:smaller">{html.escape(tool_line(tc))}</div>' for tc in tools)


def fenced(text: str, lang: str = "") -> str:
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
                        cached_input_tokens=r.usage.cached_input_tokens, reasoning_tokens=r.usage.reasoning_tokens,
                        latency=r.latency, emulated=r.emulated, connection=r.connection,
                        finish_reason=r.finish_reason, id=r.id)
            if r.agent or r.conversation:
                meta.update(agent=r.agent, conversation=r.conversation)
            if r.tool_calls:
                meta["tool_calls"] = [{"type": t.type, "id": t.id, "status": t.status} for t in r.tool_calls]
            if r.citations:
                meta["citations"] = [{"n": c.n, "title": c.title, "url": c.url} for c in r.citations]
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
            body = fenced(json.dumps(self.parsed, indent=2, ensure_ascii=False), "json")
        elif fmt in ("text", "json"):
            body = fenced(text)
        elif fmt == "code" and "```" not in text:
            body = fenced(text)
        else:
            body = with_citation_marks(text, self.citations) if fmt == "markdown" else text
        return _tools_md(self.tool_calls) + body + _citations_md(self.citations) + self._status_md()

    def plain(self) -> str:
        if self.format == "json" and self.parse_error is None and self.parsed is not None:
            body = json.dumps(self.parsed, indent=2, ensure_ascii=False)
        else:
            body = self.text
        tools = "".join(tool_line(tc) + "\n" for tc in self.tool_calls)
        return tools + (("\n" + body) if tools else body) + _citations_plain(self.citations) + self._status_plain()

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
            data["text/html"] = (_tools_html(self.tool_calls) + _strip_fence(self.text, "html")
                                 + _citations_html(self.citations) + _meta_html(self.reply))
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
        self.tools: list[Any] = []  # an agent's tool calls so far, shown one line each above the text
        self.handle = display({"text/plain": waiting, "text/markdown": f"*{waiting}*"}, raw=True, display_id=True)

    def tool(self, tc: Any) -> None:
        """A tool call started: its line goes above the text from the next update on."""
        self.tools.append(tc)
        self._last = float("-inf")  # show it at once

    def _bundle(self, text: str) -> dict[str, str]:
        head_md, head = _tools_md(self.tools), "".join(tool_line(tc) + "\n" for tc in self.tools)
        if self.format in ("markdown", "code"):
            return {"text/plain": head + text + CURSOR, "text/markdown": head_md + text + CURSOR}
        if self.format == "json":
            return {"text/plain": head + text + CURSOR, "text/markdown": head_md + fenced(text + CURSOR, "json")}
        return {"text/plain": head + text + CURSOR, "text/markdown": head_md + fenced(text + CURSOR)}

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


class ErrorView:
    """One readable block: what went wrong (cause) and what to do (fix). No traceback."""

    def __init__(self, exc: BaseException, *, partial: bool = False) -> None:
        from foundry_magics.errors import block  # the same block IPython shows for a raised FoundryError

        self.exc = exc
        self.title, self.cause, self.hint = block(exc)
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


SHOWN_TEXT = 2_000  # characters of one text field a dry run shows; the rest is cut (and counted)


class RequestView(dict):
    """`--dry-run`: the request that would be sent (secrets already redacted by the client).
    A dict (`method`, `url`, `headers`, `json`) that shows itself as an HTTP request.

    The dict is the whole request; what is shown is shortened: inline images are described,
    and a text longer than SHOWN_TEXT characters is cut, saying how much. `out` names the
    variable that holds the whole request (`-o VAR`), for the note under a shortened one."""

    def __init__(self, request: Mapping[str, Any] | None = None, out: str | None = None) -> None:
        super().__init__(request or {})
        self.out = out

    @property
    def request(self) -> dict[str, Any]:
        """What is shown: the request, with inline images (base64, often megabytes) described
        and long texts cut."""
        return _shown(dict(self))

    def _note(self) -> str:
        if not _cut_anything(dict(self)):
            return ""
        where = f"the whole request is in `{self.out}`" if self.out else "-o VAR keeps the whole request"
        return f"Texts over {SHOWN_TEXT:,} characters are cut in this display; {where}."

    def plain(self) -> str:
        r = self.request
        headers = "\n".join(f"{k}: {v}" for k, v in r["headers"].items())
        body = json.dumps(r["json"], indent=2, ensure_ascii=False)
        note = self._note()
        out = f"DRY RUN: nothing was sent.\n{r['method']} {r['url']}\n{headers}\n\n{body}"
        return out + (f"\n{note}" if note else "")

    def markdown(self) -> str:
        r = self.request
        headers = "\n".join(f"{k}: {v}" for k, v in r["headers"].items())
        body = json.dumps(r["json"], indent=2, ensure_ascii=False)
        note = self._note()
        return ("**Dry run** — nothing was sent.\n\n"
                + fenced(f"{r['method']} {r['url']}\n{headers}", "http") + "\n\n" + fenced(body, "json")
                + (f"\n\n*{note}*" if note else ""))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({"text/plain": self.plain(), "text/markdown": self.markdown()},
                {"foundry_magics": {"dry_run": True}})

    def __repr__(self) -> str:
        return self.plain()


def _shown(value: Any) -> Any:
    """`value` as a dry run shows it: inline images described, long texts cut."""
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > 200:
        from foundry_magics.rest.images import describe_image

        return f"{value[:value.find(',') + 1]}… ({describe_image(value)})"
    if isinstance(value, str) and len(value) > SHOWN_TEXT:
        return f"{value[:SHOWN_TEXT]}… [{len(value) - SHOWN_TEXT:,} more characters not shown]"
    return value


def _cut_anything(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_cut_anything(v) for v in value.values())
    if isinstance(value, list):
        return any(_cut_anything(v) for v in value)
    return isinstance(value, str) and len(value) > SHOWN_TEXT and not value.startswith("data:")


def put_code_in_next_cell(ipython: Any, code: str) -> bool:
    """`-f code`: open a new cell below holding `code` (Jupyter), or prefill the next prompt."""
    if ipython is None or not code.strip():
        return False
    ipython.set_next_input(code, replace=False)
    return True


# ------------------------------------------------------------------------------ Batch API jobs


class BatchProgress:
    """The progress bar of a Batch API job: the run's bar (notebook.progress), its label
    followed by the job's own status (`validating`, `in_progress`, ...) as the polls report it."""

    def __init__(self, total: int, label: str) -> None:
        from foundry_magics.notebook.progress import make

        self.inner = make(total, label)
        self.label = label
        self.status = ""

    def update(self, snap: Any) -> None:
        status = getattr(snap, "status", "") or ""
        if status and status != self.status:
            self.status = status
            self.inner.label = f"{self.label} · batch {status}"
            bar = getattr(self.inner, "bar", None)
            if bar is not None:
                bar.set_description_str(self.inner.label, refresh=False)
        self.inner.update(snap)

    def close(self, report: Any) -> None:
        self.inner.close(report)


def batch_progress(total: int, label: str) -> BatchProgress:
    """The display factory for Batch API jobs (the engine calls it as `progress(total, label)`)."""
    return BatchProgress(total, label)


def batch_jobs_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`%foundry batches`: the recorded Batch API jobs, newest first."""
    from foundry_magics.batch_api.table import JOB_COLUMNS

    return Table(rows, [c for c in JOB_COLUMNS if c != "collected"], title="Batch API jobs (newest first)",
                 empty="No Batch API jobs recorded here yet: df.foundry.prompt(..., batch=True) submits one.")
