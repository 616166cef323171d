"""The node's QUIC endpoint: one UDP port, HTTP/3 (ALPN ``h3``) and DNS over QUIC (``doq``).

``NodeProtocol`` dispatches on the ALPN the handshake chose (``ProtocolNegotiated``): for
``h3`` it turns HTTP/3 frames into ``Request`` values and ``RouteResponse`` values back into
frames, what to answer being the router's business; for ``doq`` it hands the QUIC events to a
``DoqConnection`` (``hypermesh.dns.doq``), which answers each stream through the DNS engine.

What a stranger can make the endpoint hold is bounded (``EndpointLimits``): each request from
its first byte until it is answered, per request, connection, caller and in all; header
sections before they are decoded (``node.http3``); requests that stall; and what QUIC itself
buffers below the requests. Everything a connection held is freed when it ends.

Every reply carries the ACK of the packet it answers (lever 1 of the performance notes): aioquic
delays ACKs by 1 ms, which would cost an ACK-only packet per query.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Protocol, cast

from aioquic.asyncio.protocol import QuicStreamHandler
from aioquic.h3.connection import H3_ALPN, ErrorCode
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import Epoch

from hypermesh.dns.doq import (
    DOQ_ALPN,
    DOQ_EXCESSIVE_LOAD,
    DOQ_INTERNAL_ERROR,
    DnsHandler,
    DoqConnection,
)
from hypermesh.node.http3 import BoundedH3Connection, RequestRefused
from hypermesh.node.interfaces import operation_of, source_key
from hypermesh.node.limits import EndpointLimits
from hypermesh.node.memory import give_back_memory
from hypermesh.node.qpack import section_size
from hypermesh.node.router import BodyAborted, BodyStream, Request, Router, RouteResponse
from hypermesh.transport.address import format_address
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.endpoint import EndpointProtocol, MeshEndpoint
from hypermesh.transport.identity import Identity
from hypermesh.transport.pinning import ask_for_client_certificates, client_node_id
from hypermesh.transport.udp import tune_datagram_transport

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = EndpointLimits().max_request_body
"""A request body larger than this is answered 413 (the default of ``EndpointLimits``)."""
GIVE_BACK_AFTER = 1024 * 1024
"""Bytes held at once for requests after which, once they are all freed, the node gives the
memory back to the system (``node.memory``)."""
GIVE_BACK_EVERY = 10.0
"""Seconds between two such returns at the least."""
IDLE_TIMEOUT = 60.0
"""Seconds without a packet after which a connection is dropped (QUIC max_idle_timeout)."""
STREAMED_WINDOW = 256 * 1024
"""Bytes a request read as it arrives (``router.post_streamed``) may have in flight beyond
what its handler took (past the stream's initial credit)."""

Gate = Callable[[str | None, str, str], tuple[int, str]]
"""(the caller's proven node ID or None, its host:port, the operation) → (0, "") when allowed,
else (the HTTP status to refuse with, why)."""


class RelayServe(Protocol):
    """One relay attachment served until it ends (``node.relay_hub.RelayHub.serve_stream``):
    the stream's reader, how to write and close it, the client's address as seen, and how
    many bytes the transport still holds (so a slow reader's packets are dropped, not piled)."""

    def __call__(
        self,
        reader: asyncio.StreamReader,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        observed: str,
        *,
        buffered: Callable[[], int] | None = None,
    ) -> Awaitable[None]: ...


RELAY_ALPN = "hm-relay"
"""The ALPN of a relay attachment over QUIC (a node with role ``relay``)."""
PeerOf = Callable[[str | None, str], str]
"""(the caller's proven node ID or None, its host:port) → who the caller is for its budget of
unanswered requests: a member's name, else its source address (``source_key``)."""


def _by_source(_: str | None, source: str) -> str:
    return source_key(source)


def server_configuration(
    identity: Identity,
    *,
    doq: bool = True,
    relay: bool = False,
    idle_timeout: float = IDLE_TIMEOUT,
) -> QuicConfiguration:
    """A server configuration presenting a fresh self-signed certificate for ``identity``,
    offering ALPN ``h3`` and, with ``doq``, ``doq`` (with ``relay``, ``hm-relay``); connections
    idle for ``idle_timeout`` seconds are dropped."""
    return QuicConfiguration(
        is_client=False,
        alpn_protocols=[
            *H3_ALPN,
            *([DOQ_ALPN] if doq else []),
            *([RELAY_ALPN] if relay else []),
        ],
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


@dataclass
class EndpointStats:
    """What an endpoint's connections hold for requests not yet answered, and what they
    refused; one for all the connections of an endpoint."""

    held: int = 0
    """Bytes held in requests not yet answered (stream bytes and decoded headers)."""
    held_by_peer: dict[str, int] = field(default_factory=dict)
    """The same, by caller (only callers holding something are listed)."""
    refused: Counter[int] = field(default_factory=Counter)
    """Requests answered by the endpoint itself before any handler ran, by status."""
    sections_refused: int = 0
    """Header sections refused without being decoded (431, 414)."""
    largest_section: int = 0
    """The largest header section decoded (RFC 9114 size): never over the limit."""
    connections_closed: int = 0
    """Connections closed for holding too much below the requests (H3_EXCESSIVE_LOAD)."""
    high_water: int = 0
    """The most ``held`` reached since memory was last given back."""
    memory_given_back: int = 0
    """How many times free memory was given back to the system after a burst."""
    given_back_at: float = float("-inf")
    give_back_pending: bool = False

    def take(self, peer: str, count: int) -> None:
        """Count ``count`` more bytes (fewer when negative) as held for ``peer``."""
        left = self.held_by_peer.get(peer, 0) + count
        if left > 0:
            self.held_by_peer[peer] = left
        else:
            self.held_by_peer.pop(peer, None)
        self.held += count


@dataclass(frozen=True, slots=True)
class _Head:
    """A request's method, target and regular headers, as its HEADERS frame said."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, fields: list[tuple[bytes, bytes]]) -> _Head | None:
        method = target = None
        headers: list[tuple[str, str]] = []
        for raw_name, raw_value in fields:
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
        return cls(method, path, query, tuple(headers))


class _Incoming:
    """A request from its first byte until it is answered."""

    __slots__ = ("body", "feed", "head", "held", "timer")

    def __init__(self, timer: asyncio.TimerHandle) -> None:
        self.held = 0
        """Bytes counted for it: its stream's bytes and its decoded header section."""
        self.head: _Head | None = None
        self.body = bytearray()
        self.timer = timer
        """Fires ``request_timeout`` after the first byte; cancelled once it is complete."""
        self.feed: BodyStream | None = None
        """The body as it arrives, when its route reads it so (the handler runs already)."""


def _give_back(stats: EndpointStats, loop: asyncio.AbstractEventLoop) -> None:
    stats.give_back_pending = False
    if stats.held:
        return  # busy again: the next time requests hold nothing
    give_back_memory()
    stats.high_water = 0
    stats.given_back_at = loop.time()
    stats.memory_given_back += 1


def _limit_streams(quic: QuicConnection, count: int) -> None:
    """Let the client open at most ``count`` request streams at once (QUIC's
    initial_max_streams_bidi, raised by one as each stream closes). aioquic 1.7 fixes it at 128
    and has no setting for it, so its private limit is set before the handshake sends it."""
    limit = getattr(quic, "_local_max_streams_bidi", None)
    if limit is not None:
        limit.value = limit.sent = count


class NodeProtocol(EndpointProtocol):
    """One client connection to the node; answers each HTTP/3 request through ``router``.

    A request is held from its first byte: its stream's bytes and, once decoded, its header
    section count against the connection's, the caller's and the endpoint's budgets
    (``EndpointLimits``); it is decided by the gate on its headers, before any of its body is
    read; it must arrive complete within ``request_timeout``. A request refused on the way
    (400, 403, 408, 413, 414, 429, 431, 503) is answered at once, the client is asked to stop
    sending it and what it held is freed. What it held is freed too when it is answered, when
    the client resets it and when the connection ends.
    """

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: QuicStreamHandler | None = None,
        *,
        router: Router,
        dns_answer: DnsHandler | None = None,
        gate: Gate | None = None,
        peer_of: PeerOf | None = None,
        limits: EndpointLimits | None = None,
        stats: EndpointStats | None = None,
        relay: Callable[[], RelayServe | None] | None = None,
    ) -> None:
        super().__init__(quic, stream_handler)
        ask_for_client_certificates(quic)
        self._relay = relay
        self._relayed: _RelayStream | None = None
        self._limits = limits or EndpointLimits()
        _limit_streams(quic, self._limits.max_streams)
        self._router = router
        self._dns_answer = dns_answer
        self._gate = gate
        self._peer_of = peer_of or _by_source
        self._stats = stats if stats is not None else EndpointStats()
        self._http: BoundedH3Connection | None = None
        self._doq: DoqConnection | None = None
        self._incoming: dict[int, _Incoming] = {}
        self._answering: dict[asyncio.Task[None], _Incoming] = {}
        self._query_timers: dict[int, asyncio.TimerHandle] = {}
        """DoQ queries still arriving, by stream: when each will be cancelled."""
        self._held = 0
        """Bytes this connection's requests hold (the sum of their ``held``)."""
        self._delivered = 0
        """Stream bytes QUIC handed over (to compare with what it took in)."""
        self._peer = "?"
        self._caller: str | None = None
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
        self._check_quic_buffers()
        if self._answers_started:
            self._transmit_soon()  # after the answer tasks' first step (call_soon is FIFO)
        else:
            self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        """Route QUIC events to the application protocol the handshake chose."""
        if isinstance(event, StreamDataReceived):
            self._delivered += len(event.data)
        if self._doq is not None:
            if self._doq.handle_event(event):
                ack_with_reply(self._quic, self._loop.time())
            if isinstance(event, ConnectionTerminated):
                self._terminated = True
            return  # datagram_received (or the timer) transmits once all events are handled
        if self._relayed is not None:
            self._relayed.handle_event(event)
            return
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol in H3_ALPN:
                self._http = BoundedH3Connection(
                    self._quic,
                    max_field_section_size=self._limits.max_field_section_size,
                    table_capacity=self._limits.qpack_table_capacity,
                )
            elif event.alpn_protocol == DOQ_ALPN:
                if self._dns_answer is None:
                    self._quic.close(
                        error_code=DOQ_INTERNAL_ERROR, reason_phrase="DNS is not served here"
                    )
                else:
                    self._doq = DoqConnection(
                        self._quic,
                        self._gated_dns(),
                        self.transmit,
                        max_buffered=self._limits.max_connection_buffered,
                        hold=self._hold_query,
                    )
            elif event.alpn_protocol == RELAY_ALPN:
                self._open_relay()
        elif isinstance(event, ConnectionTerminated):
            self._release_all()
        elif isinstance(event, StreamReset):
            incoming = self._incoming.pop(event.stream_id, None)
            if incoming is not None:  # the client gave the request up
                self._release(incoming)
                if incoming.feed is not None:
                    incoming.feed.fail(BodyAborted("the client reset the request"))
        elif isinstance(event, StreamDataReceived) and not self._take(event):
            return  # refused: its bytes go no further
        if self._http is not None:
            for h3_event in self._http.handle_event(event):
                self._h3_event_received(h3_event)
            self._stats.largest_section = max(
                self._stats.largest_section, self._http.largest_section
            )
            if isinstance(event, StreamDataReceived) and event.stream_id & 0x2:
                self._check_h3_buffer(event.stream_id)

    def _open_relay(self) -> None:
        """Serve a relay attachment on this connection (ALPN ``hm-relay``)."""
        serve = self._relay() if self._relay is not None else None
        if serve is None:
            self._quic.close(error_code=ErrorCode.H3_INTERNAL_ERROR, reason_phrase="not a relay")
            return
        self._relayed = _RelayStream(self, serve)

    def _gated_dns(self) -> DnsHandler:
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

    # -- what requests hold ---------------------------------------------------------------

    def _who(self) -> str:
        """Who the caller is for its budget (asked once the handshake has proven its key)."""
        if self._caller is None:
            self._caller = self._peer_of(client_node_id(self._quic), self._peer)
        return self._caller

    def _take(self, event: StreamDataReceived) -> bool:
        """Count the bytes of a request stream as held; False when that refused it."""
        stream_id = event.stream_id
        if self._http is None or stream_id & 0x3 or self._http.dropped(stream_id):
            return True
        incoming = self._incoming.get(stream_id)
        if incoming is None:
            incoming = self._incoming[stream_id] = self._start(stream_id)
        refusal = self._hold(incoming, len(event.data))
        if refusal is not None:
            self._refuse(stream_id, *refusal, ended=event.end_stream)
            return False
        return True

    def _hold_query(self, stream_id: int, count: int) -> bool:
        """A DoQ query's bytes, counted as a request's are against the caller's and the
        endpoint's budgets (the connection's is the DoQ side's own); its clock starts with its
        first held byte, and past ``request_timeout`` the query is cancelled."""
        limits, stats, who = self._limits, self._stats, self._who()
        stats.take(who, count)
        if count > 0:
            stats.high_water = max(stats.high_water, stats.held)
            if stream_id not in self._query_timers:
                self._query_timers[stream_id] = self._loop.call_later(
                    limits.request_timeout, self._expire_query, stream_id
                )
            return (
                stats.held_by_peer.get(who, 0) <= limits.max_peer_buffered
                and stats.held <= limits.max_buffered
            )
        timer = self._query_timers.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
        if not stats.held:
            self._give_back_later()
        return True

    def _expire_query(self, stream_id: int) -> None:
        self._query_timers.pop(stream_id, None)
        if self._doq is not None and not self._terminated and self._doq.cancel(stream_id):
            self._stats.refused[408] += 1
            self.transmit()

    def _start(self, stream_id: int) -> _Incoming:
        timer = self._loop.call_later(self._limits.request_timeout, self._expire, stream_id)
        return _Incoming(timer)

    def _hold(self, incoming: _Incoming, count: int) -> tuple[int, str] | None:
        """Count ``count`` more bytes for ``incoming``; the refusal when a budget is over."""
        limits, stats, who = self._limits, self._stats, self._who()
        incoming.held += count
        self._held += count
        stats.take(who, count)
        stats.high_water = max(stats.high_water, stats.held)
        if self._held > limits.max_connection_buffered:
            return 429, (
                f"this connection holds {self._held} bytes of requests not yet answered; "
                f"at most {limits.max_connection_buffered} (finish or cancel some first)"
            )
        if stats.held_by_peer.get(who, 0) > limits.max_peer_buffered:
            return 429, (
                f"{who} holds {stats.held_by_peer[who]} bytes of requests not yet answered "
                f"across its connections; at most {limits.max_peer_buffered}"
            )
        if stats.held > limits.max_buffered:
            return 503, "the node holds too many requests not yet answered; try again later"
        return None

    def _release(self, incoming: _Incoming) -> None:
        """Free what ``incoming`` held (once; later calls do nothing)."""
        incoming.timer.cancel()
        if incoming.held:
            self._held -= incoming.held
            self._stats.take(self._who(), -incoming.held)
            incoming.held = 0
            if not self._stats.held:
                self._give_back_later()

    def _give_back_later(self) -> None:
        """Once requests hold nothing after a burst of ``GIVE_BACK_AFTER`` bytes, give the
        memory back to the system (a second later, at most every ``GIVE_BACK_EVERY`` s)."""
        stats, loop = self._stats, self._loop
        if stats.give_back_pending or stats.high_water < GIVE_BACK_AFTER:
            return
        stats.give_back_pending = True
        delay = max(1.0, stats.given_back_at + GIVE_BACK_EVERY - loop.time())
        loop.call_later(delay, _give_back, stats, loop)

    def _release_all(self) -> None:
        """The connection ended: free what its requests held, stop their answers."""
        self._terminated = True
        for incoming in self._incoming.values():
            self._release(incoming)
        self._incoming.clear()
        for task, incoming in self._answering.items():
            self._release(incoming)
            task.cancel()

    def _check_quic_buffers(self) -> None:
        """Close the connection when QUIC holds more than the connection's budget for it in
        stream data received out of order (never handed over, so not counted as requests)."""
        limit = self._limits.max_connection_buffered
        received = self._quic._local_max_data.used  # stream bytes QUIC accepted (aioquic 1.7)
        if self._terminated or received - self._delivered <= limit:
            return
        held = sum(len(stream.receiver._buffer) for stream in self._quic._streams.values())
        self._delivered = received - held  # what is not held was delivered or reset
        if held > limit:
            self._overloaded(f"{held} bytes of stream data received out of order")

    def _check_h3_buffer(self, stream_id: int) -> None:
        """Close the connection when HTTP/3 buffers more than its budget on a control stream
        (an unfinished SETTINGS frame); request streams are counted as requests."""
        assert self._http is not None
        buffered = self._http.buffered(stream_id)
        if buffered > self._limits.max_connection_buffered:
            self._overloaded(f"{buffered} bytes of an unfinished frame on stream {stream_id}")

    def _overloaded(self, what: str) -> None:
        limit = self._limits.max_connection_buffered
        log.info("connection closed for load", extra={"peer": self._peer, "held": what})
        self._stats.connections_closed += 1
        code = DOQ_EXCESSIVE_LOAD if self._doq is not None else ErrorCode.H3_EXCESSIVE_LOAD
        self._quic.close(error_code=code, reason_phrase=f"{what}; at most {limit}")
        self._release_all()

    # -- requests -------------------------------------------------------------------------

    def _h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, RequestRefused):
            self._stats.sections_refused += 1
            self._refuse(event.stream_id, event.status, event.reason, dropped=True)
            return
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        incoming = self._incoming.get(event.stream_id)
        if incoming is None:  # refused, expired or reset meanwhile
            return
        if isinstance(event, HeadersReceived):
            refusal = self._hold(incoming, section_size(event.headers))
            if refusal is None and incoming.head is None:
                refusal = self._admit(incoming, event.headers)
                if refusal is None and incoming.head is not None:
                    self._stream_body(event.stream_id, incoming)
        elif incoming.feed is not None:
            refusal = None
            incoming.feed.feed(event.data, event.stream_ended)
        else:
            refusal = None
            if len(incoming.body) + len(event.data) > self._limits.max_request_body:
                refusal = 413, f"the request body is over {self._limits.max_request_body} bytes"
            else:
                incoming.body += event.data
        if refusal is not None:
            self._refuse(event.stream_id, *refusal, ended=event.stream_ended)
        elif event.stream_ended and incoming.feed is not None:
            incoming.feed.feed(b"", True)
            del self._incoming[event.stream_id]  # its answer's task holds it
            incoming.timer.cancel()
        elif event.stream_ended:
            self._complete(event.stream_id, incoming)

    def _stream_body(self, stream_id: int, incoming: _Incoming) -> None:
        """Answer now a request whose route reads the body as it arrives: its bytes are freed
        as the handler takes them, and the client's credit grows only as it does."""
        assert incoming.head is not None and self._http is not None
        if not self._router.streams(incoming.head.method, incoming.head.path):
            return
        http = self._http

        def taken(count: int) -> None:
            count = min(count, incoming.held)  # nothing once the request was released
            incoming.held -= count
            self._held -= count
            self._stats.take(self._who(), -count)
            if http.pace(stream_id, feed.taken + STREAMED_WINDOW) and not self._terminated:
                self.transmit()

        feed = incoming.feed = BodyStream(taken)
        http.pace(stream_id, STREAMED_WINDOW)
        self._start_answer(stream_id, incoming)

    def _admit(
        self, incoming: _Incoming, fields: list[tuple[bytes, bytes]]
    ) -> tuple[int, str] | None:
        """Decide a request on its headers, before any of its body is read: a refusal, or
        None with its head kept."""
        head = _Head.of(fields)
        if head is None:
            return 400, "missing :method or :path"
        length = next((value for name, value in head.headers if name == "content-length"), "")
        if length.isascii() and length.isdigit() and int(length) > self._limits.max_request_body:
            return 413, (
                f"content-length {length} is over the {self._limits.max_request_body} bytes "
                "a request body may have"
            )
        if self._gate is not None:
            verdict = self._gate(
                client_node_id(self._quic), self._peer, operation_of(head.method, head.path)
            )
            if verdict[0]:
                return verdict
        incoming.head = head
        return None

    def _expire(self, stream_id: int) -> None:
        if stream_id in self._incoming and not self._terminated:
            timeout = self._limits.request_timeout
            self._refuse(
                stream_id, 408, f"the request did not arrive complete within {timeout:g} s"
            )
            self.transmit()

    def _refuse(
        self,
        stream_id: int,
        status: int,
        reason: str,
        *,
        ended: bool = False,
        dropped: bool = False,
    ) -> None:
        """Answer ``status`` at once, read no more of the request, free what it held."""
        incoming = self._incoming.pop(stream_id, None)
        if incoming is not None:
            self._release(incoming)
            if incoming.feed is not None:
                incoming.feed.fail(BodyAborted(reason))
        if self._http is not None and not dropped:
            self._http.drop(stream_id, ended=ended)
        self._stats.refused[status] += 1
        log.debug(
            "request refused",
            extra={"status": status, "peer": self._peer, "error": reason},
        )
        self._send(stream_id, RouteResponse.error(status, reason))

    def _complete(self, stream_id: int, incoming: _Incoming) -> None:
        del self._incoming[stream_id]
        incoming.timer.cancel()
        self._start_answer(stream_id, incoming)

    def _start_answer(self, stream_id: int, incoming: _Incoming) -> None:
        task = asyncio.ensure_future(self._answer(stream_id, incoming))
        self._answers_started = True
        self._answering[task] = incoming
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        incoming = self._answering.pop(task, None)
        if incoming is not None:
            self._release(incoming)
            if incoming.feed is not None:  # answered before the body was all read
                self._drop_streamed(incoming)

    def _drop_streamed(self, incoming: _Incoming) -> None:
        for stream_id, held in list(self._incoming.items()):
            if held is incoming and self._http is not None and not self._terminated:
                del self._incoming[stream_id]
                self._http.pace(stream_id, None)
                self._http.drop(stream_id, ended=False)
                self.transmit()

    async def _answer(self, stream_id: int, incoming: _Incoming) -> None:
        head = incoming.head
        assert head is not None
        body, incoming.body = bytes(incoming.body), bytearray()
        request = Request(
            method=head.method,
            path=head.path,
            query=head.query,
            headers=head.headers,
            body=body,
            peer=self._peer,
            peer_id=client_node_id(self._quic),
            stream=incoming.feed,
        )
        response = await self._router.dispatch(request)
        if response.stream is None:
            self._send(stream_id, response)
        else:
            await self._send_stream(stream_id, response, response.stream)
        log.debug(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "peer": self._peer,
            },
        )

    def _send(self, stream_id: int, response: RouteResponse) -> None:
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
        self, stream_id: int, response: RouteResponse, pieces: AsyncGenerator[bytes, None]
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
            await pieces.aclose()


