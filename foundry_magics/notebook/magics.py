"""`%%foundry` and `%foundry`: parse, dispatch, display. The work lives elsewhere (a cell's
call in `prompting`, connections in `connections.session`, the log in `store.history`, the
DataFrame runs in `frames`); this module only wires them to IPython.

Loading is cheap: this module imports IPython and traitlets only (both already loaded in a
kernel); httpx, pandas and the rest load on the first prompt.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, Union, observe, validate

from foundry_magics.defaults import MAX_RETRIES, TIMEOUT
from foundry_magics.errors import show_tracebacks
from foundry_magics.wording import article, counted

__all__ = ["FoundryMagics", "load_ipython_extension", "unload_ipython_extension"]

FORMATS = ("markdown", "text", "code", "json", "html")  # = magic_args.FORMATS (kept here to load fast)

HELP = """\
**%%foundry** sends the cell to a model and shows the reply, streamed.

```
%%foundry [options]
<prompt: {{name}} is a variable; {{{{ and }}}} are literal braces; unknown {{x}} stays as written>
{options}
```

| line magic | what it does |
|---|---|
| `%foundry <text>` | a one-line prompt (options first: `%foundry -m M -t 0 Tell me a joke`) |
| `%foundry -- <text>` | always sends `<text>`, even when it starts with a command word (`%foundry -- help me write a haiku`) |
| `%foundry connect NAME\\|URL [--model M] [--auth entra\\|key\\|none] [--key-env VAR] [--key-header H] [--save NAME]` | choose (and save) a connection |
| `%foundry connections` | known connections, current one marked, key present or not |
| `%foundry picker` | the connection picker widget |
| `%foundry models` | deployments / models of the current connection |
| `%foundry use MODEL` | default model for this session (until the next connect) |
| `%foundry history [-n N]` | recent calls from the history log |
| `%foundry usage` | what this session sent (cells, DataFrame runs, embeddings, batches) by connection and model, with cost where prices are known |
| `%foundry chat show\\|reset\\|list [NAME]` | conversations kept by `--chat` (and, by name, by `--conversation`) |
| `%foundry agents` | agents of the current Foundry project: name, version, model, instructions |
| `%foundry batches` | Batch API jobs recorded here (`--df DF --out COL --batch` submits one): id, status, counts |
| `%foundry emulator start\\|stop\\|status` | the built-in offline emulator |

A line whose first word is a command above, or a slip of one (`histroy`, `conect`: within two edits,
one for `use`, `chat`, `help`), is that command: a misspelt or malformed one is refused with "did you mean",
never sent to the model. `%foundry -- <text>` sends the text as a prompt.

