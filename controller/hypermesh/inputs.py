"""What others send, parsed strictly: numbers within their wire range, JSON against a schema.

Every number a client puts in a path, a query or a body is parsed here (``whole_number``,
``U64``), and every JSON body or document (``parse_json``, ``check``) is checked against a JSON
Schema (Draft 2020-12) before anything reads it. What does not hold is a ``BadInput`` whose
message names the field first (``origin.seq: …``, ``links[0].hash: …``), so an API answers it as
a 4xx that says what is wrong and a command prints it.

The formats the schemas use are checked by exact, whole-string rules (Python's ``re.search``
lets ``$`` match before a final newline, so no format here relies on a pattern):

- ``node-id``: a node ID in its one canonical spelling (``hm1`` and 52 base32 letters);
- ``hex32``: 32 bytes as 64 lower-case hex digits;
- ``base64``: standard base64 in its canonical form (padding, zero trailing bits), so one
  value has one spelling.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import public_key_from_node_id

U64 = 2**64 - 1
"""The largest unsigned 64-bit integer: heights, sizes and lengths on the wire."""
MAX_DIGITS = len(str(U64))
"""Decimal digits of the largest number any query parameter may carry."""
MAX_MESSAGE = 200
"""Characters of the offending value quoted back in an error, at most."""

_HEX32 = re.compile(r"[0-9a-f]{64}")
_DIGITS = re.compile(r"[0-9]+")
FORMATS = FormatChecker(())


class BadInput(HyperMeshError):
    """Input that does not hold; the message starts with the field it is about."""

    status = 400


def _node_id(value: object) -> bool:
    if isinstance(value, str):
        public_key_from_node_id(value)
        if len(value) != 55:  # the pattern's ``$`` must not let a final newline through
            raise ValueError(f"malformed node ID {value!r}")
    return True


def _hex32(value: object) -> bool:
    return not isinstance(value, str) or _HEX32.fullmatch(value) is not None


def _base64(value: object) -> bool:
    return not isinstance(value, str) or canonical_base64(value) is not None


FORMATS.checks("node-id", raises=ValueError)(_node_id)
FORMATS.checks("hex32")(_hex32)
FORMATS.checks("base64")(_base64)


def canonical_base64(text: str) -> bytes | None:
    """The bytes ``text`` encodes when it is canonical standard base64, else None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == text else None


def _integer(_: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_Strict = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _integer),
)
"""Draft 2020-12, except that an integer is written as one (``1.0`` is a number, not an
integer: one value, one spelling)."""


def validator(schema: Mapping[str, Any]) -> Validator:
    """A validator for ``schema`` with the formats above enforced."""
    _Strict.check_schema(schema)
    return _Strict(schema, format_checker=FORMATS)


