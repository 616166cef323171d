"""What Nexus knows of the manifest kinds, read from the project's JSON Schemas (schemas/).

The compiler uses it to check field names (with did-you-mean) and to map blocks to list fields;
the language server uses it to complete field names and to show their descriptions on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from hypermesh.model.schemas import KINDS, load_schema

__all__ = [
    "KEYWORD_KINDS",
    "KINDS",
    "METADATA_FIELDS",
    "kind_description",
    "list_field",
    "metadata_schema",
    "object_schema",
    "spec_schema",
]

KEYWORD_KINDS = MappingProxyType(
    {
        "network": "Network",
        "node": "Node",
        "peer": "Peer",
        "tld": "TLD",
        "record": "Record",
        "policy": "InterfacePolicy",
    }
)
"""The word that declares each kind in Nexus → the manifest kind it compiles to."""

METADATA_FIELDS = ("namespace", "labels", "annotations")
"""Fields of a resource's body that go to ``metadata`` (the name is written after the kind)."""


def spec_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = load_schema(kind)["properties"]["spec"]
    return schema


def metadata_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = load_schema(kind)["properties"]["metadata"]
    return schema


def kind_description(kind: str) -> str:
    return str(load_schema(kind).get("description", ""))


def object_schema(kind: str, path: Sequence[str]) -> dict[str, Any] | None:
    """The schema of the object at ``path`` inside ``kind``'s spec (list fields step into their
    items), or None when the path leaves what the schema describes."""
    schema: dict[str, Any] | None = spec_schema(kind)
    for part in path:
        if schema is None:
            return None
        if part in METADATA_FIELDS and schema is spec_schema(kind):
            schema = metadata_schema(kind)["properties"].get(part)
        else:
            schema = schema.get("properties", {}).get(part)
        if schema is not None and schema.get("type") == "array":
            items = schema.get("items")
            schema = items if isinstance(items, dict) else None
    return schema


def field_schema(kind: str, path: Sequence[str], name: str) -> dict[str, Any] | None:
    """The schema of field ``name`` of the object at ``path`` (metadata fields at the top)."""
    if not path and name in METADATA_FIELDS:
        found: dict[str, Any] | None = metadata_schema(kind)["properties"].get(name)
        return found
    parent = object_schema(kind, path)
    if parent is None:
        return None
    found = parent.get("properties", {}).get(name)
    return found


def list_field(parent: dict[str, Any] | None, word: str) -> str | None:
    """The list-of-objects field a block ``word "label" { }`` appends to: ``word`` itself
    (``federation``) or its plural (``rule`` → ``rules``, ``test`` → ``tests``)."""
    if parent is None:
        return None
    props = parent.get("properties", {})
    for candidate in (word, word + "s"):
        sub = props.get(candidate)
        if (
            isinstance(sub, dict)
            and sub.get("type") == "array"
            and isinstance(sub.get("items"), dict)
            and sub["items"].get("type") == "object"
        ):
            return candidate
    return None


def field_names(parent: dict[str, Any] | None) -> list[str]:
    if parent is None:
        return []
    return list(parent.get("properties", {}))


def is_kind(name: str) -> bool:
    return name in KINDS
