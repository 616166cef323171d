"""RelayLink over QUIC from the node's own endpoint (``MeshEndpoint``) to a relay whose public
endpoint serves ALPN ``hm-relay`` (``node.server.bind_endpoint`` with the hub's
``serve_stream``), all on 127.0.0.1: packets both ways, happy eyeballs (QUIC wins when the
relay answers on UDP, TCP when it does not), and an HTTP/3 request from one node to another
through the relay, end to end over virtual addresses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from hypermesh.node.relay_hub import RelayHub
from hypermesh.node.relay_tcp import open_tcp_listener
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.client import H3ClientProtocol
from hypermesh.transport.endpoint import virtual_address
from hypermesh.transport.identity import Identity
from hypermesh.transport.relayclient import RelayLink
from tests.relay_client.relay import Relay, make_link, until


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(60):
            await test()

    asyncio.run(bounded())


def _router() -> Router:
    router = Router()

    async def whoami(request: Request) -> RouteResponse:
        return RouteResponse.json({"peer": request.peer, "id": request.peer_id})

    router.add("/whoami", whoami)
    return router


@asynccontextmanager
async def node_endpoint(identity: Identity) -> AsyncIterator[QuicEndpoint]:
    """A node's public endpoint on 127.0.0.1 (any free port)."""
    served = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(identity), router=_router()
    )
    try:
        yield served
    finally:
        served.close()


@asynccontextmanager
async def quic_relay(*, udp: bool = True) -> AsyncIterator[Relay]:
    """A relay on 127.0.0.1: its public endpoint (ALPN ``hm-relay``, unless ``udp`` is False)
    and its TLS listener on the same port number."""
    identity = Identity.generate()
    hub = RelayHub(identity, None, network="test")
    served = await bind_endpoint(
        "127.0.0.1",
        0,
        configuration=server_configuration(identity, relay=True),
        router=_router(),
        relay=lambda: hub.serve_stream,
    )
    if not udp:
        served.close()  # the port number stays, nothing answers on UDP
    server = await open_tcp_listener(hub, "127.0.0.1", served.port, identity)
    relay = Relay(identity, hub, server)
    try:
        yield relay
    finally:
        await relay.stop()
        served.close()


def test_two_links_over_quic_exchange_packets_both_ways() -> None:
    async def test() -> None:
        a_id, b_id = Identity.generate(), Identity.generate()
        async with quic_relay() as relay, node_endpoint(a_id) as a, node_endpoint(b_id) as b:
            alice, alice_inbox = make_link(relay, a_id, endpoint=a.server, transports=("udp",))
            bob, bob_inbox = make_link(relay, b_id, endpoint=b.server, transports=("udp",))
            await alice.connect_once()
            await bob.connect_once()
            try:
                assert alice.transport == "udp" and bob.transport == "udp"
                # the relay saw the node's own port: the link leaves from the node's socket
                assert alice.observed == f"127.0.0.1:{a.port}"
                assert a.server.relay_routes[relay.identity.node_id] == alice.send
                for n in range(5):
                    alice.send(b_id.node_id, b"\x40to bob %d" % n)
                    bob.send(a_id.node_id, b"\x40to alice %d" % n)
                await until(lambda: len(bob_inbox.packets) == 5 and len(alice_inbox.packets) == 5)
                assert bob_inbox.packets[0] == (a_id.node_id, b"\x40to bob 0")
                assert alice_inbox.packets[4] == (b_id.node_id, b"\x40to alice 4")
                await until(lambda: alice.rtt is not None, what="the first PING's PONG")
            finally:
                await alice.aclose()
                await bob.aclose()
            assert relay.identity.node_id not in a.server.relay_routes

    run(test)


def test_happy_eyeballs_prefers_quic_and_falls_back_to_tcp() -> None:
    async def test() -> None:
        me = Identity.generate()
        async with node_endpoint(me) as mine:
            async with quic_relay() as relay:
                link, _ = make_link(relay, me, endpoint=mine.server)
                await link.connect_once()
                assert link.transport == "udp"
                await link.aclose()
            async with quic_relay(udp=False) as relay:
                link, _ = make_link(relay, me, endpoint=mine.server)
                await link.connect_once()  # QUIC gets no answer; TCP starts 250 ms later
                assert link.transport == "tcp"
                assert relay.identity.node_id in mine.server.relay_routes
                await link.aclose()
            # without an endpoint, only TCP is tried
            async with quic_relay() as relay:
                link, _ = make_link(relay, me, endpoint=None)
                await link.connect_once()
                assert link.transport == "tcp"
                await link.aclose()

    run(test)


def injector(served: QuicEndpoint, relay_id: str) -> Callable[[str, bytes], None]:
    """What a node does with a packet the relay brings: into its endpoint, from the peer's
    virtual address."""

    def inject(peer: str, packet: bytes) -> None:
        served.server.inject(packet, peer, relay_id)

    return inject


def test_an_http3_request_through_the_relay() -> None:
    """Alice dials Bob's virtual address through the relay: the QUIC connection runs end to
    end (Bob sees Alice's key), its packets carried by the two links."""

    async def test() -> None:
        a_id, b_id = Identity.generate(), Identity.generate()
        async with quic_relay() as relay, node_endpoint(a_id) as a, node_endpoint(b_id) as b:
            relay_id = relay.identity.node_id
            links: list[RelayLink] = []
            for identity, served in ((a_id, a), (b_id, b)):
                link = RelayLink(
                    relay_id, [relay.address], identity, served.server, injector(served, relay_id)
                )
                await link.connect_once()
                links.append(link)
            try:
                h3: H3ClientProtocol = await a.server.dial_h3(
                    virtual_address(b_id.node_id, relay_id), expected_id=b_id.node_id, identity=a_id
                )
                status, _, body = await h3.request("GET", "/whoami")
                assert status == 200
                answer = json.loads(body)
                assert answer["id"] == a_id.node_id
                assert relay.hub.stats.packets_relayed > 0
                h3.close()
            finally:
                for link in links:
                    await link.aclose()

    run(test)
