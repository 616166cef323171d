"""A node's attachment to one relay: how a node that cannot be reached directly stays reachable.

``RelayLink`` keeps one authenticated byte stream to a relay (a node with role ``relay``) and
carries QUIC packets over it: what a local connection sends to ``<peer>@<relay>`` goes out as
SEND frames (``send``, registered with the endpoint as the relay's route while the link is
ready), and RECV frames come back to ``on_packet`` (which hands them to ``MeshEndpoint.inject``).
The relay only forwards packets: the QUIC connection inside runs end to end between the nodes.

Two carriers, raced as happy eyeballs do:

- **QUIC** from the node's own socket (``MeshEndpoint.dial``, ALPN ``hm-relay``), so the NAT
  mapping the relay keeps open is the node's own, and the relay sees the node's reflexive address;
- **TLS over TCP** (ALPN ``hm-relay``, the TCP port number of the relay's UDP port), 250 ms later,
  for networks that block UDP.

The first one to finish the relay's challenge (CHALLENGE → AUTH signed by the node's key →
WELCOME) wins; a REFUSED answer raises ``RelayRefused``. The relay's key is pinned on both
carriers before a byte of the protocol is sent. ``run`` keeps the link up: PING when idle (a
keepalive for NAT mappings, and the RTT), a dead link (no PONG within 3 s, the stream or the
connection closed) is reconnected with backoff from 0.5 s to 30 s; ``check`` asks at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from hypermesh.errors import IdentityMismatch, TransportError
from hypermesh.transport import relaywire
from hypermesh.transport.address import parse_address
from hypermesh.transport.certificates import DNS_SUFFIX, node_id_from_certificate
from hypermesh.transport.endpoint import MeshEndpoint
from hypermesh.transport.identity import Identity, public_key_from_node_id, short_id
from hypermesh.transport.recovery import cap_backoff
from hypermesh.transport.relaywire import RelayProtocolError, Welcome

log = logging.getLogger(__name__)

ALPN = relaywire.RELAY_ALPN
TRANSPORTS = ("udp", "tcp")
"""The carriers, in the order they are tried."""
HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds the TCP attempt waits for the QUIC one before it starts too."""
CONNECT_TIMEOUT = 10.0
"""Seconds one attempt (connection, pinning and the relay's challenge) may take."""
KEEPALIVE_INTERVAL = 10.0
"""A PING goes out when nothing was sent or nothing received for this long. It holds the NAT
mapping (UDP mappings commonly last 30 s or more), and it bounds how long a node stays
unreachable through its relay after its NAT dropped the mapping (a router's reboot, a flushed
table): the relay's packets are lost until the node sends again, and the relay's QUIC backs
off meanwhile, so the PING's PONG is late and the node attaches afresh (about 10 + 3 s)."""
PONG_TIMEOUT = 3.0
"""Seconds without the PONG after which the attachment is taken for dead (at least; four
round trips when the relay is farther than that)."""
PONG_RTTS = 4
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
FORBIDDEN_BACKOFF = 300.0
"""Seconds ``run`` waits after a 403 (not a member: it will not change soon)."""
STABLE_ATTACHMENT = 10.0
"""An attachment that lasted this long resets the backoff."""
MAX_QUEUED = 1 << 20
"""Bytes waiting to be sent beyond which ``send`` drops packets (the carrier is congested)."""

RENEW_SHARE = 0.8
"""Share of the reservation's TTL after which the node renews it (AUTH again on the stream,
for the same challenge; the relay answers WELCOME)."""
RENEW_RETRY = 30.0
"""Seconds before a renewal the relay did not answer is sent again."""


class RelayRefused(TransportError):
    """The relay answered, and will not attach this node: ``status`` 403 (not a member), 429
    (too many attachments or attempts), 400 (a malformed request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"relay refused ({status}): {message}")
        self.status = status
        self.message = message


class _FrameReader:
    """The relay's frames from a byte stream, as they complete."""

    def __init__(self, reader: asyncio.StreamReader, label: str) -> None:
        self._reader = reader
        self._label = label
        self._decoder = relaywire.FrameDecoder()
        self._frames: deque[relaywire.Frame] = deque()

    async def next(self) -> relaywire.Frame | None:
        """The next frame; None when the stream ends between frames. ``TransportError`` when
        the relay sent something malformed or the stream ended inside a frame."""
        while not self._frames:
            data = await self._reader.read(1 << 16)
            if not data:
                if not self._decoder.at_boundary():
                    raise TransportError(f"{self._label}: the stream ended inside a frame")
                return None
            try:
                self._frames.extend(self._decoder.feed(data))
            except RelayProtocolError as exc:
                raise TransportError(f"{self._label}: {exc}") from None
        return self._frames.popleft()


