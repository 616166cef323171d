"""``KubeNodeDriver`` against kmock (a mock Kubernetes API; no API server here), run as a
handler runs it (``converge_one``): the address a ``NodePort`` Node advertises is read from the
Kubernetes node its pod runs on, and the Deployment an earlier operator ran a Node in is deleted
once, when the Node owns it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock

from hypermesh.model.loader import load_text
from hypermesh.model.resources import DesiredState
from hypermesh.model.validate import build
from hypermesh.reconcile import ApplyContext, Converged, converge_one
from hypermesh.transport.identity import Identity
from hypermesh_operator import children
from hypermesh_operator.directory import Keys
from hypermesh_operator.kube import Connection, Kube
from hypermesh_operator.nodes import KubeNodeDriver
from tests.harness.kube_api import emulator

NS = "hm-test"
MANIFESTS = """
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: demo}
spec: {mode: private}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: inside}
spec: {network: demo, listen: "0.0.0.0:0"}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: edge}
spec: {network: demo, listen: "0.0.0.0:0", expose: {type: NodePort}}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: balanced}
spec: {network: demo, listen: "0.0.0.0:0", expose: {type: LoadBalancer}}
"""
NODE_PORT = 31433


def desired() -> DesiredState:
    state, problems = build(load_text(MANIFESTS))
    assert not problems, problems
    return state


def owner(name: str) -> children.Owner:
    return children.Owner(name, NS, f"uid-{name}")


@contextlib.asynccontextmanager
async def api() -> AsyncIterator[tuple[kmock.KubernetesEmulator, Kube]]:
    """kmock on a loopback port and the operator's API client of it."""
    k = emulator()
    async with k, kmock.Server(k):
        kube = Kube(Connection(str(k.url).rstrip("/")))
        try:
            yield k, kube
        finally:
            await kube.close()


def driver(kube: Kube, name: str, checked: set[str]) -> KubeNodeDriver:
    return KubeNodeDriver(
        kube, Keys(kube), owner(name), {}, children.Settings(), legacy_checked=checked
    )


async def converge(kube: Kube, name: str, checked: set[str], *, first: bool = True) -> Converged:
    """One convergence of Node ``name`` as its handler runs it (``first``: never converged,
    so applied; else observed against its spec and applied only on drift)."""
    state = desired()
    node = state.get("Node", name)
    assert node is not None
    applied = None if first else node.spec
    return await converge_one(
        driver(kube, name, checked), node, {}, applied, ApplyContext(state, 1), settles=True
    )


def put(k: kmock.KubernetesEmulator, ref: str, obj: dict[str, Any]) -> None:
    """Store ``obj`` in the mock API as if a controller or an earlier operator had made it."""
    meta = obj["metadata"]
    k.objects[(kmock.resource(ref), meta.get("namespace"), meta["name"])] = obj


def live_names(k: kmock.KubernetesEmulator, plural: str) -> list[str]:
    """The names of the objects of ``plural`` the mock API holds (not deleted)."""
    return sorted(
        name
        for (resource, _, name), obj in k.objects.items()
        if resource.plural == plural and not obj.deleted
    )


def requests(k: kmock.KubernetesEmulator) -> list[tuple[str, str]]:
    return [(r.method.value, r.url.path) for r in k]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


# -- the address of a NodePort node ------------------------------------------------------------


def node_port_service(name: str) -> dict[str, Any]:
    """The Service as the API server returns it once it has allocated the node port."""
    spec = desired().get("Node", name)
    assert spec is not None
    service = children.service(owner(name), children.ports_of(spec.spec), "NodePort")
    service["spec"]["ports"][0]["nodePort"] = NODE_PORT
    return service


def pod(name: str, scheduled_on: str | None) -> dict[str, Any]:
    spec = {"nodeName": scheduled_on} if scheduled_on else {}
    meta = {"name": children.pod_name(name), "namespace": NS}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def kubernetes_node(name: str, addresses: dict[str, str]) -> dict[str, Any]:
    listed = [{"type": kind, "address": address} for kind, address in addresses.items()]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"addresses": listed},
    }


