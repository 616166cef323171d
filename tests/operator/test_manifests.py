"""The operator's deployment files: valid Kubernetes objects, and RBAC that grants what the
handlers use and no more."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kmock
import kubernetes_validate
import pytest
import yaml

from tests.operator import test_nodes
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


def granted() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) the operator's ClusterRole grants."""
    (role,) = [d for d in documents() if d["kind"] == "ClusterRole"]
    rules = role["rules"]
    assert isinstance(rules, list)
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


VERB_OF = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}


def asked(method: str, path: str) -> tuple[str, str, str]:
    """(API group, resource, verb) of one request of the operator's API client."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[0] == "namespaces":
        rest = rest[2:]
    return group, rest[0], VERB_OF[method]


def test_rbac_grants_what_a_node_convergence_asks_and_no_more_for_the_children() -> None:
    """A NodePort Node converged over an earlier operator's Deployment, then its children
    edited by hand and converged again, takes every path of the Node driver: each request it
    makes is granted, and the rules of core and apps resources (kopf's namespaces and events
    aside) grant exactly what it asks."""

    async def scenario() -> set[tuple[str, str, str]]:
        async with test_nodes.api() as (k, kube):
            test_nodes.put(k, "v1/services", test_nodes.node_port_service("edge"))
            test_nodes.put(k, "v1/pods", test_nodes.pod("edge", "worker-1"))
            worker = test_nodes.kubernetes_node("worker-1", {"InternalIP": "10.0.0.1"})
            test_nodes.put(k, "v1/nodes", worker)
            legacy = test_nodes.legacy_deployment("edge", "uid-edge")
            test_nodes.put(k, "apps/v1/deployments", legacy)
            result = await test_nodes.converge(kube, "edge", set())
            assert result.status["address"] == f"10.0.0.1:{test_nodes.NODE_PORT}"
            await test_nodes.converge(kube, "inside", set())
            edits = [("v1/configmaps", "hm-edge-config"), ("v1/services", "hm-edge")]
            for ref, name in [*edits, ("apps/v1/statefulsets", "hm-edge")]:
                edited = dict(k.objects[kmock.resource(ref), test_nodes.NS, name].raw)
                test_nodes.put(k, ref, {**edited, "metadata": {**edited["metadata"], "labels": {}}})
            await test_nodes.converge(kube, "edge", set(), first=False)
            return {asked(method, path) for method, path in test_nodes.requests(k)}

    used = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert not used - granted(), sorted(used - granted())
    children = {(g, r, v) for g, r, v in granted() if g in ("", "apps")}
    children -= {("", "namespaces", v) for v in ("get", "list", "watch")}
    children -= {("", "events", "create")}
    assert children == used
    assert ("apps", "deployments", "delete") in used and ("apps", "statefulsets", "create") in used


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
