"""Models side by side: `%%foundry -m A,B,C` and `fm.compare(prompt, models=[...])`.

One request per model, sent at once (a thread each, through the session's `Prompter`, so
every call is logged, counted in `%foundry usage` and continues its own `--chat`
conversation `NAME@MODEL`). In a Jupyter frontend the replies stream into their columns
(one display, updated at most every COMPARE_UPDATE_INTERVAL s); elsewhere - a terminal, a
script - the comparison is rendered once, when every reply is in. Each column ends with the
model, tokens, latency and, where prices are known (`fm.set_prices`), the cost.

The columns are an HTML table whose cells hold Markdown (a blank line after each tag, the
CommonMark rule that JupyterLab, Notebook 7, VS Code and GitHub follow), so replies keep
their formatting; the plain-text form lists the replies one after another.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from foundry_magics.defaults import COMPARE_UPDATE_INTERVAL
from foundry_magics.rest.models import Reply

__all__ = ["Comparison", "compare", "run_comparison", "within_budget"]

CURSOR = "▌"


@dataclass
class _Column:
    model: str
    call: Any = None
    text: str = ""
    reply: Reply | None = None
    error: BaseException | None = None
    interrupted: bool = False
    done: bool = False
    started: float = 0.0
    changed: bool = False


class Comparison:
    """The replies of several models to one prompt. `replies`: model -> Reply (the models that
    answered), `errors`: model -> exception, `texts`: model -> text (partial ones included).
    `comparison["gpt-4o"]` is that model's Reply. Shows itself as columns side by side."""

    def __init__(self, prompt: str, models: Sequence[str], fmt: str = "markdown", *,
                 notice: str | None = None) -> None:
        self.prompt = prompt
        self.models = list(models)
        self.format = fmt
        self.notice = notice
        self._columns: dict[str, _Column] = {m: _Column(m) for m in self.models}
        self.elapsed: float | None = None
        self._echo_skip: int | None = None  # see render.ReplyView: shown already in this cell

    # -- the data ------------------------------------------------------------------------

    @property
    def replies(self) -> dict[str, Reply]:
        """model -> its reply (a ReplyView: `.text`, `.value` - parsed for -f json -, `.usage`, ...)."""
        return {m: self._view(c) for m, c in self._columns.items() if c.reply is not None}

    @property
    def errors(self) -> dict[str, BaseException]:
        return {m: c.error for m, c in self._columns.items() if c.error is not None}

    @property
    def texts(self) -> dict[str, str]:
        return {m: c.text for m, c in self._columns.items()}

    @property
    def interrupted(self) -> bool:
        return any(c.interrupted for c in self._columns.values())

    @property
    def complete(self) -> bool:
        return all(c.reply is not None and c.error is None and not c.interrupted and c.reply.complete
                   for c in self._columns.values())

    def costs(self) -> dict[str, float | None]:
        """model -> cost of its reply, priced now (None where the price or the reply is missing;
        a broken prices.toml makes them unknown, never an error)."""
        from foundry_magics.store.prices import cost

        out: dict[str, float | None] = {}
        for m, c in self._columns.items():
            r = c.reply
            try:
                out[m] = None if r is None else _reply_cost(r, m, cost)
            except Exception:  # noqa: BLE001 - pricing must never lose the replies
                out[m] = None
        return out

    def __getitem__(self, model: str) -> Reply:
        replies = self.replies
        if model not in replies:
            why = f"its request failed: {self.errors[model]}" if model in self.errors else "it has no reply"
            raise KeyError(f"{model!r}: {why}" if model in self._columns
                           else f"{model!r} is not one of {', '.join(self.models)}")
        return replies[model]

    def __iter__(self):
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    # -- showing -------------------------------------------------------------------------

    def _view(self, col: _Column, live: bool = False) -> Any:
        from foundry_magics.notebook.prompting import interpret_json
        from foundry_magics.notebook.render import ReplyView

        kw: dict[str, Any] = {}
        text = col.text
        if live and not col.done:
            return None
        if self.format == "json" and text and col.error is None and not col.interrupted:
            parsed, parse_error, _ = interpret_json(text)
            kw.update(parsed=parsed, parse_error=parse_error)
        return ReplyView(text, self.format, reply=col.reply, interrupted=col.interrupted, error=col.error, **kw)

    def _cell_md(self, col: _Column, live: bool) -> str:
        from foundry_magics.notebook.render import fenced

        view = self._view(col, live)
        if view is not None:
            return view.markdown()
        if not col.text:
            return f"*waiting for {col.model}…*"
        if self.format in ("markdown", "code"):
            return col.text + CURSOR
        return fenced(col.text + CURSOR, "json" if self.format == "json" else "")

    def markdown(self, live: bool = False) -> str:
        cols = [self._columns[m] for m in self.models]
        width = f"{100 / max(1, len(cols)):.0f}%"
        head = "".join(f'<th style="text-align:left" width="{width}">{html.escape(c.model)}</th>' for c in cols)
        cells = "</td>\n<td valign=\"top\" style=\"vertical-align:top;text-align:left\">".join(
            f"\n\n{self._cell_md(c, live)}\n\n" for c in cols)
        out = ""
        if self.notice:
            out += f"*ℹ {self.notice}*\n\n"
        out += (f'<table class="foundry-comparison" style="width:100%;table-layout:fixed">\n<tr>{head}</tr>\n'
                f'<tr>\n<td valign="top" style="vertical-align:top;text-align:left">{cells}</td>\n</tr>\n</table>')
        if not live:
            total = self._total_line()
            if total:
                out += f"\n\n<sub>{total}</sub>"
        return out

    def _total_line(self) -> str:
        """Models, time and the cost in all (of the priced replies; the others named)."""
        from foundry_magics.store.prices import format_cost, problem

        bits = [f"{len(self.models)} models"]
        if self.elapsed is not None:
            bits.append(f"{self.elapsed:.2f} s in all (sent at once)")
        costs = self.costs()
        answered = [m for m in self.models if self._columns[m].reply is not None]
        known = [c for c in (costs[m] for m in answered) if c is not None]
        unpriced = [m for m in answered if costs[m] is None]
        try:
            why = problem(short=True)
        except Exception:  # noqa: BLE001
            why = None
        if known:
            bits.append(f"{format_cost(sum(known))} in all"
                        + (f" (without {', '.join(unpriced)}: no price)" if unpriced else ""))
        elif unpriced and why:
            bits.append(f"cost unknown: {why}")
        return " · ".join(bits)

    def plain(self) -> str:
        parts = []
        if self.notice:
            parts.append(f"[{self.notice}]")
        for m in self.models:
            col = self._columns[m]
            view = self._view(col)
            parts.append(f"── {m} " + "─" * max(3, 40 - len(m)) + "\n" + view.plain())
        total = self._total_line()
        if total:
            parts.append(f"[{total}]")
        return "\n\n".join(parts)

    def metadata(self) -> dict[str, Any]:
        per: dict[str, dict[str, Any]] = {}
        for m, c in self._columns.items():
            r = c.reply
            per[m] = {"complete": c.reply is not None and c.error is None and not c.interrupted,
                      "error": type(c.error).__name__ if c.error is not None else None}
            if r is not None:
                per[m].update(model=r.model, input_tokens=r.usage.input_tokens, output_tokens=r.usage.output_tokens,
                              cached_input_tokens=r.usage.cached_input_tokens,
                              reasoning_tokens=r.usage.reasoning_tokens, latency=r.latency, emulated=r.emulated)
        return {"foundry_magics": {"comparison": per, "format": self.format, "interrupted": self.interrupted}}

    def _bundle(self, live: bool = False) -> dict[str, Any]:
        return {"text/plain": self.plain() if not live else f"comparing {', '.join(self.models)}…",
                "text/markdown": self.markdown(live)}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self._bundle(), self.metadata()

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if self._echo_skip is not None and shell is not None and shell.execution_count == self._echo_skip:
            self._echo_skip = None  # already on screen (streamed); the value still lands in Out/_
            return
        data, meta = self._repr_mimebundle_()
        display(data, metadata=meta, raw=True)

    def __repr__(self) -> str:
        bits = []
        for m in self.models:
            c = self._columns[m]
            state = "error" if c.error is not None else ("interrupted" if c.interrupted else f"{len(c.text)} chars")
            bits.append(f"{m}: {state}")
        return f"<foundry comparison {'; '.join(bits)}>"


