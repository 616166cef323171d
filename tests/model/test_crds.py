"""The CRDs in manifests/crds/ are generated from the schemas, up to date, valid for Kubernetes,
accept every example, and carry CEL rules that refuse what ``hmctl validate`` refuses."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from hypermesh.model.crds import (
    BOUNDS,
    COLUMNS,
    KUSTOMIZATION,
    RULES,
    crd,
    file_name,
    key_rules,
    openapi_schema,
    render_crds,
    render_files,
    rules,
    schema_at,
)
from hypermesh.model.loader import load_text
from hypermesh.model.schemas import API_GROUP, KINDS, load_schema
from hypermesh.model.validate import build

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests" / "crds"
EXAMPLES = ROOT / "examples"

KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes the CRDs target (CEL rules with fieldPath and reason) and the newest
that kubernetes-validate ships."""

NODE_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"


def _walk(node: Any) -> list[str]:
    keys: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            keys.append(key)
            keys.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            keys.extend(_walk(value))
    return keys


# -- generated files --------------------------------------------------------------------------


def test_crd_files_are_up_to_date() -> None:
    """Fails when schemas/ or crds.py changed and the files were not regenerated."""
    hint = "regenerate: python -m hypermesh.model.crds --write manifests/crds"
    files = render_files()
    on_disk = {path.name: path.read_text() for path in CRDS.iterdir() if path.is_file()}
    assert sorted(on_disk) == sorted(files), hint
    for name, text in files.items():
        assert on_disk[name] == text, f"manifests/crds/{name} is out of date; {hint}"


def test_the_old_single_file_is_gone() -> None:
    assert not (ROOT / "manifests" / "crds.yaml").exists()


def test_kustomization_lists_one_file_per_kind() -> None:
    kustomization = yaml.safe_load(render_files()[KUSTOMIZATION])
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == [file_name(kind) for kind in KINDS]
    for kind in KINDS:
        doc = yaml.safe_load(render_files()[file_name(kind)])
        assert doc["metadata"]["name"] == file_name(kind).removesuffix(".yaml")
        assert doc["spec"]["names"]["kind"] == kind


def test_stdout_prints_every_crd() -> None:
    docs = list(yaml.safe_load_all(render_crds()))
    assert [d["spec"]["names"]["kind"] for d in docs] == list(KINDS)
    assert docs == [crd(kind) for kind in KINDS]


# -- what Kubernetes accepts ------------------------------------------------------------------


def test_every_kind_has_a_structural_crd() -> None:
    for kind in KINDS:
        version = crd(kind)["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        keys = set(_walk(schema))
        assert not keys & {"$ref", "$defs", "patternProperties", "if", "then", "const"}, kind
        assert schema["properties"]["spec"]["type"] == "object"
        assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_valid_for_kubernetes(kind: str, version: str) -> None:
    data = yaml.safe_load((CRDS / file_name(kind)).read_text())
    try:
        kubernetes_validate.validate(data, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{file_name(kind)} (Kubernetes {version}): {exc.message} at {exc.path}")


def test_kubernetes_node_keeps_its_short_name() -> None:
    assert "no" not in crd("Node")["spec"]["names"].get("shortNames", [])


# -- printer columns --------------------------------------------------------------------------


def _columns(kind: str) -> dict[str, dict[str, Any]]:
    columns = crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    return {c["name"]: c for c in columns}


def test_printer_columns() -> None:
    want = {
        "Network": ["Mode", "TTL", "Expires", "Ready", "Reason", "Age"],
        "Node": ["Network", "Address", "Identity", "Roles", "Ready", "Reason", "Age"],
        "Peer": ["Network", "Address", "Identity", "Ready", "Age"],
        "TLD": ["Network", "Owner", "Serial", "Ready", "Reason", "Age"],
        "Record": ["TLD", "Type", "Target", "Ready", "Reason", "Age"],
        "InterfacePolicy": ["Network", "Interface", "Enforced", "Ready", "Reason", "Age"],
    }
    for kind in KINDS:
        assert list(_columns(kind)) == want[kind], kind
        assert _columns(kind)["Age"]["type"] == "date"
    node = _columns("Node")
    assert node["Address"]["jsonPath"] == ".status.address"
    assert node["Identity"]["jsonPath"] == ".status.identity"
    assert node["Identity"]["priority"] == node["Roles"]["priority"] == 1
    assert "priority" not in node["Reason"]
    assert _columns("TLD")["Serial"] == {
        "name": "Serial",
        "type": "integer",
        "jsonPath": ".status.serial",
        "description": "SOA serial of the published zone.",
    }
    assert "Enforced" in _columns("InterfacePolicy")["Enforced"]["jsonPath"]


_SIMPLE_SPEC_PATH = re.compile(r"^\.spec((\.[A-Za-z]+)+)$")


def test_spec_columns_name_fields_of_the_schema() -> None:
    for kind in KINDS:
        schema = openapi_schema(kind)
        for column in COLUMNS[kind]:
            path = column.json_path
            if path.startswith(".spec.owner["):  # the TLD's union of node and peer
                assert {"node", "peer"} <= set(schema_at(schema, "spec.owner")["properties"])
                continue
            match = _SIMPLE_SPEC_PATH.match(path)
            if match:
                assert schema_at(schema, "spec" + match.group(1)), (kind, path)
            else:
                assert path.startswith((".status.", ".metadata.")), (kind, path)


# -- examples ---------------------------------------------------------------------------------


def _examples() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(API_GROUP):
                yield f"{path.relative_to(ROOT)}: {doc['kind']}/{doc['metadata']['name']}", doc
    for kind in KINDS:
        for i, doc in enumerate(load_schema(kind).get("examples", [])):
            yield f"schemas/{kind.lower()}.json examples[{i}]", doc


EXAMPLE_DOCS = list(_examples())


def test_there_are_examples_of_every_kind() -> None:
    assert {doc["kind"] for _, doc in EXAMPLE_DOCS} == set(KINDS)


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLE_DOCS], ids=[n for n, _ in EXAMPLE_DOCS])
def test_examples_are_accepted_by_the_crd_schema(doc: dict[str, Any]) -> None:
    Draft202012Validator(openapi_schema(doc["kind"])).validate(doc)


