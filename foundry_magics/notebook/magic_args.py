"""Parsing `%%foundry` / `%foundry` arguments into typed objects. No I/O, no business logic.

Options use shell-like quoting (`-s "You are terse"`), `--opt value` or `--opt=value`.
Mistakes raise IPython's `UsageError` with one readable message that names the fix.
"""

from __future__ import annotations

import difflib
import io
import keyword
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable

from IPython.core.error import UsageError

__all__ = [
    "PromptArgs", "LineCommand", "parse_cell", "parse_line", "options_help", "FORMATS", "APIS", "SUBCOMMANDS",
    "edits", "near_commands",
]

FORMATS = ("markdown", "text", "code", "json", "html")
APIS = ("chat", "responses")
AUTHS = ("entra", "key", "none")


@dataclass
class PromptArgs:
    """A parsed `%%foundry` line (or a one-line `%foundry` prompt). None means "use the default"."""

    prompt: str = ""
    connection: str | None = None
    model: str | None = None
    system: str | None = None
    api: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_cost: float | None = None  # --max-cost AMOUNT (else %config FoundryMagics.max_cost)
    format: str | None = None
    out: str | None = None
    chat: str | None = None
    new: bool = False
    stream: bool | None = None
    interpolate: bool = True
    schema: str | None = None
    dry_run: bool = False
    df: str | None = None
    concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    images: list[str] = field(default_factory=list)  # --image PATH|URL|VAR (repeatable); with --df a column
    estimate: bool = False  # --estimate (DataFrame mode): the cost preview, nothing sent
    sample: int | None = None  # --estimate --sample N: answer N requests (cached) to forecast the run
    batch: bool = False  # --batch (DataFrame mode): through the Batch API, half the price, within 24 h
    pack: Any = None  # --pack N|auto (DataFrame mode): N rows to a request (else %config FoundryMagics.pack)
    models: list[str] | None = None  # -m A,B,C: compare these models side by side
    agent: str | None = None  # --agent NAME[:VERSION] (a Foundry project's agent)
    conversation: str | None = None  # --conversation NAME (a server-side conversation, kept by name)
    filter: bool = False  # --filter (DataFrame mode): the cell is a predicate; -o VAR gets the rows judged true
    topk: int | None = None  # --topk K (DataFrame mode): the K best rows for the cell's instruction
    agg: bool = False  # --agg (DataFrame mode): one answer over every row (--by COL: one per group)
    by: str | None = None  # --by COL, with --agg
    evaluate: str | None = None  # --eval GOLD (with --df): evaluate prompts x models against the column GOLD
    labels: list[str] | None = None  # --labels x,y,z: with --eval, the labels of a classify
    given: set[str] = field(default_factory=set)  # option names given explicitly (for messages)


@dataclass
class LineCommand:
    """A `%foundry SUBCOMMAND ...` line."""

    name: str
    args: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- option table