def path_text(path: Iterable[Any]) -> str:
    """``("links", 0, "seq")`` as ``links[0].seq``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"


def explain(error: ValidationError, root: str = "") -> str:
    """One schema error as ``FIELD: what is wrong``, naming the exact field."""
    path = list(error.absolute_path)
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "required" and isinstance(instance, dict):
        missing = next((k for k in value if k not in instance), "?")
        return f"{path_text([root, *path, missing] if root else [*path, missing])}: missing"
    if keyword == "additionalProperties" and isinstance(instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(k) for k in instance if k not in allowed)
        key = extra[0] if extra else "?"
        return f"{path_text([root, *path, key] if root else [*path, key])}: not a known field"
    where = path_text([root, *path] if root else path) or "the body"
    if keyword == "not" and value == {}:  # ``{"not": {}}``: the field may not be there at all
        return f"{where}: not allowed here"
    if keyword == "type":
        return f"{where}: must be {_article(value)}, not {_quoted(instance)}"
    if keyword in ("minimum", "maximum"):
        return f"{where}: {_quoted(instance)} is out of range ({keyword} {value})"
    if keyword == "format":
        return f"{where}: {_quoted(instance)} is not a valid {value}"
    if keyword in ("maxLength", "minLength", "maxItems", "minItems"):
        return f"{where}: {keyword} is {value}"
    if keyword in ("enum", "const"):
        choices = value if keyword == "enum" else [value]
        return f"{where}: {_quoted(instance)} is not one of {', '.join(map(repr, choices))}"
    message = error.message
    return f"{where}: {message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + '…'}"


def _article(value: Any) -> str:
    kinds = value if isinstance(value, list) else [value]
    return " or ".join(f"an {k}" if k[0] in "aeiou" else f"a {k}" for k in map(str, kinds))


def check(schema: Validator, data: Any, root: str = "") -> None:
    """``BadInput`` naming the field when ``data`` does not hold against ``schema``; ``root``
    is prefixed to every path (for a document inside another)."""
    try:
        error = best_match(schema.iter_errors(data))
    except RecursionError:
        raise BadInput(f"{root or 'the body'}: nested too deeply") from None
    if error is not None:
        raise BadInput(explain(error, root))


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A ``\\uD800`` to ``\\uDFFF`` escape: only a pair of them spells one character."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(body: bytes | str, what: str = "the body") -> Any:
    """``body`` decoded as strict JSON (RFC 8259, UTF-8): ``BadInput`` for what is not JSON,
    nests too deeply for Python's parser, spells ``NaN`` or ``Infinity``, or holds a lone
    surrogate escape (``"\\ud800"``: no Unicode character, so no string can carry it on)."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise BadInput(f"{what}: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{what} is not JSON: {str(exc)[:MAX_MESSAGE]}") from None
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if _SURROGATE.search(raw):  # rare: decide by the decoded value, pairs being fine
        where = _lone_surrogate(data, ())
        if where is not None:
            field = path_text(where) or what
            raise BadInput(f"{field}: holds a lone surrogate (\\ud800 to \\udfff)")
    return data


def _lone_surrogate(value: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The path of the first string (or key) in ``value`` that UTF-8 cannot carry, else None."""
    if isinstance(value, str):
        return None if value.isascii() or _encodes(value) else path
    if isinstance(value, list):
        items: Iterable[tuple[Any, Any]] = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and not _encodes(key):
            return (*path, key.encode("utf-8", "backslashreplace").decode())
        found = _lone_surrogate(item, (*path, key))
        if found is not None:
            return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json(body: bytes, schema: Validator, what: str = "the body") -> Any:
    """``body`` decoded as strict JSON (``loads``) and checked against ``schema``; ``BadInput``
    saying what is wrong (not JSON, nested too deeply, or the first field that does not hold)."""
    data = loads(body, what)
    check(schema, data)
    return data


def whole_number(
    values: Mapping[str, str],
    name: str,
    *,
    default: int | None = None,
    low: int = 0,
    high: int = U64,
) -> int:
    """Parameter ``name`` of ``values`` as a whole number from ``low`` to ``high``;
    ``default`` when absent and one is given; ``BadInput`` otherwise."""
    raw = values.get(name)
    if raw is None:
        if default is None:
            raise BadInput(f"{name}: missing (a whole number from {low} to {high})")
        return default
    return number_text(raw, name, low=low, high=high)


def number_text(raw: str, name: str, *, low: int = 0, high: int = U64) -> int:
    """``raw`` as a whole number from ``low`` to ``high``, in ASCII digits only
    (``str.isdigit`` takes other scripts' digits and superscripts); ``BadInput`` naming
    ``name`` otherwise."""
    if len(raw) > MAX_DIGITS or _DIGITS.fullmatch(raw) is None:
        raise BadInput(f"{name}: {_quoted(raw)} is not a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadInput(f"{name}: {value} is out of range ({low} to {high})")
    return value


def integer_schema(low: int = 0, high: int = U64) -> dict[str, Any]:
    """The schema of a JSON integer from ``low`` to ``high``."""
    return {"type": "integer", "minimum": low, "maximum": high}