def test_a_node_port_node_advertises_the_node_port_on_its_pods_kubernetes_node() -> None:
    async def scenario() -> None:
        async with api() as (k, kube):
            put(k, "v1/services", node_port_service("edge"))
            put(k, "v1/pods", pod("edge", "worker-2"))
            put(k, "v1/nodes", kubernetes_node("worker-1", {"ExternalIP": "198.51.100.1"}))
            put(
                k,
                "v1/nodes",
                kubernetes_node(
                    "worker-2", {"InternalIP": "10.0.0.2", "ExternalIP": "203.0.113.7"}
                ),
            )
            result = await converge(kube, "edge", set())
            assert result.status["address"] == f"203.0.113.7:{NODE_PORT}"
            assert ("GET", "/api/v1/nodes/worker-2") in requests(k)
            # Observed again (the Node's timer): the same address.
            result = await converge(kube, "edge", set(), first=False)
            assert result.status["address"] == f"203.0.113.7:{NODE_PORT}"

    run(scenario)


def test_a_node_port_node_has_no_address_while_its_pod_is_not_scheduled() -> None:
    async def scenario() -> None:
        async with api() as (k, kube):
            put(k, "v1/services", node_port_service("edge"))
            result = await converge(kube, "edge", set())
            assert "address" not in result.status
            put(k, "v1/pods", pod("edge", None))
            result = await converge(kube, "edge", set(), first=False)
            assert "address" not in result.status
            assert not any(path.startswith("/api/v1/nodes") for _, path in requests(k))

    run(scenario)


def test_other_service_types_read_no_pod_and_no_kubernetes_node() -> None:
    async def scenario() -> None:
        async with api() as (k, kube):
            for name in ("inside", "balanced"):
                await converge(kube, name, set())
                await converge(kube, name, set(), first=False)
            paths = [path for _, path in requests(k)]
            assert not [p for p in paths if "/pods" in p or p.startswith("/api/v1/nodes")]
            assert any(p.endswith("/services/hm-inside") for p in paths)

    run(scenario)


# -- the Deployment of an earlier operator -----------------------------------------------------


def legacy_deployment(name: str, owner_uid: str) -> dict[str, Any]:
    """What an earlier operator made: a Deployment ``hm-NAME`` owned by the Node."""
    reference = {**children.owner_reference(owner(name)), "uid": owner_uid}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": children.object_name(name),
            "namespace": NS,
            "labels": children.labels(name),
            "ownerReferences": [reference],
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": children.selector(name)}},
    }


def deployment_requests(k: kmock.KubernetesEmulator) -> list[str]:
    return [method for method, path in requests(k) if "/deployments/" in path]


def test_the_deployment_an_earlier_operator_made_is_deleted_once() -> None:
    async def scenario() -> None:
        async with api() as (k, kube):
            put(k, "apps/v1/deployments", legacy_deployment("inside", "uid-inside"))
            checked: set[str] = set()
            await converge(kube, "inside", checked, first=False)
            assert live_names(k, "statefulsets") == ["hm-inside"]
            assert live_names(k, "deployments") == []
            assert deployment_requests(k) == ["GET", "DELETE"]
            assert checked == {"uid-inside"}
            # Later convergences of this operator process do not look again.
            await converge(kube, "inside", checked, first=False)
            await converge(kube, "inside", checked)
            assert deployment_requests(k) == ["GET", "DELETE"]

    run(scenario)


def test_a_deployment_the_node_does_not_own_is_left_alone() -> None:
    async def scenario() -> None:
        async with api() as (k, kube):
            put(k, "apps/v1/deployments", legacy_deployment("inside", "uid-someone-else"))
            await converge(kube, "inside", set())
            assert deployment_requests(k) == ["GET"]
            assert live_names(k, "deployments") == ["hm-inside"]

    run(scenario)


