"""Parse RPC arguments given on the command line: ``key=value`` pairs and ``--args-json``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import BadInputError


def parse_value(text: str) -> Any:
    """A value as JSON (42, true, null, [1,2], {"a":1}, "s"), falling back to the plain string."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the decoder
        return text


def parse_key_values(pairs: Iterable[str]) -> dict[str, Any]:
    """``["a=1", "name=web01"]`` -> ``{"a": 1, "name": "web01"}``; BadInputError when malformed."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BadInputError(
                f"argument {pair!r} is not key=value",
                hint="write each argument as key=value (values are JSON or plain strings)",
            )
        if not key.isidentifier():
            raise BadInputError(
                f"argument name {key!r} is not a valid name",
                hint="argument names are Python identifiers, e.g. instance_id=42",
            )
        if key in args:
            raise BadInputError(f"argument {key!r} given twice")
        args[key] = parse_value(value)
    return args


def parse_args_json(text: str | None) -> dict[str, Any]:
    """The ``--args-json`` object; BadInputError unless it is a JSON object."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadInputError(
            f"--args-json is not valid JSON: {exc}", hint="give an object, e.g. '{\"a\": 1}'"
        ) from None
    except RecursionError:
        raise BadInputError("--args-json is nested too deeply to decode") from None
    if not isinstance(value, dict):
        raise BadInputError(
            f"--args-json must be a JSON object, not a {type(value).__name__}",
            hint="give an object, e.g. '{\"a\": 1}'",
        )
    for key in value:
        if not str(key).isidentifier():
            raise BadInputError(f"argument name {key!r} in --args-json is not a valid name")
    return value


def merge_args(pairs: Iterable[str], args_json: str | None) -> dict[str, Any]:
    """--args-json first, then key=value pairs on top (a key in both is an error)."""
    base = parse_args_json(args_json)
    extra = parse_key_values(pairs)
    both = sorted(set(base) & set(extra))
    if both:
        raise BadInputError(f"argument {both[0]!r} given both in --args-json and as key=value")
    base.update(extra)
    return base