# -- carriers ----------------------------------------------------------------------------------


class _Carrier:
    """One duplex byte stream to the relay (a QUIC stream or a TLS connection)."""

    transport = ""
    """``"udp"`` or ``"tcp"``."""

    def __init__(self, address: str, reader: asyncio.StreamReader) -> None:
        self.address = address
        self.label = f"{address} ({self.transport})"
        self.frames = _FrameReader(reader, self.label)

    def write(self, data: bytes) -> None:
        """Queue ``data``; never blocks."""
        raise NotImplementedError

    def queued(self) -> int:
        """Bytes written and not yet sent (or not yet acknowledged)."""
        raise NotImplementedError

    def close(self) -> None:
        """End the carrier now (whatever is queued may be lost)."""
        raise NotImplementedError

    def close_reason(self) -> str:
        """Why the stream ended, as far as the carrier knows."""
        return "EOF"


class RelayStreamProtocol(QuicConnectionProtocol):
    """A QUIC connection to a relay carrying the attachment on its first bidirectional stream,
    whose data arrives on ``reader`` (EOF when the stream or the connection ends)."""

    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None):
        super().__init__(quic, stream_handler)
        cap_backoff(quic)
        self.reader = asyncio.StreamReader(limit=1 << 20)
        self._eof = False
        self.stream_id: int | None = None
        self.close_reason: str | None = None
        """Why the connection or the stream ended, once it has."""

    def open_stream(self) -> int:
        """Open the attachment's stream (the connection's first bidirectional one)."""
        if self.stream_id is None:
            self.stream_id = self._quic.get_next_available_stream_id()
        return self.stream_id

    def write(self, data: bytes) -> None:
        """Queue ``data`` on the stream (sent on the next turn of the loop)."""
        if self.stream_id is None or self.close_reason is not None:
            return
        self._quic.send_stream_data(self.stream_id, data)
        self._transmit_soon()

    def queued(self) -> int:
        """Bytes of the stream not yet acknowledged by the relay."""
        if self.stream_id is None:
            return 0
        stream = self._quic._streams.get(self.stream_id)
        return 0 if stream is None else len(stream.sender._buffer)

    def quic_event_received(self, event: QuicEvent) -> None:
        """Feed the stream's data to ``reader``; end it when the stream or connection ends."""
        if isinstance(event, StreamDataReceived) and event.stream_id == self.stream_id:
            if not self._eof:
                self.reader.feed_data(event.data)
                if event.end_stream:
                    self._end("the relay ended the stream")
        elif isinstance(event, StreamReset) and event.stream_id == self.stream_id:
            self._end(f"the relay reset the stream (error {event.error_code})")
        elif isinstance(event, ConnectionTerminated):
            reason = event.reason_phrase or "no reason given"
            self._end(f"the connection ended: {reason} (QUIC error 0x{event.error_code:x})")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._end("the connection was lost")

    def _end(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        if not self._eof:
            self._eof = True
            self.reader.feed_eof()


class _QuicCarrier(_Carrier):
    transport = "udp"

    def __init__(self, address: str, protocol: RelayStreamProtocol) -> None:
        super().__init__(address, protocol.reader)
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.protocol.write(data)

    def queued(self) -> int:
        return self.protocol.queued()

    def close(self) -> None:
        self.protocol._end("closed")
        self.protocol.close()

    def close_reason(self) -> str:
        return self.protocol.close_reason or "EOF"


class _TcpCarrier(_Carrier):
    transport = "tcp"

    def __init__(
        self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(address, reader)
        self.writer = writer

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def queued(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    def close(self) -> None:
        self.writer.close()


def _tls_context() -> ssl.SSLContext:
    """TLS 1.3 without a CA (the relay's key is pinned after the handshake), ALPN ``hm-relay``.
    OpenSSL still checks the relay's CertificateVerify: it holds the key it shows."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols([ALPN])
    return context


async def open_tcp(address: str, relay_id: str) -> _Carrier:
    """A TLS connection to the relay at ``address`` whose certificate holds ``relay_id``'s key;
    ``TransportError`` (``IdentityMismatch``) otherwise."""
    host, port = parse_address(address)
    try:
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=_tls_context(),
            server_hostname=relay_id + DNS_SUFFIX,
            limit=1 << 18,
        )
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(f"{address} (tcp): cannot connect: {exc}") from exc
    try:
        tls = writer.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        if not der:
            raise TransportError(f"{address} (tcp): the relay presented no certificate")
        try:
            actual = node_id_from_certificate(der)
        except ValueError as exc:
            raise IdentityMismatch(f"{address} (tcp): the relay's certificate: {exc}") from None
        if actual != relay_id:
            raise IdentityMismatch(
                f"{address} (tcp): expected relay {short_id(relay_id)}… ({relay_id}) but the "
                f"peer is {short_id(actual)}… ({actual})"
            )
        if tls.selected_alpn_protocol() != ALPN:
            raise TransportError(f"{address} (tcp): the peer does not speak {ALPN!r}")
    except BaseException:
        writer.close()
        raise
    return _TcpCarrier(address, reader, writer)


async def open_quic(
    endpoint: MeshEndpoint, address: str, relay_id: str, identity: Identity
) -> _Carrier:
    """A QUIC connection from the node's socket to the relay at ``address``, the relay's key
    pinned, with the attachment's stream open (a PING opens it: the relay learns the stream
    from the first data on it)."""
    host, port = parse_address(address)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise TransportError(f"{address} (udp): cannot resolve {host!r}: {exc}") from exc
    sockaddr = _sockaddr_for(endpoint, [info[4] for info in infos])
    protocol = await endpoint.dial(
        sockaddr,
        expected_id=relay_id,
        identity=identity,
        alpn=ALPN,
        protocol=RelayStreamProtocol,
    )
    protocol.open_stream()
    return _QuicCarrier(address, protocol)


def _sockaddr_for(endpoint: MeshEndpoint, candidates: Iterable[Any]) -> tuple[str, int]:
    """The first resolved address the endpoint's socket can send to (an IPv4 socket cannot
    reach an IPv6 address; a dual-stack one wants IPv4 addresses mapped)."""
    family = None
    if endpoint.socket is not None:
        sock = endpoint.socket.get_extra_info("socket")
        family = getattr(sock, "family", None)
    for candidate in candidates:
        host, port = str(candidate[0]), int(candidate[1])
        if family == socket.AF_INET6 and ":" not in host:
            return (f"::ffff:{host}", port)
        if family in (None, socket.AF_INET6) or ":" not in host:
            return (host, port)
    raise TransportError("the node's socket cannot reach any address of the relay")


# -- the link ----------------------------------------------------------------------------------

OnPacket = Callable[[str, bytes], None]
"""(the sending peer's node ID, one QUIC packet)."""
OnGone = Callable[[str], None]
OnLimit = Callable[[str, str], None]
_Dialed = tuple["_Carrier", Welcome, bytes]
"""An attached carrier, the relay's WELCOME and its challenge's nonce."""


@dataclass(slots=True)
class RelayStats:
    """Counters of one link (for metrics and ``GET /paths/v1``)."""

    attachments: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    packets_dropped: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0


class _Attachment:
    """One live attachment: its carrier, its clocks and its keepalive state."""

    def __init__(self, carrier: _Carrier, welcome: Welcome, nonce: bytes) -> None:
        self.carrier = carrier
        self.welcome = welcome
        self.nonce = nonce
        """The relay's challenge, which a renewing AUTH answers again."""
        now = time.monotonic()
        self.since = now
        self.renew_at = now + welcome.ttl * RENEW_SHARE
        self.last_sent = now
        self.last_received = now
        self.ping: tuple[bytes, float] | None = None
        self.rtt_known = False
        self.pong = asyncio.Event()
        self.ended = asyncio.Event()
        self.reason: str | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def write(self, data: bytes) -> None:
        self.last_sent = time.monotonic()
        self.carrier.write(data)

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.ended.set()


class RelayLink:
    """One node's attachment to one relay, kept up by ``run`` (see the module's docstring).

    ``on_packet(peer_id, packet)`` gets each QUIC packet a peer sent through the relay;
    ``on_gone(peer_id)`` that a peer is not attached there (stop sending to it that way);
    ``on_limit(peer_id, why)`` that the relay ended the circuit to it by a limit. Callbacks run
    on the event loop and must not block; an exception in one is logged and the link goes on.
    """

    def __init__(
        self,
        relay_id: str,
        addresses: Iterable[str],
        identity: Identity,
        endpoint: MeshEndpoint | None,
        on_packet: OnPacket,
        *,
        on_gone: OnGone | None = None,
        on_limit: OnLimit | None = None,
        transports: Iterable[str] = TRANSPORTS,
    ) -> None:
        public_key_from_node_id(relay_id)  # ValueError when malformed
        self.relay_id = relay_id
        self.addresses = tuple(addresses)
        if not self.addresses:
            raise ValueError(f"relay {short_id(relay_id)}: no address to reach it at")
        for address in self.addresses:
            parse_address(address)  # ValueError naming what is wrong
        self.transports = tuple(transports)
        unknown = [t for t in self.transports if t not in TRANSPORTS]
        if unknown or not self.transports:
            raise ValueError(f"transports must be among {TRANSPORTS}, not {self.transports}")
        if endpoint is None:
            self.transports = tuple(t for t in self.transports if t != "udp")
            if not self.transports:
                raise ValueError("a relay link over 'udp' needs the node's endpoint")
        self.identity = identity
        self.endpoint = endpoint
        self.on_packet = on_packet
        self.on_gone = on_gone
        self.on_limit = on_limit
        self.ready = asyncio.Event()
        """Set while the link is attached and ``send`` carries packets."""
        self.rtt: float | None = None
        """The last round-trip time to the relay, in seconds (PING/PONG)."""
        self.stats = RelayStats()
        self.last_error: str | None = None
        """Why the last attachment failed or ended, for diagnostics."""
        self._attachment: _Attachment | None = None
        self._closing = asyncio.Event()
        self._route: OnPacket = self.send
        """``send``, one bound method: the endpoint forgets the route only if it is this one."""
        self._label = f"relay {short_id(relay_id)}"

    # -- what callers read ---------------------------------------------------------------------

    @property
    def transport(self) -> str | None:
        """``"udp"`` or ``"tcp"`` while attached, else None."""
        return self._attachment.carrier.transport if self._attachment else None

    @property
    def address(self) -> str | None:
        """The relay's address the link is attached to, else None."""
        return self._attachment.carrier.address if self._attachment else None

    @property
    def observed(self) -> str | None:
        """This node's address as the relay sees it (from WELCOME), while attached."""
        return self._attachment.welcome.observed if self._attachment else None

    @property
    def limits(self) -> dict[str, Any]:
        """The relay's circuit limits (from WELCOME), while attached."""
        return dict(self._attachment.welcome.limits) if self._attachment else {}

    @property
    def since(self) -> float | None:
        """``time.monotonic()`` when the current attachment began, else None."""
        return self._attachment.since if self._attachment else None

    # -- sending -----------------------------------------------------------------------------

    def send(self, peer_id: str, packet: bytes) -> None:
        """Send one QUIC packet to ``peer_id`` through the relay; never blocks. Dropped (QUIC
        resends what matters) when the link is not ready, the packet does not fit a frame or
        more than 1 MiB waits to be sent. ``ValueError`` for a malformed node ID."""
        key = public_key_from_node_id(peer_id)
        attachment = self._attachment
        if (
            attachment is None
            or not self.ready.is_set()
            or not 0 < len(packet) <= relaywire.MAX_PACKET
            or attachment.carrier.queued() > MAX_QUEUED
        ):
            self.stats.packets_dropped += 1
            return
        attachment.write(relaywire.encode(relaywire.SEND, key + packet))
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(packet)

    # -- attaching -----------------------------------------------------------------------------

    async def connect_once(self) -> None:
        """Attach once (replacing the current attachment, if any): ``RelayRefused`` when the
        relay refuses, ``TransportError`` when no carrier could attach. The attachment then
        lives until it dies or ``aclose``; ``run`` is what reconnects it."""
        if self._closing.is_set():
            raise TransportError(f"{self._label}: the link is closed")
        carrier, welcome, nonce = await self._dial()
        if self._closing.is_set():
            carrier.close()
            raise TransportError(f"{self._label}: the link is closed")
        self._detach("replaced")
        self._attach(carrier, welcome, nonce)

    async def run(self) -> None:
        """Stay attached until ``aclose``: renew the reservation before its TTL runs out, and
        reconnect a dead attachment with backoff (0.5 s doubling to 30 s; 5 minutes after a
        403, at least 5 s after another refusal)."""
        delay = BACKOFF_INITIAL
        while not self._closing.is_set():
            wait = delay
            try:
                await self.connect_once()
            except RelayRefused as exc:
                self.last_error = str(exc)
                log.warning("%s: %s", self._label, exc)
                wait = FORBIDDEN_BACKOFF if exc.status == 403 else max(delay, 5.0)
            except TransportError as exc:
                self.last_error = str(exc)
                log.info("%s: not attached: %s", self._label, exc)
            else:
                last = await self._hold()
                if last is not None and time.monotonic() - last.since >= STABLE_ATTACHMENT:
                    delay = wait = BACKOFF_INITIAL
            await self._wait(asyncio.sleep(wait))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _hold(self) -> _Attachment | None:
        """Wait while attached: the attachment that ended, None on ``aclose``."""
        attachment = self._attachment
        if attachment is None:
            return None
        await self._wait(attachment.ended.wait())
        if self._closing.is_set():
            return None
        self._detach("ended")
        return attachment

    def reattach(self, reason: str = "the node's addresses changed") -> None:
        """End the attachment so that ``run`` attaches again (within its first backoff): the
        relay then sees the node's new address at once and says it (``observed``), instead of
        learning it at the next keepalive."""
        self._detach(reason)

    async def aclose(self) -> None:
        """Detach and stop ``run``; the link cannot attach again."""
        self._closing.set()
        attachment = self._attachment
        self._detach("closed")
        if attachment is not None:
            await asyncio.gather(*attachment.tasks, return_exceptions=True)

    async def _wait(self, awaitable: Any) -> None:
        """Await ``awaitable`` or ``aclose``, whichever comes first (a timeout of
        ``awaitable`` is not an error)."""
        waiter = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({waiter, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, closing):
                task.cancel()
            await asyncio.gather(waiter, closing, return_exceptions=True)

    def _attach(self, carrier: _Carrier, welcome: Welcome, nonce: bytes) -> None:
        attachment = _Attachment(carrier, welcome, nonce)
        self._attachment = attachment
        self.stats.attachments += 1
        self.last_error = None
        attachment.tasks = [
            asyncio.ensure_future(self._receive(attachment)),
            asyncio.ensure_future(self._keepalive(attachment)),
        ]
        self.ready.set()
        if self.endpoint is not None:
            self.endpoint.add_relay_route(self.relay_id, self._route)
        log.info(
            "%s: attached over %s to %s (observed %s)",
            self._label,
            carrier.transport,
            carrier.address,
            welcome.observed,
        )

    def _lost(self, attachment: _Attachment, reason: str) -> None:
        """An attachment died (its stream ended, a PONG did not come): detach it."""
        attachment.end(reason)
        if self._attachment is attachment:
            self._detach(reason)

    def _detach(self, reason: str) -> None:
        """End the current attachment (if any): not ready, no route, carrier closed."""
        attachment = self._attachment
        if attachment is None:
            return
        self._attachment = None
        self.ready.clear()
        if self.endpoint is not None:
            self.endpoint.remove_relay_route(self.relay_id, self._route)
        attachment.end(reason)
        if attachment.reason not in ("closed", "replaced", "ended"):
            self.last_error = attachment.reason
        for task in attachment.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        attachment.carrier.close()
        log.info("%s: detached: %s", self._label, attachment.reason)

    # -- dialing -----------------------------------------------------------------------------

    async def _dial(self) -> _Dialed:
        """Race the carriers (QUIC at once, TCP 250 ms later) to every address; the first
        attachment wins and the others are closed. A refusal ends the race."""
        attempts: list[asyncio.Task[_Dialed]] = []
        for transport in self.transports:
            delay = HAPPY_EYEBALLS_DELAY if transport == "tcp" and "udp" in self.transports else 0
            for address in self.addresses:
                attempts.append(asyncio.ensure_future(self._attempt(transport, address, delay)))
        errors: list[Exception] = []
        winner: _Dialed | None = None
        try:
            for next_done in asyncio.as_completed(attempts):
                try:
                    winner = await next_done
                except RelayRefused:
                    raise
                except (TransportError, OSError, TimeoutError, ValueError) as exc:
                    errors.append(exc)
                else:
                    return winner
        finally:
            for attempt in attempts:
                attempt.cancel()
            # attempts that attached while the winner was being taken: close their carriers
            for outcome in await asyncio.gather(*attempts, return_exceptions=True):
                if isinstance(outcome, tuple) and (winner is None or outcome[0] is not winner[0]):
                    outcome[0].close()
        message = "; ".join(str(error) or type(error).__name__ for error in errors)
        # every carrier met another key: say so by the type (a wrong pin is not an outage)
        mismatch = all(isinstance(error, IdentityMismatch) for error in errors)
        raise (IdentityMismatch if mismatch else TransportError)(
            f"{self._label}: cannot attach: {message}"
        )

    async def _attempt(self, transport: str, address: str, delay: float) -> _Dialed:
        """One carrier to one address, through the relay's challenge, within CONNECT_TIMEOUT."""
        if delay:
            await asyncio.sleep(delay)
        carrier: _Carrier | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if transport == "udp":
                    assert self.endpoint is not None
                    carrier = await open_quic(self.endpoint, address, self.relay_id, self.identity)
                else:
                    carrier = await open_tcp(address, self.relay_id)
                welcome, nonce = await self._handshake(carrier)
        except TimeoutError:
            if carrier is not None:
                carrier.close()
            raise TransportError(
                f"{address} ({transport}): no attachment within {CONNECT_TIMEOUT:g} s"
            ) from None
        except BaseException:
            if carrier is not None:
                carrier.close()
            raise
        return carrier, welcome, nonce

    async def _handshake(self, carrier: _Carrier) -> tuple[Welcome, bytes]:
        """CHALLENGE → AUTH → WELCOME (or REFUSED, raised as ``RelayRefused``); the WELCOME
        and the relay's nonce (for renewals)."""
        label = carrier.label
        if carrier.transport == "udp":
            # The relay learns the stream from its first data: a PING opens it.
            carrier.write(relaywire.ping(secrets.token_bytes(relaywire.PING_BYTES)))
        try:
            frame = await self._handshake_frame(carrier)
            if frame.type != relaywire.CHALLENGE:
                raise TransportError(f"{label}: expected CHALLENGE, got {frame.name}")
            nonce, named = relaywire.parse_challenge(frame.payload)
            if named != self.relay_id:
                raise IdentityMismatch(
                    f"{label}: the relay's CHALLENGE names {short_id(named)}… ({named}), "
                    f"not {short_id(self.relay_id)}… ({self.relay_id})"
                )
            carrier.write(relaywire.auth(self.identity, nonce, self.relay_id))
            frame = await self._handshake_frame(carrier)
            if frame.type == relaywire.REFUSED:
                status, error = relaywire.parse_refused(frame.payload)
                raise RelayRefused(status, f"{label}: {error[:500] or 'no reason given'}")
            if frame.type != relaywire.WELCOME:
                raise TransportError(f"{label}: expected WELCOME, got {frame.name}")
            return relaywire.parse_welcome(frame.payload), nonce
        except RelayProtocolError as exc:
            raise TransportError(f"{label}: {exc}") from None

    async def _handshake_frame(self, carrier: _Carrier) -> relaywire.Frame:
        """The next frame of the handshake, past PINGs (answered) and PONGs (at most 8)."""
        for _ in range(8):
            frame = await carrier.frames.next()
            if frame is None:
                raise TransportError(
                    f"{carrier.label}: the relay closed the stream ({carrier.close_reason()})"
                )
            if frame.type == relaywire.PING:
                carrier.write(relaywire.pong(frame.payload))
            elif frame.type != relaywire.PONG:
                return frame
        raise TransportError(f"{carrier.label}: keepalives instead of the handshake")

    # -- an attachment's life ------------------------------------------------------------------

    async def _receive(self, attachment: _Attachment) -> None:
        """Read the relay's frames until the stream ends; dispatch each one."""
        carrier = attachment.carrier
        reason = "the relay closed the stream"
        try:
            while True:
                frame = await carrier.frames.next()
                if frame is None:
                    reason = f"the relay closed the stream ({carrier.close_reason()})"
                    break
                attachment.last_received = time.monotonic()
                self._dispatch(attachment, frame)
        except RelayProtocolError as exc:
            reason = f"{carrier.label}: {exc}"
        except (TransportError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug here must not leave the link half dead
            log.exception("%s: reading the relay's frames failed", self._label)
            reason = f"internal error: {exc!r}"
        finally:
            self._lost(attachment, reason)

    def _dispatch(self, attachment: _Attachment, frame: relaywire.Frame) -> None:
        """Act on one frame of an attachment (``RelayProtocolError`` when it is malformed)."""
        kind, payload = frame.type, frame.payload
        if kind == relaywire.RECV:
            peer, packet = relaywire.parse_packet(payload)
            self.stats.packets_received += 1
            self.stats.bytes_received += len(packet)
            self._call(self.on_packet, peer, packet)
        elif kind == relaywire.GONE:
            self._call(self.on_gone, relaywire.parse_gone(payload))
        elif kind == relaywire.LIMIT:
            peer, why = relaywire.parse_limit(payload)
            self._call(self.on_limit, peer, why[:500])
        elif kind == relaywire.PING:
            attachment.write(relaywire.pong(payload))
        elif kind == relaywire.PONG:
            ping = attachment.ping
            if ping is not None and payload == ping[0]:
                self.rtt = time.monotonic() - ping[1]
                attachment.ping = None
                attachment.pong.set()
        elif kind == relaywire.WELCOME:  # a renewal accepted
            attachment.welcome = relaywire.parse_welcome(payload)
            attachment.renew_at = time.monotonic() + attachment.welcome.ttl * RENEW_SHARE
        elif kind == relaywire.REFUSED:  # a renewal refused; the relay closes the stream
            status, error = relaywire.parse_refused(payload)
            raise RelayRefused(status, f"{attachment.carrier.label}: {error[:500]}")
        else:
            raise RelayProtocolError(f"{frame.name} is not a frame a relay sends once attached")

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        """Run a callback; its failure is logged, not the link's."""
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("%s: a callback failed", self._label)

    async def _keepalive(self, attachment: _Attachment) -> None:
        """PING at once (the first RTT), then whenever the link was idle for 25 s (no PONG
        within 10 s ends the attachment); renew the reservation past ``RENEW_SHARE`` of its
        TTL. Each turn either acts, which moves its deadline on, or sleeps until the next."""
        while not attachment.ended.is_set():
            now = time.monotonic()
            idle_since = min(attachment.last_sent, attachment.last_received)
            ping_at = idle_since + KEEPALIVE_INTERVAL if attachment.rtt_known else now
            if now >= attachment.renew_at:
                attachment.write(relaywire.auth(self.identity, attachment.nonce, self.relay_id))
                # retry well before the TTL ends; the WELCOME moves renew_at on (never earlier
                # than this, so the sleep below never oversleeps a deadline)
                ttl = attachment.welcome.ttl
                attachment.renew_at = now + min(RENEW_RETRY, ttl * (1 - RENEW_SHARE) / 2)
            elif now >= ping_at:
                if not await self._ping(attachment):
                    self._lost(attachment, f"no PONG within {self.pong_timeout():g} s")
                    return
            else:
                await asyncio.sleep(min(ping_at, attachment.renew_at) - now)

    async def _ping(self, attachment: _Attachment) -> bool:
        """One PING (or the one in flight); False when its PONG did not come in time."""
        if attachment.ping is None:
            nonce = secrets.token_bytes(relaywire.PING_BYTES)
            attachment.ping = (nonce, time.monotonic())
            attachment.pong.clear()
            attachment.write(relaywire.ping(nonce))
        try:
            async with asyncio.timeout(self.pong_timeout()):
                await attachment.pong.wait()
        except TimeoutError:
            return False
        attachment.rtt_known = True
        return True

    def pong_timeout(self) -> float:
        """Seconds a PING's PONG may take: ``PONG_TIMEOUT``, or four round trips if longer."""
        return max(PONG_TIMEOUT, PONG_RTTS * (self.rtt or 0.0))

    async def check(self) -> bool:
        """Whether the attachment carries packets both ways now: a PING answered (one in
        flight is shared). An unanswered one ends the attachment, and ``run`` attaches again
        at once: what a caller whose packets through the relay go unanswered asks (the
        node's NAT may have dropped its mapping, which only a new flight of its own mends)."""
        attachment = self._attachment
        if attachment is None or not self.ready.is_set():
            return False
        if await self._ping(attachment):
            return True
        self._lost(attachment, f"no PONG within {self.pong_timeout():g} s")
        return False