def test_without_a_leftover_deployment_one_get_per_node_and_process() -> None:
    async def scenario() -> None:
        async with api() as (k, kube):
            checked: set[str] = set()
            for _ in range(3):
                await converge(kube, "inside", checked)
                await converge(kube, "balanced", checked, first=False)
            assert sorted(p for m, p in requests(k) if "/deployments/" in p) == [
                f"/apis/apps/v1/namespaces/{NS}/deployments/hm-balanced",
                f"/apis/apps/v1/namespaces/{NS}/deployments/hm-inside",
            ]

    run(scenario)


# -- a member added reloads the others, it rolls none of their pods ----------------------------

PRIVATE_NETWORK = """
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: demo}
spec: {mode: private}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: alpha}
spec: {network: demo, listen: "0.0.0.0:0", interfaces: [public, private]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: beta}
spec: {network: demo, listen: "0.0.0.0:0", interfaces: [public, private]}
"""
GAMMA = """
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: gamma}
spec: {network: demo, listen: "0.0.0.0:0", interfaces: [public, private]}
"""


async def apply_alpha(kube: Kube, manifests: str, identities: dict[str, str]) -> None:
    """Converge Node alpha of ``manifests`` (applied, as after a change of its network), the
    other Nodes' IDs being ``identities``."""
    state, problems = build(load_text(manifests))
    assert not problems, problems
    node = state.get("Node", "alpha")
    assert node is not None
    drive = KubeNodeDriver(
        kube, Keys(kube), owner("alpha"), identities, children.Settings(), legacy_checked=set()
    )
    await converge_one(drive, node, {}, None, ApplyContext(state, 1), settles=True)


def alpha_children(k: kmock.KubernetesEmulator) -> tuple[dict[str, Any], str]:
    """Alpha's config (its ConfigMap's) and its pod template's digest, as the API holds them."""
    (config_map,) = [dict(o.raw) for (r, _, n), o in k.objects.items() if n == "hm-alpha-config"]
    (workload,) = [
        dict(o.raw)
        for (r, _, n), o in k.objects.items()
        if r.plural == "statefulsets" and n == "hm-alpha"
    ]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    return json.loads(config_map["data"]["config.json"]), annotations[DIGEST]


DIGEST = "hypermesh.online/config-digest"


def patches(k: kmock.KubernetesEmulator, plural: str) -> int:
    return sum(1 for method, path in requests(k) if method == "PATCH" and f"/{plural}/" in path)


def test_a_member_added_patches_the_configmap_and_not_the_statefulset() -> None:
    """A Node joins alpha's network: the operator patches alpha's ConfigMap with the new member
    (the node in the pod reloads it, tests/node/test_watch_config.py) and leaves its
    StatefulSet as it is, so its pod does not roll; a change of alpha's own spec does roll it."""
    ids = {name: Identity.generate().node_id for name in ("beta", "gamma")}

    async def scenario() -> None:
        async with api() as (k, kube):
            await apply_alpha(kube, PRIVATE_NETWORK, {"beta": ids["beta"]})
            config, digest = alpha_children(k)
            assert set(config["directory"]) == {"alpha", "beta"} and config["watch_config"]
            maps, workloads = patches(k, "configmaps"), patches(k, "statefulsets")

            await apply_alpha(kube, PRIVATE_NETWORK + GAMMA, ids)
            config, after = alpha_children(k)
            assert config["directory"]["gamma"]["identity"] == ids["gamma"]
            assert patches(k, "configmaps") == maps + 1
            assert patches(k, "statefulsets") == workloads and after == digest

            moved = PRIVATE_NETWORK.replace(
                "metadata: {name: alpha}\nspec: {", "metadata: {name: alpha}\nspec: {tags: [x], "
            )
            assert moved != PRIVATE_NETWORK
            await apply_alpha(kube, moved + GAMMA, ids)
            config, rolled = alpha_children(k)
            assert config["tags"] == ["x"] and rolled != digest
            assert patches(k, "statefulsets") == workloads + 1

    run(scenario)
