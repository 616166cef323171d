"""Peers and InterfacePolicies are reconciled on Kubernetes by ``hmctl``'s drivers: a Peer's
status is what it declares; a policy is probed live on the nodes, with the keys the operator
reads from the nodes' Secrets, and what the probe finds is in the policy's status.

The API is kmock (there is no API server here, and no pods): the nodes are REAL node processes
on loopback; each Node's identity Secret holds its process's key, and its Service is created
beforehand with the cluster IP 127.0.0.1 (kmock assigns none), so that the address the
operator derives from the Service (ClusterIP and the port of ``spec.listen``) is the process's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypermesh.transport.identity import KEY_FILE, load_identity
from hypermesh_operator import children
from hypermesh_operator.directory import pem_of
from tests.harness.nodes import NodeProc, start_node
from tests.operator.harness import API, MockCluster, running_operator

NS = "probed"
NAMES = ("alpha", "beta")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    started = {name: start_node(tmp_path / "nodes", name) for name in NAMES}
    try:
        yield started
    finally:
        for node in started.values():
            node.stop()


async def post(c: MockCluster, plural: str, obj: dict[str, Any]) -> None:
    url = f"{c.url}/api/v1/namespaces/{NS}/{plural}"
    async with c.session.post(url, json=obj) as response:
        assert response.status in (200, 201), await response.text()


async def as_the_process(c: MockCluster, node: NodeProc) -> None:
    """The Node's Secret with the process's key, and a Service at 127.0.0.1."""
    identity = load_identity(node.node_dir / KEY_FILE)
    owner = children.Owner(node.name, NS, f"uid-nodes-{node.name}")
    await post(c, "secrets", children.identity_secret(owner, pem_of(identity), identity.node_id))
    service = children.service(owner, children.ports_of({"listen": node.address}))
    service["spec"]["clusterIP"] = "127.0.0.1"
    await post(c, "services", service)
    await c.create("nodes", NS, node.name, {"network": "acme", "listen": node.address})


def status_of(c: MockCluster, plural: str, name: str) -> dict[str, Any]:
    return dict((c.find(f"{API}/{plural}", NS, name) or {}).get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((x for x in status.get("conditions", []) if x["type"] == type_), {})


def test_a_peer_and_a_probed_policy(nodes: dict[str, NodeProc]) -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await c.create("networks", NS, "acme", {"mode": "private"})
            for node in nodes.values():
                await as_the_process(c, node)
            peer = {"network": "acme", "identity": "hm1" + "b" * 52, "address": "192.0.2.9:4433"}
            await c.create("peers", NS, "partner", peer)
            await c.create(
                "interfacepolicies",
                NS,
                "open",
                {"network": "acme", "interface": "public", "default": "allow"},
            )

            found = await c.wait(
                "the policy probed",
                lambda: (s := status_of(c, "interfacepolicies", "open")).get("probes") and s,
                timeout=60,
            )
            assert condition(found, "Ready")["status"] == "True"
            assert condition(found, "Enforced")["status"] == "True"
            assert found["mismatches"] == []
            assert found["probes"] > 0
            assert any("partner" in note for note in found["notes"])  # a Peer is no caller

            partner = await c.wait(
                "the Peer declared",
                lambda: (s := status_of(c, "peers", "partner")).get("conditions") and s,
            )
            assert condition(partner, "Ready")["status"] == "True"
            assert partner["identity"] == peer["identity"]
            assert partner["address"] == peer["address"]

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_a_policy_the_nodes_do_not_enforce_is_not_ready(nodes: dict[str, NodeProc]) -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await c.create("networks", NS, "acme", {"mode": "private"})
            for node in nodes.values():
                await as_the_process(c, node)
            # The processes run without this policy: they serve what it denies.
            await c.create(
                "interfacepolicies",
                NS,
                "closed",
                {"network": "acme", "interface": "public", "default": "deny"},
            )
            found = await c.wait(
                "the probe's finding",
                lambda: (
                    condition(s := status_of(c, "interfacepolicies", "closed"), "Ready").get(
                        "reason"
                    )
                    == "NotEnforced"
                    and s
                ),
                timeout=60,
            )
            ready = condition(found, "Ready")
            assert ready["status"] == "False"
            assert "the policy denies, the node allowed" in ready["message"]
            assert condition(found, "Reconciling")["status"] == "True"  # probed again later

    asyncio.run(asyncio.wait_for(scenario(), 90))