def _number(kind: type, option: str) -> Callable[[str, str], Any]:
    """A number for `option`: parsed here, then checked by the one function every front-end uses
    (`ops.options`), so `-t 5` gets the same ConfigurationError as `temperature=5` in Python."""

    def convert(flag: str, raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise UsageError(f"{flag} needs {what}, got {raw!r}.") from None
        from foundry_magics.ops.options import check_value

        return check_value(option, value)

    return convert


def _count(flag: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{flag} needs a whole number, got {raw!r}.") from None
    if value < 1:
        raise UsageError(f"{flag} must be at least 1, got {raw}.")
    return value


_ALIASES = {"md": "markdown", "txt": "text", "plain": "text", "python": "code", "completions": "chat"}


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def convert(flag: str, raw: str) -> str:
        low = raw.lower()
        if low not in choices and _ALIASES.get(low) in choices:
            low = _ALIASES[low]
        if low not in choices:
            near = difflib.get_close_matches(low, choices, n=1)
            tip = f" Did you mean {near[0]!r}?" if near else ""
            raise UsageError(f"{flag} must be one of {', '.join(choices)}; got {raw!r}.{tip}")
        return low

    return convert


def _text(flag: str, raw: str) -> str:
    return raw


def _pack(flag: str, raw: str) -> Any:
    """--pack N or --pack auto, checked as pack= is everywhere (`ops.options`)."""
    from foundry_magics.ops.options import check_value

    value: Any = raw.strip().lower()
    if value != "auto":
        try:
            value = int(value)
        except ValueError:
            raise UsageError(f'{flag} needs a whole number of rows per request or "auto", got {raw!r}.') from None
    return check_value("pack", value)


def _agent_name(flag: str, raw: str) -> str:
    name, _, version = raw.strip().partition(":")
    if not name or any(c.isspace() or c in "/?#" for c in name) or (":" in raw and not version.strip()):
        raise UsageError(f"{flag} needs NAME or NAME:VERSION (e.g. helpdesk or helpdesk:2), got {raw!r}.")
    return raw.strip()


def _labels(flag: str, raw: str) -> list[str]:
    labels = list(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))
    if len(labels) < 2:
        raise UsageError(f"{flag} needs two or more labels separated by commas (--labels pos,neg), got {raw!r}.")
    return labels


@dataclass
class _Opt:
    flags: tuple[str, ...]
    dest: str
    metavar: str | None  # None: a flag without a value
    help: str
    convert: Callable[[str, str], Any] = _text
    optional_value: bool = False  # `--chat [NAME]`
    const: Any = True  # the value a flag (or a bare optional) sets
    repeat: bool = False  # may be given several times: the values are collected in a list


CELL_OPTIONS: list[_Opt] = [
    _Opt(("-c", "--connection"), "connection", "NAME", "connection name or endpoint URL for this cell"),
    _Opt(("-m", "--model"), "model", "NAME", "model / deployment name; A,B,C compares them side by side"),
    _Opt(("-s", "--system"), "system", "TEXT", "system prompt (quote it)"),
    _Opt(("--api",), "api", "chat|responses", "chat completions or the Responses API", _choice(APIS)),
    _Opt(("-t", "--temperature"), "temperature", "F", "sampling temperature, 0 to 2", _number(float, "temperature")),
    _Opt(("--max-tokens",), "max_tokens", "N", "cap on reply tokens", _number(int, "max_tokens")),
    _Opt(("--max-cost",), "max_cost", "AMOUNT", "spend at most AMOUNT (prices' currency): a run stops before it "
         "could pass it; a single request that could cost more is not sent", _number(float, "max_cost")),
    _Opt(("-f", "--format"), "format", "|".join(FORMATS), "how to show the reply (default markdown)", _choice(FORMATS)),
    _Opt(("-o", "--out"), "out", "VAR", "store the reply text (parsed object for -f json) in VAR; "
         "with --df, the result column"),
    _Opt(("--chat",), "chat", "[NAME]", "continue conversation NAME (default \"default\")", optional_value=True,
         const="default"),
    _Opt(("--new",), "new", None, "start the --chat (or --conversation) conversation afresh"),
    _Opt(("--no-stream",), "stream", None, "wait for the whole reply instead of streaming", const=False),
    _Opt(("--stream",), "stream", None, "stream the reply (the default unless %config says otherwise)"),
    _Opt(("--no-interpolate",), "interpolate", None, "send the cell exactly as written", const=False),
    _Opt(("--schema",), "schema", "VAR|JSON", "structured output: a variable or inline JSON"),
    _Opt(("--dry-run",), "dry_run", None, "show the request (secrets redacted); send nothing"),
    _Opt(("--df",), "df", "DF", "DataFrame mode: the cell is a template over DF's columns"),
    _Opt(("--eval",), "evaluate", "GOLD", "with --df: score the cell's template on -m A,B,C against the column "
         "GOLD (accuracy, cost per 1,000 rows, the best choice, a plot); -o VAR keeps the fm.Evaluation"),
    _Opt(("--labels",), "labels", "X,Y,Z", "with --eval: classify into these labels (else the answers are "
         "compared as text)", _labels),
    _Opt(("--concurrency",), "concurrency", "N", "DataFrame mode: requests in flight", _number(int, "concurrency")),
    _Opt(("--rpm",), "rpm", "N", "DataFrame mode: requests per minute budget", _number(float, "rpm")),
    _Opt(("--tpm",), "tpm", "N", "DataFrame mode: tokens per minute budget", _number(float, "tpm")),
    _Opt(("--image",), "images", "PATH|URL|VAR", "attach an image (repeatable); with --df, a column of them",
         repeat=True),
    _Opt(("--estimate",), "estimate", None, "DataFrame mode: what the run would send and cost; send nothing"),
    _Opt(("--sample",), "sample", "N", "with --estimate: answer N requests (cached for the run) to forecast its "
         "output tokens, cost and time, each with a 90 % interval", _number(int, "sample")),
    _Opt(("--batch",), "batch", None, "DataFrame mode: through the Batch API (half the price, within 24 h); "
         "Ctrl-C leaves the job running, the same cell again picks it up"),
    _Opt(("--filter",), "filter", None, "DataFrame mode: the cell is a yes/no predicate over DF's columns; -o VAR "
         "gets the rows judged true"),
    _Opt(("--topk",), "topk", "K", "DataFrame mode: the K best rows for the cell's instruction, with a rank column "
         "(-o VAR)", _count),
    _Opt(("--agg",), "agg", None, "DataFrame mode: one answer to the cell over every row, folded to fit the "
         "context (-o VAR)"),
    _Opt(("--by",), "by", "COL", "with --agg: one answer per group of COL"),
    _Opt(("--pack",), "pack", "N|auto", "DataFrame mode: send N rows in one request (answers matched by row id, "
         "cached per row); auto: as many as fit about 2,000 input tokens", _pack),
    _Opt(("--agent",), "agent", "NAME[:VER]", "run the Foundry project's agent NAME (`%foundry agents` lists them)",
         _agent_name),
    _Opt(("--conversation",), "conversation", "NAME", "continue the server-side conversation NAME (kept across "
         "kernel restarts; --new starts it afresh)"),
]

CONNECT_OPTIONS: list[_Opt] = [
    _Opt(("-m", "--model"), "model", "M", "default model / deployment"),
    _Opt(("--auth",), "auth", "entra|key|none", "how to authenticate", _choice(AUTHS)),
    _Opt(("--key-env",), "api_key_env", "VAR", "environment variable holding the key"),
    _Opt(("--key-header",), "key_header", "H", "header carrying the key (api-key, Authorization, ...)"),
    _Opt(("--api",), "api", "chat|responses", "default API", _choice(APIS)),
    _Opt(("--api-version",), "api_version", "V", "api-version query value"),
    _Opt(("--save",), "save", "NAME", "save to connections.toml under NAME (never the key)"),
]

HISTORY_OPTIONS: list[_Opt] = [
    _Opt(("-n",), "n", "N", "how many calls to show (default 10)", _count),
]

_DF_ONLY = ("concurrency", "rpm", "tpm", "estimate", "sample", "batch", "pack", "filter", "topk", "agg", "by")
OPERATORS = ("filter", "topk", "agg")  # --df with one of these: the cell is the operator's predicate / instruction


def _table(opts: list[_Opt]) -> dict[str, _Opt]:
    return {flag: o for o in opts for flag in o.flags}


def _cell_spelling(models: list[str]) -> str:
    return f"-m {','.join(models)}"


def compare_models_problem(named: list[str], spell: Callable[[list[str]], str] = _cell_spelling) -> str:
    """Why these model names cannot be compared (fewer than two distinct), said plainly;
    `spell` writes a list of models as the caller's user types it (`-m A,B` in a cell).

    A name given twice is refused rather than run once: `-m A,A` asks for a comparison, so
    the second name is most likely a slip for another model, and running A alone would give
    a plain reply where a comparison (and its `-o` value) was expected."""
    if len(named) > 1 and len(set(named)) == 1:
        model = named[0]
        said = "twice" if len(named) == 2 else f"{len(named)} times"
        return (f"the same model, {model}, is named {said}; a comparison needs two different models. "
                f"Name another one ({spell([model, 'OTHER'])}), or ask {model} alone.")
    return f"name two or more models to compare ({spell(['A', 'B', 'C'])})."


def _unknown(flag: str, table: dict[str, _Opt], where: str) -> UsageError:
    """"Did you mean" only for what is plainly a slip: the start of exactly one option (`--temp`),
    or a close spelling of one, judged without the dashes (every long option shares "--", which
    once made `--bogus` look like `--out`). Otherwise no guess: the error's fix line points to
    `%foundry help` (render.ErrorView), which lists the options."""
    near = _near(flag, table)
    return UsageError(f"Unknown option {flag} for {where}." + (f" Did you mean {near}?" if near else ""))


def _near(flag: str, table: dict[str, _Opt]) -> str | None:
    if not flag.startswith("--") or len(flag) < 4:
        return None
    word = flag[2:].lower()
    bare = {f[2:]: f for f in table if f.startswith("--")}
    starts = [f for b, f in bare.items() if b.startswith(word)]
    if len(word) >= 3 and len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(word, list(bare), n=1, cutoff=0.75)
    return bare[close[0]] if close else None


def _split(line: str, where: str) -> list[str]:
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise UsageError(f"Cannot read the {where} options: {exc}. Check the quotes in: {line.strip()}") from None


class _Parser:
    """Reads option tokens one at a time; stops at the first token that is not an option."""

    def __init__(self, opts: list[_Opt], where: str, *, greedy_optional: bool = True) -> None:
        self.table = _table(opts)
        self.where = where
        self.greedy_optional = greedy_optional

    def parse(self, tokens: list[str], values: dict[str, Any], given: set[str]) -> int:
        """Fill `values`; return the index of the first positional token (len(tokens) if none)."""
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "--":
                return i + 1
            if not tok.startswith("-") or tok == "-" or _is_negative_number(tok):
                return i
            flag, eq, inline = tok.partition("=")
            opt = self.table.get(flag)
            if opt is None:
                raise _unknown(flag, self.table, self.where)
            i += 1
            if opt.metavar is None:
                if eq:
                    raise UsageError(f"{flag} takes no value (got {tok!r}).")
                value: Any = opt.const
            elif opt.optional_value:
                if eq:
                    value = inline
                elif self.greedy_optional and i < len(tokens) and not tokens[i].startswith("-"):
                    value, i = tokens[i], i + 1
                else:
                    value = opt.const
            else:
                if eq:
                    raw = inline
                elif i < len(tokens) and (not tokens[i].startswith("-") or _is_negative_number(tokens[i])):
                    raw, i = tokens[i], i + 1
                else:
                    raise UsageError(f"{'/'.join(opt.flags)} needs a value ({opt.metavar}).")
                value = opt.convert(flag, raw)
            if opt.repeat:
                values.setdefault(opt.dest, []).append(value)
                given.add(opt.dest)
                continue
            if opt.dest in given and values.get(opt.dest) != value:
                raise UsageError(f"{'/'.join(opt.flags)} is given twice with different values.")
            values[opt.dest] = value
            given.add(opt.dest)
        return i


def _is_negative_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return tok.startswith("-")


def _finish(values: dict[str, Any], given: set[str], prompt: str) -> PromptArgs:
    args = PromptArgs(prompt=prompt, given=given, **values)
    if args.conversation is not None:
        if not args.conversation.strip():
            raise UsageError("--conversation NAME needs a non-empty name.")
        if args.chat is not None:
            raise UsageError("--chat keeps a conversation in the notebook and --conversation one on the service: "
                             "use one of them.")
    if args.new and args.chat is None and args.conversation is None:
        args.chat = "default"
    if (args.agent or args.conversation) and args.api == "chat":
        raise UsageError("--agent and --conversation run on the Responses API: drop --api chat.")
    if args.chat is not None and not args.chat.strip():
        raise UsageError("--chat NAME needs a non-empty name.")
    if args.model is not None and "," in args.model:
        named = [m.strip() for m in args.model.split(",") if m.strip()]
        models = list(dict.fromkeys(named))
        if len(models) < 2:
            raise UsageError(f"-m {args.model!r}: " + compare_models_problem(named))
        if args.df is not None and args.evaluate is None:
            raise UsageError("-m A,B,C compares models on one prompt; DataFrame mode (--df) takes one model "
                             "(or add --eval GOLD to score them on labelled rows).")
        args.models, args.model = models, None
    if args.evaluate is not None or args.labels is not None:
        return _finish_eval(args, given)
    if args.df is None:
        extra = [f"--{d}" for d in _DF_ONLY if d in given]
        if extra:
            verb = "applies" if len(extra) == 1 else "apply"
            raise UsageError(f"{', '.join(extra)} only {verb} in DataFrame mode (--df DF --out COL).")
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"-o/--out needs a Python variable name, got {args.out!r}.")
    elif any(d in given for d in OPERATORS) or "by" in given:
        _check_operator(args, given)
    else:
        if not args.out and not args.estimate:
            raise UsageError("DataFrame mode needs --out COL: the column that receives the results.")
        if args.sample is not None and not args.estimate:
            raise UsageError("--sample N goes with --estimate: it answers N requests to forecast the run "
                             "(add --estimate, or leave --sample out).")
        if len(args.images) > 1:
            raise UsageError("With --df, --image names one column (of paths, URLs or bytes per row).")
        clash = [f for f, d in (("--chat", "chat"), ("--dry-run", "dry_run"), ("-f", "format"), ("--agent", "agent"),
                                ("--conversation", "conversation")) if d in given]
        if clash:
            raise UsageError(f"{', '.join(clash)} cannot be used with --df (DataFrame mode).")
    return args


