"""Nodes by key (issue 16): ``Mesh.locate`` finds a node's signed record in the directory (DNS,
then the registry's API), ``Mesh.connect`` dials its addresses with happy eyeballs, and
``Mesh.ping`` times round trips on the winning connection. Real nodes on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.sdk import Mesh, PeerRef
from hypermesh.sdk.dial import dial
from hypermesh.sdk.sync import Mesh as SyncMesh
from hypermesh.transport.identity import Identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode
from tests.harness.nodes import wait_for
from tests.harness.proc import free_udp_port


@dataclass
class Net:
    registry: RunningNode
    gamma: RunningNode
    delta: RunningNode
    """Published with a wrong-key address and a dead one before its own."""
    dead: str

    def mesh(self, *, node: PeerRef | None = None) -> Mesh:
        registry = PeerRef(self.registry.address, self.registry.identity)
        return Mesh(Identity.generate(), node=node, registry=registry, timeout=5.0)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    starter = NodeStarter(tmp_path_factory.mktemp("directory"))
    try:
        registry = directory.start(
            starter, "registry", roles=("registry",), members=("gamma", "delta")
        )
        gamma = directory.start(starter, "gamma", registry="registry")
        port, dead = free_udp_port(), f"127.0.0.1:{free_udp_port()}"
        delta = directory.start(
            starter,
            "delta",
            registry="registry",
            listen=f"127.0.0.1:{port}",
            advertise=(registry.address, dead, f"127.0.0.1:{port}"),
        )
        for node in (gamma, delta):
            directory.wait_record(registry, node.identity)
        yield Net(registry, gamma, delta, dead)
    finally:
        starter.stop_all()


def test_locate_finds_the_signed_record_in_the_registrys_dns_and_api(net: Net) -> None:
    async def go() -> None:
        async with net.mesh() as mesh:
            record = await mesh.locate(net.gamma.identity)
            assert (record.node_id, record.name) == (net.gamma.identity, "gamma")
            assert record.addresses == (net.gamma.address,)
            # the DNS answer itself: TXT <id>._nodes. at the registry
            txt = await mesh.resolve(f"{net.gamma.identity}._nodes.", "TXT", verify=False)
            assert txt.rcode == "NOERROR" and txt.records
            # nothing for a key nobody published
            with pytest.raises(HyperMeshError, match="no node record of"):
                await mesh.locate(Identity.generate().node_id)
            with pytest.raises(HyperMeshError, match="is not a node ID"):
                await mesh.locate("gamma")

    asyncio.run(go())


def test_connect_by_id_and_by_member_name(net: Net) -> None:
    async def go() -> None:
        async with net.mesh() as mesh:
            by_id = await mesh.connect(net.gamma.identity)
            assert (by_id.address, by_id.node_id, by_id.name) == (
                net.gamma.address,
                net.gamma.identity,
                "gamma",
            )
            by_name = await mesh.connect("gamma")
            assert by_name.node_id == net.gamma.identity
            with pytest.raises(HyperMeshError, match="no node record for the member 'nobody'"):
                await mesh.connect("nobody")

    asyncio.run(go())


def test_happy_eyeballs_skips_a_wrong_key_and_a_dead_port(net: Net) -> None:
    record = SyncMesh(net.mesh()).locate(net.delta.identity)
    assert record.addresses[:2] == (net.registry.address, net.dead)  # tried first, both lose
    node = SyncMesh(net.mesh()).connect(net.delta.identity)
    assert node.address == net.delta.address


def test_dial_says_why_every_address_failed(net: Net) -> None:
    async def go() -> None:
        with pytest.raises(TransportError) as raised:
            async with dial(
                [net.registry.address, net.dead], net.gamma.identity, identity=None, timeout=2.0
            ):
                pass
        assert net.registry.address in str(raised.value) and net.dead in str(raised.value)

    asyncio.run(go())


def test_ping_measures_round_trips_on_the_direct_path(net: Net) -> None:
    result = SyncMesh(net.mesh()).ping(net.delta.identity, count=4)
    assert (result.node_id, result.name, result.path) == (net.delta.identity, "delta", "direct")
    assert result.address == net.delta.address
    assert len(result.rtt_ms) == 4 and all(r > 0 for r in result.rtt_ms)
    assert result.rtt_min <= result.rtt_avg <= result.rtt_max
    assert result.to_json()["rttMs"] == list(result.rtt_ms)


def test_locate_through_a_mirror_that_copied_the_directory(tmp_path: Path) -> None:
    starter = NodeStarter(tmp_path)
    try:
        registry = directory.start(starter, "registry", roles=("registry",), members=("alpha",))
        alpha = directory.start(starter, "alpha", registry="registry")
        directory.wait_record(registry, alpha.identity)
        mirror = PeerRef(alpha.address, alpha.identity)
        mesh = SyncMesh(Mesh(Identity.generate(), node=mirror, timeout=5.0))  # no registry
        found = wait_for(lambda: mesh.locate(registry.identity), what="the mirror's copy")
        assert found.name == "registry"
    finally:
        starter.stop_all()