def _reply_cost(r: Reply, model: str, cost: Any) -> float | None:
    """Priced by the model the reply names (`gpt-4o-2024-08-06` takes `gpt-4o`'s price), else by
    the name it was asked for (a deployment name)."""
    u = r.usage
    for name in dict.fromkeys((r.model or model, model)):
        value = cost(name, u.input_tokens, u.output_tokens, cached_input_tokens=u.cached_input_tokens)
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------------- sending


def _work(p: Any, call: Any, col: _Column, stop: threading.Event) -> None:
    from foundry_magics.errors import FoundryError, StreamError

    col.started = time.perf_counter()
    try:
        if call.stream:
            stream = p.start_stream(call)
            for delta in p.iterate(call):
                if delta.text:
                    col.text = stream.text
                    col.changed = True
                if stop.is_set():
                    col.text = p.interrupted(call) or col.text
                    col.interrupted = True
                    return
            reply = stream.reply
        else:
            reply = p.send(call)
        if stop.is_set():  # Ctrl-C came while this one was still waiting
            col.interrupted = True
            return
        p.finish(call, reply)
        col.reply, col.text = reply, reply.text
    except StreamError as exc:
        col.error, col.text = exc, exc.partial or col.text
    except (FoundryError, ValueError) as exc:  # ConfigurationError is a ValueError
        col.error = exc
    except Exception as exc:  # noqa: BLE001 - one column's bug must not take the others down
        col.error = exc
    finally:
        col.done = True
        col.changed = True


