"""The node's QUIC endpoint: one UDP port, HTTP/3 (ALPN ``h3``) and DNS over QUIC (``doq``).

``NodeProtocol`` dispatches on the ALPN the handshake chose (``ProtocolNegotiated``): for
``h3`` it turns HTTP/3 frames into ``Request`` values and ``Response`` values back into
frames, what to answer being the router's business; for ``doq`` it hands the QUIC events to a
``DoqConnection`` (``hypermesh.dns.doq``), which answers each stream through the DNS engine.

Every reply carries the ACK of the packet it answers (``PERFORMANCE.md``, lever 1): aioquic
delays ACKs by 1 ms, which would cost an ACK-only packet per query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StreamReset
from aioquic.tls import Epoch

from hypermesh.dns.doq import DOQ_ALPN, DOQ_INTERNAL_ERROR, Answer, DoqConnection
from hypermesh.node.interfaces import operation_of
from hypermesh.node.router import Request, Response, Router
from hypermesh.transport.address import format_address
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.identity import Identity
from hypermesh.transport.pinning import ask_for_client_certificates, client_node_id
from hypermesh.transport.udp import tune_datagram_transport

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024
"""A request body larger than this is answered 413."""
IDLE_TIMEOUT = 60.0
"""Seconds without a packet after which a connection is dropped (QUIC max_idle_timeout)."""

Gate = Callable[[str | None, str, str], tuple[int, str]]
"""(the caller's proven node ID or None, its host:port, the operation) → (0, "") when allowed,
else (the HTTP status to refuse with, why)."""
DnsAnswer = Answer
"""The DNS engine as the endpoint sees it: query wire bytes in, answer wire bytes (or None, or
an awaitable of either)."""


def server_configuration(
    identity: Identity, *, doq: bool = True, idle_timeout: float = IDLE_TIMEOUT
) -> QuicConfiguration:
    """A server configuration presenting a fresh self-signed certificate for ``identity``,
    offering ALPN ``h3`` and, with ``doq``, ``doq``; connections idle for ``idle_timeout``
    seconds are dropped."""
    return QuicConfiguration(
        is_client=False,
        alpn_protocols=[*H3_ALPN, *([DOQ_ALPN] if doq else [])],
        certificate=self_signed_certificate(identity),
        private_key=identity.private_key,
        idle_timeout=idle_timeout,
    )


def ack_with_reply(quic: QuicConnection, now: float) -> None:
    """Make the next packet carry the pending ACK instead of waiting for aioquic's ACK delay.

    aioquic schedules an ACK ``ack_delay`` (1 ms) after an ack-eliciting packet arrives and
    only writes it once that time has come, so a reply sent at once leaves in one packet and
    the ACK in another. Pulling the schedule to ``now`` puts the ACK in the reply's packet.
    """
    # aioquic 1.7 has no public API for this; the packet spaces are private.
    space = getattr(quic, "_spaces", {}).get(Epoch.ONE_RTT)
    if space is not None and space.ack_at is not None and space.ack_at > now:
        space.ack_at = now


class _Incoming:
    """A request whose frames are still arriving."""

    __slots__ = ("body", "headers", "too_large")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers = headers
        self.body = bytearray()
        self.too_large = False


class NodeProtocol(QuicConnectionProtocol):
    """One client connection to the node; answers each HTTP/3 request through ``router``."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: QuicStreamHandler | None = None,
        *,
        router: Router,
        dns_answer: DnsAnswer | None = None,
        gate: Gate | None = None,
    ) -> None:
        super().__init__(quic, stream_handler)
        ask_for_client_certificates(quic)
        self._router = router
        self._dns_answer = dns_answer
        self._gate = gate
        self._http: H3Connection | None = None
        self._doq: DoqConnection | None = None
        self._incoming: dict[int, _Incoming] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._peer = "?"
        self._terminated = False
        self._answers_started = False

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        """Remember who the client is, then let aioquic process the datagram.

        When the datagram completed HTTP/3 requests, transmitting waits until their answers
        have had their first step on the loop, so that whatever the request made aioquic queue
        (QPACK decoder instructions, the ACK) leaves in the answer's packet, not one before.
        """
        if self._peer == "?":
            self._peer = format_address(str(addr[0]), int(addr[1]))
        # What QuicConnectionProtocol.datagram_received does (aioquic 1.7), but for the transmit.
        self._answers_started = False
        self._quic.receive_datagram(cast(bytes, data), addr, now=self._loop.time())
        self._process_events()
        if self._answers_started:
            self._transmit_soon()  # after the answer tasks' first step (call_soon is FIFO)
        else:
            self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        """Route QUIC events to the application protocol the handshake chose."""
        if self._doq is not None:
            if self._doq.handle_event(event):
                ack_with_reply(self._quic, self._loop.time())
            if isinstance(event, ConnectionTerminated):
                self._terminated = True
            return  # datagram_received (or the timer) transmits once all events are handled
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol in H3_ALPN:
                self._http = H3Connection(self._quic)
            elif event.alpn_protocol == DOQ_ALPN:
                if self._dns_answer is None:
                    self._quic.close(
                        error_code=DOQ_INTERNAL_ERROR, reason_phrase="DNS is not served here"
                    )
                else:
                    self._doq = DoqConnection(self._quic, self._gated_dns(), self.transmit)
        elif isinstance(event, ConnectionTerminated):
            self._terminated = True
            for task in self._tasks:
                task.cancel()
        elif isinstance(event, StreamReset):
            self._incoming.pop(event.stream_id, None)
        if self._http is not None:
            for h3_event in self._http.handle_event(event):
                self._h3_event_received(h3_event)

    def _gated_dns(self) -> DnsAnswer:
        """The DNS engine, behind the gate when there is one: a query from a caller the gate
        refuses gets no answer (its stream is reset)."""
        answer, gate, quic = self._dns_answer, self._gate, self._quic
        assert answer is not None
        if gate is None:
            return answer

        def gated(query: bytes) -> bytes | Awaitable[bytes | None] | None:
            status, _ = gate(client_node_id(quic), self._peer, "dns.query")
            return answer(query) if status == 0 else None

        return gated

    def _h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            incoming = self._incoming.get(event.stream_id)
            if incoming is None:
                incoming = self._incoming[event.stream_id] = _Incoming(list(event.headers))
            ended = event.stream_ended
        elif isinstance(event, DataReceived):
            incoming = self._incoming.get(event.stream_id)
            if incoming is None:
                return
            if len(incoming.body) + len(event.data) > MAX_REQUEST_BYTES:
                incoming.too_large = True
            else:
                incoming.body += event.data
            ended = event.stream_ended
        else:
            return
        if ended:
            del self._incoming[event.stream_id]
            task = asyncio.ensure_future(self._answer(event.stream_id, incoming))
            self._answers_started = True
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, stream_id: int, incoming: _Incoming) -> None:
        request = self._request(incoming)
        if request is None:
            response = Response.error(400, "missing :method or :path")
        elif incoming.too_large:
            response = Response.error(413, f"request body over {MAX_REQUEST_BYTES} bytes")
        elif (
            self._gate is not None
            and (
                verdict := self._gate(
                    request.peer_id, request.peer, operation_of(request.method, request.path)
                )
            )[0]
        ):
            response = Response.error(*verdict)  # before any handler runs
        else:
            response = await self._router.dispatch(request)
        if response.stream is None:
            self._send(stream_id, response)
        else:
            await self._send_stream(stream_id, response, response.stream)
        log.debug(
            "request",
            extra={
                "method": request.method if request else "?",
                "path": request.path if request else "?",
                "status": response.status,
                "peer": self._peer,
            },
        )

    def _request(self, incoming: _Incoming) -> Request | None:
        method = target = None
        headers: list[tuple[str, str]] = []
        for raw_name, raw_value in incoming.headers:
            name = raw_name.decode("ascii", "replace")
            value = raw_value.decode("utf-8", "replace")
            if name == ":method":
                method = value
            elif name == ":path":
                target = value
            elif not name.startswith(":"):
                headers.append((name, value))
        if not method or not target:
            return None
        path, _, query = target.partition("?")
        return Request(
            method=method,
            path=path,
            query=query,
            headers=tuple(headers),
            body=bytes(incoming.body),
            peer=self._peer,
            peer_id=client_node_id(self._quic),
        )

    def _send(self, stream_id: int, response: Response) -> None:
        if self._http is None or self._terminated:
            return
        headers = [
            *_headers(response),
            (b"content-length", str(len(response.body)).encode()),
        ]
        try:
            self._http.send_headers(stream_id, headers)
            self._http.send_data(stream_id, response.body, end_stream=True)
        except Exception as exc:  # the client reset the stream or closed the connection
            log.debug("response not sent", extra={"peer": self._peer, "error": str(exc)})
            return
        ack_with_reply(self._quic, self._loop.time())
        self.transmit()

    async def _send_stream(
        self, stream_id: int, response: Response, pieces: AsyncIterator[bytes]
    ) -> None:
        """Send the headers, then each piece as it comes, until the iterator ends (FIN), the
        client goes away or the connection ends (the task is cancelled)."""
        try:
            if self._http is None or self._terminated:
                return
            try:
                self._http.send_headers(stream_id, _headers(response))
                if response.body:
                    self._http.send_data(stream_id, response.body, end_stream=False)
                self.transmit()
                async for piece in pieces:
                    if self._terminated:
                        return
                    self._http.send_data(stream_id, piece, end_stream=False)
                    self.transmit()
                self._http.send_data(stream_id, b"", end_stream=True)
                self.transmit()
            except Exception as exc:  # the client reset the stream or closed the connection
                log.debug("stream ended", extra={"peer": self._peer, "error": str(exc)})
        finally:
            closing = getattr(pieces, "aclose", None)
            if closing is not None:
                await closing()


