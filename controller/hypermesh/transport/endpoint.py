"""The node's one UDP socket: its QUIC server, its outgoing connections and its relayed paths.

A node behind a NAT is reachable at the address its packets appear to come from only if the
packets it sends and the ones it receives use the same socket: the NAT's mapping (and, for most
NATs, the filter that lets answers in) belongs to that one local port. ``MeshEndpoint`` is
aioquic's ``QuicServer`` grown three ways:

- **outgoing connections** (``connect``, ``dial``): a client connection is registered under its
  connection IDs exactly as the server registers the ones it accepts, so the server's demultiplexer
  (by destination connection ID) hands each packet to the right connection, client or server;
- **relayed paths**: a QUIC packet may also arrive through a relay (``inject``), from a
  *virtual address* ``("<peer ID>@<relay ID>", 0)``; what a connection sends to such an address
  goes to the relay's link (``add_relay_route``), so one QUIC connection runs end to end between
  two nodes whatever carries its packets;
- **hole-punch probes**: datagrams beginning with ``PROBE_MAGIC`` (whose first byte has QUIC's
  fixed bit clear, so no QUIC v1 packet starts like it) go to ``probe_handler``, and
  ``send_datagram`` sends one from the same socket.

It also spends less per datagram than ``QuicServer`` (the figures are in docs/benchmarks.md):

- a short-header packet goes straight to the connection its destination connection ID names,
  without parsing the header twice;
- when the socket is readable, up to ``BURST`` datagrams waiting in it are read at once, and
  the connections they reach (``EndpointProtocol``) send only once the burst is read: the
  answers to 64 queries that arrived together leave in a few packets, not 64;
- an ``EndpointProtocol`` re-arms its timer only when it must fire earlier than it is set to
  (a timer that fires early is set again), not at every packet as aioquic's protocol does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection

from hypermesh.transport.address import format_address
from hypermesh.transport.client import (
    H3ClientProtocol,
    client_configuration,
    closed_error,
)
from hypermesh.transport.identity import Identity
from hypermesh.transport.pinning import check_peer
from hypermesh.transport.recovery import cap_backoff
from hypermesh.transport.udp import RECEIVE_SIZE

log = logging.getLogger(__name__)

PROBE_MAGIC = b"\x00HMPUNCH1"
"""How a hole-punch probe begins (never a QUIC packet: the fixed bit 0x40 is clear)."""
VIRTUAL_SEPARATOR = "@"
BURST = 64
"""Datagrams read from the socket at most each time it is readable (then the loop runs)."""
TIMER_SLACK = 1e-6
"""A timer firing less than this before it is due counts as due (the loop's own rounding)."""

P = TypeVar("P", bound=QuicConnectionProtocol)
RelaySend = Callable[[str, bytes], None]
"""(the peer's node ID, one QUIC packet) → sent through a relay (or dropped)."""
ProbeHandler = Callable[[bytes, NetworkAddress], None]


def virtual_address(peer_id: str, relay_id: str) -> tuple[str, int]:
    """The address a connection through ``relay_id`` to (or from) ``peer_id`` has."""
    return (f"{peer_id}{VIRTUAL_SEPARATOR}{relay_id}", 0)


def parse_virtual(addr: Any) -> tuple[str, str] | None:
    """``(peer ID, relay ID)`` of a virtual address; None for a real one."""
    try:
        host = addr[0]
    except (TypeError, IndexError):
        return None
    if not isinstance(host, str) or VIRTUAL_SEPARATOR not in host:
        return None
    peer, _, relay = host.partition(VIRTUAL_SEPARATOR)
    return peer, relay


def describe(addr: Any) -> str:
    """``host:port`` of a real address, ``via relay <ID>`` for a virtual one (for people)."""
    virtual = parse_virtual(addr)
    if virtual is not None:
        return f"relay {virtual[1]}"
    return format_address(str(addr[0]), int(addr[1]))


class _Routing:
    """The transport every connection of the endpoint writes to: real addresses go to the UDP
    socket, virtual ones to their relay's link."""

    def __init__(self, endpoint: MeshEndpoint, socket: asyncio.DatagramTransport) -> None:
        self._endpoint = endpoint
        self.socket = socket
        self.recording: list[bytes] | None = None
        """While set: every datagram sent is also appended here (a dial's first flight)."""
        self.burst: dict[EndpointProtocol, None] | None = None
        """While a burst of datagrams is read: the connections that will transmit after it."""

    def sendto(self, data: bytes, addr: NetworkAddress) -> None:
        if self.recording is not None:
            self.recording.append(data)
        virtual = parse_virtual(addr)
        if virtual is None:
            self.socket.sendto(data, addr)
            return
        send = self._endpoint.relay_routes.get(virtual[1])
        if send is not None:
            send(virtual[0], data)
        # no link to that relay (now): the packet is lost, and QUIC's recovery resends it

    def close(self) -> None:
        self.socket.close()

    def is_closing(self) -> bool:
        return self.socket.is_closing()

    def abort(self) -> None:
        self.socket.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.socket.get_extra_info(name, default)


class EndpointProtocol(QuicConnectionProtocol):
    """A connection that sends once per burst of datagrams its endpoint reads and re-arms its
    timer only when it must fire earlier (see the module's docstring). Anywhere else (on a
    transport of its own) it behaves as ``QuicConnectionProtocol``."""

    def __init__(
        self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None
    ) -> None:
        super().__init__(quic, stream_handler)
        cap_backoff(quic)
        self._due: float | None = None
        """When the timer set (``_timer``) fires; ``_timer_at`` is when it must."""

    def transmit(self) -> None:
        burst = getattr(self._transport, "burst", None)
        if burst is not None:  # the endpoint is reading a burst: send once it is read
            burst[self] = None  # (or when a transmit already scheduled runs: see send_burst)
            return
        self._transmit_task = None
        quic, loop = self._quic, self._loop
        sendto = cast(asyncio.DatagramTransport, self._transport).sendto
        for data, addr in quic.datagrams_to_send(now=loop.time()):
            sendto(data, addr)
        timer_at = self._timer_at = quic.get_timer()
        timer = self._timer
        if timer_at is None:
            if timer is not None:
                timer.cancel()
                self._timer = self._due = None
        elif timer is None or cast(float, self._due) > timer_at:
            if timer is not None:
                timer.cancel()
            self._timer, self._due = loop.call_at(timer_at, self._handle_timer), timer_at
        # else: the timer set fires sooner than needed; _handle_timer sets it again then

    def _handle_timer(self) -> None:
        timer_at = self._timer_at
        if timer_at is not None and timer_at > self._loop.time() + TIMER_SLACK:
            self._timer, self._due = self._loop.call_at(timer_at, self._handle_timer), timer_at
            return  # fired before anything is due (the deadline moved later meanwhile)
        self._due = None
        super()._handle_timer()


def send_burst(protocols: dict[EndpointProtocol, None]) -> None:
    """Transmit for each connection a burst reached, except those whose transmit is already
    scheduled (``_transmit_soon``): a connection defers it until the answers a datagram
    started have had their first step, so that what the requests made it queue (the ACK, QPACK
    decoder instructions) leaves in the answer's packet, and sending now would send that
    alone, one packet more per request, whichever datagram of the burst came first."""
    for protocol in protocols:
        if protocol._transmit_task is None:
            protocol.transmit()


class MeshEndpoint(QuicServer):
    """A QUIC server whose socket also carries the node's own outgoing connections, its
    relayed paths and hole-punch probes (see the module's docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relay_routes: dict[str, RelaySend] = {}
        """Relay ID → how a packet reaches a peer through it."""
        self.probe_handler: ProbeHandler | None = None
        self.socket: asyncio.DatagramTransport | None = None
        self.clients = 0
        """Outgoing connections opened (for diagnostics and tests)."""
        self._first_flights: weakref.WeakKeyDictionary[
            QuicConnectionProtocol, tuple[NetworkAddress, tuple[bytes, ...]]
        ] = weakref.WeakKeyDictionary()
        self._cid_length = self._configuration.connection_id_length
        self._reader: socket.socket | None = None
        """The socket again (a duplicate descriptor), to read a burst's further datagrams."""

    # -- the socket ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.socket = cast(asyncio.DatagramTransport, transport)
        self._routing = _Routing(self, self.socket)
        super().connection_made(cast(asyncio.BaseTransport, self._routing))
        raw = transport.get_extra_info("socket")
        if raw is not None and raw.type == socket.SOCK_DGRAM:
            reader = socket.socket(raw.family, raw.type, fileno=os.dup(raw.fileno()))
            reader.setblocking(False)
            self._reader = reader

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        super().close()
        self.connection_lost(None)

    @property
    def local_address(self) -> str:
        """The ``host:port`` the socket is bound to."""
        assert self.socket is not None, "not bound"
        host, port = self.socket.get_extra_info("sockname")[:2]
        return format_address(str(host), int(port))

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        """One datagram from the socket, then those waiting behind it (up to ``BURST``); the
        connections they reached transmit once all are handled."""
        routing = self._routing
        if routing.burst is not None:  # within a burst already (never from the socket)
            self._dispatch(cast(bytes, data), addr)
            return
        burst = routing.burst = {}
        try:
            self._dispatch(cast(bytes, data), addr)
            reader = self._reader
            for _ in range(BURST - 1 if reader is not None else 0):
                try:
                    data, addr = reader.recvfrom(RECEIVE_SIZE)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # an ICMP error reported on the socket, as asyncio does
                    self.error_received(exc)
                    break
                self._dispatch(data, addr)
        finally:
            routing.burst = None
            send_burst(burst)

    def _dispatch(self, data: bytes, addr: NetworkAddress) -> None:
        first = data[0] if data else 0
        if first & 0xC0 == 0x40:  # a short header: the connection ID follows the first byte
            protocol = self._protocols.get(data[1 : 1 + self._cid_length])
            if protocol is not None:
                protocol.datagram_received(data, addr)
                return
        elif first == 0:
            if data.startswith(PROBE_MAGIC) and self.probe_handler is not None:
                self.probe_handler(data, addr)
            return  # never QUIC v1; dropped
        super().datagram_received(data, addr)

    def send_datagram(self, data: bytes, addr: NetworkAddress) -> None:
        """Send one raw datagram from the node's socket (a probe)."""
        if self.socket is not None and not self.socket.is_closing():
            self.socket.sendto(data, addr)

    # -- relayed paths -----------------------------------------------------------------------

    def add_relay_route(self, relay_id: str, send: RelaySend) -> None:
        """Send what connections address to ``<peer>@relay_id`` with ``send(peer, packet)``."""
        self.relay_routes[relay_id] = send

    def remove_relay_route(self, relay_id: str, send: RelaySend | None = None) -> None:
        """Forget the route through ``relay_id`` (only if it is still ``send``, when given)."""
        if send is None or self.relay_routes.get(relay_id) is send:
            self.relay_routes.pop(relay_id, None)

    def inject(self, packet: bytes, peer_id: str, relay_id: str) -> None:
        """A QUIC packet from ``peer_id`` that arrived through relay ``relay_id``."""
        if packet[:1] == b"\x00":
            return
        self._dispatch(packet, virtual_address(peer_id, relay_id))

    # -- outgoing connections ----------------------------------------------------------------

    def connect(
        self,
        addr: NetworkAddress,
        configuration: QuicConfiguration,
        protocol: Callable[[QuicConnection], P],
    ) -> P:
        """Start a client connection to ``addr`` from the node's socket; the caller awaits
        ``wait_connected()`` and checks the peer's key (``dial`` does both)."""
        quic = QuicConnection(configuration=configuration)
        client = protocol(quic)
        client.connection_made(cast(asyncio.BaseTransport, self._transport))
        client._connection_id_issued_handler = functools.partial(
            self._connection_id_issued, protocol=client
        )
        client._connection_id_retired_handler = functools.partial(
            self._connection_id_retired, protocol=client
        )
        client._connection_terminated_handler = functools.partial(
            self._connection_terminated, protocol=client
        )
        self._protocols[quic.host_cid] = client
        self.clients += 1
        routing = cast(_Routing, self._transport)
        routing.recording = []
        try:
            client.connect(addr)
        finally:
            flight, routing.recording = tuple(routing.recording), None
        self._first_flights[client] = (addr, flight)
        return client

    def resend_first_flight(self, client: QuicConnectionProtocol) -> bool:
        """Send ``client``'s first datagrams (its Initial) again, byte for byte, while its
        handshake has not completed; whether anything was sent.

        A hole punch starts its handshakes before the peer's NAT lets them in; sending the
        same Initial again once the peer's probes show the way is open saves the PTO (about
        1 s for a first flight) that QUIC's own recovery would wait. A copy the peer already
        has is a duplicate packet number, which QUIC ignores."""
        held = self._first_flights.get(client)
        if held is None or client._connected or client._quic._close_event is not None:
            return False
        addr, flight = held
        routing = cast(_Routing, self._transport)
        for data in flight:
            routing.sendto(data, addr)
        return bool(flight)

    async def dial_h3(
        self, addr: NetworkAddress, *, expected_id: str | None, identity: Identity | None
    ) -> H3ClientProtocol:
        """``dial`` for an HTTP/3 connection."""
        return await self.dial(
            addr, expected_id=expected_id, identity=identity, protocol=H3ClientProtocol
        )

    async def dial(
        self,
        addr: NetworkAddress,
        *,
        expected_id: str | None,
        identity: Identity | None,
        protocol: Callable[[QuicConnection], P],
        alpn: str = "h3",
        started: Callable[[P], None] | None = None,
    ) -> P:
        """A connection to ``addr`` whose peer proved ``expected_id``'s key, the client proving
        ``identity``'s; bound the wait with ``asyncio.timeout``. ``started`` is given the connection
        as soon as its first flight is sent (to ``resend_first_flight`` it). ``TransportError`` (or
        ``IdentityMismatch``) when it fails; the half-open connection is closed then."""
        label = describe(addr)
        configuration = client_configuration(expected_id, alpn, identity=identity)
        client = self.connect(addr, configuration, protocol)
        if started is not None:
            started(client)
        if isinstance(client, H3ClientProtocol):
            client.address = label
        try:
            try:
                await client.wait_connected()
            except ConnectionError as exc:
                event = client._quic._close_event
                raise closed_error(label, event, f"QUIC handshake failed: {exc}") from exc
            check_peer(client._quic, expected_id, label)
        except BaseException:
            client.close()
            raise
        return client
