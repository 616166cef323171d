"""Patterns match whole values: every patterned field (names, labels, map keys, node IDs,
durations, addresses) refuses a trailing newline in hmctl validate, in both validators and in
the CRDs; and every pattern keeps to constructs that mean the same in ECMA-262, RE2 and Python.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.model import schemas
from hypermesh.model.crds import openapi_schema, rules
from hypermesh.model.loader import dotted, load_text
from hypermesh.model.schemas import (
    HOST_PORT_FIELDS,
    HOST_PORT_PATTERN,
    KINDS,
    ecma_regex,
    fast_validator_for,
    load_schema,
    validator_for,
)
from hypermesh.model.validate import build

NODE_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"
HEAD = {"apiVersion": "hypermesh.online/v1alpha1"}
META = {"name": "acme", "namespace": "team"}

COMPLETE: dict[str, list[dict[str, Any]]] = {
    # Documents of each kind that between them fill every patterned field.
    "Network": [
        {
            **HEAD,
            "kind": "Network",
            "metadata": META,
            "spec": {
                "mode": "ephemeral",
                "ttl": "2h",
                "registry": {"endpoint": "registry.example:4433", "identity": NODE_ID},
                "federation": [
                    {"name": "lab", "registry": {"endpoint": "[::1]:4433", "identity": NODE_ID}},
                    {"name": "partners", "network": "partners"},
                ],
            },
        },
        {
            **HEAD,
            "kind": "Network",
            "metadata": {"name": "other"},
            "spec": {"mode": "private", "registry": {"node": "registry"}},
        },
    ],
    "Node": [
        {
            **HEAD,
            "kind": "Node",
            "metadata": META,
            "spec": {
                "network": "acme",
                "host": "edge-1",
                "identity": NODE_ID,
                "listen": "127.0.0.1:0",
                "advertise": ["203.0.113.7:4433"],
                "web": {"listen": "127.0.0.1:8080"},
                "tags": ["edge"],
                "resolver": {
                    "listen": "127.0.0.53:53",
                    "upstreams": ["192.0.2.53:53"],
                    "resolvConf": "/etc/resolv.conf",
                    "forward": False,
                },
                "tls": {
                    "certificate": "/etc/tls/tls.crt",
                    "key": "/etc/tls/tls.key",
                    "listen": "0.0.0.0:853",
                },
                "dns": {"workers": 2, "listen": "0.0.0.0:853"},
            },
        }
    ],
    "Peer": [
        {
            **HEAD,
            "kind": "Peer",
            "metadata": META,
            "spec": {
                "network": "acme",
                "identity": NODE_ID,
                "address": "peer.example:4433",
                "tags": ["edge"],
            },
        }
    ],
    "TLD": [
        {
            **HEAD,
            "kind": "TLD",
            "metadata": META,
            "spec": {"network": "acme", "owner": {"node": "alpha"}},
        },
        {
            **HEAD,
            "kind": "TLD",
            "metadata": {"name": "other"},
            "spec": {"network": "acme", "owner": {"peer": "far"}},
        },
    ],
    "Record": [
        {
            **HEAD,
            "kind": "Record",
            "metadata": META,
            "spec": {"tld": "acme", "name": "www", "target": {"node": "alpha"}},
        }
    ],
    "InterfacePolicy": [
        {
            **HEAD,
            "kind": "InterfacePolicy",
            "metadata": META,
            "spec": {
                "network": "acme",
                "interface": "private",
                "groups": {"staff": ["alpha"]},
                "rules": [
                    {
                        "from": {
                            "nodes": ["alpha"],
                            "peers": ["far"],
                            "tags": ["edge"],
                            "networks": ["lab"],
                            "groups": ["staff"],
                        },
                        "to": {"nodes": ["alpha"], "tags": ["edge"]},
                        "operations": ["dns.query"],
                        "rateLimit": {"requests": 10, "per": "1m"},
                    }
                ],
                "tests": [
                    {
                        "from": "lab/alpha",
                        "to": "alpha",
                        "operation": "dns.query",
                        "expect": "allow",
                    }
                ],
            },
        }
    ],
}

Path = tuple[str | int, ...]


def patterned(schema: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every patterned place of a schema: ``(place, pattern)``; a map's keys are ``.<name>``."""
    if not isinstance(schema, dict):
        return
    if "pattern" in schema:
        yield where, schema["pattern"]
    for name, sub in schema.get("properties", {}).items():
        yield from patterned(sub, f"{where}.{name}" if where else name)
    for key, suffix in (("items", "[]"), ("additionalProperties", ".<key>")):
        if isinstance(schema.get(key), dict):
            yield from patterned(schema[key], where + suffix)
    if isinstance(schema.get("propertyNames"), dict):
        yield from patterned(schema["propertyNames"], where + ".<name>")


def instances(value: Any, schema: Any, path: Path = (), place: str = "") -> Iterator[tuple]:
    """Every patterned value in a document: ``(place, path, is_key)``."""
    if not isinstance(schema, dict):
        return
    if "pattern" in schema and isinstance(value, str):
        yield place, path, False
    if isinstance(value, dict):
        names = schema.get("propertyNames")
        for key, sub in value.items():
            if isinstance(names, dict) and "pattern" in names:
                yield place + ".<name>", (*path, key), True
            if key in schema.get("properties", {}):
                child = f"{place}.{key}" if place else key
                yield from instances(sub, schema["properties"][key], (*path, key), child)
            elif isinstance(schema.get("additionalProperties"), dict):
                extra = schema["additionalProperties"]
                yield from instances(sub, extra, (*path, key), place + ".<key>")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from instances(item, schema["items"], (*path, i), place + "[]")


