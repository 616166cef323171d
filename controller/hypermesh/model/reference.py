"""The manifest reference (docs/manifests.md), generated from the schemas: never written twice.

``python -m hypermesh.model.reference > docs/manifests.md`` regenerates the page; a test checks
that the committed page equals :func:`render_reference`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from hypermesh import API_VERSION
from hypermesh.model.loader import MAX_DEPTH, MAX_VALUES_PER_DOCUMENT
from hypermesh.model.schemas import (
    HOST_PORT_PATTERN,
    KINDS,
    LABEL_PATTERN,
    NAME_PATTERN,
    PLURALS,
    SHORT_NAMES,
    SINGULARS,
    load_schema,
)

__all__ = ["Field", "fields", "main", "render_kind", "render_reference"]

REGENERATE = "python -m hypermesh.model.reference > docs/manifests.md"

_HEADER = (
    f"<!-- Generated from schemas/*.json by `{REGENERATE}`; edit the schemas, not this file. -->"
)

_INTRO = f"""\
# Manifest reference

Every HyperMesh manifest is a Kubernetes-style object with
`apiVersion: {API_VERSION}`, a `kind`, `metadata` and a `spec`; the same documents
are valid custom resources. This page is generated from the JSON Schemas in `schemas/`, which
`hmctl validate` and the operator's CRDs use too.

- Unknown fields are errors, at every depth.
- Names (`metadata.name` and every field that names another resource) are DNS-1123 subdomains:
  lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, at most
  253 characters; the pattern is
  `{NAME_PATTERN}`.
  A DNS-1123 label is the same without dots, at most 63 characters.
- Addresses (`host:port`) are one type, checked by one pattern wherever they appear: the host is
  a dotted-quad IPv4 address (each part 0-255, no leading zeros), an IPv6 address in brackets
  (`[::1]`, optionally with a `%zone`) or a host name whose last label holds a letter; the port
  is 0-65535 in decimal without leading zeros (0 picks any free port where the field binds).
- Patterns match the whole value: `$` is the end of the text, so a trailing newline is refused.
- YAML anchors, aliases and merge keys work; an alias to a value that contains it (a recursive
  anchor), a document nested more than {MAX_DEPTH} levels deep or expanding to more than
  {MAX_VALUES_PER_DOCUMENT:,} values is refused with its file, line and column.
- References resolve within one namespace; `hmctl validate` reports a reference to a resource
  that is not declared, and the rules between fields that a schema cannot express (they are
  stated in the descriptions below).
- `status` is accepted and ignored, so that the output of `hmctl get -o yaml` can be applied
  back.

In the tables, `a.b` is field `b` of object `a`, and `a[]` is each item of list `a`.
"""


_PATTERNS = {
    NAME_PATTERN: "a name (DNS-1123 subdomain)",
    LABEL_PATTERN: "a DNS-1123 label",
    HOST_PORT_PATTERN: "host:port (see above)",
}
"""Patterns common enough to be named in words rather than printed each time."""


@dataclass(frozen=True, slots=True)
class Field:
    """One row of a kind's table: a field at some depth and what its schema says of it."""

    path: str
    type: str
    required: bool
    default: str
    description: str
    allowed: str


def render_reference() -> str:
    """The whole manifest reference as Markdown."""
    parts = [_HEADER, "", _INTRO, "## Kinds", ""]
    for kind in KINDS:
        anchor = kind.lower()
        summary = _first_sentence(str(load_schema(kind).get("description", "")))
        parts.append(f"- [{kind}](#{anchor}): {summary}")
    parts.append("")
    for kind in KINDS:
        parts.append(render_kind(kind))
    return "\n".join(parts).rstrip("\n") + "\n"


def render_kind(kind: str) -> str:
    """One kind's section: heading, description, names, field table and examples."""
    schema = load_schema(kind)
    names = ", ".join(f"`{n}`" for n in (SINGULARS[kind], PLURALS[kind], *SHORT_NAMES[kind]))
    lines = [
        f"## {kind}",
        "",
        _text(str(schema.get("description", ""))),
        "",
        f"`kind: {kind}` · names on the command line: {names}",
        "",
        "| Field | Type | Required | Default | Description | Allowed |",
        "|---|---|---|---|---|---|",
    ]
    for row in fields(schema):
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{row.path}`",
                    _cell(row.type),
                    "yes" if row.required else "",
                    _cell(row.default),
                    _cell(row.description),
                    _cell(row.allowed),
                ]
            )
            + " |"
        )
    examples = schema.get("examples", [])
    if examples:
        lines += ["", "### Examples" if len(examples) > 1 else "### Example", "", "```yaml"]
        lines.append(
            yaml.safe_dump_all(
                examples, sort_keys=False, default_flow_style=False, allow_unicode=True
            ).rstrip("\n")
        )
        lines.append("```")
    lines.append("")
    return "\n".join(lines)


