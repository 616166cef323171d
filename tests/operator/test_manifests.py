"""The operator's deployment files: valid Kubernetes objects, and RBAC that grants what the
handlers use and no more."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.operator.test_children import K8S_VERSION

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests" / "operator"


def documents() -> list[dict[str, object]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return out


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")  # type: ignore[index]
def test_each_manifest_validates(doc: dict[str, object]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_file() -> None:
    listed = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files
    assert (ROOT / "manifests" / "crds" / "kustomization.yaml").exists()


def test_rbac_is_least_privilege() -> None:
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    rules = role["rules"]
    assert isinstance(rules, list)
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]
    verbs = {v for r in rules for v in r["verbs"]}
    assert "update" not in verbs and "deletecollection" not in verbs


def test_the_operator_runs_as_non_root_with_the_image_the_nodes_use() -> None:
    (deployment,) = [d for d in documents() if d["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HM_OPERATOR_NODE_IMAGE"] == container["image"]
    dockerfile = (ROOT / "operator" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "USER 10001" in dockerfile
    assert '".[operator]"' in dockerfile