def with_newline(document: dict[str, Any], path: Path, is_key: bool) -> tuple[dict, Path]:
    """A copy of ``document`` with "\\n" after the value (or map key) at ``path``."""
    out = copy.deepcopy(document)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if is_key:
        parent[f"{last}\n"] = parent.pop(last)
        return out, (*path[:-1], f"{last}\n")
    parent[last] = parent[last] + "\n"
    return out, path


CASES = [
    (kind, i, place, path, is_key)
    for kind, documents in COMPLETE.items()
    for i, document in enumerate(documents)
    for place, path, is_key in instances(document, load_schema(kind))
]


@pytest.mark.parametrize("kind", KINDS)
def test_the_complete_documents_are_valid_and_fill_every_patterned_field(kind: str) -> None:
    schema = load_schema(kind)
    for document in COMPLETE[kind]:
        assert not list(validator_for(kind).iter_errors(document))
        assert fast_validator_for(kind).is_valid(document)
    filled = {place for k, _, place, _, _ in CASES if k == kind}
    assert filled == {place for place, _ in patterned(schema)}


@pytest.mark.parametrize(
    ("kind", "index", "place", "path", "is_key"),
    CASES,
    ids=[f"{k}:{dotted(p)}" for k, _, _, p, _ in CASES],
)
def test_a_trailing_newline_is_refused_everywhere(
    kind: str, index: int, place: str, path: Path, is_key: bool
) -> None:
    bad, where = with_newline(COMPLETE[kind][index], path, is_key)
    # Both validators refuse it.
    assert not fast_validator_for(kind).is_valid(bad)
    assert list(validator_for(kind).iter_errors(bad))
    # hmctl validate names the field, at its position, without a raw pattern in the message.
    text = yaml.safe_dump(bad, sort_keys=False)
    _, problems = build(load_text(text, "m.yaml"))
    mine = [p for p in problems if p.path == dotted(where)]
    assert mine, (dotted(where), [str(p) for p in problems])
    assert "\\n" in mine[0].message and "\n" not in str(mine[0])
    assert "does not match" not in mine[0].message
    # The CRD refuses it too: by its pattern, or for a map key by its CEL rule. (Names and
    # namespaces in metadata are checked by Kubernetes itself, by the same DNS-1123 rules.)
    if is_key:
        assert any(rule.at == place.removesuffix(".<name>") for rule in rules(kind))
    elif not place.startswith("metadata."):
        assert not jsonschema_rs.validator_for(openapi_schema(kind)).is_valid(bad)


# -- every pattern in the portable subset -------------------------------------------------------

_PORTABLE = re.compile(
    r"""
    \\[.\[\]*+?(){}|^$\\/-]      # an escaped metacharacter
    | \[ (?: [^\]\\] | \\. )+ \] # a class (no escapes of letters, never empty)
    | \{ [0-9]+ (?:,[0-9]*)? \}  # counted repetition
    | [()|*+?^$]                 # groups, alternation, repetition, anchors
    | [-A-Za-z0-9_:/%@=,<>!#&~'"`;]  # literal characters
    """,
    re.VERBOSE,
)


def all_patterns() -> set[str]:
    found = set()
    for kind in KINDS:
        found |= {pattern for _, pattern in patterned(load_schema(kind))}
    return found


@pytest.mark.parametrize("pattern", sorted(all_patterns()))
def test_every_pattern_keeps_to_the_portable_subset(pattern: str) -> None:
    """No ``.``, ``\\d``, ``\\w``, ``\\s``, lookaround, back-reference or flag: what remains
    means the same to ECMA-262, RE2 and Python once ``$`` is the end of the text."""
    assert pattern.startswith("^") and pattern.endswith("$"), "anchor both ends"
    position = 0
    while position < len(pattern):
        match = _PORTABLE.match(pattern, position)
        assert match is not None, f"{pattern[position : position + 20]!r} in {pattern[:40]!r}"
        token = match.group(0)
        if token.startswith("[") and "\\" in token:
            assert re.fullmatch(r"\[(?:[^\\]|\\[\]\[\\^-])+\]", token), token
        position = match.end()
    assert "(?" not in pattern


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(all_patterns())), st.text(max_size=24), st.booleans())
def test_python_and_ecma_engines_agree_on_every_pattern(
    pattern: str, text: str, newline: bool
) -> None:
    value = text + ("\n" if newline else "")
    compiled = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    assert (ecma_regex(pattern).search(value) is not None) == compiled.is_valid(value)


def test_ecma_regex_ends_at_the_end_of_the_text() -> None:
    assert ecma_regex("^[a-z]+$").search("abc")
    assert not ecma_regex("^[a-z]+$").search("abc\n")
    assert ecma_regex("^[$]$").search("$")  # a dollar in a class is a dollar
    assert ecma_regex(r"^a\$$").search("a$")


def test_host_port_fields_carry_the_one_pattern() -> None:
    for kind in KINDS:
        places = {place for place, pattern in patterned(load_schema(kind))}
        host_port = {
            p for p, pattern in patterned(load_schema(kind)) if pattern == HOST_PORT_PATTERN
        }
        assert host_port == set(HOST_PORT_FIELDS.get(kind, ())), kind
        assert host_port <= places
    assert schemas.HOST_PORT_PATTERN.count("65535") == 0  # bounded by ranges, not by a rule