Defaults: `%config FoundryMagics.format = "text"` (also `default_connection`, `stream`, `concurrency`,
`max_cost`, `cache`, `history`, `timeout`, `max_retries`); `%config FoundryMagics` lists them.
Errors show as one block (cause, then fix); `%config FoundryMagics.tracebacks = True` shows full tracebacks.
"""  # noqa: E501 - the help tables keep one row a line


@magics_class
class FoundryMagics(Magics):
    """The %%foundry / %foundry magics. Every default is a trait: `%config FoundryMagics.<name>`."""

    default_connection = Unicode(None, allow_none=True,
                                 help="Connection name or URL used when a cell gives no -c.").tag(config=True)
    format = Enum(FORMATS, default_value="markdown", help="Default reply format (-f).").tag(config=True)
    stream = Bool(True, help="Stream replies token by token (--no-stream turns it off per cell).").tag(config=True)
    concurrency = Int(None, allow_none=True, help="Default requests in flight in DataFrame mode.").tag(config=True)
    max_cost = Float(None, allow_none=True, help="Spend at most this much per cell (prices' currency) when a cell "
                     "gives no --max-cost: a DataFrame run stops before it could pass it, a single request that "
                     "could cost more is not sent. Needs the model's price (fm.set_prices).").tag(config=True)
    cache = Bool(True, help="DataFrame mode: reuse finished rows from the response cache.").tag(config=True)
    pack = Union([Int(), Unicode()], default_value=None, allow_none=True,
                 help='DataFrame mode: rows per request when a cell gives no --pack: a whole number, "auto", or '
                      "None (one row per request).").tag(config=True)
    history = Bool(True, help="Log every call to $FOUNDRY_MAGICS_HOME/history.sqlite.").tag(config=True)
    timeout = Float(TIMEOUT, help="Seconds to wait for an answer, per attempt.").tag(config=True)
    max_retries = Int(MAX_RETRIES, help="Retries on 429 / 5xx / connection errors.").tag(config=True)
    tracebacks = Bool(False, help="Show full tracebacks for this package's errors, also those raised from "
                      "Python (debugging); off: one block, cause then fix.").tag(config=True)

    @observe("tracebacks")
    def _tracebacks_changed(self, change: Any) -> None:
        show_tracebacks(change["new"])  # read by FoundryError._render_traceback_, for the Python API too

    @validate("default_connection")
    def _check_connection(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not value.strip():
            raise TraitError("FoundryMagics.default_connection must be a connection name or URL, or None.")
        return value.strip() if value else value

    @validate("concurrency")
    def _check_concurrency(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and value < 1:
            raise TraitError(f"FoundryMagics.concurrency must be 1 or more (or None for automatic), got {value}.")
        return value

    @validate("max_cost")
    def _check_max_cost(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not value > 0:
            raise TraitError(f"FoundryMagics.max_cost must be a positive amount (or None for no limit), got {value}.")
        return value

    @validate("pack")
    def _check_pack(self, proposal: Any) -> Any:
        from foundry_magics.errors import ConfigurationError
        from foundry_magics.ops.options import check_value

        try:
            return check_value("pack", proposal["value"])
        except ConfigurationError as exc:
            raise TraitError(f"FoundryMagics.{exc.message}") from None

    @validate("timeout")
    def _check_timeout(self, proposal: Any) -> Any:
        value = proposal["value"]
        if not value > 0:
            raise TraitError(f"FoundryMagics.timeout must be a positive number of seconds, got {value}.")
        return value

    @validate("max_retries")
    def _check_retries(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value < 0:
            raise TraitError(f"FoundryMagics.max_retries must be 0 or more, got {value}.")
        return value

    # ------------------------------------------------------------------ entry point

    @no_var_expand  # we interpolate once, ourselves: IPython must not touch {x} or $x
    @line_cell_magic
    def foundry(self, line: str, cell: str | None = None) -> Any:
        """Send a prompt to Microsoft Foundry / Azure OpenAI. `%foundry help` for the options."""
        from foundry_magics.notebook import render

        try:
            if cell is None:
                return self._line(line)
            from foundry_magics.notebook.magic_args import parse_cell

            return self._prompt(parse_cell(line, cell))
        except Exception as exc:
            if not isinstance(exc, UsageError) and not _is_foundry_error(exc):
                raise  # a bug: let IPython show it
            if self.tracebacks and not isinstance(exc, UsageError):
                raise  # debugging: IPython draws the full traceback
            render.show_error(exc)
        return None

    # ------------------------------------------------------------------ prompts

    def _settings(self) -> Any:
        from foundry_magics.notebook.prompting import Settings

        return Settings(default_connection=self.default_connection, format=self.format, stream=self.stream,
                        concurrency=self.concurrency, cache=self.cache, history=self.history,
                        timeout=self.timeout, max_retries=self.max_retries)

    @property
    def _user_ns(self) -> dict[str, Any]:
        """The notebook's variables (the magics always have a shell: IPython registers them with one)."""
        assert self.shell is not None
        return self.shell.user_ns

    def _namespace(self) -> dict[str, Any]:
        assert self.shell is not None
        hidden = self.shell.user_ns_hidden
        return {k: v for k, v in self.shell.user_ns.items() if k not in hidden}

    def _prompt(self, args: Any) -> Any:
        from foundry_magics.notebook import prompting, render

        p = prompting.prompter()
        if args.df is not None:
            return self._frame(p, args)
        if getattr(args, "models", None):
            return self._compare(p, args)
        call = p.prepare(args, self._namespace(), self._settings())
        if call.notice:
            render.show(render.Note(call.notice, markdown=f"*ℹ {call.notice}*"))
        if not args.dry_run:
            self._within_budget(p, [call], args)
        if args.dry_run:
            view = render.RequestView(p.dry_run(call), out=args.out)  # shown as the cell's result; a dict in Out/_
            if args.out:
                self._user_ns[args.out] = dict(view)  # the whole request; the display cuts long texts
            return view
        view = self._stream(p, call) if call.stream else self._send(p, call)
        if view is None:
            return None
        if args.out:
            self._user_ns[args.out] = view.value
        return view

    def _compare(self, p: Any, args: Any) -> Any:
        """`-m A,B,C`: one request per model at once, the replies side by side (notebook.compare)."""
        from foundry_magics.notebook import render
        from foundry_magics.notebook.compare import live_frontend, run_comparison

        calls = p.prepare_compare(args, self._namespace(), self._settings())
        if calls[0].notice:
            render.show(render.Note(calls[0].notice, markdown=f"*ℹ {calls[0].notice}*"))
        if args.dry_run:
            for call in calls:
                render.show(render.RequestView(p.dry_run(call)))
            return None
        self._within_budget(p, calls, args)
        live = calls[0].stream and live_frontend()
        comp = run_comparison(p, calls, live=live, fmt=calls[0].format)
        self._show_model_notice()
        if live:
            _skip_echo(comp, self.shell)
        if args.out:
            self._user_ns[args.out] = comp
        return comp

    def _show_model_notice(self) -> None:
        """"Using the only model the server serves": said once per server (rest.base)."""
        from foundry_magics.notebook import render
        from foundry_magics.rest.base import pop_model_notice

        notice = pop_model_notice()
        if notice:
            render.show(render.Note(notice, markdown=f"*ℹ {notice}*"))

    def _view(self, call: Any, text: str, **kw: Any) -> Any:
        """A ReplyView for `text` in the call's format (JSON parsed and checked, code extracted)."""
        from foundry_magics.notebook import render
        from foundry_magics.notebook.prompting import extract_code, interpret_json

        fmt = call.format
        if fmt == "json" and text and not kw.get("interrupted") and kw.get("error") is None:
            parsed, parse_error, problems = interpret_json(text, call.schema)
            kw.update(parsed=parsed, parse_error=parse_error)
            if problems:
                kw["note"] = "Does not match the schema: " + "; ".join(problems[:5])
        if fmt == "code" and text and kw.get("error") is None and not kw.get("interrupted"):
            if render.put_code_in_next_cell(self.shell, extract_code(text)):
                kw["note"] = "The code was placed in a new cell below."
        return render.ReplyView(text, fmt, **kw)

    def _send(self, p: Any, call: Any) -> Any:
        from foundry_magics.notebook import render

        try:
            reply = p.send(call)
        except KeyboardInterrupt:
            p.interrupted(call)
            view = render.ReplyView("", call.format, interrupted=True)
            render.show(view)
            return None
        self._show_model_notice()
        p.finish(call, reply)
        view = self._view(call, reply.text, reply=reply)
        render.show(view)
        _skip_echo(view, self.shell)
        return view

    def _stream(self, p: Any, call: Any) -> Any:
        from foundry_magics.errors import FoundryError, StreamError
        from foundry_magics.notebook import render

        stream = p.start_stream(call)  # builds the request: option errors raise here, before any display
        self._show_model_notice()
        live = render.LiveView(call.format, waiting=f"waiting for {call.agent or call.model or 'the model'}…")
        try:
            for delta in p.iterate(call):
                if delta.tool_call is not None:  # an agent's tool at work: one line above the text
                    live.tool(delta.tool_call)
                    live.update(stream.text)
                elif delta.text:
                    live.update(stream.text)
        except KeyboardInterrupt:
            partial = p.interrupted(call)
            view = live.finish(self._view(call, partial, interrupted=True))
            _skip_echo(view, self.shell)
            return view
        except StreamError as exc:
            view = live.finish(self._view(call, exc.partial or stream.text, error=exc))
            _skip_echo(view, self.shell)
            return view
        except FoundryError as exc:
            if stream.text:
                view = live.finish(self._view(call, stream.text, error=exc))
                _skip_echo(view, self.shell)
                return view
            if self.tracebacks:
                live.handle.update({"text/plain": ""}, raw=True)
                raise  # debugging: IPython draws the full traceback
            data, meta = render.ErrorView(exc)._repr_mimebundle_()
            live.handle.update(data, metadata=meta, raw=True)
            return None
        reply = stream.reply
        p.finish(call, reply)
        view = live.finish(self._view(call, reply.text, reply=reply))
        _skip_echo(view, self.shell)
        return view

    def _max_cost(self, args: Any) -> float | None:
        """--max-cost, else %config FoundryMagics.max_cost."""
        value = getattr(args, "max_cost", None)
        return value if value is not None else self.max_cost

    def _within_budget(self, p: Any, calls: list[Any], args: Any) -> None:
        """Under max_cost, a request whose upper bound (input counted high plus its whole output
        cap) passes it is refused here: nothing is sent (`engine.budget.check_request`)."""
        from foundry_magics.notebook.compare import within_budget

        within_budget(p, calls, self._max_cost(args))  # several models: their bounds together

    def _frame(self, p: Any, args: Any) -> Any:
        """`%%foundry --df DF --out COL`: the cell is a template over DF's columns, filled per row by
        dataframe.run_frame (not interpolated here; names that are not columns come from the namespace)."""
        from foundry_magics.errors import ConfigurationError
        from foundry_magics.notebook import render
        from foundry_magics.notebook.prompting import resolve_schema

        namespace = self._namespace()
        name = args.df
        if name not in namespace:
            raise ConfigurationError(f"--df {name}: no variable named {name!r}.",
                                     hint="Create the DataFrame first, e.g. df = pd.read_csv(...).")
        df = namespace[name]
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise ConfigurationError(
                f"--df {name} is {article(type(df).__name__)}, not a pandas DataFrame.",
                hint=f'Wrap it: {name} = pd.DataFrame(...); for a Series use s.foundry.prompt("... {{}}").',
            )
        if not args.prompt.strip():
            raise ConfigurationError("The template is empty.",
                                     hint="Write it in the cell, e.g. Summarize: {text}  (column names in braces).")
        if args.evaluate is not None:
            return self._evaluate(p, args, df, namespace)
        from foundry_magics.frames.pandas import run_frame

        if args.filter or args.topk is not None or args.agg:
            return self._operator(p, args, df, namespace)
        settings = self._settings()
        extra: dict[str, Any] = {}
        if args.images:  # --image COL: the column of paths / URLs / bytes per row
            extra["images"] = args.images[0]
        if args.estimate:
            extra["estimate"] = True
            if args.sample is not None:  # N requests answered (cached for the run) to forecast it
                extra["sample"] = args.sample
        if args.batch:  # the Batch API: Ctrl-C leaves the job running; the same cell again re-attaches
            extra["batch"] = True
        pack = args.pack if args.pack is not None else self.pack  # --pack, else %config FoundryMagics.pack
        if pack is not None and not (args.batch and args.pack is None):  # the %config default skips --batch cells
            extra["pack"] = pack
        if self._max_cost(args) is not None:  # the run stops before its spend could pass it
            extra["max_cost"] = self._max_cost(args)
        for option in ("temperature", "max_tokens", "api"):  # request options, when given, as in a single cell
            if getattr(args, option, None) is not None:
                extra[option] = getattr(args, option)
        # Ctrl-C raises fm.RunInterrupted (a KeyboardInterrupt): IPython shows its one line
        # (what was kept; the rows that finished are in df[out] and cached) and stops the cells queued after.
        report = run_frame(
            df, args.prompt, out=args.out, schema=resolve_schema(args.schema, namespace) if args.schema else None,
            system=args.system, model=args.model or p.default_model,
            connection=args.connection or settings.default_connection,
            concurrency=args.concurrency or settings.concurrency, rpm=args.rpm, tpm=args.tpm,
            cache=settings.cache, progress=True, namespace=namespace, **extra,
        )
        self._show_notice()
        if args.estimate:
            return report  # the fm.Estimate: shown as the cell's result; nothing was sent
        render.show(report)
        render.show(df.head())
        return None

    def _operator(self, p: Any, args: Any, df: Any, namespace: dict[str, Any]) -> Any:
        """`--df DF --filter | --topk K | --agg [--by COL]`: the cell is the predicate / instruction;
        the result (the rows kept, the K best, the answer) is the cell's value and, with -o, VAR."""
        from foundry_magics.frames import pandas as frames

        settings = self._settings()
        options: dict[str, Any] = dict(
            system=args.system, model=args.model or p.default_model,
            connection=args.connection or settings.default_connection,
            concurrency=args.concurrency or settings.concurrency, rpm=args.rpm, tpm=args.tpm, cache=settings.cache,
            progress=True, namespace=namespace)
        for option in ("temperature", "max_tokens", "api"):
            if getattr(args, option, None) is not None:
                options[option] = getattr(args, option)
        if args.estimate:
            options["estimate"] = True
        if args.batch:
            options["batch"] = True
        if args.filter and self._max_cost(args) is not None:  # a single run: the budget applies (not to rounds)
            options["max_cost"] = self._max_cost(args)
        if args.filter:
            result = frames.filter_rows(df, args.prompt, where="%%foundry --filter", **options)
        elif args.topk is not None:
            result = frames.topk(df, args.prompt, args.topk, where="%%foundry --topk", **options)
        else:
            result = frames.agg(df, args.prompt, by=args.by, where="%%foundry --agg", **options)
        self._show_notice()
        if args.out and not args.estimate:
            self._user_ns[args.out] = result
        return result

    def _evaluate(self, p: Any, args: Any, df: Any, namespace: dict[str, Any]) -> Any:
        """`%%foundry --df DF --eval GOLD -m A,B,C [--labels x,y]`: the cell's template scored on each
        model against DF[GOLD]; the fm.Evaluation is the cell's result (and VAR with -o VAR)."""
        from foundry_magics.frames.evaluate import evaluate
        from foundry_magics.notebook.prompting import resolve_schema

        settings = self._settings()
        extra: dict[str, Any] = {}
        if self._max_cost(args) is not None:
            extra["max_cost"] = self._max_cost(args)
        for option in ("temperature", "max_tokens", "api", "system"):
            if getattr(args, option, None) is not None:
                extra[option] = getattr(args, option)
        op = "classify" if args.labels else ("extract" if args.schema else "prompt")
        ev = evaluate(df, args.evaluate, op=op, template=args.prompt, labels=args.labels,
                      schema=resolve_schema(args.schema, namespace) if args.schema else None,
                      models=args.models or [args.model or p.default_model], sample=args.sample,
                      connection=args.connection or settings.default_connection,
                      concurrency=args.concurrency or settings.concurrency, rpm=args.rpm, tpm=args.tpm,
                      cache=settings.cache, progress=True, namespace=namespace, where="%%foundry --eval", **extra)
        self._show_notice()
        if args.out:
            self._user_ns[args.out] = ev
        return ev

    # ------------------------------------------------------------------ line commands

    def _line(self, line: str) -> Any:
        from foundry_magics.notebook.magic_args import LineCommand, parse_line

        cmd = parse_line(line)
        if not isinstance(cmd, LineCommand):
            return self._prompt(cmd)
        handler = getattr(self, f"_cmd_{cmd.name}")
        result = handler(cmd)
        self._show_notice()
        return result

    def _show_notice(self) -> None:
        from foundry_magics.connections import session
        from foundry_magics.notebook import render

        notice = session.pop_notice()
        if notice:
            render.show(render.Note(notice, markdown=f"*ℹ {notice}*"))
        self._show_model_notice()

    def _cmd_help(self, cmd: Any) -> None:
        from foundry_magics.notebook import render
        from foundry_magics.notebook.magic_args import options_help

        text = HELP.format(options=options_help())
        render.show(render.Note(text, markdown=text))

    def _cmd_connect(self, cmd: Any) -> None:
        import os

        from foundry_magics.notebook import prompting, render

        opts = dict(cmd.options)
        save = opts.pop("save", None)
        conn = prompting.prompter().connect(cmd.args[0], save=save, **opts)
        bits = [f"{conn.kind}", conn.endpoint, f"model {conn.model}" if conn.model else "no default model",
                f"auth {conn.key_source()}"]
        text = f"Connected to {conn.label}" + (f" (saved as {save})" if save else "") + ": " + " · ".join(bits)
        warn = ""
        if conn.auth == "key" and conn.api_key is None and conn.api_key_env and not os.environ.get(conn.api_key_env):
            warn = f"\n⚠ ${conn.api_key_env} is not set: set it before sending a prompt."
        render.show(render.Note(text + warn, markdown=f"✔ {text}" + warn.replace("\n", "  \n")))

    def _cmd_connections(self, cmd: Any) -> None:
        from foundry_magics.connections import session
        from foundry_magics.notebook import render

        rows = session.describe_connections()
        for r in rows:
            r[""] = "●" if r.get("current") else ""
        cols = ["", "name", "kind", "endpoint", "auth", "key", "model", "source"]
        render.show(render.Table(rows, cols, title="Connections (● current)",
                                 empty="No connections: `%foundry connect URL --save NAME` or `%foundry picker`."))

    def _cmd_picker(self, cmd: Any) -> Any:
        from foundry_magics.notebook.widgets import picker

        return picker()

    def _cmd_models(self, cmd: Any) -> None:
        from foundry_magics.notebook import prompting, render

        names = prompting.prompter().models(settings=self._settings())
        render.show(render.Table([{"model": m} for m in names], ["model"], title="Models",
                                 empty="The endpoint lists no models."))

    def _cmd_use(self, cmd: Any) -> None:
        from foundry_magics.notebook import prompting, render

        prompting.prompter().use_model(cmd.args[0])
        render.show(render.Note(f"Default model for this session: {cmd.args[0]} (until the next %foundry connect)."))

    def _cmd_history(self, cmd: Any) -> None:
        import datetime as dt

        from foundry_magics.notebook import prompting, render

        if not self.history:
            render.show(render.Note("History is off (%config FoundryMagics.history = True turns it on)."))
            return
        rows = []
        for r in prompting.prompter().history.recent(cmd.options.get("n", 10)):
            rows.append(dict(
                id=r["id"], time=dt.datetime.fromtimestamp(r["ts"]).strftime("%Y-%m-%d %H:%M:%S"),
                connection=r["connection"], model=r["model"], status=r["status"],
                tokens=f"{r['input_tokens']}+{r['output_tokens']}",
                latency=f"{r['latency']:.2f} s" if r["latency"] is not None else "",
                prompt=_short(r["prompt"]), reply=_short(r["reply"] or r["error"] or ""),
            ))
            if r.get("agent"):  # an agent answered: which one, in which conversation
                rows[-1].update(agent=r["agent"], conversation=r.get("conversation") or "")
        if any("agent" in row for row in rows):
            for row in rows:
                row.setdefault("agent", "")
                row.setdefault("conversation", "")
        render.show(render.Table(rows, title="History (newest first)", empty="No calls logged yet."))

    def _cmd_usage(self, cmd: Any) -> None:
        from foundry_magics.notebook import prompting, render

        rows = prompting.prompter().usage.rows()
        render.show(render.usage_table(rows))

    def _cmd_chat(self, cmd: Any) -> None:
        from foundry_magics.notebook import prompting, render

        action, name = cmd.args
        p = prompting.prompter()
        convs = p.conversations
        if action == "list":
            rows = [{"name": n, "turns": convs.get(n).turns, "kept": "in the notebook", "conversation": "",
                     "agent": ""} for n in convs.names()]
            rows += [dict(r, kept="on the service") for r in p.server_conversations.rows()]
            render.show(render.Table(rows, ["name", "turns", "kept", "conversation", "agent"], title="Conversations",
                                     empty="No conversations yet."))
        elif action == "reset":
            had = convs.reset(name)
            forgot = p.forget_server_conversation(name, self._settings())
            text = f"Conversation {name!r} " + ("reset." if had or forgot else "was already empty.")
            if forgot:
                text += " The next --conversation turn starts a new one (the old one stays on the service)."
            render.show(render.Note(text))
        else:
            found = p.server_conversation(name, self._settings())
            if found is not None:
                from foundry_magics.notebook.agents import transcript

                md = transcript(name, found[1], found[0])
            else:
                md = convs.get(name).transcript()
            render.show(render.Note(md.replace("**", "").replace("*", ""), markdown=md))

    def _cmd_agents(self, cmd: Any) -> None:
        from foundry_magics.notebook import prompting, render
        from foundry_magics.notebook.agents import AGENT_COLUMNS

        found = prompting.prompter().agents(settings=self._settings())
        render.show(render.Table([a.row() for a in found], list(AGENT_COLUMNS), title="Agents",
                                 empty="The project has no agents yet (create one in the Foundry portal)."))

    def _cmd_batches(self, cmd: Any) -> None:
        from foundry_magics.batch_api.table import job_rows
        from foundry_magics.notebook import render

        render.show(render.batch_jobs_table(job_rows()))

    def _cmd_emulator(self, cmd: Any) -> None:
        from foundry_magics import emulator
        from foundry_magics.notebook import render

        action = cmd.args[0]
        if action == "start":
            url = emulator.start()
            render.show(render.Note(f"Emulator running at {url} — `%foundry connect emulator` to use it."))
        elif action == "stop":
            emulator.stop()
            render.show(render.Note("Emulator stopped."))
        else:
            st = emulator.status()
            if not st.get("running"):
                render.show(render.Note("Emulator not running (`%foundry emulator start`)."))
            else:
                stats = st.get("stats") or {}
                served = counted(stats.get("requests", 0), "request")
                render.show(render.Note(f"Emulator running at {st['url']}: {served} served."))


