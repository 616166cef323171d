"""TLD and Record resources through the operator against a REAL registry node on loopback (and
kmock for the Kubernetes API: there is no API server here): the operator signs with the owner
Node's key (from the Secret it made) and the registry's API calls are real; deleting the
resources withdraws them (finalizers); a record withdrawn at the registry by someone else is
put back by the drift timer."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from hypermesh.registry.client import API as REGISTRY_API
from hypermesh.registry.client import RegistryClient, tld_path
from hypermesh_operator.directory import identity_of_pem
from tests.harness.nodes import NodeProc, start_node
from tests.operator.harness import API, MockCluster, running_operator

NS = "names"


def status_of(c: MockCluster, plural: str, name: str) -> dict[str, Any] | None:
    obj = c.find(f"{API}/{plural}", NS, name)
    return obj.get("status") if obj else None


def is_ready(c: MockCluster, plural: str, name: str) -> bool:
    status = status_of(c, plural, name) or {}
    return any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in status.get("conditions", [])
    )


async def zone(registry: NodeProc, tld: str) -> tuple[int, dict[str, Any]]:
    return await RegistryClient(registry.address, registry.identity, identity=None).call(
        "GET", tld_path(tld)
    )


async def declare(c: MockCluster, registry: NodeProc) -> None:
    await c.create(
        "networks",
        NS,
        "acme",
        {
            "mode": "private",
            "registry": {"endpoint": registry.address, "identity": registry.identity},
        },
    )
    await c.create("nodes", NS, "owner", {"network": "acme", "listen": "127.0.0.1:0"})
    await c.create("tlds", NS, "acme", {"network": "acme", "owner": {"node": "owner"}})


def test_tld_and_record_through_the_registry_api(tmp_path: Path) -> None:
    registry = start_node(tmp_path / "registry", "registry", roles=["registry"])

    async def scenario() -> None:
        async with running_operator() as c:
            await declare(c, registry)
            await c.wait("the TLD registered", lambda: is_ready(c, "tlds", "acme"))
            owner = status_of(c, "nodes", "owner") or {}
            status, data = await zone(registry, "acme")
            assert status == 200 and data["owner"] == owner["identity"]

            await c.create(
                "records", NS, "www.acme", {"tld": "acme", "type": "A", "values": ["192.0.2.7"]}
            )
            await c.wait("the record published", lambda: is_ready(c, "records", "www.acme"))
            record = status_of(c, "records", "www.acme") or {}
            for cond in record["conditions"]:
                assert cond["observedGeneration"] == 1
            _, data = await zone(registry, "acme")
            assert {"name": "www", "type": "A", "ttl": 3600, "values": ["192.0.2.7"]} in [
                {k: r[k] for k in ("name", "type", "ttl", "values")} for r in data["rrsets"]
            ]

            # Deleting the Record: the finalizer withdraws it from the zone.
            await c.delete("records", NS, "www.acme")
            await c.wait(
                "the Record to go", lambda: c.find(f"{API}/records", NS, "www.acme") is None
            )
            _, data = await zone(registry, "acme")
            assert not [r for r in data["rrsets"] if r["name"] == "www"]

            # Deleting the TLD: the finalizer unregisters it.
            await c.delete("tlds", NS, "acme")
            await c.wait("the TLD to go", lambda: c.find(f"{API}/tlds", NS, "acme") is None)
            status, _ = await zone(registry, "acme")
            assert status == 404

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        registry.stop()


def test_an_unreachable_registry_is_retried(tmp_path: Path) -> None:
    registry = start_node(tmp_path / "registry", "registry", roles=["registry"])
    registry.stop()  # its address and key are known, but nothing answers there

    async def scenario() -> None:
        async with running_operator() as c:
            await declare(c, registry)
            await c.wait(
                "a temporary failure in status",
                lambda: any(
                    cond["type"] == "Reconciling"
                    and cond["status"] == "True"
                    and cond["reason"] == "RegistryDown"
                    for cond in (status_of(c, "tlds", "acme") or {}).get("conditions", [])
                ),
                timeout=30,
            )

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_record_timer_republishes_a_record_deleted_at_the_registry(tmp_path: Path) -> None:
    registry = start_node(tmp_path / "registry", "registry", roles=["registry"])

    async def scenario() -> None:
        async with running_operator() as c:
            await declare(c, registry)
            await c.wait("the TLD registered", lambda: is_ready(c, "tlds", "acme"))
            await c.create(
                "records", NS, "www.acme", {"tld": "acme", "type": "A", "values": ["192.0.2.7"]}
            )
            await c.wait("the record published", lambda: is_ready(c, "records", "www.acme"))

            # Someone withdraws it at the registry, behind the operator's back (signed with the
            # owner's key, from the Secret the operator made).
            secret = c.find("v1/secrets", NS, "hm-owner-identity") or {}
            owner = identity_of_pem(base64.b64decode(secret["data"]["identity.key"]))
            client = RegistryClient(registry.address, registry.identity, identity=owner)
            change = {"name": "www", "type": "A", "changetype": "DELETE"}
            status, _ = await client.call(
                "POST", f"{REGISTRY_API}/rrsets", {"tld": "acme", "rrsets": [change]}, signer=owner
            )
            assert status == 200
            assert "www" not in await names_in(registry)

            # No change of spec, no restart: the drift timer (every second here) puts it back.
            for _ in range(200):
                if "www" in await names_in(registry):
                    break
                await asyncio.sleep(0.1)
            assert "www" in await names_in(registry)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        registry.stop()


async def names_in(registry: NodeProc) -> set[str]:
    _, data = await zone(registry, "acme")
    return {r["name"] for r in data.get("rrsets", [])}