class _RelayStream:
    """A relay attachment on a QUIC connection: the client's first bidirectional stream,
    handed to the relay hub as a byte stream once the client has opened it."""

    def __init__(self, protocol: NodeProtocol, serve: RelayServe) -> None:
        self._protocol = protocol
        self._serve = serve
        self._reader = asyncio.StreamReader(limit=1 << 20)
        self._stream_id: int | None = None
        self._task: asyncio.Task[None] | None = None

    def handle_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            if self._stream_id is None and event.stream_id % 4 == 0:
                self._start(event.stream_id)
            if event.stream_id == self._stream_id:
                self._reader.feed_data(event.data)
                if event.end_stream:
                    self._reader.feed_eof()
        elif isinstance(event, ConnectionTerminated) or (
            isinstance(event, StreamReset) and event.stream_id == self._stream_id
        ):
            self._reader.feed_eof()

    def _start(self, stream_id: int) -> None:
        self._stream_id = stream_id
        protocol = self._protocol
        quic = protocol._quic

        def write(data: bytes) -> None:
            if not protocol._terminated and quic._close_event is None:
                quic.send_stream_data(stream_id, data)
                protocol.transmit()

        def close() -> None:
            protocol.close()

        def buffered() -> int:
            stream = quic._streams.get(stream_id)
            return len(stream.sender._buffer) if stream is not None else 0

        self._task = asyncio.ensure_future(
            self._serve(self._reader, write, close, protocol._peer, buffered=buffered)
        )
        self._task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("relay attachment failed", extra={"error": repr(task.exception())})


