"""The JSON Schemas: well-formed, documented, Kubernetes-convertible, and agreeing with the
examples and the generated manifest reference."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from hypermesh import API_VERSION
from hypermesh.model import schemas
from hypermesh.model.reference import REGENERATE, render_reference
from hypermesh.model.schemas import (
    KINDS,
    SCHEMA_FILES,
    kind_from_alias,
    load_schema,
    structural,
    validator_for,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PEER_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"


def subschemas(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema that describes a value: properties, array items and map values."""
    if not isinstance(schema, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        where = f"{path}.{name}" if path else name
        yield where, sub
        yield from subschemas(sub, where)
    items = schema.get("items")
    if isinstance(items, dict):
        yield f"{path}[]", items
        yield from subschemas(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield f"{path}.<key>", extra
        yield from subschemas(extra, f"{path}.<key>")


def keys_anywhere(node: Any, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every mapping key in a schema, not looking inside instance values (defaults, examples)."""
    literals = {"default", "examples", "enum", "const", "properties"}
    if isinstance(node, dict):
        for key, value in node.items():
            if key in skip:
                continue
            yield key
            if key == "properties":
                for sub in value.values():
                    yield from keys_anywhere(sub, skip)
            elif key not in literals:
                yield from keys_anywhere(value, skip)
    elif isinstance(node, list):
        for item in node:
            yield from keys_anywhere(item, skip)


def errors(kind: str, document: dict[str, Any]) -> list[Any]:
    return list(validator_for(kind).iter_errors(document))


def manifest(kind: str, spec: dict[str, Any], name: str = "x", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


# -- the schemas themselves -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    schema = load_schema(kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://hypermesh.online/schemas/v1alpha1/{SCHEMA_FILES[kind]}"
    assert schema["title"] == kind
    assert schema["description"]
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["properties"]["apiVersion"]["const"] == API_VERSION
    assert schema["properties"]["kind"]["const"] == kind
    assert schema["properties"]["status"]["type"] == "object"
    assert "ignored on input" in schema["properties"]["status"]["description"]


def test_every_kind_has_a_schema_file_and_no_others() -> None:
    files = {p.name for p in (ROOT / "schemas").glob("*.json")}
    assert files == set(SCHEMA_FILES.values())
    assert tuple(SCHEMA_FILES) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_a_type_and_a_description(kind: str) -> None:
    for path, sub in subschemas(load_schema(kind)):
        assert "type" in sub, f"{kind} {path}: no type"
        assert isinstance(sub.get("description"), str) and sub["description"].strip(), (
            f"{kind} {path}: no description"
        )


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_fields_are_refused_everywhere(kind: str) -> None:
    schema = load_schema(kind)
    objects = [("", schema), *subschemas(schema)]
    for path, sub in objects:
        if "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{kind} {path}: open object"


@pytest.mark.parametrize("kind", KINDS)
def test_no_constructs_kubernetes_cannot_take(kind: str) -> None:
    forbidden = {"patternProperties", "if", "then", "else", "oneOf", "anyOf", "allOf", "not"}
    found = set(keys_anywhere(load_schema(kind))) & forbidden
    assert not found, f"{kind}: {found}"
    refs = [k for k in keys_anywhere(load_schema(kind)) if k == "$ref"]
    assert not refs, f"{kind}: $ref is not used (defaults would not be found through it)"


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_valid_values(kind: str) -> None:
    for path, sub in subschemas(load_schema(kind)):
        if "default" in sub:
            bare = {k: v for k, v in sub.items() if k != "default"}
            problems = list(Draft202012Validator(bare).iter_errors(sub["default"]))
            assert not problems, f"{kind} {path}: default {sub['default']!r}: {problems}"


@pytest.mark.parametrize("kind", KINDS)
def test_schema_examples_are_valid(kind: str) -> None:
    examples = load_schema(kind)["examples"]
    assert examples
    for example in examples:
        assert not errors(kind, example)


def test_patterns_match_the_named_constants() -> None:
    node = load_schema("Node")["properties"]
    peer = load_schema("Peer")["properties"]["spec"]["properties"]
    network = load_schema("Network")["properties"]["spec"]["properties"]
    assert node["metadata"]["properties"]["name"]["pattern"] == schemas.NAME_PATTERN
    assert node["metadata"]["properties"]["namespace"]["pattern"] == schemas.LABEL_PATTERN
    assert node["spec"]["properties"]["network"]["pattern"] == schemas.NAME_PATTERN
    assert node["spec"]["properties"]["listen"]["pattern"] == schemas.HOST_PORT_PATTERN
    assert node["spec"]["properties"]["tags"]["items"]["pattern"] == schemas.LABEL_PATTERN
    assert peer["identity"]["pattern"] == schemas.NODE_ID_PATTERN
    assert peer["address"]["pattern"] == schemas.HOST_PORT_PATTERN
    assert network["ttl"]["pattern"] == schemas.DURATION_PATTERN


def test_load_schema_is_cached_and_refuses_unknown_kinds() -> None:
    assert load_schema("Node") is load_schema("Node")
    assert validator_for("Node") is validator_for("Node")
    with pytest.raises(KeyError, match="unknown kind"):
        load_schema("Pod")


# -- structural (CRD) form --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_structural_is_ready_for_a_crd(kind: str) -> None:
    original = copy.deepcopy(load_schema(kind))
    out = structural(load_schema(kind))
    assert load_schema(kind) == original, "structural() must not change the cached schema"
    keys = set(keys_anywhere(out))
    for key in ("$ref", "$defs", "$schema", "$id", "examples", "const", "uniqueItems"):
        assert key not in keys, f"{kind}: {key} left in the structural schema"
    for path, sub in subschemas(out):
        assert "type" in sub, f"{kind} {path}: no type"
        if "properties" in sub:
            assert "additionalProperties" not in sub, f"{kind} {path}"
    assert out["type"] == "object"
    assert out["required"] == ["spec"]
    assert out["properties"]["metadata"] == {"type": "object"}
    assert out["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True
    assert out["properties"]["kind"]["enum"] == [kind]


def test_structural_turns_unique_scalar_lists_into_sets() -> None:
    interfaces = structural(load_schema("Node"))["properties"]["spec"]["properties"]["interfaces"]
    assert interfaces["x-kubernetes-list-type"] == "set"
    assert interfaces["default"] == ["public"]
    groups = structural(load_schema("InterfacePolicy"))["properties"]["spec"]["properties"][
        "groups"
    ]
    assert groups["additionalProperties"]["type"] == "array"


def test_structural_inlines_local_references() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.test/s.json",
        "type": "object",
        "$defs": {
            "name": {"type": "string", "description": "A name.", "pattern": "^[a-z]+$"},
            "pair": {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/name"}, "b": {"$ref": "#/$defs/name"}},
            },
        },
        "properties": {
            "one": {"$ref": "#/$defs/name", "description": "Overrides the shared text."},
            "two": {"type": "array", "items": {"$ref": "#/$defs/pair"}},
        },
        "examples": [{"one": "x"}],
    }
    out = structural(schema)
    assert "$ref" not in set(keys_anywhere(out))
    assert "$defs" not in out and "$schema" not in out and "$id" not in out
    assert out["properties"]["one"] == {
        "type": "string",
        "description": "Overrides the shared text.",
        "pattern": "^[a-z]+$",
    }
    assert out["properties"]["two"]["items"]["properties"]["b"]["pattern"] == "^[a-z]+$"
    recursive = {"$defs": {"a": {"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}}}
    with pytest.raises(ValueError, match="recursive"):
        structural({**recursive, "properties": {"a": {"$ref": "#/$defs/a"}}})
    with pytest.raises(ValueError, match="local"):
        structural({"properties": {"a": {"$ref": "other.json#/x"}}})


# -- examples -----------------------------------------------------------------------------------


def example_documents() -> list[tuple[str, int, Any]]:
    found = []
    for file in sorted(EXAMPLES.rglob("*.y*ml")):
        if any(part.startswith(".") for part in file.relative_to(EXAMPLES).parts):
            continue  # not a manifest (examples/gitops/.github/workflows)
        with file.open(encoding="utf-8") as stream:
            for index, document in enumerate(yaml.safe_load_all(stream)):
                if document is not None:
                    found.append((str(file.relative_to(ROOT)), index, document))
    return found


def test_there_are_examples_with_readmes() -> None:
    folders = {
        EXAMPLES / (ROOT / f).relative_to(EXAMPLES).parts[0] for f, _, _ in example_documents()
    }
    assert {p.name for p in folders} >= {"quickstart", "registry-and-names", "gitops"}
    assert (EXAMPLES / "README.md").is_file()
    for folder in folders:
        assert (folder / "README.md").is_file(), f"{folder} has no README.md"


@pytest.mark.parametrize(
    ("file", "index", "document"),
    example_documents(),
    ids=[f"{f}#{i}" for f, i, _ in example_documents()],
)
def test_example_document_is_valid(file: str, index: int, document: Any) -> None:
    assert isinstance(document, dict), f"{file}#{index} is not a mapping"
    kind = document.get("kind")
    assert kind in KINDS, f"{file}#{index}: unknown kind {kind!r}"
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in errors(kind, document)]
    assert not problems, f"{file}#{index}: {problems}"


def test_quickstart_declares_a_network_its_nodes_and_a_name() -> None:
    kinds = {d["kind"] for f, _, d in example_documents() if "/quickstart/" in f}
    assert kinds == {"Network", "Node", "TLD", "Record"}


def test_registry_example_covers_every_kind() -> None:
    kinds = {d["kind"] for f, _, d in example_documents() if "/registry-and-names/" in f}
    assert kinds == set(KINDS)


# -- invalid documents fail for the expected reason ----------------------------------------------


def only_error(kind: str, document: dict[str, Any]) -> Any:
    found = errors(kind, document)
    assert len(found) == 1, [e.message for e in found]
    return found[0]


def test_unknown_field_is_an_error() -> None:
    error = only_error("Node", manifest("Node", {"network": "demo", "listn": "127.0.0.1:0"}))
    assert error.validator == "additionalProperties"
    assert list(error.absolute_path) == ["spec"]
    assert "listn" in error.message


def test_unknown_nested_field_is_an_error() -> None:
    spec = {"network": "demo", "chain": {"enabled": True, "witness": 2}}
    error = only_error("Node", manifest("Node", spec))
    assert error.validator == "additionalProperties"
    assert list(error.absolute_path) == ["spec", "chain"]


def test_unknown_top_level_and_metadata_fields_are_errors() -> None:
    document = manifest("Network", {"mode": "public"})
    document["spek"] = {}
    assert only_error("Network", document).validator == "additionalProperties"
    document = manifest("Network", {"mode": "public"}, uid="1234")
    error = only_error("Network", document)
    assert error.validator == "additionalProperties"
    assert list(error.absolute_path) == ["metadata"]


def test_bad_enum_is_an_error() -> None:
    error = only_error("Network", manifest("Network", {"mode": "secret"}))
    assert error.validator == "enum"
    assert list(error.absolute_path) == ["spec", "mode"]
    error = only_error("Node", manifest("Node", {"network": "n", "roles": ["registrar"]}))
    assert error.validator == "enum"
    assert list(error.absolute_path) == ["spec", "roles", 0]


@pytest.mark.parametrize("name", ["Alpha", "alpha_1", "-alpha", "alpha-", "al..pha", "", "a" * 254])
def test_bad_name_is_an_error(name: str) -> None:
    error = only_error("Node", manifest("Node", {"network": "demo"}, name=name))
    assert error.validator in ("pattern", "maxLength")
    assert list(error.absolute_path) == ["metadata", "name"]


@pytest.mark.parametrize("name", ["a", "alpha", "alpha-1", "www.acme", "0x1"])
def test_good_names_pass(name: str) -> None:
    assert not errors("Node", manifest("Node", {"network": "demo"}, name=name))


@pytest.mark.parametrize(
    "identity",
    [
        PEER_ID.upper(),
        PEER_ID[:-1],
        PEER_ID + "a",
        "hm2" + PEER_ID[3:],
        PEER_ID[:-1] + "1",
        PEER_ID[:-1] + "=",
    ],
)
def test_bad_node_id_is_an_error(identity: str) -> None:
    spec = {"network": "acme", "identity": identity, "address": "203.0.113.10:4433"}
    error = only_error("Peer", manifest("Peer", spec))
    assert error.validator == "pattern"
    assert list(error.absolute_path) == ["spec", "identity"]


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:0", "0.0.0.0:4433", "[::1]:0", "[::]:853", "[fe80::1%eth0]:4433", "localhost:8443"],
)
def test_listen_accepts_ipv4_ipv6_and_host_names(listen: str) -> None:
    assert not errors("Node", manifest("Node", {"network": "demo", "listen": listen}))


@pytest.mark.parametrize("listen", ["127.0.0.1", ":4433", "::1:0", "[::1]", "127.0.0.1:123456"])
def test_listen_needs_host_and_port(listen: str) -> None:
    assert only_error(
        "Node", manifest("Node", {"network": "demo", "listen": listen})
    ).validator == ("pattern")


@pytest.mark.parametrize(
    ("ttl", "ok"),
    [("2h30m", True), ("500ms", True), ("1d", True), ("2 h", False), ("h", False), ("10", False)],
)
def test_network_ttl_is_a_duration(ttl: str, ok: bool) -> None:
    found = errors("Network", manifest("Network", {"mode": "ephemeral", "ttl": ttl}))
    assert (not found) is ok


def test_missing_required_fields() -> None:
    document = manifest("Peer", {"network": "acme", "identity": PEER_ID})
    error = only_error("Peer", document)
    assert error.validator == "required"
    assert "address" in error.message
    document = manifest("Node", {})
    del document["spec"]
    assert only_error("Node", document).validator == "required"


def test_policy_tests_cannot_use_the_wildcard_operation() -> None:
    spec = {
        "network": "acme",
        "interface": "private",
        "tests": [{"from": "alpha", "operation": "*", "expect": "allow"}],
    }
    error = only_error("InterfacePolicy", manifest("InterfacePolicy", spec))
    assert error.validator == "enum"
    assert list(error.absolute_path) == ["spec", "tests", 0, "operation"]


def test_status_is_accepted_and_ignored() -> None:
    document = manifest("Node", {"network": "demo"})
    document["status"] = {"address": "127.0.0.1:50000", "conditions": [{"type": "Ready"}]}
    assert not errors("Node", document)


# -- generated reference and CLI names -------------------------------------------------------


def test_manifest_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "manifests.md").read_text(encoding="utf-8")
    assert committed == render_reference(), f"docs/manifests.md is stale; run: {REGENERATE}"


def test_reference_lists_every_field() -> None:
    text = render_reference()
    for kind in KINDS:
        assert f"\n## {kind}\n" in text
        for path, _ in subschemas(load_schema(kind)):
            if not path.endswith(("[]", "<key>")):
                assert f"| `{path}` |" in text, f"{kind}: {path} missing from the reference"


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("node", "Node"),
        ("nodes", "Node"),
        ("Node", "Node"),
        ("NODES", "Node"),
        ("no", "Node"),
        ("nodes.hypermesh.online", "Node"),
        ("net", "Network"),
        ("networks", "Network"),
        ("peer", "Peer"),
        ("peers", "Peer"),
        ("tld", "TLD"),
        ("TLDs", "TLD"),
        ("rec", "Record"),
        ("records", "Record"),
        ("ip", "InterfacePolicy"),
        ("policy", "InterfacePolicy"),
        ("interfacepolicies", "InterfacePolicy"),
        ("InterfacePolicy", "InterfacePolicy"),
        ("pods", None),
        ("", None),
        ("nod", None),
        ("nodes.example.com", None),
    ],
)
def test_kind_from_alias(alias: str, kind: str | None) -> None:
    assert kind_from_alias(alias) == kind


def test_aliases_are_unambiguous() -> None:
    seen: dict[str, str] = {}
    for kind in KINDS:
        for alias in {
            kind.lower(),
            schemas.SINGULARS[kind],
            schemas.PLURALS[kind],
            *schemas.SHORT_NAMES[kind],
        }:
            assert seen.setdefault(alias, kind) == kind, alias