def _check_operator(args: PromptArgs, given: set[str]) -> None:
    """`--df DF --filter | --topk K | --agg [--by COL]`, with -o VAR (a variable, not a column)."""
    ops = [f"--{d}" for d in OPERATORS if d in given]
    if len(ops) > 1:
        raise UsageError(f"{' and '.join(ops)}: use one operator per cell.")
    if "by" in given and "agg" not in given:
        raise UsageError("--by COL groups the rows of --agg: add --agg, or leave --by out.")
    if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
        raise UsageError(f"With {ops[0]}, -o/--out names a Python variable for the result, got {args.out!r}.")
    clash = [f for f, d in (("--chat", "chat"), ("--dry-run", "dry_run"), ("-f", "format"), ("--agent", "agent"),
                            ("--conversation", "conversation"), ("--schema", "schema"), ("--image", "images"))
             if d in given]
    if clash:
        raise UsageError(f"{', '.join(clash)} cannot be used with {ops[0]}.")


def _finish_eval(args: PromptArgs, given: set[str]) -> PromptArgs:
    """`%%foundry --df DF --eval GOLD -m A,B,C [--labels x,y] [--sample N] [-o VAR]`."""
    if args.evaluate is None:
        raise UsageError("--labels goes with --eval GOLD (evaluating models on labelled rows).")
    if args.df is None:
        raise UsageError("--eval GOLD needs --df DF: the DataFrame with the labelled rows.")
    if not args.evaluate.strip():
        raise UsageError("--eval needs the name of the column of true answers, e.g. --eval label.")
    if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
        raise UsageError(f"With --eval, -o/--out names the variable that keeps the fm.Evaluation; got {args.out!r}.")
    clash = [f for f, d in (("--chat", "chat"), ("--dry-run", "dry_run"), ("-f", "format"), ("--agent", "agent"),
                            ("--conversation", "conversation"), ("--estimate", "estimate"), ("--batch", "batch"),
                            ("--image", "images")) if d in given]
    if clash:
        raise UsageError(f"{', '.join(clash)} cannot be used with --eval.")
    return args