def _headers(response: RouteResponse) -> list[tuple[bytes, bytes]]:
    return [
        (b":status", str(response.status).encode()),
        (b"content-type", response.content_type.encode()),
        *((name.lower().encode(), value.encode()) for name, value in response.headers),
    ]


@dataclass(frozen=True, slots=True)
class QuicEndpoint:
    """A bound QUIC server."""

    server: MeshEndpoint
    """The node's endpoint: aioquic's server protocol (holds the connections), which also
    carries the node's outgoing connections and relayed paths."""
    transport: asyncio.DatagramTransport
    """The UDP socket's transport."""
    host: str
    """The host it was asked to bind (as configured)."""
    port: int
    """The port it really bound."""
    stats: EndpointStats = field(default_factory=EndpointStats)
    """What its connections hold for requests not yet answered, and what they refused."""

    @property
    def address(self) -> str:
        """``host:port`` with the real port."""
        return format_address(self.host, self.port)

    def close(self) -> None:
        """Close every connection (CONNECTION_CLOSE is sent at once) and the socket."""
        self.server.close()


TWIN_TRIES = 8
"""Port numbers free on TCP tried for a UDP port asked as any (the last try takes any)."""


def twin_ports(host: str, avoid: Collection[int], tries: int = TWIN_TRIES) -> list[int]:
    """Port numbers free on TCP at ``host`` now, as the kernel picks them, none in ``avoid``:
    the UDP port a node binds when its config says any, so that the TLS listener it opens on
    the same number over TCP finds that number free. The kernel picks UDP and TCP ports
    independently, and a loopback busy with TCP connections made a node's DoT listener miss
    its number now and then. Empty when TCP cannot be bound at ``host`` at all."""
    found: list[int] = []
    try:
        family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    except OSError:
        return found
    for _ in range(tries):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, 0))
            except OSError:
                return found
            number = int(probe.getsockname()[1])
        if number not in avoid and number not in found:
            found.append(number)
    return found