# -- CEL rules --------------------------------------------------------------------------------


def _messages(kind: str) -> set[str]:
    return {rule.message for rule in rules(kind)}


def test_cross_field_rules_are_cel_rules() -> None:
    """Every single-resource rule of hypermesh.model.validate has a CEL rule."""
    assert _messages("Network") >= {
        "an ephemeral network needs a 'ttl'",
        "only an ephemeral network has a 'ttl'",
        "a remote registry needs both 'endpoint' and 'identity'",
        "a network cannot federate with itself",
        "the names of federated networks must be unique",
    }
    assert any("exactly one of 'network'" in m for m in _messages("Network"))
    assert any("'node' of these manifests or an 'endpoint'" in m for m in _messages("Network"))
    assert "owner needs exactly one of 'node' or 'peer'" in _messages("TLD")
    assert any("single label" in m for m in _messages("TLD"))
    assert "a Record needs exactly one of 'values' or 'target'" in _messages("Record")
    assert any("'type'" in m for m in _messages("Record"))
    assert any("spec.groups" in m for m in _messages("InterfacePolicy"))
    assert any("group name" in m for m in _messages("InterfacePolicy"))
    # Ports need no rule: the address pattern bounds them (tests/model/test_addresses.py).
    assert "Node" not in RULES


def test_maps_with_constrained_keys_get_a_rule() -> None:
    (rule,) = key_rules("InterfacePolicy")
    assert rule.at == "spec.groups"
    assert "matches(" in rule.rule and "size(k) <= 63" in rule.rule
    assert "propertyNames" not in _walk(openapi_schema("InterfacePolicy"))


def test_rules_sit_in_the_generated_schema() -> None:
    for kind in KINDS:
        schema = openapi_schema(kind)
        for rule in rules(kind):
            place = schema_at(schema, rule.at)
            assert rule.to_dict() in place["x-kubernetes-validations"], (kind, rule.at)
            assert "\n" not in rule.message and rule.message, rule
            if rule.field_path is not None:
                # A field of the schema at that place (Kubernetes refuses any other).
                steps = rule.field_path.lstrip(".").split(".")
                assert schema_at(place, ".".join(steps)), (kind, rule.field_path)
            assert rule.reason in (
                None,
                "FieldValueRequired",
                "FieldValueForbidden",
                "FieldValueDuplicate",
                "FieldValueInvalid",
            )


def test_lists_that_rules_walk_are_bounded() -> None:
    """The API server estimates a rule's cost from the lists it walks; an unbounded list is
    costed as if it filled a whole request, and a rule that walks it (nested) is refused."""
    walked = {
        "Network": ["spec.federation"],
        "InterfacePolicy": ["spec.rules", "spec.rules[].from.groups"],
    }
    for kind, places in walked.items():
        schema = openapi_schema(kind)
        for at in places:
            assert "maxItems" in schema_at(schema, at), (kind, at)
    assert set(BOUNDS) <= set(walked)


