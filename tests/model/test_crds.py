"""The CRDs in manifests/ are generated from the schemas and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hypermesh.model.crds import crd, render_crds
from hypermesh.model.schemas import KINDS

ROOT = Path(__file__).resolve().parents[2]


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


def test_crds_file_is_up_to_date() -> None:
    assert (ROOT / "manifests" / "crds.yaml").read_text() == render_crds()


def test_every_kind_has_a_structural_crd() -> None:
    docs = list(yaml.safe_load_all(render_crds()))
    assert [d["spec"]["names"]["kind"] for d in docs] == list(KINDS)
    for kind in KINDS:
        schema = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        keys = set(_walk(schema))
        assert not keys & {"$ref", "$defs", "patternProperties", "if", "then", "const"}, kind
        assert schema["properties"]["spec"]["type"] == "object"


def test_kubernetes_node_keeps_its_short_name() -> None:
    assert "no" not in crd("Node")["spec"]["names"].get("shortNames", [])