def _port_candidates(
    host: str, port: int, prefer_port: int | None, tcp_twin: Collection[int] | None
) -> Iterator[int]:
    """The UDP ports ``bind_endpoint`` tries in turn, ``port`` itself last: with ``port`` 0,
    ``prefer_port`` first, then the ``twin_ports`` (looked for only once the preferred port
    is found busy, so a restart that gets its port back probes nothing)."""
    if port == 0:
        if prefer_port:
            yield prefer_port
        if tcp_twin is not None:
            yield from twin_ports(host, tcp_twin)
    yield port


async def bind_endpoint(
    host: str,
    port: int,
    *,
    configuration: QuicConfiguration,
    router: Router,
    dns_answer: DnsHandler | None = None,
    prefer_port: int | None = None,
    gate: Gate | None = None,
    peer_of: PeerOf | None = None,
    limits: EndpointLimits | None = None,
    relay: Callable[[], RelayServe | None] | None = None,
    tcp_twin: Collection[int] | None = None,
) -> QuicEndpoint:
    """Bind the QUIC server on ``host:port``; HTTP/3 requests go to ``router``, DoQ queries
    to ``dns_answer`` (a ``doq`` connection is closed when there is none); ``gate`` decides
    each request on its headers; ``limits`` bound what callers (named by ``peer_of``, else by
    source address) may make it hold.

    With ``port`` 0 and a ``prefer_port``, that port is tried first and any free port taken
    if it is busy. With ``port`` 0 and ``tcp_twin`` (port numbers to keep clear of), the
    free port taken is one free on TCP too and not among those: the node's TLS listener
    takes the same number on TCP (``twin_ports``). ``OSError`` when the socket cannot be
    bound.
    """
    loop = asyncio.get_running_loop()
    stats = EndpointStats()
    create_protocol = functools.partial(
        NodeProtocol,
        router=router,
        dns_answer=dns_answer,
        gate=gate,
        peer_of=peer_of,
        limits=limits or EndpointLimits(),
        stats=stats,
        relay=relay,
    )
    for candidate in _port_candidates(host, port, prefer_port, tcp_twin):
        try:
            transport, server = await loop.create_datagram_endpoint(
                lambda: MeshEndpoint(configuration=configuration, create_protocol=create_protocol),
                local_addr=(host, candidate),
            )
            break
        except OSError as exc:
            if candidate == port:  # the last candidate: the port asked for, or any
                raise
            log.info(
                "port unavailable, trying the next", extra={"port": candidate, "error": str(exc)}
            )
    tune_datagram_transport(transport)
    bound_port = int(transport.get_extra_info("sockname")[1])
    return QuicEndpoint(server=server, transport=transport, host=host, port=bound_port, stats=stats)
