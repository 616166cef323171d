"""The registry API's request bodies: each parsed against its JSON Schema before use.

A body is refused, with a 4xx naming the field, when it is larger than ``MAX_BODY``, nests
deeper than ``MAX_DEPTH``, is not JSON, or does not match its schema (a missing or unknown
field, a wrong type, a number out of its range, too many items). The schemas check shape and
ranges; what a name or a record may be is ``hypermesh.zonedata``'s rule, applied after. Pure.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from jsonschema.protocols import Validator

from hypermesh.inputs import BadInput, check, loads, validator
from hypermesh.registry.errors import RegistryError
from hypermesh.zonedata import MAX_TTL, MAX_VALUE_LENGTH, MAX_VALUES

__all__ = ["MAX_BATCH", "MAX_BODY", "MAX_DEPTH", "SCHEMAS", "TooLarge", "parse_body"]

MAX_BODY = 1024 * 1024
"""Bytes of one request body."""
MAX_DEPTH = 8
"""Nesting of arrays and objects in one body (the deepest the API uses is 4)."""
MAX_BATCH = 1000
"""Changes in one record-set batch."""
MAX_TEXT = 500
"""Characters of a free-text field (a reason)."""


class TooLarge(RegistryError):
    status = 413
    code = "too_large"


def _string(most: int, least: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": least, "maxLength": most}


_NAME = _string(253)
_LABEL = {**_string(63), "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}
"""A DNS-1123 label: a member's name, a host, a tag."""
_NODE_ID = _string(64)
_REASON = _string(MAX_TEXT, 0)
_CHANGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "type"],
    "properties": {
        "name": _NAME,
        "type": _string(16),
        "changetype": {"enum": ["REPLACE", "DELETE"]},
        "ttl": {"type": "integer", "minimum": 0, "maximum": MAX_TTL},
        "values": {
            "type": "array",
            "maxItems": MAX_VALUES,
            "items": _string(MAX_VALUE_LENGTH),
        },
    },
    "if": {"required": ["changetype"], "properties": {"changetype": {"const": "DELETE"}}},
    "then": {"not": {"anyOf": [{"required": ["values"]}, {"required": ["ttl"]}]}},
    "else": {"required": ["values"], "properties": {"values": {"minItems": 1}}},
}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "register": _object(
        ["tld", "network"],
        tld=_NAME,
        network=_NAME,
        dnssec={"type": "boolean"},
        ttl={"type": "integer", "minimum": 1, "maximum": MAX_TTL},
    ),
    "rrsets": _object(
        ["tld", "rrsets"],
        tld=_NAME,
        rrsets={"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": _CHANGE},
    ),
    "tld": _object(["tld"], tld=_NAME),
    "transfer": _object(["tld", "newOwner"], tld=_NAME, newOwner=_NODE_ID),
    "decision": _object(["tld"], tld=_NAME, reason=_REASON),
    "name": _object(["name"], name=_NAME),
    "policy": _object(
        [],
        approval={"enum": ["automatic", "manual"]},
        termDays={"type": "integer", "minimum": 1, "maximum": 36500},
        maxTldsPerOwner={"type": "integer", "minimum": 0, "maximum": 1_000_000},
    ),
    "revoke": _object(
        ["nodeId"],
        nodeId=_NODE_ID,
        reason=_string(256, 0),
        replacedBy={"anyOf": [_NODE_ID, {"type": "null"}]},
    ),
    "token_create": _object(
        ["ttl"],
        ttl={"type": "integer", "minimum": 60, "maximum": 31_536_000},
        reusable={"type": "boolean"},
        ephemeral={"type": "boolean"},
        tags={"type": "array", "maxItems": 16, "items": _LABEL},
        description=_string(200, 0),
    ),
    "empty": _object([]),
    "token_revoke": _object(["id"], id={"type": "string", "pattern": "^[0-9a-f]{12}$"}),
    "join": _object(
        ["token", "name"],
        token=_string(128),
        name=_LABEL,
        host={"anyOf": [_LABEL, {"type": "null"}]},
    ),
    "node_record": _object(
        ["document", "signature"], document=_string(2048), signature=_string(128)
    ),
}
"""The schema of each kind of body (draft 2020-12), by name."""

_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
"""A string (skipped whole) or a bracket: enough to measure nesting without parsing."""


def depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw`` (0 for a scalar)."""
    deepest = level = 0
    for token in _STRUCTURE.finditer(raw):
        mark = token[0][:1]
        if mark in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        elif mark in (b"]", b"}"):
            level -= 1
    return deepest


@cache
def _validator(kind: str) -> Validator:
    return validator(SCHEMAS[kind])


def parse_body(kind: str, raw: bytes) -> dict[str, Any]:
    """The body ``raw`` parsed and checked against ``SCHEMAS[kind]``; ``RegistryError``
    (``TooLarge`` past ``MAX_BODY``) saying what is wrong and where."""
    if len(raw) > MAX_BODY:
        raise TooLarge(f"the body has {len(raw)} bytes, more than the {MAX_BODY} allowed")
    if depth(raw) > MAX_DEPTH:
        raise RegistryError(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        data = loads(raw or b"{}")
        check(_validator(kind), data)
    except BadInput as exc:
        raise RegistryError(str(exc)) from None
    assert isinstance(data, dict)
    return data
