"""Members of a federated network, as its registry's signed anchors list them."""

from __future__ import annotations

import asyncio

import pytest

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.anchors import Anchors, BadAnchors
from hypermesh.mirror.federation import FederatedNetwork, Federation
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.service import Registry
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity


def test_anchors_carry_members_signed_and_tamper_evident() -> None:
    registry = Identity.generate()
    members = {"pnode": {"identity": "hm1x", "kind": "Node", "tags": ["a"]}}
    signed = Anchors.issue(registry, "partners", {}, 1.0, {}, members)
    again = Anchors.verify(signed.signed, registry.node_id)
    assert again.members == members
    forged = dict(signed.signed)
    forged["document"] = forged["document"].replace("hm1x", "hm1y")
    with pytest.raises(BadAnchors):
        Anchors.verify(forged, registry.node_id)


def test_a_federation_follows_a_real_registry_and_drops_revoked_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        identity, admin = Identity.generate(), Identity.generate()
        pnode, gone = Identity.generate(), Identity.generate()
        registry = Registry.open(tmp_path / "registry.db", admin=admin.node_id)
        zones = StaticZones()
        members = {
            "pnode": {"identity": pnode.node_id, "kind": "Node", "tags": []},
            "gone": {"identity": gone.node_id, "kind": "Node", "tags": []},
        }
        router = add_feed_routes(
            Router(), registry, zones, zone_feed(zones), identity, "partners", members=members
        )
        endpoint = await bind_endpoint(
            "127.0.0.1", 0, configuration=server_configuration(identity), router=router
        )
        try:
            network = FederatedNetwork(
                "partners", lambda: PeerRef(endpoint.address, identity.node_id)
            )
            federation = Federation([network], identity=None)
            await federation.refresh(network)
            assert federation.member(pnode.node_id) == "partners/pnode"
            assert federation.member(gone.node_id) == "partners/gone"
            assert federation.member(Identity.generate().node_id) is None
            registry.revoke(gone.node_id, signer=admin.node_id, reason="left")
            await federation.refresh(network)
            assert federation.member(gone.node_id) is None
            assert federation.member(pnode.node_id) == "partners/pnode"
            # A registry that answers with another key is not believed; what was known stays.
            impostor = FederatedNetwork(
                "partners", lambda: PeerRef(endpoint.address, Identity.generate().node_id)
            )
            impostor.members = dict(network.members)
            await federation.refresh(impostor)
            assert impostor.last_error and impostor.members == network.members
        finally:
            endpoint.close()
            registry.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
