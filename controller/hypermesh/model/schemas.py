"""The JSON Schemas of the resource kinds: the single source of truth for every manifest field.

One draft 2020-12 schema per kind lives in the top-level ``schemas/`` folder and ships inside the
package as ``hypermesh/schemas/*.json``. This module reads them (package data only, no other I/O),
hands out cached validators, names the kinds the way kubectl does, and turns a schema into the
structural form a Kubernetes CustomResourceDefinition accepts.

Patterns mean what JSON Schema says (ECMA-262): they match whole values, ``$`` being the end of
the text, in jsonschema-rs, in jsonschema (``SchemaValidator``) and in code (``ecma_regex``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.protocols import Validator

from hypermesh.transport.address import (
    HOST_PORT_PATTERN,
    HOSTNAME_PATTERN,
    IPV4_PATTERN,
    IPV6_PATTERN,
    PORT_PATTERN,
)

__all__ = [
    "API_GROUP",
    "DURATION_PATTERN",
    "HOSTNAME_PATTERN",
    "HOST_PORT_FIELDS",
    "HOST_PORT_PATTERN",
    "IPV4_PATTERN",
    "IPV6_PATTERN",
    "KINDS",
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "NODE_ID_PATTERN",
    "PLURALS",
    "PORT_PATTERN",
    "SCHEMA_FILES",
    "SHORT_NAMES",
    "SINGULARS",
    "SchemaValidator",
    "ecma_regex",
    "fast_validator_for",
    "kind_from_alias",
    "load_schema",
    "structural",
    "validator_for",
]

API_GROUP = "hypermesh.online"
"""The API group of every kind (``apiVersion`` is ``hypermesh.online/v1alpha1``)."""

KINDS: tuple[str, ...] = ("Network", "Node", "Peer", "TLD", "Record", "InterfacePolicy")
"""Every kind, in dependency order: a kind may only refer to kinds before it."""

SCHEMA_FILES: Mapping[str, str] = MappingProxyType({kind: f"{kind.lower()}.json" for kind in KINDS})
"""Kind → file name of its schema under ``hypermesh/schemas``."""

SINGULARS: Mapping[str, str] = MappingProxyType({kind: kind.lower() for kind in KINDS})
"""Kind → singular lowercase name (``kubectl get node``)."""

PLURALS: Mapping[str, str] = MappingProxyType(
    {
        "Network": "networks",
        "Node": "nodes",
        "Peer": "peers",
        "TLD": "tlds",
        "Record": "records",
        "InterfacePolicy": "interfacepolicies",
    }
)
"""Kind → plural lowercase name (``kubectl get nodes``), also the CRD's ``spec.names.plural``."""

SHORT_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Network": ("net",),
        "Node": ("no",),
        "Peer": ("peer",),
        "TLD": ("tld",),
        "Record": ("rec",),
        "InterfacePolicy": ("ip", "policy"),
    }
)
"""Kind → short names ``hmctl`` accepts (``hmctl get no``)."""

# The patterns the schemas use (kept equal to them by tests/model/test_schemas.py). Every one is
# written in the subset of regular expressions that means the same in ECMA-262 (jsonschema-rs,
# editors), RE2 (the Kubernetes API server) and Python (``ecma_regex``): literal characters,
# classes, groups, alternation, counted repetition, ``^`` and ``$`` as the ends of the text.

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain: every ``metadata.name`` and every field naming another resource."""

LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1123 label: ``metadata.namespace`` and tags."""

NODE_ID_PATTERN = r"^hm1[a-z2-7]{52}$"
"""A node ID: ``hm1`` and the lowercase unpadded base32 of the Ed25519 public key."""

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"
"""A duration such as ``90s`` or ``2h30m`` (units ms, s, m, h, d)."""


HOST_PORT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Network": ("spec.registry.endpoint", "spec.federation[].registry.endpoint"),
        "Node": (
            "spec.listen",
            "spec.advertise[]",
            "spec.web.listen",
            "spec.resolver.listen",
            "spec.resolver.upstreams[]",
            "spec.tls.listen",
            "spec.dns.listen",
        ),
        "Peer": ("spec.address",),
    }
)
"""Kind → its ``host:port`` fields (``a[]`` is each item of list ``a``); each has
``HOST_PORT_PATTERN`` in its schema, and no other field has."""


_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        alias: kind
        for kind in KINDS
        for alias in (kind.lower(), SINGULARS[kind], PLURALS[kind], *SHORT_NAMES[kind])
    }
)
_GROUP_SUFFIX = "." + API_GROUP


