"""Interpolation: once, by us; known names only; code with braces unchanged."""

from __future__ import annotations

import string

from hypothesis import given, settings, strategies as st

from foundry_magics.notebook.interpolate import interpolate, placeholders


class Obj:
    shape = (3, 2)
    name = "frame"

    @property
    def broken(self):
        raise RuntimeError("boom")


NS = {"x": 42, "items": ["first", "second"], "cfg": {"key": "value"}, "df": Obj(), "price": 3.14159, "s": "hi"}


def test_known_names_attributes_and_indexes():
    assert interpolate("{x}", NS) == "42"
    assert interpolate("{df.shape}", NS) == "(3, 2)"
    assert interpolate("{items[0]} {items[-1]}", NS) == "first second"
    assert interpolate("{cfg['key']} {cfg[\"key\"]}", NS) == "value value"
    assert interpolate("{price:.2f} {s!r}", NS) == "3.14 'hi'"


def test_double_braces_are_literal():
    assert interpolate("{{x}}", NS) == "{x}"
    assert interpolate("{x} and {{x}}", NS) == "42 and {x}"
    assert interpolate("{{ not a name }}", NS) == "{ not a name }"


def test_unknown_and_failing_lookups_stay_as_written():
    for text in ["{nope}", "{x.nope}", "{items[9]}", "{cfg['zz']}", "{df.broken}", "{x:int}", "{df.__class__}",
                 "{ x }", "{}", "{0}", "{x!z}"]:
        assert interpolate(text, NS) == text, text


def test_code_with_braces_is_unchanged():
    code = (
        'def f(d):\n    return {"a": {"b": d}}\n\n'
        "const g = () => { return {a: 1}; };\n"
        "s = f\"{value:>10}\"  # value unknown\n"
        "x = {k: v for k, v in pairs}\n"
        "printf(\"%d}}\", n); }}\n"
        "{{\n}}\n"
    )
    assert interpolate(code, {}) == code
    assert interpolate(code, {"pairs": [1], "d": 2}) == code  # names that only appear in non-placeholders


def test_placeholders_lists_what_would_be_filled():
    assert placeholders("{x} {nope} {items[0]} {{x}}", NS) == ["x", "items[0]"]


_code_chars = string.ascii_letters + string.digits + " \n\t{}[]().,:;'\"!=_-+*/#$%"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_code_chars, max_size=80))
def test_empty_namespace_changes_only_double_brace_escapes(text):
    out = interpolate(text, {})
    if "{{" not in text:
        assert out == text
    else:
        assert len(out) <= len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80).filter(lambda t: "{" not in t))
def test_text_without_braces_is_unchanged(text):
    assert interpolate(text, NS) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.ascii_letters + " .,!?\n", max_size=40), st.integers())
def test_value_is_substituted_verbatim(prefix, value):
    assert interpolate(prefix + "{v}" + prefix, {"v": value}) == f"{prefix}{value}{prefix}"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=_code_chars, max_size=40))
def test_substituted_values_are_not_interpolated_again(value):
    # Once, not twice: braces inside a value reach the model as they are.
    assert interpolate("<{v}>", {"v": value, "x": 1}) == f"<{value}>"
