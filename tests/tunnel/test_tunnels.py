"""Tunnels through real QUIC endpoints on loopback, each hop a real tunnel service in this
process, every request each hop receives recorded — to show what a relay learns."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.node.tunnel_api import add_tunnel_routes, deliver_to
from hypermesh.transport.identity import Identity
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.client import Tunnel, TunnelFailed, fetch_hops
from hypermesh.tunnel.onion import new_tunnel_key
from hypermesh.tunnel.relay import TunnelService

SECRET = b"the payload no relay may read: 7f3a9c"


class Recording(Router):
    """A router that keeps every request it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Request] = []

    async def dispatch(self, request: Request) -> RouteResponse:
        self.seen.append(request)
        return await super().dispatch(request)


@dataclass
class Node:
    name: str
    identity: Identity
    service: TunnelService
    router: Recording
    endpoint: QuicEndpoint
    pool: ConnectionPool
    api: list[Request] = field(default_factory=list)
    """Requests the node's own API answered (through tunnels, at the destination)."""

    @property
    def address(self) -> str:
        return self.endpoint.address


async def start(name: str, *, relay: bool = True, ttl: float = 3600) -> Node:
    identity = Identity.generate()
    pool = ConnectionPool(None)
    api = Router()
    served: list[Request] = []

    async def echo(request: Request) -> RouteResponse:
        served.append(request)
        return RouteResponse.json(
            {"node": name, "got": request.body.decode(), "peer": request.peer}
        )

    async def status(request: Request) -> RouteResponse:
        served.append(request)
        return RouteResponse.json({"name": name, "identity": identity.node_id})

    api.add("/echo", echo, methods=("POST",))
    api.add("/status", status)

    async def forward(address: str, node_id: str, path: str, body: bytes):  # type: ignore[no-untyped-def]
        return await pool.request(address, node_id, "POST", path, body=body, timeout=10)

    service = TunnelService(
        identity, new_tunnel_key(), forward, deliver_to(api, None), relays=relay, max_ttl=ttl
    )
    router = Recording()
    add_tunnel_routes(router, service)
    endpoint = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(identity, doq=False), router=router
    )
    return Node(name, identity, service, router, endpoint, pool, served)


@contextlib.asynccontextmanager
async def mesh(*names: str, relay: bool = True) -> AsyncIterator[dict[str, Node]]:
    nodes: dict[str, Node] = {}
    try:
        for name in names:
            nodes[name] = await start(name, relay=relay or name.startswith("r"))
        yield nodes
    finally:
        for node in nodes.values():
            node.endpoint.close()
            await node.pool.aclose()


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def open_through(nodes: dict[str, Node], path: list[str], pool: ConnectionPool, ttl=60.0):  # type: ignore[no-untyped-def]
    hops = await fetch_hops(pool, [(n.address, n.identity.node_id) for n in nodes.values()])
    return await Tunnel.open([hops[nodes[p].identity.node_id] for p in path], ttl=ttl, pool=pool)


@pytest.mark.parametrize("relays", [["r1", "r2"], ["r1", "r2", "r3"]])
def test_a_request_reaches_the_destination_through_two_and_three_relays(relays: list[str]) -> None:
    async def scenario() -> None:
        async with mesh(*relays, "dest", relay=False) as nodes:
            pool = ConnectionPool(None)
            try:
                tunnel = await open_through(nodes, [*relays, "dest"], pool)
                answer = await tunnel.request("GET", "/status")
                assert answer.status == 200
                assert answer.json()["identity"] == nodes["dest"].identity.node_id
                echoed = await tunnel.request("POST", "/echo", body=SECRET)
                assert echoed.json()["got"] == SECRET.decode()
                assert echoed.json()["peer"] == "tunnel"  # the destination does not learn who
                for name in relays:
                    assert len(nodes[name].service) == 1
                await tunnel.close()
                for name in [*relays, "dest"]:
                    assert len(nodes[name].service) == 0  # closed at every hop
                with pytest.raises(TunnelFailed):
                    await tunnel.request("GET", "/status")
            finally:
                await pool.aclose()

    run(scenario())