def fields(schema: Mapping[str, Any]) -> list[Field]:
    """Every field of a kind's schema, depth first, in the order the schema lists them."""
    return list(_walk(schema, ""))


def _walk(schema: Mapping[str, Any], prefix: str) -> Iterator[Field]:
    required = set(schema.get("required", []))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield Field(
            path=path,
            type=_type(sub),
            required=name in required,
            default=_json(sub["default"]) if "default" in sub else "",
            description=str(sub.get("description", "")),
            allowed=_allowed(sub),
        )
        yield from _children(sub, path)


def _children(schema: Mapping[str, Any], path: str) -> Iterator[Field]:
    if "properties" in schema:
        yield from _walk(schema, path)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _children(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from _children(extra, f"{path}.<key>")


def _type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type", "any")
    if kind == "array":
        items = schema.get("items")
        return f"array of {_type(items)}" if isinstance(items, Mapping) else "array"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and "properties" not in schema:
            return f"map of string to {_type(extra)}"
    return str(kind)


def _allowed(schema: Mapping[str, Any]) -> str:
    """What values a field takes: constants, enums, patterns, bounds, and examples."""
    notes: list[str] = []
    if "const" in schema:
        notes.append(f"exactly {_code(schema['const'])}")
    if "enum" in schema:
        notes.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    notes += _bounds(schema)
    if schema.get("uniqueItems"):
        notes.append("items unique")
    items = schema.get("items")
    if isinstance(items, Mapping):
        inner = _item_notes(items)
        if inner:
            notes.append("each item: " + ", ".join(inner))
    keys = schema.get("propertyNames")
    if isinstance(keys, Mapping):
        inner = _item_notes(keys)
        if inner:
            notes.append("each key: " + ", ".join(inner))
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and "properties" not in schema:
        inner = _item_notes(extra)
        if inner:
            notes.append("each value: " + ", ".join(inner))
    examples = schema.get("examples")
    if examples:
        notes.append("e.g. " + ", ".join(_code(v) for v in examples))
    return "; ".join(notes)


def _item_notes(schema: Mapping[str, Any]) -> list[str]:
    if schema.get("type") == "object" and "properties" in schema:
        return []
    notes: list[str] = []
    if "enum" in schema:
        notes.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    notes += _bounds(schema)
    if schema.get("uniqueItems"):
        notes.append("items unique")
    items = schema.get("items")
    if isinstance(items, Mapping):
        inner = _item_notes(items)
        if inner:
            notes.append("each item: " + ", ".join(inner))
    return notes


def _bounds(schema: Mapping[str, Any]) -> list[str]:
    notes: list[str] = []
    if "pattern" in schema:
        pattern = schema["pattern"]
        notes.append(_PATTERNS.get(pattern, f"pattern {_code(pattern)}"))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        notes.append(f"{low} to {high}")
    elif low is not None:
        notes.append(f"at least {low}")
    elif high is not None:
        notes.append(f"at most {high}")
    if "minLength" in schema:
        notes.append(f"at least {_plural(schema['minLength'], 'character')}")
    if "maxLength" in schema:
        notes.append(f"at most {_plural(schema['maxLength'], 'character')}")
    if "minItems" in schema:
        notes.append(f"at least {_plural(schema['minItems'], 'item')}")
    if "maxItems" in schema:
        notes.append(f"at most {_plural(schema['maxItems'], 'item')}")
    if "maxProperties" in schema:
        notes.append(f"at most {_plural(schema['maxProperties'], 'entry')}")
    return notes


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") else f"{count} {noun}s"


def _json(value: Any) -> str:
    if isinstance(value, str):
        return _code(value)
    return _code(json.dumps(value, ensure_ascii=False))


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell (GFM splits cells on unescaped pipes)."""
    return _text(text).replace("|", "\\|")


def _first_sentence(text: str) -> str:
    text = _text(text)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def main() -> None:
    """Print the reference (``python -m hypermesh.model.reference``)."""
    sys.stdout.write(render_reference())


if __name__ == "__main__":
    main()
