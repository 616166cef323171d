"""CustomResourceDefinitions generated from the schemas, so the same manifests work as custom
resources on a cluster.

``python -m hypermesh.model.crds --write manifests/crds`` regenerates ``manifests/crds/``: one
file per kind (``networks.hypermesh.online.yaml``, …) and a ``kustomization.yaml`` listing them,
so that ``kubectl apply -k manifests/crds`` installs them all. Without ``--write`` every CRD is
printed to stdout as one multi-document YAML stream.

Besides the structural schema (``structural``) and the status subresource, each CRD carries
what a cluster operator expects of a kind: printer columns for ``kubectl get`` (``COLUMNS``) and
CEL rules (``x-kubernetes-validations``, ``RULES``) for the cross-field rules a JSON Schema
cannot say, so that the API server refuses what ``hmctl validate`` refuses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from hypermesh.model.schemas import (
    API_GROUP,
    KINDS,
    PLURALS,
    SHORT_NAMES,
    SINGULARS,
    load_schema,
    structural,
)

__all__ = [
    "BOUNDS",
    "COLUMNS",
    "KUSTOMIZATION",
    "RULES",
    "VERSION",
    "Column",
    "Rule",
    "crd",
    "file_name",
    "key_rules",
    "openapi_schema",
    "render_crds",
    "render_files",
    "rules",
    "schema_at",
    "write_files",
]

VERSION = "v1alpha1"
"""The one served and stored version of every kind."""

KUSTOMIZATION = "kustomization.yaml"
"""The file in the output folder that lists the CRDs (``kubectl apply -k``)."""

COMMAND = "python -m hypermesh.model.crds --write manifests/crds"
HEADER = (
    f"# Generated from schemas/*.json by `{COMMAND}`;\n"
    "# edit the schemas (or hypermesh/model/crds.py), not this file.\n"
)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of ``kubectl get`` (an ``additionalPrinterColumns`` entry)."""

    name: str
    """The column header."""
    json_path: str
    """A simple JSON path into the object, e.g. ``.spec.network``."""
    description: str
    """What the column shows (``kubectl explain`` and API clients show it)."""
    type: str = "string"
    """``string``, ``integer``, ``number``, ``boolean`` or ``date`` (shown as an age)."""
    priority: int = 0
    """0: always shown; 1: only with ``-o wide``."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


def _condition(type_: str, field: str = "status") -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field}'


_READY = Column("Ready", _condition("Ready"), "Status of the Ready condition.")
_REASON = Column("Reason", _condition("Ready", "reason"), "Reason of the Ready condition.")
_REASON_WIDE = Column(
    "Reason", _condition("Ready", "reason"), "Reason of the Ready condition.", priority=1
)
_NETWORK = Column("Network", ".spec.network", "The Network the resource belongs to.")
_AGE = Column("Age", ".metadata.creationTimestamp", "Time since creation.", type="date")

COLUMNS: Mapping[str, tuple[Column, ...]] = MappingProxyType(
    {
        "Network": (
            Column("Mode", ".spec.mode", "public, private or ephemeral."),
            Column("TTL", ".spec.ttl", "Lifetime of an ephemeral network."),
            # A string, not a date: kubectl shows a future date as "<invalid>".
            Column("Expires", ".status.expiresAt", "When an ephemeral network is torn down."),
            _READY,
            _REASON_WIDE,
            _AGE,
        ),
        "Node": (
            _NETWORK,
            Column("Address", ".status.address", "Where the node's QUIC endpoint listens."),
            Column("Identity", ".status.identity", "The node's ID (its public key).", priority=1),
            Column("Roles", ".spec.roles", "registry, relay, mirror.", priority=1),
            _READY,
            _REASON,
            _AGE,
        ),
        "Peer": (
            _NETWORK,
            Column("Address", ".spec.address", "Where the peer's QUIC endpoint is reached."),
            Column("Identity", ".spec.identity", "The peer's node ID."),
            _READY,
            _AGE,
        ),
        "TLD": (
            _NETWORK,
            # A union: exactly one of the two is set, so the column shows that one.
            Column("Owner", ".spec.owner['node','peer']", "The owning Node or Peer."),
            Column("Serial", ".status.serial", "SOA serial of the published zone.", "integer"),
            _READY,
            _REASON_WIDE,
            _AGE,
        ),
        "Record": (
            Column("TLD", ".spec.tld", "The TLD the record belongs to."),
            Column("Type", ".spec.type", "Record type (empty on a target record: HTTPS)."),
            Column("Target", ".spec.target.node", "The Node a target record follows.", priority=1),
            _READY,
            _REASON_WIDE,
            _AGE,
        ),
        "InterfacePolicy": (
            _NETWORK,
            Column("Interface", ".spec.interface", "The interface the policy governs."),
            Column("Enforced", _condition("Enforced"), "Whether probes show the nodes enforce it."),
            _READY,
            _REASON_WIDE,
            _AGE,
        ),
    }
)
"""Kind → its ``kubectl get`` columns (the status fields are those the drivers write)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One CEL rule (an ``x-kubernetes-validations`` entry) and where in the schema it sits."""

    at: str
    """Where the rule is attached: ``""`` for the resource, else a dotted path of properties
    with ``[]`` for the items of a list (``spec.federation[]``). ``self`` is the value there."""
    rule: str
    """The CEL expression; true when the value is valid."""
    message: str
    """What the API server says when the rule fails (as ``hmctl validate`` says it)."""
    field_path: str | None = None
    """The field the failure is reported at, relative to ``at`` (``.ttl``)."""
    reason: str | None = None
    """``FieldValueRequired``, ``FieldValueForbidden``, ``FieldValueDuplicate`` or (the API
    server's default) ``FieldValueInvalid``."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        if self.reason is not None:
            out["reason"] = self.reason
        return out


RULES: Mapping[str, tuple[Rule, ...]] = MappingProxyType(
    {
        "Network": (
            Rule(
                "spec",
                "self.mode != 'ephemeral' || has(self.ttl)",
                "an ephemeral network needs a 'ttl'",
                ".ttl",
                "FieldValueRequired",
            ),
            Rule(
                "spec",
                "self.mode == 'ephemeral' || !has(self.ttl)",
                "only an ephemeral network has a 'ttl'",
                ".ttl",
                "FieldValueForbidden",
            ),
            Rule(
                "spec.registry",
                "!has(self.node) || (!has(self.endpoint) && !has(self.identity))",
                "registry is either a 'node' of these manifests or an 'endpoint' with an "
                "'identity', not both",
            ),
            Rule(
                "spec.registry",
                "has(self.node) || has(self.endpoint) == has(self.identity)",
                "a remote registry needs both 'endpoint' and 'identity'",
            ),
            Rule(
                "spec.federation[]",
                "has(self.network) != has(self.registry)",
                "a federated network is named by exactly one of 'network' (of these manifests) "
                "or 'registry' (a remote one)",
            ),
            Rule(
                "spec.federation",
                "self.all(f, self.exists_one(g, g.name == f.name))",
                "the names of federated networks must be unique",
                reason="FieldValueDuplicate",
            ),
            Rule(
                "",
                "!has(self.spec.federation) || "
                "self.spec.federation.all(f, !has(f.network) || f.network != self.metadata.name)",
                "a network cannot federate with itself",
                ".spec.federation",
            ),
        ),
        "TLD": (
            Rule(
                "spec.owner",
                "has(self.node) != has(self.peer)",
                "owner needs exactly one of 'node' or 'peer'",
            ),
            Rule(
                "",
                "!self.metadata.name.contains('.')",
                "a TLD is a single label: no dots in metadata.name",
            ),
        ),
        "Record": (
            Rule(
                "spec",
                "has(self.values) != has(self.target)",
                "a Record needs exactly one of 'values' or 'target'",
            ),
            Rule(
                "spec",
                "has(self.target) || has(self.type)",
                "missing required field 'type' (only a target record may omit it)",
                ".type",
                "FieldValueRequired",
            ),
        ),
        "InterfacePolicy": (
            Rule(
                "spec",
                "!has(self.rules) || self.rules.all(r, !has(r.from) || !has(r.from.groups) || "
                "r.from.groups.all(g, has(self.groups) && g in self.groups))",
                "every group a rule names in from.groups must be defined in spec.groups",
                ".rules",
            ),
        ),
    }
)
"""Kind → the CEL rules of its CRD: the rules of ``hypermesh.model.validate`` that look at one
resource only. Rules between resources (does the Node exist?) stay with the controller.
Address fields need no rule: their pattern (``HOST_PORT_PATTERN``) bounds the port itself."""

BOUNDS: Mapping[str, Mapping[str, Mapping[str, int]]] = MappingProxyType(
    {}  # InterfacePolicy's rules and from.groups carry their bounds in the schema itself
)
"""Kind → place → bounds the CRD adds where the schema has none, so that the API server can
bound the cost of the CEL rules that walk those lists (an unbounded list is costed as if it
filled a whole request, and the rule is refused)."""


def schema_at(schema: dict[str, Any], at: str) -> dict[str, Any]:
    """The sub-schema of ``schema`` at ``at`` (see ``Rule.at``); KeyError when there is none."""
    node = schema
    for part in at.split(".") if at else ():
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        node = node["properties"][name]
        if items:
            node = node["items"]
    return node


def key_rules(kind: str) -> tuple[Rule, ...]:
    """CEL rules for the maps whose keys the schema constrains (``propertyNames``, which a
    structural schema cannot hold): every key must match the pattern and length there."""
    return tuple(_key_rules(load_schema(kind), ""))


def _key_rules(schema: Mapping[str, Any], at: str) -> Iterator[Rule]:
    names = schema.get("propertyNames")
    if isinstance(names, Mapping):
        checks = []
        if "pattern" in names:
            pattern = str(names["pattern"])
            if "'" in pattern:
                raise ValueError(f"{at}: a key pattern with a quote cannot go in a CEL string")
            quoted = ("r'" if "\\" in pattern else "'") + pattern + "'"
            checks.append(f"k.matches({quoted})")
        if "maxLength" in names:
            checks.append(f"size(k) <= {int(names['maxLength'])}")
        if checks:
            what = str(names.get("description", "")).rstrip(".") or "a valid key"
            yield Rule(at, f"self.all(k, {' && '.join(checks)})", f"every key must be {what}")
    for name, sub in schema.get("properties", {}).items():
        yield from _key_rules(sub, f"{at}.{name}" if at else name)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _key_rules(items, f"{at}[]")


def rules(kind: str) -> tuple[Rule, ...]:
    """Every CEL rule of ``kind``'s CRD: ``RULES`` and ``key_rules``."""
    return (*RULES.get(kind, ()), *key_rules(kind))


def openapi_schema(kind: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``kind``: structural, with bounds and CEL rules added."""
    schema = structural(load_schema(kind))
    for at, bounds in BOUNDS.get(kind, {}).items():
        place = schema_at(schema, at)
        for key, value in bounds.items():
            place.setdefault(key, value)
    for rule in rules(kind):
        schema_at(schema, rule.at).setdefault("x-kubernetes-validations", []).append(rule.to_dict())
    return schema


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind (apiextensions.k8s.io/v1)."""
    plural = PLURALS[kind]
    # Kubernetes has a Node of its own: "no" stays with it.
    short = [s for s in SHORT_NAMES.get(kind, ()) if s != "no"]
    names: dict[str, Any] = {"kind": kind, "plural": plural, "singular": SINGULARS[kind]}
    if short:
        names["shortNames"] = short
    names["categories"] = ["hypermesh"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": names,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_dict() for c in COLUMNS[kind]],
                }
            ],
        },
    }