def run_comparison(p: Any, calls: Sequence[Any], *, live: bool = False, fmt: str | None = None,
                   prompt: str | None = None, notice: str | None = None) -> Comparison:
    """Send `calls` (prepared by `Prompter.prepare_compare`) at once and collect them.

    live=True: one display that the columns stream into (the frontend must support display
    updates: Jupyter); else nothing is displayed here and the Comparison renders when shown.
    Ctrl-C stops the streams, keeping the text so far (marked interrupted)."""
    models = [c.kwargs.get("model") or c.model or "?" for c in calls]
    comp = Comparison(prompt if prompt is not None else (calls[0].prompt if calls else ""), models,
                      fmt or (calls[0].format if calls else "markdown"), notice=notice)
    for m, call in zip(models, calls):
        comp._columns[m].call = call
    stop = threading.Event()
    handle = None
    if live:
        from IPython.display import display

        handle = display(comp._bundle(live=True), raw=True, display_id=True)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_work, args=(p, call, comp._columns[m], stop), daemon=True,
                                name=f"foundry-compare-{m}") for m, call in zip(models, calls)]
    for t in threads:
        t.start()
    last = 0.0
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.05)
            now = time.monotonic()
            if handle is not None and now - last >= COMPARE_UPDATE_INTERVAL and _changed(comp):
                handle.update(comp._bundle(live=True), raw=True)
                last = now
    except KeyboardInterrupt:
        stop.set()
        deadline = time.monotonic() + 3.0
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for c in comp._columns.values():
            if not c.done:
                c.interrupted = True
    comp.elapsed = time.perf_counter() - t0
    if handle is not None:
        data, meta = comp._repr_mimebundle_()
        handle.update(data, metadata=meta, raw=True)
    return comp


def _changed(comp: Comparison) -> bool:
    changed = False
    for c in comp._columns.values():
        if c.changed:
            c.changed = False
            changed = True
    return changed


