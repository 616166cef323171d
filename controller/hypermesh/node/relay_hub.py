"""The relay: nodes that cannot reach each other directly reach each other through it.

A node attaches to a relay over one byte stream (``transport.relaywire``): the relay challenges
it, the node proves its key, and from then on the relay holds a *reservation* for it (its node
ID → its stream) and forwards to it every packet another attached node SENDs to its ID, as RECV
from the sender's ID. The packets are QUIC packets of a connection that runs end to end between
the two nodes: the relay learns the two node IDs and nothing else, and logs no byte of them.

Bounds, as libp2p's Circuit Relay v2 has them (``RelayLimits``): the reservations a relay holds
and how long each lasts (a node authenticates again, on a new stream, to keep it); in a private
network only members attach (``admits``); the circuits (pairs of nodes exchanging packets) each
node may have open, and, in a public network, the bytes and seconds one circuit may last (then
both ends get LIMIT, and the pair waits ``limit_cooldown`` before another) and how often one
source may attach. A node that does not read is not waited for: packets for it are dropped
once ``queue_bytes`` are waiting (QUIC retransmits what matters).

``RelayHub.serve_stream`` serves one stream whatever carries it (TLS over TCP:
``node.relay_tcp``; a QUIC stream on the node's public endpoint: ``node.server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypermesh.node.interfaces import source_key
from hypermesh.transport import relaywire as wire
from hypermesh.transport.identity import Identity, public_key_from_node_id, short_id
from hypermesh.transport.relaywire import Frame, FrameDecoder, RelayProtocolError

log = logging.getLogger("hypermesh.relay")

READ_SIZE = 65536
MAX_COOLING = 65536
"""Pairs remembered as cooling down after a limit (the oldest forgotten beyond)."""
MAX_EARLY_PINGS = 8
"""PINGs answered before AUTH (over QUIC, the client's first data, a PING, opens the stream)."""
MAX_SOURCES = 16384
"""Sources whose attach rate is counted (the oldest forgotten beyond)."""

Admits = Callable[[str], bool]
"""Whether a node ID may attach (a member of the network); None: anyone may."""
Buffered = Callable[[], int]
"""Bytes a stream's transport still holds, not yet sent."""


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """What a relay holds at most, and for how long."""

    max_reservations: int = 128
    """Nodes attached at once; one more is refused (429)."""
    reservation_ttl: float = 3600.0
    """Seconds a reservation lasts; then the stream is closed and the node attaches again."""
    max_circuits_per_peer: int = 16
    """Peers one node may exchange packets with at once through the relay."""
    circuit_bytes: int | None = None
    """Bytes (both ways) one circuit may carry; None: no limit."""
    circuit_seconds: float | None = None
    """Seconds one circuit may last; None: no limit."""
    circuit_idle: float = 90.0
    """Seconds without a packet after which a circuit no longer counts (QUIC keepalives every
    25 s hold a live one)."""
    limit_cooldown: float = 60.0
    """Seconds a pair whose circuit hit a limit waits before the relay carries it again."""
    attach_rate: float | None = None
    """Attachments per minute one source (IP address, IPv6 /64) may make; None: no limit."""
    attach_burst: int = 10
    """Attachments one source may make at once before ``attach_rate`` applies."""
    auth_timeout: float = 10.0
    """Seconds a new stream has to authenticate."""
    queue_bytes: int = 1 << 20
    """Bytes waiting for a slow reader beyond which packets for it are dropped."""

    @classmethod
    def public(cls) -> RelayLimits:
        """The limits for a public network: circuits long enough to punch a hole through, not to
        carry a peer's traffic (1 MiB, 2 minutes), and attachments rate-limited per source."""
        return cls(circuit_bytes=1 << 20, circuit_seconds=120.0, attach_rate=30.0)

    def as_json(self) -> dict[str, Any]:
        """The limits as WELCOME tells them to a node."""
        return dataclasses.asdict(self)


@dataclass(slots=True)
class RelayStats:
    """What the relay has done, for metrics."""

    attached: int = 0
    """Nodes attached now."""
    attaches: int = 0
    """Attachments accepted since start (a re-attachment counts again)."""
    refused: dict[str, int] = field(default_factory=dict)
    """Refusals by reason: member, full, rate, signature, protocol, timeout."""
    circuits: int = 0
    """Circuits open now."""
    circuits_opened: int = 0
    bytes_relayed: int = 0
    """Bytes of packets forwarded (without frame headers)."""
    packets_relayed: int = 0
    limits_hit: int = 0
    """Circuits ended by a byte or time limit, and circuits refused past the count per node."""
    dropped: int = 0
    """Packets dropped because the receiver's queue was full."""
    gone: int = 0
    """Packets for a node not attached here (answered GONE)."""

    def count_refusal(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


@dataclass(eq=False, slots=True)
class _Session:
    """One attached node: its stream and its circuits (by the peers' raw keys)."""

    node_id: str
    key: bytes
    observed: str
    nonce: bytes
    write: Callable[[bytes], None]
    close: Callable[[], None]
    buffered: Buffered | None
    circuits: set[bytes] = field(default_factory=set)
    closed: bool = False

    def deliver(self, frame: bytes, queue_bytes: int | None = None) -> bool:
        """Write ``frame`` unless the stream is closed or, past ``queue_bytes`` waiting, its
        reader is too slow (None: a rare control frame, always written)."""
        if self.closed:
            return False
        if queue_bytes is not None and self.buffered is not None and self.buffered() > queue_bytes:
            return False
        try:
            self.write(frame)
        except (OSError, RuntimeError):
            self.closed = True
            return False
        return True


@dataclass(slots=True)
class _Circuit:
    started: float
    last: float
    bytes: int = 0


class _Frames:
    """The frames of one stream, read as they come."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.decoder = FrameDecoder()
        self.pending: deque[Frame] = deque()

    async def next(self) -> Frame | None:
        """The next frame; None when the stream ended cleanly between frames."""
        while not self.pending:
            data = await self.reader.read(READ_SIZE)
            if not data:
                if not self.decoder.at_boundary():
                    raise RelayProtocolError("the stream ended inside a frame")
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.popleft()


class _Refusal(Exception):
    def __init__(self, reason: str, status: int, error: str) -> None:
        super().__init__(error)
        self.reason, self.status, self.error = reason, status, error


class RelayHub:
    """Attached nodes by key, and the packets forwarded between them."""

    def __init__(
        self,
        identity: Identity,
        admits: Admits | None,
        limits: RelayLimits | None = None,
        *,
        network: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.admits = admits
        self.limits = limits or RelayLimits()
        self.network = network
        self.clock = clock
        self.stats = RelayStats()
        self.sessions: dict[bytes, _Session] = {}
        self._circuits: dict[tuple[bytes, bytes], _Circuit] = {}
        self._cooling: dict[tuple[bytes, bytes], float] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._streams: set[Callable[[], None]] = set()
        self._closed = False

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def attached(self) -> list[str]:
        """The node IDs attached now."""
        return [s.node_id for s in self.sessions.values()]

    async def serve_stream(
        self,
        reader: asyncio.StreamReader,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        observed: str,
        *,
        buffered: Buffered | None = None,
    ) -> None:
        """Serve one stream until it ends: challenge, authenticate, then forward.

        ``write`` sends bytes on the stream, ``close`` closes it, ``observed`` is the peer's
        ``ip:port`` as seen here, ``buffered`` (optional) the bytes the transport still holds, so
        that a slow reader's packets are dropped rather than queued without end.
        """
        if self._closed:
            close()
            return
        self._streams.add(close)
        frames = _Frames(reader)
        session: _Session | None = None
        try:
            session = await self._attach(frames, write, close, observed, buffered)
            await self._serve(session, frames)
        except _Refusal as refusal:
            self._refuse(write, refusal, observed)
        except TimeoutError:
            if session is None:
                timeout = self.limits.auth_timeout
                self._refuse(write, _Refusal("timeout", 400, f"no AUTH within {timeout:g} s"))
            else:
                log.info("relay: reservation of %s expired", short_id(session.node_id))
        except RelayProtocolError as exc:
            self._refuse(write, _Refusal("protocol", 400, str(exc)), observed)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._streams.discard(close)
            if session is not None:
                self._detach(session)
            close()

    async def _attach(
        self,
        frames: _Frames,
        write: Callable[[bytes], None],
        close: Callable[[], None],
        observed: str,
        buffered: Buffered | None,
    ) -> _Session:
        """Challenge the stream and attach the node that answers (PINGs before its AUTH are
        answered, a few); ``_Refusal`` otherwise."""
        nonce = secrets.token_bytes(wire.NONCE_BYTES)
        write(wire.challenge(nonce, self.node_id))
        async with asyncio.timeout(self.limits.auth_timeout):
            frame = await frames.next()
            for _ in range(MAX_EARLY_PINGS):
                if frame is None or frame.type != wire.PING:
                    break
                write(wire.pong(frame.payload))
                frame = await frames.next()
        if frame is None:
            raise ConnectionResetError("closed before AUTH")
        if frame.type != wire.AUTH:
            raise _Refusal("protocol", 400, f"expected AUTH, got {frame.name}")
        if not self._rate_allows(observed):
            raise _Refusal("rate", 429, "too many attachments from this address; retry later")
        node_id = wire.verify_auth(frame.payload, nonce, self.node_id)
        if node_id is None:
            raise _Refusal("signature", 403, "the AUTH signature does not verify for this relay")
        self._admit(node_id)
        key = frame.payload[: wire.KEY_BYTES]
        session = _Session(node_id, key, observed, nonce, write, close, buffered)
        old = self.sessions.pop(session.key, None)
        if old is not None:
            self._drop(old)
            old.close()
        self.sessions[session.key] = session
        self.stats.attaches += 1
        self.stats.attached = len(self.sessions)
        write(wire.welcome(observed, self.limits.reservation_ttl, self.limits.as_json()))
        log.info("relay: %s attached (%d attached)", short_id(node_id), len(self.sessions))
        return session

    def _admit(self, node_id: str) -> None:
        """Refuse ``node_id`` if it is no member, or if the relay is full."""
        if self.admits is not None and node_id != self.node_id and not self.admits(node_id):
            network = self.network or "?"
            raise _Refusal("member", 403, f"{node_id} is not a member of network {network}")
        key = public_key_from_node_id(node_id)
        if len(self.sessions) >= self.limits.max_reservations and key not in self.sessions:
            raise _Refusal(
                "full", 429, f"the relay holds its maximum of {self.limits.max_reservations} nodes"
            )

    async def _serve(self, session: _Session, frames: _Frames) -> None:
        """Forward the attached node's packets until its stream ends or its reservation does."""
        async with asyncio.timeout(self.limits.reservation_ttl) as deadline:
            while True:
                frame = await frames.next()
                if frame is None or session.closed:
                    return
                if frame.type == wire.SEND:
                    self._forward(session, frame.payload)
                elif frame.type == wire.PING:
                    session.deliver(wire.pong(frame.payload), self.limits.queue_bytes)
                elif frame.type == wire.AUTH:
                    self._renew(session, frame.payload)
                    loop = asyncio.get_running_loop()
                    deadline.reschedule(loop.time() + self.limits.reservation_ttl)
                elif frame.type != wire.PONG:  # a PONG needs nothing
                    raise RelayProtocolError(f"a node does not send {frame.name} to a relay")

    def _renew(self, session: _Session, payload: bytes) -> None:
        """Extend a reservation: an AUTH again on the same stream, for the same challenge."""
        node_id = wire.verify_auth(payload, session.nonce, self.node_id)
        if node_id != session.node_id:
            raise _Refusal("signature", 403, "a renewing AUTH must prove the attached key")
        self._admit(node_id)
        limits = self.limits
        session.deliver(
            wire.welcome(session.observed, limits.reservation_ttl, limits.as_json()),
            limits.queue_bytes,
        )

    def _forward(self, source: _Session, payload: bytes) -> None:
        """SEND → RECV to the attached destination, or GONE, or LIMIT."""
        queue = self.limits.queue_bytes
        destination = payload[: wire.KEY_BYTES]
        target = self.sessions.get(destination)
        if target is None or target is source:
            self.stats.gone += 1
            source.deliver(wire.encode(wire.GONE, destination), queue)
            return
        circuit = self._circuit(source, target)
        if circuit is None:
            return
        size = len(payload) - wire.KEY_BYTES
        circuit.bytes += size
        circuit.last = now = self.clock()
        problem = self._over(circuit, now)
        if problem is not None:
            self._end_circuit(source, target, problem)
            return
        frame = bytes((wire.RECV,)) + len(payload).to_bytes(2, "big") + source.key
        if target.deliver(frame + payload[wire.KEY_BYTES :], queue):
            self.stats.bytes_relayed += size
            self.stats.packets_relayed += 1
        else:
            self.stats.dropped += 1

    def _over(self, circuit: _Circuit, now: float) -> str | None:
        limits = self.limits
        if limits.circuit_bytes is not None and circuit.bytes > limits.circuit_bytes:
            return f"the circuit carried its limit of {limits.circuit_bytes} bytes"
        if limits.circuit_seconds is not None and now - circuit.started > limits.circuit_seconds:
            return f"the circuit lasted its limit of {limits.circuit_seconds:g} s"
        return None

    def _circuit(self, source: _Session, target: _Session) -> _Circuit | None:
        """The circuit between two attached nodes, opened if the limits allow; None if not."""
        pair = _pair(source.key, target.key)
        circuit = self._circuits.get(pair)
        if circuit is not None:
            return circuit
        now = self.clock()
        until = self._cooling.get(pair)
        if until is not None:
            if until > now:
                return None
            del self._cooling[pair]
        most = self.limits.max_circuits_per_peer
        for side in (source, target):
            if len(side.circuits) >= most:
                self._prune_idle(side, now)
        if len(source.circuits) >= most or len(target.circuits) >= most:
            self.stats.limits_hit += 1
            error = f"too many circuits through this relay (at most {most} per node)"
            source.deliver(wire.limit(target.node_id, error))
            return None
        circuit = _Circuit(now, now)
        self._circuits[pair] = circuit
        source.circuits.add(target.key)
        target.circuits.add(source.key)
        self.stats.circuits_opened += 1
        self.stats.circuits = len(self._circuits)
        return circuit

    def _prune_idle(self, session: _Session, now: float) -> None:
        idle = self.limits.circuit_idle
        for peer in list(session.circuits):
            circuit = self._circuits.get(_pair(session.key, peer))
            if circuit is None or now - circuit.last > idle:
                self._remove_circuit(session.key, peer)

    def _end_circuit(self, a: _Session, b: _Session, error: str) -> None:
        """End the circuit between ``a`` and ``b`` on a limit: LIMIT to both, then cool down."""
        self._remove_circuit(a.key, b.key)
        self.stats.limits_hit += 1
        pair = _pair(a.key, b.key)
        self._cooling[pair] = self.clock() + self.limits.limit_cooldown
        while len(self._cooling) > MAX_COOLING:
            del self._cooling[next(iter(self._cooling))]
        a.deliver(wire.limit(b.node_id, error))
        b.deliver(wire.limit(a.node_id, error))
        log.info(
            "relay: circuit %s ↔ %s ended: %s", short_id(a.node_id), short_id(b.node_id), error
        )

    def _remove_circuit(self, a: bytes, b: bytes) -> None:
        self._circuits.pop(_pair(a, b), None)
        for one, other in ((a, b), (b, a)):
            session = self.sessions.get(one)
            if session is not None:
                session.circuits.discard(other)
        self.stats.circuits = len(self._circuits)

    def _drop(self, session: _Session) -> None:
        """Forget a session's circuits and mark it closed (its stream closes after)."""
        session.closed = True
        for peer in list(session.circuits):
            self._circuits.pop(_pair(session.key, peer), None)
            other = self.sessions.get(peer)
            if other is not None:
                other.circuits.discard(session.key)
        session.circuits.clear()
        self.stats.circuits = len(self._circuits)

    def _detach(self, session: _Session) -> None:
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
            log.info(
                "relay: %s detached (%d attached)", short_id(session.node_id), len(self.sessions)
            )
        self._drop(session)
        self.stats.attached = len(self.sessions)

    def _rate_allows(self, observed: str) -> bool:
        """Count one attachment from ``observed``'s source; False past ``attach_rate``."""
        rate = self.limits.attach_rate
        if rate is None:
            return True
        who, now, burst = source_key(observed), self.clock(), float(self.limits.attach_burst)
        tokens, last = self._buckets.pop(who, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate / 60.0)
        allowed = tokens >= 1.0
        self._buckets[who] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > MAX_SOURCES:
            del self._buckets[next(iter(self._buckets))]
        return allowed

    def _refuse(
        self, write: Callable[[bytes], None], refusal: _Refusal, observed: str = ""
    ) -> None:
        self.stats.count_refusal(refusal.reason)
        log.info(
            "relay: refused %s (%d): %s", observed or "a stream", refusal.status, refusal.error
        )
        with contextlib.suppress(OSError, RuntimeError):
            write(wire.refused(refusal.status, refusal.error))

    def close(self) -> None:
        """Close every stream; streams that arrive after are closed at once."""
        self._closed = True
        for close in list(self._streams):
            close()
        for session in list(self.sessions.values()):
            self._drop(session)
        self.sessions.clear()
        self.stats.attached = 0


def _pair(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    return (a, b) if a < b else (b, a)