def parse_cell(line: str, cell: str) -> PromptArgs:
    """`%%foundry LINE` + the cell body. Every token on the line must be an option."""
    tokens = _split(line, "%%foundry")
    values: dict[str, Any] = {}
    given: set[str] = set()
    stop = _Parser(CELL_OPTIONS, "%%foundry").parse(tokens, values, given)
    if stop < len(tokens):
        rest = " ".join(tokens[stop:])
        raise UsageError(
            f"Unexpected text on the %%foundry line: {rest!r}. The prompt goes in the cell body; "
            "quote option values that contain spaces (-s \"You are terse\")."
        )
    return _finish(values, given, _trim_body(cell))


def _trim_body(cell: str) -> str:
    """Drop blank lines around the cell body and trailing spaces; keep the first line's indent."""
    lines = cell.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip()


SUBCOMMANDS = ("connect", "connections", "picker", "models", "use", "history", "usage", "chat", "emulator", "help",
               "agents", "batches")
_NO_ARGS = ("connections", "picker", "models", "usage", "help", "agents", "batches")
SHORT_COMMAND = 4  # a command this long or shorter (use, chat, help): a slip is one edit, not two
_OPTION_LIKE = re.compile(r"^--?[A-Za-z]")

_USAGE = {
    "connect": "`%foundry connect NAME|URL [--model M] [--auth entra|key|none] [--key-env VAR] [--key-header H] "
               "[--save NAME]`",
    "use": "`%foundry use MODEL`",
    "history": "`%foundry history [-n N]`",
    "chat": "`%foundry chat [show|reset|list] [NAME]`",
    "emulator": "`%foundry emulator [start|stop|status]`",
}