# Evaluate the rules with cel-python: the same expressions the API server runs, against good
# objects (every example) and bad ones (each refused by one rule, and by hmctl validate).

celpy = pytest.importorskip("celpy")


@cache
def _program(expression: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression))


def _values_at(obj: Any, at: str) -> list[Any]:
    values = [obj]
    for part in at.split(".") if at else ():
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        found: list[Any] = []
        for value in values:
            if isinstance(value, dict) and name in value:
                found.extend(value[name] if items else [value[name]])
        values = found
    return values


def cel_failures(doc: dict[str, Any]) -> list[str]:
    """The messages of the CEL rules ``doc`` breaks (Kubernetes skips rules on absent fields)."""
    failed: list[str] = []
    for rule in rules(doc["kind"]):
        for value in _values_at(doc, rule.at):
            result = _program(rule.rule).evaluate({"self": celpy.json_to_cel(value)})
            assert isinstance(result, celpy.celtypes.BoolType), (rule.rule, result)
            if not result:
                failed.append(rule.message)
    return failed


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLE_DOCS], ids=[n for n, _ in EXAMPLE_DOCS])
def test_examples_pass_the_cel_rules(doc: dict[str, Any]) -> None:
    assert cel_failures(doc) == []


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


Change = Callable[[dict[str, Any]], None]

_REMOTE = {"endpoint": "registry.example.net:4433", "identity": NODE_ID}
_BASE = {
    "Network": _doc("Network", "acme", {"mode": "private", "registry": {"node": "registry"}}),
    "Node": _doc("Node", "alpha", {"network": "acme", "listen": "127.0.0.1:0"}),
    "TLD": _doc("TLD", "acme", {"network": "acme", "owner": {"node": "alpha"}}),
    "Record": _doc("Record", "www.acme", {"tld": "acme", "target": {"node": "alpha"}}),
    "InterfacePolicy": _doc(
        "InterfacePolicy",
        "acme-private",
        {
            "network": "acme",
            "interface": "private",
            "groups": {"staff": ["alpha"]},
            "rules": [{"from": {"groups": ["staff"]}, "operations": ["*"]}],
        },
    ),
}

GOOD: list[tuple[str, str, dict[str, Any]]] = [
    ("Network", "ephemeral with a ttl", {"mode": "ephemeral", "ttl": "2h"}),
    ("Network", "remote registry", {"registry": dict(_REMOTE)}),
    ("Network", "empty registry", {"registry": {}}),
    (
        "Network",
        "federation",
        {
            "federation": [
                {"name": "partners", "network": "partners"},
                {"name": "lab", "registry": dict(_REMOTE)},
            ]
        },
    ),
    ("Node", "highest port", {"listen": "[::1]:65535"}),
    ("TLD", "owned by a peer", {"owner": {"peer": "partner"}}),
    ("Record", "values", {"target": None, "type": "A", "values": ["192.0.2.1"]}),
]