def file_name(kind: str) -> str:
    """The file of ``kind``'s CRD: its name, e.g. ``networks.hypermesh.online.yaml``."""
    return f"{PLURALS[kind]}.{API_GROUP}.yaml"


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def render_crds() -> str:
    """Every CRD as one multi-document YAML stream (what the command prints)."""
    return HEADER + yaml.safe_dump_all(
        [crd(kind) for kind in KINDS], sort_keys=False, default_flow_style=False, width=100
    )


def render_files() -> dict[str, str]:
    """File name → text of every file in ``manifests/crds/``: one per kind and the
    kustomization that lists them."""
    files = {file_name(kind): HEADER + _dump(crd(kind)) for kind in KINDS}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    files[KUSTOMIZATION] = HEADER + _dump(kustomization)
    return files


def write_files(directory: Path) -> list[Path]:
    """Write ``render_files()`` into ``directory`` (made if missing), remove CRD files of this
    group that are no longer generated, and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = render_files()
    for stale in directory.glob(f"*.{API_GROUP}.yaml"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hypermesh.model.crds",
        description="Generate the CustomResourceDefinitions from the schemas.",
    )
    parser.add_argument(
        "--write",
        metavar="DIR",
        type=Path,
        help="write one file per kind and a kustomization.yaml into DIR (e.g. manifests/crds) "
        "instead of printing every CRD to stdout",
    )
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(render_crds())
        return
    for path in write_files(args.write):
        print(path)


if __name__ == "__main__":
    main()
