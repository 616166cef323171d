"""RelayLink against a real node process with role ``relay`` (``python -m hypermesh.node``, as
the controller starts it) in a private network: two members attach over QUIC from their own
endpoints and over TLS/TCP, exchange packets both ways and make an HTTP/3 request to each other
through the relay; a non-member is refused with 403 on both carriers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hypermesh.node.config import NodeConfig
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.client import H3ClientProtocol
from hypermesh.transport.endpoint import virtual_address
from hypermesh.transport.identity import Identity
from hypermesh.transport.relayclient import RelayLink, RelayRefused
from tests.harness.node_process import RunningNode, spawn, stop, wait_runtime
from tests.relay_client.relay import Inbox, until

ALPHA, BETA = Identity.generate(), Identity.generate()


@pytest.fixture
def relay_node(tmp_path: Path) -> Iterator[RunningNode]:
    """A node with role relay in private network "lab", whose members are alpha and beta."""
    node_dir = tmp_path / "relay"
    node_dir.mkdir(mode=0o700)
    config = NodeConfig(
        name="relay",
        network="lab",
        listen="127.0.0.1:0",
        prefer_port=None,
        interfaces=("public",),
        roles=("relay",),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        log_level="debug",
        directory={
            "alpha": {"kind": "Node", "identity": ALPHA.node_id, "tags": []},
            "beta": {"kind": "Node", "identity": BETA.node_id, "tags": []},
        },
    )
    config_path = node_dir / "config.json"
    config_path.write_text(config.to_json())
    proc = spawn(config_path)
    try:
        yield RunningNode(proc, config_path, node_dir, wait_runtime(node_dir, proc))
    finally:
        stop(proc)


def _router() -> Router:
    router = Router()

    async def whoami(request: Request) -> RouteResponse:
        return RouteResponse.json({"id": request.peer_id})

    router.add("/whoami", whoami)
    return router


@asynccontextmanager
async def node_endpoint(identity: Identity) -> AsyncIterator[QuicEndpoint]:
    served = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(identity), router=_router()
    )
    try:
        yield served
    finally:
        served.close()


def injector(served: QuicEndpoint, relay_id: str, inbox: Inbox) -> Callable[[str, bytes], None]:
    """Packets from the relay: test packets (first byte 0x00, never QUIC) to the inbox, QUIC
    packets into the endpoint."""

    def deliver(peer: str, packet: bytes) -> None:
        if packet[:1] == b"\x00":
            inbox.packet(peer, packet)
        else:
            served.server.inject(packet, peer, relay_id)

    return deliver


def test_members_attach_over_quic_and_tcp_and_reach_each_other(relay_node: RunningNode) -> None:
    relay_id, address = relay_node.identity, relay_node.address

    async def scenario() -> None:
        async with node_endpoint(ALPHA) as a, node_endpoint(BETA) as b:
            inboxes = {ALPHA.node_id: Inbox(), BETA.node_id: Inbox()}
            links = [
                RelayLink(
                    relay_id,
                    [address],
                    identity,
                    served.server,
                    injector(served, relay_id, inboxes[identity.node_id]),
                    transports=(transport,),
                )
                for identity, served, transport in ((ALPHA, a, "udp"), (BETA, b, "tcp"))
            ]
            runs = [asyncio.ensure_future(link.run()) for link in links]
            try:
                await until(lambda: all(link.ready.is_set() for link in links), 20)
                assert [link.transport for link in links] == ["udp", "tcp"]
                assert links[0].observed == f"127.0.0.1:{a.port}"
                links[0].send(BETA.node_id, b"\x00to beta")
                links[1].send(ALPHA.node_id, b"\x00to alpha")
                await until(lambda: all(inbox.packets for inbox in inboxes.values()))
                assert inboxes[BETA.node_id].packets == [(ALPHA.node_id, b"\x00to beta")]
                assert inboxes[ALPHA.node_id].packets == [(BETA.node_id, b"\x00to alpha")]
                h3: H3ClientProtocol = await b.server.dial_h3(
                    virtual_address(ALPHA.node_id, relay_id),
                    expected_id=ALPHA.node_id,
                    identity=BETA,
                )
                status, _, body = await h3.request("GET", "/whoami")
                assert (status, json.loads(body)) == (200, {"id": BETA.node_id})
                h3.close()
            finally:
                for link in links:
                    await link.aclose()
                async with asyncio.timeout(10):
                    await asyncio.gather(*runs)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_non_member_is_refused_on_both_carriers(relay_node: RunningNode) -> None:
    relay_id, address = relay_node.identity, relay_node.address
    outsider = Identity.generate()

    async def scenario() -> None:
        async with node_endpoint(outsider) as mine:
            for transport in ("udp", "tcp"):
                link = RelayLink(
                    relay_id, [address], outsider, mine.server, print, transports=(transport,)
                )
                with pytest.raises(RelayRefused) as refused:
                    await link.connect_once()
                assert refused.value.status == 403, transport
                assert "not a member of network lab" in refused.value.message
                assert relay_id not in mine.server.relay_routes

    asyncio.run(asyncio.wait_for(scenario(), 60))
