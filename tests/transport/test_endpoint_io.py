"""How the node's endpoint (``transport.endpoint``) reads and sends: a burst of datagrams
waiting in the socket is read at once and the connections it reached send once, after it
(an HTTP/3 answer once its handler has run: one datagram per request, whichever of the
request's datagrams came first); a connection's timer is set again only when it must fire
earlier, and still fires on time.

A real DoQ server (``bind_endpoint`` with a DNS engine) on 127.0.0.1, and a stock aioquic
client in the same event loop: the client's datagrams all wait in the server's socket until
the client's coroutine yields, which is what makes a burst here."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import dns.message
import dns.rcode
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamDataReceived

from hypermesh.dns import DnsEngine, StaticZones
from hypermesh.node.router import Router
from hypermesh.node.routes import add_dns_routes
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.client import connect_h3
from hypermesh.transport.endpoint import BURST, EndpointProtocol
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import make_zone

ENGINE = DnsEngine(StaticZones([make_zone()]))


class DoqClient(QuicConnectionProtocol):
    """Sends each query on a stream of its own, at once (its pacing is turned off, so that
    every query leaves in a datagram of its own); counts the datagrams it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: dict[int, asyncio.Future[bytes]] = {}
        self.buffers: dict[int, bytearray] = {}
        self.sent = 0
        pacer = self._quic._loss._pacer  # aioquic 1.7 has no public switch
        setattr(pacer, "next_send_time", lambda now: None)  # noqa: B010

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        socket = cast(asyncio.DatagramTransport, transport)
        sendto = socket.sendto

        def counting(data: bytes, addr: Any = None) -> None:
            self.sent += 1
            sendto(data, addr)

        setattr(socket, "sendto", counting)  # noqa: B010

    def send_query(self, wire: bytes) -> asyncio.Future[bytes]:
        stream_id = self._quic.get_next_available_stream_id()
        self.answers[stream_id] = self._loop.create_future()
        framed = len(wire).to_bytes(2, "big") + wire
        self._quic.send_stream_data(stream_id, framed, end_stream=True)
        self.transmit()
        return self.answers[stream_id]

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            buffer = self.buffers.setdefault(event.stream_id, bytearray())
            buffer += event.data
            if event.end_stream:
                self.answers[event.stream_id].set_result(bytes(self.buffers.pop(event.stream_id)))


def query_wire(name: str) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = 0
    return message.to_wire()


@asynccontextmanager
async def doq_server(idle_timeout: float = 60.0) -> AsyncIterator[tuple[QuicEndpoint, list[int]]]:
    """The server (DoQ, and DoH3 at ``/dns-query``), and a one-item list counting the
    datagrams its socket sent."""
    configuration = server_configuration(Identity.generate(), idle_timeout=idle_timeout)
    router = add_dns_routes(Router(), ENGINE)
    served = await bind_endpoint(
        "127.0.0.1", 0, configuration=configuration, router=router, dns_answer=ENGINE.answer
    )
    sent = [0]
    sendto = served.transport.sendto

    def counting(data: bytes, addr: Any = None) -> None:
        sent[0] += 1
        sendto(data, addr)

    setattr(served.transport, "sendto", counting)  # noqa: B010
    try:
        yield served, sent
    finally:
        served.close()


def client_configuration() -> QuicConfiguration:
    return QuicConfiguration(is_client=True, alpn_protocols=["doq"], verify_mode=ssl.CERT_NONE)


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await test()

    asyncio.run(bounded())


def check_answer(answer: bytes) -> None:
    assert int.from_bytes(answer[:2], "big") == len(answer) - 2
    response = dns.message.from_wire(answer[2:])
    assert response.rcode() == dns.rcode.NOERROR and response.answer


