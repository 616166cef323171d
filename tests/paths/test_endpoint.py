"""The node's one UDP socket (``transport.endpoint.MeshEndpoint``): outgoing connections from
the server's own port, connections over a relayed (virtual) path, and hole-punch probes.

Two real endpoints on 127.0.0.1; the "relay" between them in the virtual-path test is the
simplest one there is, a function that hands each packet to the other endpoint's ``inject``,
so what is tested is the endpoint's part alone (the relay service has its own tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from hypermesh.errors import IdentityMismatch
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.client import H3ClientProtocol
from hypermesh.transport.endpoint import (
    PROBE_MAGIC,
    describe,
    parse_virtual,
    virtual_address,
)
from hypermesh.transport.identity import Identity

A, B = Identity.generate(), Identity.generate()


def _router() -> Router:
    router = Router()

    async def whoami(request: Request) -> RouteResponse:
        return RouteResponse.json({"peer": request.peer, "id": request.peer_id})

    router.add("/whoami", whoami)
    return router


@asynccontextmanager
async def endpoint(identity: Identity) -> AsyncIterator[QuicEndpoint]:
    served = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(identity), router=_router()
    )
    try:
        yield served
    finally:
        served.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await test()

    asyncio.run(bounded())


def _addr(served: QuicEndpoint) -> tuple[str, int]:
    return ("127.0.0.1", served.port)


def test_an_outgoing_connection_leaves_from_the_server_port() -> None:
    async def test() -> None:
        async with endpoint(A) as a, endpoint(B) as b:
            h3 = await a.server.dial_h3(_addr(b), expected_id=B.node_id, identity=A)
            status, _, body = await h3.request("GET", "/whoami")
            assert status == 200
            assert f'"peer":"127.0.0.1:{a.port}"' in body.decode()
            assert f'"id":"{A.node_id}"' in body.decode()
            # and b can still dial a from its own port while a's client connection is open
            back = await b.server.dial_h3(_addr(a), expected_id=A.node_id, identity=B)
            status, _, body = await back.request("GET", "/whoami")
            assert f'"peer":"127.0.0.1:{b.port}"' in body.decode()
            h3.close()
            back.close()

    run(test)


def test_a_wrong_key_is_refused_and_the_connection_dropped() -> None:
    async def test() -> None:
        async with endpoint(A) as a, endpoint(B) as b:
            with pytest.raises(IdentityMismatch):
                await a.server.dial_h3(_addr(b), expected_id=A.node_id, identity=A)
            # the half-open client connection closes: a holds nothing for it once it drained
            for _ in range(100):
                if not any(p._quic._is_client for p in a.server._protocols.values()):
                    break
                await asyncio.sleep(0.05)
            assert not any(p._quic._is_client for p in a.server._protocols.values())

    run(test)


def test_a_connection_over_a_relayed_path() -> None:
    async def test() -> None:
        async with endpoint(A) as a, endpoint(B) as b:
            relay = "R" * 52
            loop = asyncio.get_running_loop()  # a relay hands packets over later, never inline
            carried: list[int] = []

            def a_to_b(peer: str, packet: bytes) -> None:
                assert peer == B.node_id
                carried.append(len(packet))
                loop.call_soon(b.server.inject, packet, A.node_id, relay)

            def b_to_a(peer: str, packet: bytes) -> None:
                assert peer == A.node_id
                loop.call_soon(a.server.inject, packet, B.node_id, relay)

            a.server.add_relay_route(relay, a_to_b)
            b.server.add_relay_route(relay, b_to_a)
            via = virtual_address(B.node_id, relay)
            h3 = await a.server.dial_h3(via, expected_id=B.node_id, identity=A)
            status, _, body = await h3.request("GET", "/whoami")
            assert status == 200
            assert f"{A.node_id}@{relay}" in body.decode()
            assert carried, "nothing went through the relay"
            assert describe(via) == f"relay {relay}"
            assert parse_virtual(via) == (B.node_id, relay)
            assert parse_virtual(("127.0.0.1", 1)) is None
            h3.close()

    run(test)


def test_probes_reach_the_handler_and_never_quic() -> None:
    async def test() -> None:
        async with endpoint(A) as a, endpoint(B) as b:
            got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
            b.server.probe_handler = lambda data, addr: got.put_nowait((data, addr))
            a.server.send_datagram(PROBE_MAGIC + b"token", _addr(b))
            a.server.send_datagram(b"\x00not a probe", _addr(b))
            data, addr = await asyncio.wait_for(got.get(), 5)
            assert data == PROBE_MAGIC + b"token"
            assert addr[1] == a.port
            await asyncio.sleep(0.1)
            assert got.empty()
            assert not b.server._protocols  # no connection was made of either

    run(test)


def test_a_first_flight_the_peer_never_saw_is_sent_again_byte_for_byte() -> None:
    """A hole punch's first Initials die at the peer's NAT; ``resend_first_flight`` sends the
    same datagrams again once the way is open, and the handshake completes on the copies."""

    async def test() -> None:
        async with endpoint(A) as a, endpoint(B) as b:
            clients: list[H3ClientProtocol] = []
            dropped: list[bytes] = []
            accepted: list[bytes] = []
            lost = asyncio.Event()
            receive = b.server.datagram_received

            def closed_nat(data: bytes | str, addr: tuple[str, int]) -> None:
                assert isinstance(data, bytes)
                if not accepted and len(dropped) < 1:
                    dropped.append(data)  # the first flight (one padded Initial) never arrives
                    lost.set()
                    return
                accepted.append(data)
                receive(data, addr)

            b.server.datagram_received = closed_nat  # type: ignore[method-assign]
            dialing = asyncio.ensure_future(
                a.server.dial(
                    _addr(b),
                    expected_id=B.node_id,
                    identity=A,
                    protocol=H3ClientProtocol,
                    started=clients.append,
                )
            )
            await lost.wait()
            assert not b.server._protocols  # b saw nothing of it
            assert a.server.resend_first_flight(clients[0])
            h3 = await dialing
            assert accepted[0] == dropped[0]  # the same bytes, sent again
            assert not a.server.resend_first_flight(h3)  # nothing to resend once connected
            status, _, _ = await h3.request("GET", "/whoami")
            assert status == 200
            h3.close()

    run(test)
