"""A federation is told, not polled (issue 19): each node watches a federated registry's change
feed and takes its anchors again at every notice, so a key revoked there is refused here at
once, with no refresh on a timer (the watch is opened afresh only every ``SAFETY`` seconds)."""

from __future__ import annotations

import asyncio
import time

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.federation import SAFETY, FederatedNetwork, Federation
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.service import Registry
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity


async def _until(predicate: object, seconds: float) -> float:
    """Seconds until ``predicate()`` holds (fails after ``seconds``)."""
    assert callable(predicate)
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < seconds, "not within the wait"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def test_a_revocation_at_a_federated_registry_is_pushed_not_polled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def scenario() -> None:
        identity, admin = Identity.generate(), Identity.generate()
        pnode, gone = Identity.generate(), Identity.generate()
        registry = Registry.open(tmp_path / "registry.db", admin=admin.node_id)
        zones = StaticZones()
        members = {
            "pnode": {"identity": pnode.node_id, "kind": "Node", "tags": []},
            "gone": {"identity": gone.node_id, "kind": "Node", "tags": []},
        }
        feed = zone_feed(zones)
        router = add_feed_routes(
            Router(), registry, zones, feed, identity, "partners", members=members
        )
        endpoint = await bind_endpoint(
            "127.0.0.1", 0, configuration=server_configuration(identity), router=router
        )
        network = FederatedNetwork("partners", lambda: PeerRef(endpoint.address, identity.node_id))
        federation = Federation([network], identity=None)
        follower = asyncio.create_task(federation.run())
        try:
            await _until(lambda: federation.member(gone.node_id) == "partners/gone", 10)
            assert federation.member(pnode.node_id) == "partners/pnode"
            registry.revoke(gone.node_id, signer=admin.node_id, reason="left")
            feed.revoked(gone.node_id)  # as the registry's revoke route tells its feed
            took = await _until(lambda: federation.member(gone.node_id) is None, 10)
            print(f"\nrevocation taken {took * 1000:.1f} ms after it was published")
            assert SAFETY >= 60  # nothing on a short timer could have done it
            assert federation.member(pnode.node_id) == "partners/pnode"
            assert network.last_error is None

            # A reload that follows another network: the new one is watched from then on.
            other = FederatedNetwork("again", lambda: PeerRef(endpoint.address, identity.node_id))
            federation.networks = [other]
            await _until(lambda: federation.member(pnode.node_id) == "again/pnode", 10)
        finally:
            follower.cancel()
            endpoint.close()
            registry.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
