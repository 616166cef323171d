"""CustomResourceDefinitions generated from the schemas, so the same manifests work as custom
resources on a cluster. ``python -m hypermesh.model.crds > manifests/crds.yaml`` regenerates."""

from __future__ import annotations

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

VERSION = "v1alpha1"
HEADER = (
    "# Generated from schemas/*.json by `python -m hypermesh.model.crds > manifests/crds.yaml`;\n"
    "# edit the schemas, not this file.\n"
)
_COLUMNS = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind (apiextensions.k8s.io/v1)."""
    plural = PLURALS[kind]
    # Kubernetes has a Node of its own: "no" stays with it.
    short = [s for s in SHORT_NAMES.get(kind, ()) if s != "no"]
    names: dict[str, Any] = {"kind": kind, "plural": plural, "singular": SINGULARS[kind]}
    if short:
        names["shortNames"] = short
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
                    "schema": {"openAPIV3Schema": structural(load_schema(kind))},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _COLUMNS,
                }
            ],
        },
    }


def render_crds() -> str:
    return HEADER + yaml.safe_dump_all(
        [crd(kind) for kind in KINDS], sort_keys=False, default_flow_style=False, width=100
    )


def main() -> None:
    print(render_crds(), end="")


if __name__ == "__main__":
    main()