BAD: list[tuple[str, str, dict[str, Any], str, str]] = [
    # kind, case, spec changes, the CEL rule's message, what hmctl validate says
    (
        "Network",
        "ephemeral without ttl",
        {"mode": "ephemeral"},
        "an ephemeral network needs a 'ttl'",
        "an ephemeral network needs a 'ttl'",
    ),
    (
        "Network",
        "private with ttl",
        {"ttl": "1h"},
        "only an ephemeral network has a 'ttl'",
        "only an ephemeral network has a 'ttl'",
    ),
    (
        "Network",
        "node and endpoint",
        {"registry": {"node": "registry", **_REMOTE}},
        "registry is either a 'node' of these manifests or an 'endpoint' with an 'identity', "
        "not both",
        "not both",
    ),
    (
        "Network",
        "endpoint without identity",
        {"registry": {"endpoint": "registry.example.net:4433"}},
        "a remote registry needs both 'endpoint' and 'identity'",
        "a remote registry needs both 'endpoint' and 'identity'",
    ),
    (
        "Network",
        "federation with network and registry",
        {"federation": [{"name": "lab", "network": "lab", "registry": dict(_REMOTE)}]},
        "a federated network is named by exactly one of 'network' (of these manifests) or "
        "'registry' (a remote one)",
        "a federated network is named by exactly one of",
    ),
    (
        "Network",
        "federation with neither",
        {"federation": [{"name": "lab"}]},
        "a federated network is named by exactly one of 'network' (of these manifests) or "
        "'registry' (a remote one)",
        "a federated network is named by exactly one of",
    ),
    (
        "Network",
        "federation names twice",
        {"federation": [{"name": "lab", "network": "a"}, {"name": "lab", "network": "b"}]},
        "the names of federated networks must be unique",
        "is used twice",
    ),
    (
        "Network",
        "federates with itself",
        {"federation": [{"name": "me", "network": "acme"}]},
        "a network cannot federate with itself",
        "a network cannot federate with itself",
    ),
    (
        "TLD",
        "owner node and peer",
        {"owner": {"node": "alpha", "peer": "partner"}},
        "owner needs exactly one of 'node' or 'peer'",
        "owner needs exactly one of 'node' or 'peer'",
    ),
    (
        "TLD",
        "owner empty",
        {"owner": {}},
        "owner needs exactly one of 'node' or 'peer'",
        "owner needs exactly one of 'node' or 'peer'",
    ),
    (
        "Record",
        "values and target",
        {"type": "A", "values": ["192.0.2.1"]},
        "a Record needs exactly one of 'values' or 'target'",
        "a Record needs exactly one of 'values' or 'target'",
    ),
    (
        "Record",
        "values without type",
        {"target": None, "values": ["192.0.2.1"]},
        "missing required field 'type' (only a target record may omit it)",
        "missing required field 'type' (only a target record may omit it)",
    ),
    (
        "Record",
        "neither values nor target",
        {"target": None, "type": "A"},
        "a Record needs exactly one of 'values' or 'target'",
        "a Record needs exactly one of 'values' or 'target'",
    ),
    (
        "InterfacePolicy",
        "undefined group",
        {"rules": [{"from": {"groups": ["ghost"]}, "operations": ["*"]}]},
        "every group a rule names in from.groups must be defined in spec.groups",
        "group 'ghost' is not defined in spec.groups",
    ),
    (
        "InterfacePolicy",
        "a group name that is not a DNS label",
        {
            "groups": {"Staff": ["alpha"]},
            "rules": [{"from": {"nodes": ["alpha"]}, "operations": ["*"]}],
        },
        "every key must be a group name: a DNS label (lowercase letters, digits and '-', at "
        "most 63 characters)",
        "key 'Staff' is not valid: expected a DNS label",
    ),
    (
        "InterfacePolicy",
        "a group name ending in a newline",
        {
            "groups": {"staff\n": ["alpha"]},
            "rules": [{"from": {"nodes": ["alpha"]}, "operations": ["*"]}],
        },
        "every key must be a group name: a DNS label (lowercase letters, digits and '-', at "
        "most 63 characters)",
        "key 'staff\\n' is not valid",
    ),
    (
        "InterfacePolicy",
        "no groups at all",
        {"groups": None},
        "every group a rule names in from.groups must be defined in spec.groups",
        "group 'staff' is not defined in spec.groups",
    ),
]


def _changed(kind: str, changes: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(_BASE[kind])
    for key, value in changes.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    if name is not None:
        doc["metadata"]["name"] = name
    return doc


def _hmctl_problems(doc: dict[str, Any]) -> list[str]:
    _, problems = build(load_text(yaml.safe_dump(doc)))
    return [problem.message for problem in problems]


@pytest.mark.parametrize(("kind", "case", "changes"), GOOD, ids=[g[1] for g in GOOD])
def test_good_objects_pass_the_cel_rules(kind: str, case: str, changes: dict[str, Any]) -> None:
    doc = _changed(kind, changes)
    Draft202012Validator(openapi_schema(kind)).validate(doc)
    assert cel_failures(doc) == [], case


@pytest.mark.parametrize(("kind", "case", "changes", "cel", "hmctl"), BAD, ids=[b[1] for b in BAD])
def test_bad_objects_are_refused_by_cel_as_by_hmctl(
    kind: str, case: str, changes: dict[str, Any], cel: str, hmctl: str
) -> None:
    doc = _changed(kind, changes)
    # The schema alone lets it through: only the CEL rule stands in the way.
    Draft202012Validator(openapi_schema(kind)).validate(doc)
    assert cel in cel_failures(doc), case
    assert any(hmctl in message for message in _hmctl_problems(doc)), _hmctl_problems(doc)


def test_a_tld_with_a_dot_is_refused_by_cel_as_by_hmctl() -> None:
    doc = _changed("TLD", {}, name="acme.example")
    assert cel_failures(doc) == ["a TLD is a single label: no dots in metadata.name"]
    assert "a TLD is a single label: no dots" in _hmctl_problems(doc)
