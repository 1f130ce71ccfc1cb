"""Fuzz the parsers of RPC arguments given on the command line: ``key=value`` and --args-json.

Whatever a user types, the only error is BadInputError (exit 2, a message): never a crash
that would read as an internal error. The envelope decoder is fuzzed by
tests/unit/test_wire_fuzz.py already.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from manager_cli.cli.arguments import merge_args, parse_args_json, parse_key_values
from manager_cli.errors import BadInputError

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
DEEP = "[" * 100_000  # beyond the JSON decoder's recursion limit


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@given(st.lists(st.text(max_size=40), max_size=6))
@example(["a=" + DEEP])
@example(["=", "a==", "a=1"])
def test_key_values_either_parse_or_raise_bad_input(pairs):
    try:
        args = parse_key_values(pairs)
    except BadInputError as exc:
        assert exc.exit_code == 2 and exc.message
        return
    assert len(args) == len(pairs)
    assert all(name.isidentifier() for name in args)


@given(st.dictionaries(NAMES, JSON_VALUES, max_size=6))
def test_json_values_come_back_as_given(args):
    assert parse_key_values([f"{name}={json.dumps(value)}" for name, value in args.items()]) == args


@given(NAMES, st.text(max_size=40))
@example("a", DEEP)
@example("a", "NaN")
def test_a_value_is_its_json_or_else_the_text_itself(name, text):
    value = parse_key_values([f"{name}={text}"])[name]
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        expected = text
    assert _same(value, expected)


@given(st.text(max_size=60))
@example(DEEP)
@example('{"a": 1, "a b": 2}')
@example("null")
def test_args_json_is_an_object_or_bad_input(text):
    try:
        args = parse_args_json(text)
    except BadInputError as exc:
        assert exc.exit_code == 2 and "--args-json" in exc.message
        return
    assert isinstance(args, dict)
    assert all(str(name).isidentifier() for name in args)


@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=6))
def test_args_json_objects_with_valid_names_come_back_as_given(obj):
    text = json.dumps(obj)
    if all(name.isidentifier() for name in obj):
        assert parse_args_json(text) == obj
    else:
        try:
            parse_args_json(text)
        except BadInputError as exc:
            assert "is not a valid name" in exc.message
        else:
            raise AssertionError(f"{text} was accepted")


@given(st.lists(st.text(max_size=20), max_size=4), st.none() | st.text(max_size=40))
def test_merge_args_only_raises_bad_input(pairs, args_json):
    try:
        args = merge_args(pairs, args_json)
    except BadInputError:
        return
    assert isinstance(args, dict)