def test_relays_learn_neither_the_other_end_nor_the_payload() -> None:
    async def scenario() -> None:
        async with mesh("r1", "r2", "dest", relay=False) as nodes:
            pool = ConnectionPool(None)
            client_id = Identity.generate()  # an identity the client has and never shows
            try:
                tunnel = await open_through(nodes, ["r1", "r2", "dest"], pool)
                await tunnel.request("POST", "/echo", body=SECRET)
                await tunnel.request("GET", "/status")
                await tunnel.close()
            finally:
                await pool.aclose()
            r1, r2, dest = nodes["r1"], nodes["r2"], nodes["dest"]
            client_ports = {req.peer for req in r1.router.seen}

            def everything(node: Node) -> bytes:
                return b"\n".join(
                    req.body + repr((req.headers, req.path, req.query)).encode()
                    for req in node.router.seen
                    if req.path != "/tunnel/v1/key"
                )

            for relay in (r1, r2):
                seen = everything(relay)
                assert relay.router.seen and seen
                assert SECRET not in seen  # no payload
                assert all(req.peer_id is None for req in relay.router.seen)  # no identities
                assert client_id.node_id.encode() not in seen
                assert b"/echo" not in seen and b"/status" not in seen
            # The first relay knows its neighbours only: not where the tunnel ends.
            assert dest.identity.node_id.encode() not in everything(r1)
            assert dest.address.encode() not in everything(r1)
            # The second relay knows where it ends, but not who started it.
            assert not client_ports & {req.peer for req in r2.router.seen}
            assert all(req.peer not in client_ports for req in dest.router.seen)
            # The destination read the request, without learning who sent it.
            assert [req.body for req in dest.api if req.path == "/echo"] == [SECRET]
            assert all(req.peer == "tunnel" and req.peer_id is None for req in dest.api)

    run(scenario())


def test_tunnels_expire_at_their_ttl_and_leave_no_circuit() -> None:
    async def scenario() -> None:
        async with mesh("r1", "r2", "dest", relay=False) as nodes:
            pool = ConnectionPool(None)
            try:
                tunnel = await open_through(nodes, ["r1", "r2", "dest"], pool, ttl=1.0)
                assert (await tunnel.request("GET", "/status")).status == 200
                await asyncio.sleep(1.2)
                for node in nodes.values():
                    node.service.sweep()
                    assert len(node.service) == 0
                with pytest.raises(TunnelFailed, match="TTL"):
                    await tunnel.request("GET", "/status")
                tunnel.expires = time.time() + 60  # a client that ignores its TTL
                with pytest.raises(TunnelFailed, match="404"):
                    await tunnel.request("GET", "/status")
            finally:
                await pool.aclose()

    run(scenario())


def test_refusals_one_relay_a_non_relay_a_ttl_too_long_and_garbage() -> None:
    async def scenario() -> None:
        async with mesh("r1", "r2", "plain", "dest", relay=False) as nodes:
            pool = ConnectionPool(None)
            try:
                with pytest.raises(TunnelFailed, match="at least 2 relays"):
                    await open_through(nodes, ["r1", "dest"], pool)
                with pytest.raises(TunnelFailed, match="502"):  # "plain" does not relay
                    await open_through(nodes, ["r1", "plain", "dest"], pool, ttl=20)
                assert len(nodes["r1"].service) == 0  # the failed open left nothing
                nodes["r2"].service.max_ttl = 30
                with pytest.raises(TunnelFailed, match="502"):  # r2 refuses, r1 says so
                    await open_through(nodes, ["r1", "r2", "dest"], pool, ttl=300)
                assert len(nodes["r1"].service) == len(nodes["r2"].service) == 0
                r1 = nodes["r1"]
                for path, body in (
                    ("/tunnel/v1/open", b"not an onion"),
                    ("/tunnel/v1/relay", bytes(16) + b"x" * 64),
                ):
                    status, _, _ = await pool.request(
                        r1.address, r1.identity.node_id, "POST", path, body=body
                    )
                    assert status in (400, 404)
                assert len(r1.service) == 0
            finally:
                await pool.aclose()

    run(scenario())
