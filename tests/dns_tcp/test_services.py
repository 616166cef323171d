"""The DoT and DoH2 services on a listener of their own: answers a mirror must fetch come back
out of order, and the public gate refuses over TCP as over QUIC."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable

import dns.message
import h2.config
import h2.connection
import h2.events

from hypermesh.dns.doq import DnsHandler
from hypermesh.node.features.tls_tcp import doh2_service, dot_service
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import Gate
from hypermesh.node.tls_tcp import TlsListener, TlsService, open_tls_listener
from hypermesh.transport.identity import Identity

WAIT = 10.0


def _context(alpn: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    return context


async def _listen(handler: DnsHandler, gate: Gate | None, router: Router) -> asyncio.Server:
    services = [
        TlsService("dot", dot_service(handler, gate)),
        TlsService("h2", doh2_service(router, gate)),
    ]
    listener = TlsListener(services, without_alpn="dot")
    return await open_tls_listener("127.0.0.1", 0, Identity.generate(), listener)


def _answer(query: bytes) -> bytes:
    return query[:2] + b"\x81\x00" + query[4:]


def _query(name: str, message_id: int) -> bytes:
    query = dns.message.make_query(name, "A")
    query.id = message_id
    wire = query.to_wire()
    return len(wire).to_bytes(2, "big") + wire


async def _read_one(reader: asyncio.StreamReader) -> int:
    size = int.from_bytes(await reader.readexactly(2), "big")
    return int.from_bytes((await reader.readexactly(size))[:2], "big")


def test_an_answer_that_must_be_fetched_comes_after_the_ones_the_node_holds() -> None:
    async def main() -> None:
        released = asyncio.Event()

        async def fetched(query: bytes) -> bytes | None:
            await released.wait()
            return _answer(query)

        def handler(query: bytes) -> bytes | Awaitable[bytes | None] | None:
            slow = b"\x04slow" in query
            return fetched(query) if slow else _answer(query)

        server = await _listen(handler, None, Router())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_context("dot"))
        async with asyncio.timeout(WAIT):
            writer.write(_query("slow.example.", 1) + _query("fast.example.", 2))
            assert await _read_one(reader) == 2, "the held answer does not wait for the other"
            released.set()
            assert await _read_one(reader) == 1
        writer.close()
        server.close()

    asyncio.run(main())


def test_the_gate_refuses_dot_and_doh2_over_tcp() -> None:
    asked: list[tuple[str | None, str, str]] = []

    def gate(peer_id: str | None, peer: str, operation: str) -> tuple[int, str]:
        asked.append((peer_id, peer, operation))
        return 403, "not on this interface"

    async def dns_query(_: Request) -> RouteResponse:
        raise AssertionError("a refused request never reaches the route")

    router = Router()
    router.add("/dns-query", dns_query, methods=("GET", "POST"))

    async def main() -> None:
        server = await _listen(_answer, gate, router)
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_context("dot"))
            writer.write(_query("www.example.", 7))
            assert await reader.read(100) == b"", "closed unanswered"
            writer.close()
            status, body = await _doh2_get(port)
            assert status == b"403" and b"not on this interface" in body
        server.close()

    asyncio.run(main())
    assert [(who, operation) for who, _, operation in asked] == [(None, "dns.query")] * 2
    assert all(peer.startswith("127.0.0.1:") for _, peer, _ in asked)


async def _doh2_get(port: int) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_context("h2"))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    head = [(":method", "GET"), (":path", "/dns-query?dns=AA"), (":scheme", "https")]
    client.send_headers(1, [*head, (":authority", "node")], end_stream=True)
    writer.write(client.data_to_send())
    status, body = b"", b""
    while not body:
        data = await reader.read(65536)
        assert data, "closed before the response"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers or [])[b":status"]
            elif isinstance(event, h2.events.DataReceived):
                body += event.data or b""
        writer.write(client.data_to_send())
    writer.close()
    return status, body