def _short(text: Any, n: int = 60) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _skip_echo(view: Any, shell: Any) -> None:
    """The reply is already on screen: the cell's result (Out/_) must not print it again."""
    view._echo_skip = getattr(shell, "execution_count", None)


def _is_foundry_error(exc: BaseException) -> bool:
    from foundry_magics.errors import FoundryError

    return isinstance(exc, FoundryError)


def _keep_question_marks(lines: list[str]) -> list[str]:
    """Input cleanup: `%foundry What is X?` is a prompt, not IPython's `X?` help request.

    IPython reads a trailing `?` as "show help"; this rewrites such `%foundry` lines into the
    explicit call before that happens. Other lines, and %%foundry cells, are left alone.
    """
    first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("%%"):
        return lines
    out = []
    for ln in lines:
        stripped = ln.rstrip("\r\n")
        body = stripped.lstrip()
        if body.startswith("%foundry ") and body.rstrip().endswith("?"):
            indent = stripped[: len(stripped) - len(body)]
            rest = body[len("%foundry "):].strip()
            ln = f"{indent}get_ipython().run_line_magic('foundry', {rest!r})" + ln[len(stripped):]
        out.append(ln)
    return out


def load_ipython_extension(ipython: Any) -> None:
    try:
        magics = FoundryMagics(shell=ipython)
    except TraitError:
        # A bad `%config FoundryMagics.x = ...` stays in the shell's config: drop it and say so.
        _forget_failed_instances(ipython)
        _drop_invalid_config(ipython)
        magics = FoundryMagics(shell=ipython)
    ipython.register_magics(magics)
    show_tracebacks(magics.tracebacks)  # a %config set before loading
    cleanup = getattr(ipython, "input_transformers_cleanup", None)
    if cleanup is not None and _keep_question_marks not in cleanup:
        cleanup.append(_keep_question_marks)


