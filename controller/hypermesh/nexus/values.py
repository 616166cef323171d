"""Nexus values at compile time, the built-in functions, and the handler vocabulary.

Values are plain Python: ``int``, ``str``, ``bool``, ``list``, ``dict`` (a map keeps the order
its keys were written in), plus modules, templates and built-ins, which only live in scopes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hypermesh.nexus import ast

__all__ = [
    "BUILTINS",
    "EVENTS",
    "MAX_ITEMS",
    "OPERATIONS",
    "Builtin",
    "Event",
    "Module",
    "NexusTypeError",
    "Operation",
    "Template",
    "to_text",
    "type_name",
]

MAX_ITEMS = 1_000_000
"""No list, map, string or range may be longer than this (a runaway loop is a mistake)."""


class NexusTypeError(Exception):
    """A built-in refused its arguments; the compiler turns it into a positioned problem."""


@dataclass(frozen=True, slots=True)
class Module:
    """An imported module: the names it exports (its top-level ``let`` and ``def``)."""

    alias: str
    file: str
    exports: Mapping[str, Any]
    broken: bool = False
    """It failed to load (reported once, at the import): uses of it report nothing more."""


@dataclass(frozen=True, slots=True)
class Template:
    """``def name(params) { declarations }``: called as a statement, it declares resources."""

    name: str
    params: tuple[str, ...]
    body: tuple[ast.Stmt, ...]
    scope: Any = field(repr=False)
    file: str = ""


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    arity: tuple[int, int]
    doc: str
    function: Callable[..., Any] = field(repr=False)


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, Module):
        return "module"
    if isinstance(value, Template):
        return "template"
    if isinstance(value, Builtin):
        return "function"
    return type(value).__name__


def to_text(value: Any) -> str:
    """How a value reads inside a string: integers in decimal, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    raise NexusTypeError(
        f"cannot put a {type_name(value)} into a string"
        + (' (use join(list, ", "))' if isinstance(value, list) else "")
    )


def _want(value: Any, kind: type | tuple[type, ...], what: str, name: str) -> None:
    if isinstance(value, bool) and kind is not bool:
        raise NexusTypeError(f"{name}() wants {what}, got boolean")
    if not isinstance(value, kind):
        raise NexusTypeError(f"{name}() wants {what}, got {type_name(value)}")


def _range(*args: Any) -> list[int]:
    for a in args:
        _want(a, int, "integers", "range")
    start, stop, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
    if step == 0:
        raise NexusTypeError("range() step must not be 0")
    if len(range(start, stop, step)) > MAX_ITEMS:
        raise NexusTypeError(f"range() of more than {MAX_ITEMS} numbers")
    return list(range(start, stop, step))


def _len(value: Any) -> int:
    _want(value, (str, list, dict), "a string, list or map", "len")
    return len(value)


def _lower(value: Any) -> str:
    _want(value, str, "a string", "lower")
    return str(value).lower()


def _upper(value: Any) -> str:
    _want(value, str, "a string", "upper")
    return str(value).upper()


def _str(value: Any) -> str:
    return to_text(value)


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    _want(value, str, "a string of digits", "int")
    if not re.fullmatch(r"-?[0-9]+", value):
        raise NexusTypeError(f"int() of {value!r}: not a whole number")
    return int(value)


def _join(items: Any, separator: Any = "") -> str:
    _want(items, list, "a list", "join")
    _want(separator, str, "a string separator", "join")
    return str(separator).join(to_text(item) for item in items)


def _split(text: Any, separator: Any) -> list[str]:
    _want(text, str, "a string", "split")
    _want(separator, str, "a string separator", "split")
    if not separator:
        raise NexusTypeError("split() separator must not be empty")
    return str(text).split(separator)


def _replace(text: Any, old: Any, new: Any) -> str:
    for value in (text, old, new):
        _want(value, str, "strings", "replace")
    return str(text).replace(old, new)


def _keys(value: Any) -> list[str]:
    _want(value, dict, "a map", "keys")
    return list(value)