def within_budget(p: Any, calls: Sequence[Any], max_cost: float | None) -> None:
    """Under max_cost, the requests of one call (a comparison's models, or a single cell's one)
    are refused, nothing sent, when their upper bounds together could pass it: each needs its
    model's price and must fit alone (`engine.budget.check_request`), then the sum must fit."""
    if max_cost is None:
        return
    from foundry_magics.engine.budget import check_request, money
    from foundry_magics.errors import ConfigurationError

    bounds = []
    for call in calls:
        body = p.dry_run(call)["json"]  # the exact body that would be sent; nothing is sent
        model = body.get("model") or call.model
        bounds.append((model, check_request(model, body, max_cost)))
    total = sum(b for _, b in bounds)
    if len(bounds) > 1 and total > max_cost * (1 + 1e-12):
        each = ", ".join(f"{m}: {money(b, up=True)}" for m, b in bounds)
        raise ConfigurationError(
            f"max_cost={max_cost:g}: these {len(bounds)} requests could cost up to {money(total, up=True)} together "
            f"({each}), more than the budget; nothing was sent.",
            hint="Set a smaller max_tokens, compare fewer models, or raise max_cost.")


def compare(prompt: str, models: Sequence[str], **options: Any) -> Comparison:
    """`fm.compare("Explain X", models=["gpt-4.1-mini", "gpt-4o"])`: the same prompt to each
    model at once -> a `Comparison` (shown as columns side by side; `.replies` model -> Reply).

    Options (checked like every other call's, before anything is sent): system, connection,
    temperature, max_tokens, schema, api, images (a path, URL, bytes, PIL image or a list),
    format ("markdown", "text", "code", "json", "html"), chat (a conversation name: each model
    continues NAME@MODEL), stream, max_cost. The prompt is sent as written (no `{name}`
    interpolation). stream=True streams into the columns of one display (Jupyter) while the
    replies arrive. max_cost=AMOUNT: when the requests' upper bounds together (each one's input
    counted high plus its whole output cap, at its model's price) could pass it, nothing is sent."""
    from foundry_magics.errors import ConfigurationError
    from foundry_magics.notebook import prompting
    from foundry_magics.notebook.magic_args import FORMATS, PromptArgs, compare_models_problem
    from foundry_magics.ops.options import REQUEST, check

    opts = check(options, (REQUEST - {"model"}) | {"format", "chat", "stream", "max_cost"}, "fm.compare()")
    fmt = opts.get("format", "markdown")
    if fmt not in FORMATS:
        raise ConfigurationError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.",
                                 hint='For example format="text".')
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")]
    named = [m.strip() for m in (models or []) if isinstance(m, str) and m.strip()]
    models = list(dict.fromkeys(named))
    if len(models) < 2:
        raise ConfigurationError("compare(): " + compare_models_problem(named, lambda ms: f"models={ms!r}"),
                                 hint='fm.compare("...", models=["gpt-4.1-mini", "gpt-4o"])')
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigurationError("The prompt is empty.", hint='fm.compare("Explain X", models=[...])')
    images = opts.get("images")
    img_list = [] if images is None else (list(images) if isinstance(images, (list, tuple)) else [images])
    stream = bool(opts.get("stream", False))
    # Values, not names: images and the schema are given as they are (no namespace lookup).
    args = PromptArgs(prompt=prompt, connection=opts.get("connection"), system=opts.get("system"),
                      api=opts.get("api"), temperature=opts.get("temperature"), max_tokens=opts.get("max_tokens"),
                      format=fmt, chat=opts.get("chat"), stream=stream, interpolate=False, models=models,
                      images=img_list, schema=opts.get("schema"))
    p = prompting.prompter()
    settings = prompting.Settings(stream=stream)
    calls = p.prepare_compare(args, {}, settings)
    within_budget(p, calls, opts.get("max_cost"))
    live = stream and live_frontend()
    return run_comparison(p, calls, live=live, fmt=calls[0].format, prompt=prompt, notice=calls[0].notice)


def live_frontend() -> bool:
    """Whether displays can be updated in place: a Jupyter kernel (not a terminal or a script)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
