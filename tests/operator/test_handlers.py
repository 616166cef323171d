"""The operator's handlers against kmock (a mock Kubernetes API; no API server here): Nodes
become their children, specs are validated, ephemeral networks expire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hypermesh_operator.children import Cluster, Owner, node_children
from tests.operator.harness import API, MockCluster, running_operator

NS = "hm-test"


def ready(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    conds = (obj or {}).get("status", {}).get("conditions")
    return obj if conds else None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


async def demo_network(c: MockCluster, mode: str = "private", **extra: Any) -> None:
    await c.create("networks", NS, "demo", {"mode": mode, **extra})


def test_a_node_becomes_its_children_with_status() -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await demo_network(c)
            await c.create(
                "nodes",
                NS,
                "alpha",
                {"network": "demo", "listen": "127.0.0.1:0", "interfaces": ["public", "private"]},
            )
            node = await c.wait("Node status", lambda: ready(c.find(f"{API}/nodes", NS, "alpha")))
            secret = await c.wait(
                "the Secret", lambda: c.find("v1/secrets", NS, "hm-alpha-identity")
            )
            config_map = c.find("v1/configmaps", NS, "hm-alpha-config")
            service = c.find("v1/services", NS, "hm-alpha")
            workload = c.find("apps/v1/statefulsets", NS, "hm-alpha")
            assert config_map and service and workload

            # The children are what the builders make (the golden tests pin those) for the
            # key the operator generated and the network it saw.
            from hypermesh_operator.handlers import view_of

            status = node["status"]
            assert status["identity"].startswith("hm1")
            pem = __import__("base64").b64decode(secret["data"]["identity.key"])
            view = view_of(
                [
                    {
                        "apiVersion": API,
                        "kind": "Network",
                        "metadata": {"name": "demo"},
                        "spec": {"mode": "private"},
                    },
                    {
                        "apiVersion": API,
                        "kind": "Node",
                        "metadata": {"name": "alpha"},
                        "spec": {
                            "network": "demo",
                            "listen": "127.0.0.1:0",
                            "interfaces": ["public", "private"],
                        },
                    },
                ]
            )
            resource = view.desired.get("Node", "alpha")
            assert resource is not None
            want = node_children(
                resource,
                Owner("alpha", NS, "uid-nodes-alpha", 1),
                Cluster(view.desired, {"alpha": status["identity"]}),
                pem,
                status["identity"],
            )
            for built, live in zip(
                want.all(), (secret, config_map, service, workload), strict=True
            ):
                for field in ("data", "spec"):
                    if field in built:
                        assert live[field] == built[field], (built["kind"], field)
                assert live["metadata"]["ownerReferences"] == built["metadata"]["ownerReferences"]

            for cond in status["conditions"]:
                assert cond["observedGeneration"] == 1
            # kmock runs no StatefulSet controller: the pod never becomes ready.
            assert condition(node, "Ready")["status"] == "False"
            assert condition(node, "Ready")["reason"] == "Starting"
            assert status["observedGeneration"] == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_key_is_made_once() -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await demo_network(c)
            await c.create("nodes", NS, "alpha", {"network": "demo", "listen": "127.0.0.1:0"})
            node = await c.wait("Node status", lambda: ready(c.find(f"{API}/nodes", NS, "alpha")))
            first = node["status"]["identity"]
            patch = {
                "spec": {"network": "demo", "listen": "127.0.0.1:0", "tags": ["x"]},
                "metadata": {"generation": 2},
            }
            url = f"{c.url}/apis/{API}/namespaces/{NS}/nodes/alpha"
            headers = {"Content-Type": "application/merge-patch+json"}
            async with c.session.patch(url, json=patch, headers=headers) as response:
                assert response.status == 200
            node = await c.wait(
                "generation 2",
                lambda: (
                    (n := c.find(f"{API}/nodes", NS, "alpha"))
                    and n["status"].get("observedGeneration") == 2
                    and n
                ),
            )
            assert node["status"]["identity"] == first
            config = c.find("v1/configmaps", NS, "hm-alpha-config")
            assert config is not None and '"x"' in config["data"]["config.json"]

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_invalid_spec_is_a_permanent_error_naming_the_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await demo_network(c)
            await c.create(
                "nodes", NS, "bad", {"network": "demo", "listen": "127.0.0.1:0", "colour": "red"}
            )
            node = await c.wait("Node status", lambda: ready(c.find(f"{API}/nodes", NS, "bad")))
            stalled = condition(node, "Stalled")
            assert stalled["status"] == "True"
            assert stalled["reason"] == "Invalid"
            assert "spec.colour" in stalled["message"]
            assert stalled["observedGeneration"] == 1
            assert c.find("apps/v1/statefulsets", NS, "hm-bad") is None
            # kopf takes it as failed for good: not retried until the spec changes.
            assert any("failed permanently" in r.getMessage() for r in caplog.records)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_reference_not_seen_yet_is_retried() -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await c.create("nodes", NS, "early", {"network": "late", "listen": "127.0.0.1:0"})
            node = await c.wait("Node status", lambda: ready(c.find(f"{API}/nodes", NS, "early")))
            assert condition(node, "Reconciling")["reason"] == "UnresolvedReference"
            await c.create("networks", NS, "late", {"mode": "private"})
            await c.wait(
                "the StatefulSet once the Network exists",
                lambda: c.find("apps/v1/statefulsets", NS, "hm-early"),
            )

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_ephemeral_network_is_deleted_when_its_ttl_expires() -> None:
    async def scenario() -> None:
        async with running_operator() as c:
            await demo_network(c, "ephemeral", ttl="2s")
            await c.create("nodes", NS, "alpha", {"network": "demo", "listen": "127.0.0.1:0"})
            network = await c.wait(
                "Network status", lambda: ready(c.find(f"{API}/networks", NS, "demo"))
            )
            assert network["status"]["expiresAt"]
            await c.wait("the StatefulSet", lambda: c.find("apps/v1/statefulsets", NS, "hm-alpha"))
            await c.wait(
                "the network to be deleted",
                lambda: c.find(f"{API}/networks", NS, "demo") is None,
                timeout=20,
            )
            assert c.find(f"{API}/nodes", NS, "alpha") is None

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_storage_size_and_class_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hypermesh_operator.handlers import OperatorSettings

    monkeypatch.delenv("HM_OPERATOR_STORAGE_SIZE", raising=False)
    monkeypatch.delenv("HM_OPERATOR_STORAGE_CLASS", raising=False)
    default = OperatorSettings.from_environment().children
    assert (default.storage_size, default.storage_class) == ("1Gi", None)
    monkeypatch.setenv("HM_OPERATOR_STORAGE_SIZE", "5Gi")
    monkeypatch.setenv("HM_OPERATOR_STORAGE_CLASS", "fast-ssd")
    settings = OperatorSettings.from_environment().children
    assert (settings.storage_size, settings.storage_class) == ("5Gi", "fast-ssd")
    # An empty class is the cluster's default class, not a class named "".
    monkeypatch.setenv("HM_OPERATOR_STORAGE_CLASS", "")
    assert OperatorSettings.from_environment().children.storage_class is None