def _format(template: Any, *args: Any) -> str:
    _want(template, str, "a string template", "format")
    out: list[str] = []
    rest = list(args)
    text = str(template)
    i = 0
    while i < len(text):
        if text.startswith("{{", i) or text.startswith("}}", i):
            out.append(text[i])
            i += 2
        elif text.startswith("{}", i):
            if not rest:
                raise NexusTypeError("format() has more {} than arguments")
            out.append(to_text(rest.pop(0)))
            i += 2
        else:
            out.append(text[i])
            i += 1
    if rest:
        raise NexusTypeError(f"format() has {len(rest)} argument(s) more than {{}}")
    return "".join(out)


BUILTINS: Mapping[str, Builtin] = MappingProxyType(
    {
        b.name: b
        for b in (
            Builtin("range", (1, 3), "range(n), range(a, b), range(a, b, step): integers", _range),
            Builtin("len", (1, 1), "len(x): characters of a string, items of a list or map", _len),
            Builtin("lower", (1, 1), "lower(s): s in lowercase", _lower),
            Builtin("upper", (1, 1), "upper(s): s in uppercase", _upper),
            Builtin("str", (1, 1), "str(x): an integer or boolean as text", _str),
            Builtin("int", (1, 1), "int(s): a string of digits as an integer", _int),
            Builtin("join", (1, 2), 'join(list, sep): items as text, joined by sep ("")', _join),
            Builtin("split", (2, 2), "split(s, sep): the parts of s between each sep", _split),
            Builtin("replace", (3, 3), "replace(s, old, new): s with every old replaced", _replace),
            Builtin("keys", (1, 1), "keys(map): its keys, in the order they were written", _keys),
            Builtin(
                "format", (1, 64), 'format("{}-{}", a, b): each {} replaced by an argument', _format
            ),
        )
    }
)
"""The built-in functions: pure, usable at compile time and in handlers."""


# -- handlers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """What ``on NAME`` listens to: its clauses (name → (what the value names, required)) and
    the fields of the value bound by ``as``."""

    name: str
    doc: str
    clauses: Mapping[str, tuple[str, bool]]
    fields: tuple[str, ...]


EVENTS: Mapping[str, Event] = MappingProxyType(
    {
        e.name: e
        for e in (
            Event(
                "message",
                "a signed, end-to-end encrypted message delivered to node `to` "
                "(optionally only those `from` one node or peer)",
                {"to": ("node", True), "from": ("member", False)},
                ("id", "from", "to", "body", "time"),
            ),
            Event(
                "block",
                "a block appended to the chain of node `of`",
                {"of": ("node", True)},
                ("author", "height", "hash", "time", "data", "links"),
            ),
            Event(
                "schedule",
                "a timer: every `every` (a duration such as 30s or 5m) on node `at`",
                {"every": ("duration", True), "at": ("node", True)},
                ("time",),
            ),
            Event(
                "request",
                "an HTTP/3 request to name `to` (under a declared TLD), optionally only one "
                "`path` and `method`",
                {"to": ("name", True), "path": ("path", False), "method": ("method", False)},
                ("method", "path", "name", "headers", "body", "from"),
            ),
        )
    }
)


@dataclass(frozen=True, slots=True)
class Operation:
    """An SDK operation a handler may call."""

    name: str
    arity: tuple[int, int]
    doc: str
    events: frozenset[str] = frozenset()
    """Only in handlers of these events (empty: any)."""
    returns: bool = False


OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        o.name: o
        for o in (
            Operation("log", (1, 1), "log(text): write a line to the node's log"),
            Operation("send", (2, 2), "send(to, body): a signed, encrypted message to a node"),
            Operation(
                "reply",
                (1, 2),
                "reply(body) or reply(status, body): answer the HTTP/3 request",
                frozenset({"request"}),
            ),
            Operation("chain.append", (1, 1), "chain.append(data): a block on this node's chain"),
            Operation(
                "dns.query",
                (1, 2),
                'dns.query(name, type = "A"): the answer\'s values, as a list',
                returns=True,
            ),
        )
    }
)
"""The SDK operations handlers call (the SDK that runs them comes with ``nexus run``)."""

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DURATION = re.compile(r"([0-9]+(ms|s|m|h|d))+")
"""A duration (``1h30m``), checked with ``fullmatch``."""