def edits(a: str, b: str) -> int:
    """The edit distance of `a` and `b`: insertions, deletions, substitutions and swaps of two
    neighbouring letters (`histroy` -> `history` is one edit) each count one."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def near_commands(word: str) -> list[str]:
    """The line commands `word` is a slip of: within two edits (one for a command of
    SHORT_COMMAND letters or fewer, where two edits reach everyday words: `chat` -> `that`,
    `help` -> `hello`, `use` -> `the`), the closest ones first. [] for a command itself."""
    w = word.lower()
    found = []
    for name in SUBCOMMANDS:
        d = edits(w, name)
        if 0 < d <= (1 if len(name) <= SHORT_COMMAND else 2):
            found.append((d, name))
    best = min((d for d, _ in found), default=None)
    return [name for d, name in found if d == best]


def parse_line(line: str) -> LineCommand | PromptArgs:
    """`%foundry ...`: a line command, or a one-line prompt.

    * The first word (in any case) is a command: the line is that command; one that does not
      fit it (`%foundry emulator restart`, `%foundry help me write a haiku`) is refused with
      the command's usage: nothing is sent.
    * The first word is a slip of a command (`histroy`, `conect`: see `near_commands`) and
      nothing follows it, or the rest fits that command or holds an option (`--model`):
      refused with "did you mean". A word near a command followed by prose (`what is X`:
      `what` is one edit from `chat`) stays a prompt.
    * `%foundry -- TEXT` always sends TEXT; `%foundry -m M TEXT` (options first) too.
    """
    text = line.strip()
    if not text:
        return LineCommand("help")
    if text.startswith("-"):
        return _line_prompt_with_options(text)
    parts = text.split(None, 1)
    first, rest = parts[0], (parts[1].strip() if len(parts) > 1 else "")
    word = first.lower()
    if word in SUBCOMMANDS:
        try:
            return _subcommand(word, rest)
        except UsageError as exc:
            raise _refused(str(exc), text) from None
    near = near_commands(word)
    if near and _fits(near[0], rest):
        names = " or ".join(f"`%foundry {n}`" for n in near)
        raise _refused(f"`{first}` is not a line command. Did you mean {names}?", text)
    return PromptArgs(prompt=text)


def _fits(name: str, rest: str) -> bool:
    """Whether `%foundry NAME REST` reads as that command, or plainly meant one: nothing after
    the word (`%foundry conect`), or an option in the line (`--model`)."""
    if not rest:
        return True
    try:
        tokens = shlex.split(rest, posix=True)
    except ValueError:
        tokens = rest.split()
    if any(_OPTION_LIKE.match(t) and not _is_negative_number(t) for t in tokens):
        return True
    try:
        _subcommand(name, rest)
    except UsageError:
        return False
    return True


def _refused(message: str, text: str) -> UsageError:
    """A line command that does not fit: the reason, and how to send the line as a prompt instead."""
    err = UsageError(f"{message} Nothing was sent.")
    err.hint = f"To send the line as a prompt: `%foundry -- {text}`. `%foundry help` lists the commands."  # type: ignore[attr-defined]
    return err


def _subcommand(name: str, rest: str) -> LineCommand:
    """The command `name` with the rest of its line, or a UsageError saying what it takes."""
    if name in _NO_ARGS:
        if rest:
            raise UsageError(f"`%foundry {name}` takes nothing after it (got {rest!r}).")
        return LineCommand(name)
    if name == "use":
        words = rest.split()
        if not words:
            raise UsageError("`%foundry use MODEL` needs a model name; `%foundry models` lists them.")
        if len(words) > 1:
            raise UsageError(f"{_USAGE['use']} takes one model name (got {rest!r}).")
        return LineCommand("use", words)
    if name == "chat":
        words = rest.split()
        if not words:
            return LineCommand("chat", ["show", "default"])
        if words[0] in ("show", "reset", "list") and len(words) <= 2:
            return LineCommand("chat", [words[0], words[1] if len(words) > 1 else "default"])
        raise UsageError(f"{_USAGE['chat']}: got {rest!r}.")
    if name == "emulator":
        words = rest.split()
        if not words:
            return LineCommand("emulator", ["status"])
        if words[0] in ("start", "stop", "status") and len(words) == 1:
            return LineCommand("emulator", words)
        if words[0] == "start" and any(w.startswith("-") for w in words[1:]):
            raise UsageError("`%foundry emulator start` takes no options: set them in Python, e.g. "
                             "`fm.emulator.start(latency=0.5)` (runtime options apply to a running emulator too).")
        near = difflib.get_close_matches(words[0], ("start", "stop", "status"), n=1)
        tip = f" Did you mean `%foundry emulator {near[0]}`?" if near and len(words) == 1 else ""
        raise UsageError(f"{_USAGE['emulator']}: got {rest!r}.{tip}")
    if name == "history":
        if rest and not rest.startswith("-"):
            raise UsageError(f"{_USAGE['history']}: got {rest!r}.")
        values: dict[str, Any] = {}
        tokens = _split(rest, "history")
        stop = _Parser(HISTORY_OPTIONS, "%foundry history").parse(tokens, values, set())
        if stop < len(tokens):
            raise UsageError(f"Unexpected {tokens[stop]!r}: use `%foundry history -n N`.")
        return LineCommand("history", options={"n": values.get("n", 10)})
    if name == "connect":
        tokens = _split(rest, "connect")
        if not tokens:
            raise UsageError(f"{_USAGE['connect']} needs a connection name or an endpoint URL.")
        target, tokens = tokens[0], tokens[1:]
        if target.startswith("-"):
            raise UsageError("Put the connection NAME or URL first: `%foundry connect URL --model M`.")
        values = {}
        stop = _Parser(CONNECT_OPTIONS, "%foundry connect").parse(tokens, values, set())
        if stop < len(tokens):
            raise UsageError(f"Unexpected {tokens[stop]!r} after the connection; quote URLs that contain spaces.")
        return LineCommand("connect", [target], values)
    raise UsageError(f"Unknown line command {name!r}.")  # pragma: no cover - SUBCOMMANDS and this agree


def _line_prompt_with_options(text: str) -> PromptArgs:
    """`%foundry -m gpt-4o Tell me a joke`: options first, the prompt starts at the first word that
    is not an option or an option's value. `--chat` takes a name only as `--chat=NAME` here."""
    stream = io.StringIO(text)  # what shlex makes of a str; its offset marks where each token ends
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens: list[str] = []
    ends: list[int] = []  # character offset just after each token
    try:
        while True:
            tok = lexer.get_token()
            if tok is None or tok == lexer.eof:
                break
            tokens.append(tok)
            ends.append(stream.tell())
    except ValueError:
        pass  # an unbalanced quote in the prompt part: the options before it were read
    values: dict[str, Any] = {}
    given: set[str] = set()
    stop = _Parser(CELL_OPTIONS, "%foundry", greedy_optional=False).parse(tokens, values, given)
    start = ends[stop - 1] if stop > 0 else 0
    prompt = text[start:].strip()
    if not prompt:
        raise UsageError("No prompt after the options: `%foundry [options] PROMPT`, or use %%foundry for a cell.")
    if "df" in given:
        raise UsageError("DataFrame mode needs the cell form: %%foundry --df DF --out COL, template in the cell.")
    return _finish(values, given, prompt)


def options_help() -> str:
    """The option reference, generated from the table (used by `%foundry help`)."""
    rows = []
    for o in CELL_OPTIONS:
        left = ", ".join(o.flags) + (f" {o.metavar}" if o.metavar else "")
        rows.append(f"  {left:<34} {o.help}")
    return "\n".join(rows)