def kind_from_alias(text: str) -> str | None:
    """The kind ``text`` names, kubectl style, or None.

    Accepts the kind (``Node``), its singular and plural in any case (``node``, ``NODES``), a
    short name (``no``), and any of those qualified by the group (``nodes.hypermesh.online``).
    """
    word = text.strip().lower()
    word = word.removesuffix(_GROUP_SUFFIX)
    return _ALIASES.get(word)


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind``, read once from the package. Shared: do not mutate it."""
    try:
        file = SCHEMA_FILES[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}") from None
    text = resources.files("hypermesh").joinpath("schemas", file).read_text(encoding="utf-8")
    schema = json.loads(text)
    if not isinstance(schema, dict):
        raise TypeError(f"schema {file} is not a JSON object")
    return schema


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled for Python with the meaning JSON Schema gives it (ECMA-262): ``$``
    is the end of the text, where Python's ``$`` also matches before a final newline (so that
    ``^[a-z]+$`` would take ``"abc\\n"``). The schemas' patterns keep to constructs that mean the
    same in both otherwise (tests/model/test_schemas.py checks)."""
    out: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out))


def _pattern(
    validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """The ``pattern`` keyword with ECMA-262's meaning (``ecma_regex``)."""
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})
"""Draft 2020-12 with ``pattern`` as ECMA-262 means it: the same answers as jsonschema-rs."""


@cache
def validator_for(kind: str) -> Validator:
    """A cached draft 2020-12 validator for ``kind`` (formats are not asserted; patterns are
    matched as ECMA-262 matches them, ``ecma_regex``)."""
    return SchemaValidator(load_schema(kind), format_checker=None)


@cache
def fast_validator_for(kind: str) -> Any:
    """A compiled validator (jsonschema-rs) for ``kind``: answers "valid or not" about ten times
    faster than ``validator_for``, which is still used to explain what is wrong."""
    return jsonschema_rs.Draft202012Validator(load_schema(kind), validate_formats=False)


_DROPPED = frozenset(
    {"$schema", "$id", "$defs", "definitions", "$comment", "examples", "propertyNames"}
)
"""Keywords a CRD cannot hold; ``propertyNames`` becomes a CEL rule (``crds.key_rules``)."""
_RESOURCE_META = ("apiVersion", "kind", "metadata")
_LITERALS = frozenset({"default", "examples", "enum", "const"})
"""Keywords whose values are instances, not schemas: never rewritten."""


def structural(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` ready to be a CRD's ``openAPIV3Schema`` (a structural schema).

    Local ``$ref`` s are inlined; ``$schema``, ``$id``, ``$defs`` and ``examples`` are removed,
    and ``propertyNames`` too (``crds.key_rules`` says it as a CEL rule instead).
    So that the API server accepts the result, it also turns what Kubernetes forbids into what it
    means there: ``const`` becomes a one-value ``enum``; ``uniqueItems`` on a list of scalars
    becomes ``x-kubernetes-list-type: set``; ``additionalProperties: false`` is dropped (the API
    server prunes unknown fields); the root ``metadata`` shrinks to ``{type: object}`` (Kubernetes
    checks names itself); ``status`` keeps unknown fields; and only ``spec`` stays required at
    the root (the API server fills in ``apiVersion``, ``kind`` and ``metadata``).
    """
    root = copy.deepcopy(dict(schema))
    inlined = _inline(root, root, ())
    out: dict[str, Any] = _kube(inlined)
    properties = out.get("properties", {})
    if "metadata" in properties:
        properties["metadata"] = {"type": "object"}
    if "status" in properties:
        properties["status"]["x-kubernetes-preserve-unknown-fields"] = True
    if "required" in out:
        out["required"] = [name for name in out["required"] if name not in _RESOURCE_META]
        if not out["required"]:
            del out["required"]
    return out


def _inline(node: Any, root: Mapping[str, Any], seen: tuple[str, ...]) -> Any:
    """``node`` with every local ``$ref`` replaced by (a copy of) what it points at."""
    if isinstance(node, list):
        return [_inline(item, root, seen) for item in node]
    if not isinstance(node, dict):
        return node
    body = {
        key: value if key in _LITERALS else _inline(value, root, seen)
        for key, value in node.items()
        if key != "$ref"
    }
    if "$ref" not in node:
        return body
    ref = node["$ref"]
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise ValueError(f"only local references can be inlined, not {ref!r}")
    if ref in seen:
        raise ValueError(f"recursive reference {ref!r} cannot be inlined")
    target = _inline(copy.deepcopy(_resolve(root, ref)), root, (*seen, ref))
    if not isinstance(target, dict):
        raise ValueError(f"reference {ref!r} does not point at a schema object")
    return {**target, **body}


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    """Follow the JSON Pointer in a local reference such as ``#/$defs/name``."""
    node: Any = root
    pointer = ref[1:]
    if not pointer:
        return node
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ValueError(f"reference {ref!r} points at nothing")
    return node


def _kube(node: Any) -> Any:
    """Rewrite one (already inlined) schema node into the subset Kubernetes accepts."""
    if isinstance(node, list):
        return [_kube(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "uniqueItems":
            items = node.get("items")
            scalar = isinstance(items, dict) and items.get("type") not in ("object", "array")
            if value is True and scalar:
                out["x-kubernetes-list-type"] = "set"
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _kube(value)
        elif key in ("properties", "patternProperties"):
            out[key] = {name: _kube(sub) for name, sub in value.items()}
        elif key in _LITERALS:
            out[key] = copy.deepcopy(value)
        else:
            out[key] = _kube(value)
    return out