def test_answers_to_a_burst_of_queries_leave_together() -> None:
    async def test() -> None:
        async with (
            doq_server() as (served, sent),
            connect(
                "127.0.0.1",
                served.port,
                configuration=client_configuration(),
                create_protocol=DoqClient,
            ) as client,
        ):
            assert isinstance(client, DoqClient)
            check_answer(await client.send_query(query_wire("www.hmtest.")))
            await asyncio.sleep(0.05)  # the handshake's last packets are all through
            client_before, server_before = client.sent, sent[0]
            # 32 queries, each in a datagram of its own, all sent before the server reads any
            waiting = [client.send_query(query_wire("www.hmtest.")) for _ in range(32)]
            assert client.sent - client_before >= 32
            for answer in await asyncio.gather(*waiting):
                check_answer(answer)
            answered_in = sent[0] - server_before
            # aioquic's server sends one datagram per datagram read (32 or more here); the
            # endpoint reads the waiting ones at once and sends the 32 answers together
            assert 1 <= answered_in <= 4, answered_in

    run(test)


def test_an_http3_answer_leaves_in_one_datagram_with_what_its_request_queued() -> None:
    async def test() -> None:
        async with (
            doq_server() as (served, sent),
            connect_h3(f"127.0.0.1:{served.port}", expected_id=None, identity=None) as h3,
        ):
            wire = query_wire("www.hmtest.")
            headers = [("content-type", "application/dns-message")]
            for _ in range(10):  # the handshake, SETTINGS and the QPACK table settle
                await h3.request("POST", "/dns-query", headers=headers, body=wire)
            await asyncio.sleep(0.05)
            before = sent[0]
            for _ in range(50):
                status, _, body = await h3.request("POST", "/dns-query", headers=headers, body=wire)
                assert status == 200 and dns.message.from_wire(body).answer
            # The client's QPACK encoder instructions and its request come in two datagrams,
            # read in one burst; the server's QPACK decoder acknowledgements and its ACK wait
            # for the answer's packet (sent alone, they made 1.3 datagrams a request).
            assert sent[0] - before <= 55, sent[0] - before

    run(test)


def test_a_burst_is_bounded() -> None:
    assert 2 <= BURST <= 256  # the loop runs other work between bursts


def test_the_timer_is_set_again_only_when_it_must_fire_sooner() -> None:
    async def test() -> None:
        async with (
            doq_server() as (served, _),
            connect(
                "127.0.0.1",
                served.port,
                configuration=client_configuration(),
                create_protocol=DoqClient,
            ) as client,
        ):
            assert isinstance(client, DoqClient)
            (protocol,) = set(served.server._protocols.values())
            assert isinstance(protocol, EndpointProtocol)
            loop = asyncio.get_running_loop()
            call_at, set_for_it = loop.call_at, [0]

            def counting(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
                if callback == protocol._handle_timer:
                    set_for_it[0] += 1
                return call_at(when, callback, *args)

            setattr(loop, "call_at", counting)  # noqa: B010
            try:
                for _ in range(50):  # one at a time: each moves the idle deadline later
                    check_answer(await client.send_query(query_wire("www.hmtest.")))
            finally:
                delattr(loop, "call_at")
            # aioquic's protocol sets a new timer at nearly every packet (50 or more here)
            assert set_for_it[0] < 25, set_for_it[0]

    run(test)


def test_a_connection_left_idle_is_still_closed_on_time() -> None:
    async def test() -> None:
        async with (
            doq_server(idle_timeout=0.5) as (served, _),
            connect(
                "127.0.0.1",
                served.port,
                configuration=client_configuration(),
                create_protocol=DoqClient,
            ) as client,
        ):
            assert isinstance(client, DoqClient)
            for _ in range(10):  # every query moves the idle deadline later
                check_answer(await client.send_query(query_wire("www.hmtest.")))
            (protocol,) = set(served.server._protocols.values())
            # the idle timeout (0.5 s) closes it; 10 s is only the bound of the wait
            async with asyncio.timeout(10):
                await protocol.wait_closed()
            assert not served.server._protocols

    run(test)
