"""Argument parsing (shell quoting, typed result, readable errors) and named conversations."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from foundry_magics.notebook.conversations import Conversations
from foundry_magics.notebook.magic_args import LineCommand, PromptArgs, parse_cell, parse_line


def test_cell_line_parses_into_a_typed_object():
    a = parse_cell('-c prod -m gpt-4o -s "You are terse" --api Responses -t 0.7 --max-tokens 99 -f md -o out '
                   "--chat trip --new --no-stream --no-interpolate --schema S --dry-run", "\n\n  body {x}  \n\n")
    assert isinstance(a, PromptArgs)
    assert (a.connection, a.model, a.system, a.api, a.temperature, a.max_tokens) == (
        "prod", "gpt-4o", "You are terse", "responses", 0.7, 99)
    assert (a.format, a.out, a.chat, a.new, a.stream, a.interpolate, a.schema, a.dry_run) == (
        "markdown", "out", "trip", True, False, False, "S", True)
    assert a.prompt == "  body {x}"  # blank lines around dropped, first-line indent kept


def test_defaults_and_equals_forms():
    a = parse_cell("", "hi")
    assert (a.connection, a.format, a.stream, a.chat, a.interpolate) == (None, None, None, None, True)
    b = parse_cell("--chat --model=x --temperature=1", "hi")
    assert (b.chat, b.model, b.temperature) == ("default", "x", 1.0)
    assert parse_cell("--new", "hi").chat == "default"
    assert parse_cell("--schema '{\"a\": \"string\"}'", "hi").schema == '{"a": "string"}'


def test_dataframe_mode_options():
    a = parse_cell("--df frame --out result col --concurrency 8 --rpm 600 --tpm 100000".replace(" col", ""), "{text}")
    assert (a.df, a.out, a.concurrency, a.rpm, a.tpm) == ("frame", "result", 8, 600.0, 100000.0)
    assert parse_cell("--df frame --out 'My Column'", "{text}").out == "My Column"


@pytest.mark.parametrize("line, message", [
    ("--formt json", "Did you mean --format?"),
    ("-x", "Unknown option -x"),
    ("-t", "needs a value"),
    ("-t warm", "-t needs a number, got 'warm'"),
    ("--max-tokens 1.5", "whole number"),
    ("-f yaml", "must be one of markdown, text, code, json, html"),
    ("--api completions2", "must be one of chat, responses"),
    ("-o 2x", "Python variable name"),
    ("--rpm 10", "only applies in DataFrame mode"),
    ("--df d", "needs --out COL"),
    ("--df d --out c --chat", "cannot be used with --df"),
    ("-s 'open", "Check the quotes"),
    ("hello", "The prompt goes in the cell body"),
    ("-m a -m b", "given twice"),
    ("--dry-run=yes", "takes no value"),
])
def test_bad_options_are_usage_errors_with_one_readable_line(line, message):
    with pytest.raises(UsageError) as info:
        parse_cell(line, "x")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("line, option, value", [
    ("-t 2.5", "temperature", 2.5), ("--max-tokens 0", "max_tokens", 0), ("--concurrency 0", "concurrency", 0),
    ("--rpm -5", "rpm", -5.0),
])
def test_out_of_range_values_are_the_same_error_as_in_python(line, option, value):
    from foundry_magics.errors import ConfigurationError
    from foundry_magics.ops.options import check_value

    with pytest.raises(ConfigurationError) as cell:
        parse_cell(line, "x")
    with pytest.raises(ConfigurationError) as python:
        check_value(option, value)
    assert str(cell.value) == str(python.value)


def test_line_subcommands_and_prompts():
    assert parse_line("") == LineCommand("help")
    assert parse_line("help") == LineCommand("help")
    assert parse_line("connections") == LineCommand("connections")
    assert parse_line("use gpt-4o") == LineCommand("use", ["gpt-4o"])
    assert parse_line("chat") == LineCommand("chat", ["show", "default"])
    assert parse_line("chat reset trip") == LineCommand("chat", ["reset", "trip"])
    assert parse_line("emulator stop") == LineCommand("emulator", ["stop"])
    assert parse_line("history -n 3") == LineCommand("history", options={"n": 3})
    cmd = parse_line("connect https://r.openai.azure.com/openai/v1 --model m --auth key --key-env K "
                     "--key-header Authorization --api responses --api-version preview --save prod")
    assert cmd.name == "connect" and cmd.args == ["https://r.openai.azure.com/openai/v1"]
    assert cmd.options == {"model": "m", "auth": "key", "api_key_env": "K", "key_header": "Authorization",
                           "api": "responses", "api_version": "preview", "save": "prod"}
    assert parse_line("Help") == LineCommand("help")  # the command word in any case
    # a command word followed by what does not fit it is refused (never sent), saying how to send it
    for text in ("help me write a poem", "use a haiku to explain", "history of Rome", "models are fun",
                 "chat with me", "emulator restart", "emulator start --latency 0.5", "batches extra",
                 "usage please", "connect a b"):
        with pytest.raises(UsageError, match="Nothing was sent") as info:
            parse_line(text)
        assert info.value.hint.startswith(f"To send the line as a prompt: `%foundry -- {text}`")
    # `--` always makes a prompt
    for text in ("help me write a poem", "histroy", "emulator restart", "-m is an option"):
        p = parse_line(f"-- {text}")
        assert isinstance(p, PromptArgs) and p.prompt == text
    p = parse_line("What's {x}? # not a comment")
    assert isinstance(p, PromptArgs) and p.prompt == "What's {x}? # not a comment"


def test_one_line_prompt_with_leading_options():
    p = parse_line("-m gpt-4o -t 0 --no-stream Tell me a joke, don't stop")
    assert (p.model, p.temperature, p.stream, p.prompt) == ("gpt-4o", 0.0, False, "Tell me a joke, don't stop")
    p = parse_line("--chat Hello there")  # bare --chat takes no name in the line form
    assert (p.chat, p.prompt) == ("default", "Hello there")
    p = parse_line("--chat=trip -- -1 is a number")
    assert (p.chat, p.prompt) == ("trip", "-1 is a number")
    with pytest.raises(UsageError, match="No prompt"):
        parse_line("-m gpt-4o")
    with pytest.raises(UsageError, match="cell form"):
        parse_line("--df d --out c text")
    with pytest.raises(UsageError, match="needs a model name"):
        parse_line("use")
    with pytest.raises(UsageError, match="connection name or an endpoint URL"):
        parse_line("connect")


def test_conversations_chat_and_responses_kwargs():
    c = Conversations()
    assert c.chat_kwargs("a", None) == {"messages": [], "system": None}
    c.record("a", "hi", "hello", system="sys", response_id="resp_1", connection="emu")
    assert c.chat_kwargs("a", None) == {"messages": [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": "hello"}], "system": "sys"}
    assert c.responses_kwargs("a", "next", None, "emu") == {"system": "sys", "input": "next",
                                                           "previous_response_id": "resp_1"}
    other = c.responses_kwargs("a", "next", None, "elsewhere")  # another connection: resend the transcript
    assert other["input"][-1] == {"role": "user", "content": "next"} and "previous_response_id" not in other
    assert c.chat_kwargs("a", None, fresh=True)["messages"] == []  # --new, before the reply
    assert c.get("a").turns == 1 and "hello" in c.get("a").transcript()
    c.record("a", "again", "ok", fresh=True)
    assert c.get("a").turns == 1 and c.get("a").system is None
    assert c.names() == ["a"] and c.reset("a") and not c.reset("a")


def test_format_choices_agree_between_parser_and_config_trait():
    from foundry_magics.notebook import magics
    from foundry_magics.notebook.magic_args import FORMATS

    assert magics.FORMATS == FORMATS


def test_reply_helpers_json_and_code():
    from foundry_magics.notebook.prompting import extract_code, interpret_json

    assert interpret_json('{"a": 1}') == ({"a": 1}, None, [])
    assert interpret_json('Here:\n```json\n{"a": 1}\n```')[0] == {"a": 1}
    parsed, err, problems = interpret_json("not json")
    assert parsed is None and err
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert interpret_json('{"a": 1}', schema)[2] == ["$.a: expected string, got int"]
    assert extract_code("Sure:\n```python\ndef f():\n    return {}\n```\nDone.") == "def f():\n    return {}"
    assert extract_code("x = 1") == "x = 1"


def test_line_command_refusals_say_what_fits():
    with pytest.raises(UsageError, match=r"emulator \[start\|stop\|status\]`: got 'restart'. Did you mean "
                                         r"`%foundry emulator start`\?"):
        parse_line("emulator restart")
    with pytest.raises(UsageError, match=r"emulator start` takes no options.*fm.emulator.start\(latency=0.5\)"):
        parse_line("emulator start --latency 0.5")
    with pytest.raises(UsageError, match="`%foundry batches` takes nothing after it"):
        parse_line("batches extra")
    with pytest.raises(UsageError, match="takes one model name"):
        parse_line("use gpt-4o please")


@pytest.mark.parametrize("line, meant", [
    ("histroy", "history"), ("conect emulator", "connect"), ("conect", "connect"), ("hisory -n 3", "history"),
    ("emulater start", "emulator"), ("emualtor", "emulator"), ("modles", "models"), ("usgae", "usage"),
    ("conections", "connections"), ("agnets", "agents"), ("batchs", "batches"), ("pikcer", "picker"),
    ("conect https://x.openai.azure.com/openai/v1 --model m", "connect"),
    ("conect emulator --latncy 2", "connect"),  # an option in the line: plainly a command
    ("hlep", "help"), ("chta", "chat"), ("caht reset trip", "chat"), ("ues gpt-4o", "use"),
    ("us gpt-4o", "use"), ("us", "use"), ("HISTROY", "history"),
])
def test_a_misspelt_command_is_refused_with_did_you_mean(line, meant):
    with pytest.raises(UsageError, match=f"Did you mean `%foundry {meant}`") as info:
        parse_line(line)
    assert "Nothing was sent" in str(info.value)
    assert info.value.hint.startswith(f"To send the line as a prompt: `%foundry -- {line}`")


@pytest.mark.parametrize("line", [
    "hello there", "hello", "explain X", "explain the history of Rome", "what is X", "What is a notebook?",
    "the cat", "us and them", "Correct the grammar: me go home", "Model the data as a graph",
    "histroy of Rome",  # a slip of a command followed by prose: prose
    "Tell me a joke", "helpful tips for notebooks", "chatting is fun", "user stories for a login page",
    "summarize: the meeting", "connection pooling in Python", "agentic workflows explained",
])
def test_a_prompt_whose_first_word_is_far_from_a_command_is_sent(line):
    p = parse_line(line)
    assert isinstance(p, PromptArgs) and p.prompt == line


def test_the_edit_boundary_for_short_and_long_commands():
    from foundry_magics.notebook.magic_args import SHORT_COMMAND, edits, near_commands

    assert edits("histroy", "history") == 1 and edits("conect", "connect") == 1 and edits("hello", "help") == 2
    assert edits("", "use") == 3 and edits("abc", "abc") == 0 and edits("ca", "abc") == 3
    # commands of SHORT_COMMAND letters or fewer (use, chat, help): one edit; everyday words two
    # edits away (`the`, `she` from use; `hello`, `her` from help; `hat` is one from chat) are not slips
    assert SHORT_COMMAND == 4
    assert near_commands("us") == ["use"] and near_commands("ues") == ["use"]
    assert near_commands("the") == [] and near_commands("she") == [] and near_commands("hello") == []
    assert near_commands("her") == [] and near_commands("hat") == ["chat"]
    # longer commands: two edits
    assert near_commands("hstroy") == ["history"] and near_commands("emultr") == ["emulator"]
    assert near_commands("histories") == [] and near_commands("mystery") == []
    assert near_commands("history") == []  # a command itself is not a slip
    # a one-word line near a short command is refused; followed by prose it is sent
    with pytest.raises(UsageError, match="Did you mean `%foundry use`"):
        parse_line("us")
    assert parse_line("us and them").prompt == "us and them"
    assert parse_line("the").prompt == "the"
