"""Paths between real node processes on 127.0.0.1: dialled by key from the node's one socket,
through the home relay when the peer's addresses are dead, then moved to the direct path once
the punch (over the relayed connection) finds the peer's real address."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from hypermesh.errors import TransportError
from hypermesh.node.paths import PathManager, PeerLink
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.client import h3_get, h3_get_json, h3_post
from hypermesh.transport.identity import Identity, load_identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode
from tests.harness.proc import free_udp_port

MEMBERS = ("relay", "alpha", "beta")


def _key(node: RunningNode) -> Any:
    return load_identity(node.node_dir / "identity.key")


def ping(
    node: RunningNode, target: str, count: int = 1, size: int = 0
) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"node": target, "count": count, "bytes": size}).encode()
    return asyncio.run(
        h3_post(
            node.address,
            "/paths/v1/ping",
            body,
            expected_id=node.identity,
            identity=_key(node),
            timeout=15,
        )
    )


def paths_of(node: RunningNode) -> dict[str, Any]:
    return asyncio.run(
        h3_get_json(node.address, "/paths/v1", expected_id=node.identity, identity=_key(node))
    )


def _network(nodes: NodeStarter, beta_advertise: tuple[str, ...] = ()) -> dict[str, RunningNode]:
    registry = directory.start(nodes, "registry", roles=("registry",), members=MEMBERS)
    relay = directory.start(nodes, "relay", roles=("relay",), registry="registry")
    common: dict[str, Any] = {"registry": "registry", "relays": ("relay",), "path_observe": 1.0}
    alpha = directory.start(nodes, "alpha", **common)
    beta = directory.start(nodes, "beta", advertise=beta_advertise, **common)
    for node in (relay, alpha, beta):
        directory.wait_record(registry, node.identity)
    return {"registry": registry, "relay": relay, "alpha": alpha, "beta": beta}


def test_a_reachable_peer_is_dialled_directly(nodes: NodeStarter) -> None:
    net = _network(nodes)
    status, answer = ping(net["alpha"], "beta", count=2, size=300_000)
    assert status == 200, answer
    assert answer["path"] == "direct" and answer["name"] == "beta"
    bulk = answer["bulk"]
    assert bulk["bytes"] == 300_000 and bulk["path"] == "direct" and bulk["mbit_s"] > 0
    assert answer["remote"] == net["beta"].address and len(answer["rtt_ms"]) == 2
    view = paths_of(net["alpha"])
    peers = {p["node"]: p for p in view["peers"]}
    peer = peers[net["beta"].identity]
    assert peer["path"] == "direct" and peer["name"] == "beta"
    # the registry is reached over the node's paths too (for its record, for lookups)
    assert peers[net["registry"].identity]["path"] == "direct"
    assert view["nat"] == "public"


def test_a_peer_whose_addresses_are_dead_is_reached_through_the_relay_then_directly(
    nodes: NodeStarter,
) -> None:
    dead = f"127.0.0.1:{free_udp_port()}"
    net = _network(nodes, beta_advertise=(dead,))
    record = directory.wait_record(net["registry"], net["beta"].identity)
    assert record.addresses == (dead,)
    assert record.relay_id == net["relay"].identity or _wait_relay(net, record)
    status, answer = ping(net["alpha"], net["beta"].identity, count=3)
    assert status == 200, answer
    assert answer["upgraded"] is True, answer
    assert answer["path"] == "direct" and answer["remote"] == net["beta"].address
    peers = {p["node"]: p for p in paths_of(net["alpha"])["peers"]}
    peer = peers[net["beta"].identity]
    assert peer["punch"] == {"attempts": 1, "successes": 1, "last": "ok"}
    assert answer["direct_after_ms"] is not None and answer["direct_after_ms"] > 0


def _wait_relay(net: dict[str, RunningNode], record: Any) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        record = directory.wait_record(net["registry"], net["beta"].identity)
        if record.relay_id == net["relay"].identity:
            return True
        time.sleep(0.2)
    raise AssertionError(f"beta's record never named its relay: {record}")


def test_ping_of_an_unknown_node_is_404_and_only_the_nodes_key_may_ping(
    nodes: NodeStarter,
) -> None:
    net = _network(nodes)
    status, answer = ping(net["alpha"], "nobody")
    assert status == 404 and "nobody" in answer["error"]
    body = json.dumps({"node": "beta"}).encode()
    status, answer = asyncio.run(
        h3_post(
            net["alpha"].address,
            "/paths/v1/ping",
            body,
            expected_id=net["alpha"].identity,
            identity=_key(net["beta"]),
        )
    )
    assert status == 403
    # bulk bytes (a path's throughput) only for members, and never more than the bound
    stranger = Identity.generate()
    beta = net["beta"]
    for who, query, expected in (
        (stranger, "bytes=10", 403),
        (_key(net["alpha"]), "bytes=99999999999", 400),
        (_key(net["alpha"]), "bytes=-1", 400),
        (_key(net["alpha"]), "", 400),
        (_key(net["alpha"]), "bytes=10", 200),
    ):
        status, _, got = asyncio.run(
            h3_get(beta.address, f"/paths/v1/bulk?{query}", expected_id=beta.identity, identity=who)
        )
        assert status == expected, (query, got[:200])
    assert got == bytes(10)
    status, answer = ping(net["alpha"], "beta", size=5 * 1024 * 1024)
    assert status == 400 and "bytes" in answer["error"]


def test_requests_in_flight_during_the_upgrade_all_complete_and_a_dead_direct_path_falls_back(
    nodes: NodeStarter,
) -> None:
    """A node in this process (alpha's key, its own endpoint and paths) keeps eight requests
    in flight to beta, reached first through the relay, while the link moves to the direct
    path: every request is answered, some on each path, and the relayed connection had
    requests in flight when the move happened (it drained, it was not cut). Then the direct
    path goes dead (beta's packets no longer arrive from its address): a GET is answered
    through the relay, a POST fails saying why (it is not sent twice)."""
    dead = f"127.0.0.1:{free_udp_port()}"
    net = _network(nodes, beta_advertise=(dead,))
    _wait_relay(net, None)
    asyncio.run(_load_across_the_upgrade(net))


class _Watched(PathManager):
    """Counts the requests in flight on the relay when the link moves; the move waits (every
    10 ms, 3 s at most) until one is, so that the test does not depend on the punch being
    slower than the first requests (CI once punched before any was sent)."""

    in_flight_at_upgrade: int | None = None
    held: int = 0
    moved: asyncio.Event | None = None

    def _upgrade(self, link: PeerLink, protocol: Any, address: Any) -> None:
        in_flight = len(link.relayed._exchanges) if link.relayed is not None else 0
        if not in_flight and self.held < 300:
            self.held += 1
            asyncio.get_running_loop().call_later(0.01, self._upgrade, link, protocol, address)
            return
        self.in_flight_at_upgrade = in_flight
        super()._upgrade(link, protocol, address)
        if self.moved is not None:
            self.moved.set()


async def _load_across_the_upgrade(net: dict[str, RunningNode]) -> None:
    alpha = _key(net["alpha"])
    registry = RegistryClient(net["registry"].address, net["registry"].identity, identity=alpha)
    served = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(alpha), router=Router()
    )
    paths = _Watched(
        identity=alpha,
        endpoint=served.server,
        locate=lambda target: registry.node_record(node_id=target),
    )
    paths.moved = asyncio.Event()
    try:
        async with asyncio.timeout(60):
            await paths.set_home(net["relay"].identity, [net["relay"].address]).ready.wait()
            beta = net["beta"].identity
            link = await paths.link(beta)
            assert link.path == "relayed"
            used: dict[str, int] = {"direct": 0, "relayed": 0}
            stop = asyncio.Event()

            async def worker() -> None:
                while not stop.is_set():
                    path = link.path
                    status, _, _ = await paths.request(beta, "GET", "/paths/v1/observed")
                    assert status == 200
                    used[path] += 1

            workers = [asyncio.create_task(worker()) for _ in range(8)]
            assert link.punching is not None  # a relayed link punches at once
            await asyncio.wait({link.punching})
            await paths.moved.wait()  # the move, held as above
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*workers)  # any failed request fails the test here
            assert link.path == "direct", link.last
            assert used["relayed"] > 0 and used["direct"] > 0, used
            assert paths.in_flight_at_upgrade, "no request was in flight on the relay"
            await _direct_path_dies(paths, served.server, link, beta)
    finally:
        await paths.aclose()
        served.close()


async def _direct_path_dies(paths: PathManager, endpoint: Any, link: PeerLink, beta: str) -> None:
    dead = link.direct_addr
    receive = endpoint._dispatch  # every datagram, the first of a burst and those read after it

    def blackhole(data: bytes, addr: Any) -> None:
        if addr != dead:
            receive(data, addr)

    endpoint._dispatch = blackhole
    # a POST on a path that dies under it is not sent again: the caller hears why at once
    with pytest.raises(TransportError, match="not sent again"):
        await paths.request(beta, "POST", "/paths/v1/punch", body=b"{}")
    assert link.last == "direct path lost" and link.direct is None
    # a GET goes through the relay, dialled again
    status, _, _ = await paths.request(beta, "GET", "/paths/v1/observed")
    assert status == 200
    assert link.path == "relayed", link.path