def _forget_failed_instances(ipython: Any) -> None:
    configurables = getattr(ipython, "configurables", [])
    registered = set(map(id, ipython.magics_manager.registry.values()))
    configurables[:] = [c for c in configurables if not (isinstance(c, FoundryMagics) and id(c) not in registered)]


def _drop_invalid_config(ipython: Any) -> None:
    import logging

    from traitlets.config import Config

    section = ipython.config.get("FoundryMagics") or {}
    for key in list(section):
        try:
            FoundryMagics(config=Config({"FoundryMagics": {key: section[key]}}))
        except TraitError as exc:
            logging.getLogger("foundry_magics").warning("Ignoring FoundryMagics.%s: %s", key, exc)
            del section[key]


def unload_ipython_extension(ipython: Any) -> None:
    import sys

    manager = ipython.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("foundry", None)
    for name, inst in list(manager.registry.items()):
        if isinstance(inst, FoundryMagics):
            manager.registry.pop(name, None)
            if inst in ipython.configurables:
                ipython.configurables.remove(inst)
    cleanup = getattr(ipython, "input_transformers_cleanup", None)
    if cleanup is not None and _keep_question_marks in cleanup:
        cleanup.remove(_keep_question_marks)
    show_tracebacks(False)
    prompting = sys.modules.get("foundry_magics.notebook.prompting")
    if prompting is not None:
        prompting.reset()