def _headers(response: Response) -> list[tuple[bytes, bytes]]:
    return [
        (b":status", str(response.status).encode()),
        (b"content-type", response.content_type.encode()),
        *((name.lower().encode(), value.encode()) for name, value in response.headers),
    ]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A bound QUIC server."""

    server: QuicServer
    """aioquic's server protocol (holds the connections)."""
    transport: asyncio.DatagramTransport
    """The UDP socket's transport."""
    host: str
    """The host it was asked to bind (as configured)."""
    port: int
    """The port it really bound."""

    @property
    def address(self) -> str:
        """``host:port`` with the real port."""
        return format_address(self.host, self.port)

    def close(self) -> None:
        """Close every connection (CONNECTION_CLOSE is sent at once) and the socket."""
        self.server.close()


async def bind_endpoint(
    host: str,
    port: int,
    *,
    configuration: QuicConfiguration,
    router: Router,
    dns_answer: DnsAnswer | None = None,
    prefer_port: int | None = None,
    gate: Gate | None = None,
) -> Endpoint:
    """Bind the QUIC server on ``host:port``; HTTP/3 requests go to ``router``, DoQ queries
    to ``dns_answer`` (a ``doq`` connection is closed when there is none).

    With ``port`` 0 and a ``prefer_port``, that port is tried first and any free port taken
    if it is busy. ``OSError`` when the socket cannot be bound.
    """
    loop = asyncio.get_running_loop()
    create_protocol = functools.partial(
        NodeProtocol, router=router, dns_answer=dns_answer, gate=gate
    )
    candidates = [prefer_port, 0] if port == 0 and prefer_port else [port]
    for candidate in candidates:
        try:
            transport, server = await loop.create_datagram_endpoint(
                lambda: QuicServer(configuration=configuration, create_protocol=create_protocol),
                local_addr=(host, candidate),
            )
            break
        except OSError as exc:
            if candidate == candidates[-1]:
                raise
            log.info(
                "preferred port unavailable, taking any free port",
                extra={"port": candidate, "error": str(exc)},
            )
    tune_datagram_transport(transport)
    bound_port = int(transport.get_extra_info("sockname")[1])
    return Endpoint(server=server, transport=transport, host=host, port=bound_port)
