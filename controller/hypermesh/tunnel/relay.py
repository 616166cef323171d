"""A node's side of tunnels: the circuits it relays or ends, each with its key and expiry.

Circuit state lives in memory only (a circuit's key is never written anywhere) and is dropped
when the tunnel closes or its expiry passes, whichever comes first. What a relay holds of a
circuit is what its own layer told it: the circuit ID, the key, the expiry and the next hop.
It never learns who opened the tunnel (the client connects without a certificate), nor, unless
it is the last relay, where the tunnel ends, nor what the messages say.

Messages come in two forms. Version 1 (``RELAY_PATH``): the whole message in one AEAD layer per
hop, which a relay receives whole before sending it on (store and forward). Version 2
(``RELAY_STREAM_PATH``, ``tunnel.records``): records of at most ``RECORD_DATA`` bytes, each
sealed per hop, which a relay opens and sends on as they arrive, no faster than the next hop
takes them (``tunnel.stream``); it holds one record at most besides what flow control lets in.
Both use the circuits an open made.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.transport.client import Headers
from hypermesh.transport.identity import Identity
from hypermesh.tunnel.onion import (
    CIRCUIT_SIZE,
    CLOSE,
    DATA,
    OPENED,
    BadTunnel,
    NextHop,
    key_card,
    open_layer,
    peel_layer,
    seal_layer,
)
from hypermesh.tunnel.records import Framer, Opener, Sealer, pieces
from hypermesh.tunnel.stream import Outgoing, StreamPool

MAX_TTL = 24 * 3600.0
"""The longest a tunnel may be opened for (seconds)."""
MAX_CIRCUITS = 10_000
"""Circuits one node holds at once; an open past this is refused (503)."""
FORWARD_TIMEOUT = 30.0
"""Seconds a relay waits for the next hop's answer."""

MAX_MESSAGE = 16 * 1024 * 1024
"""The longest padded request the destination takes through a version 2 message (413)."""
MAX_GATHERING = 64 * 1024 * 1024
"""Bytes of version 2 requests the destination gathers at once, all tunnels together (503
past it): what the node's request budgets bound for version 1."""

OPEN_PATH = "/tunnel/v1/open"
RELAY_PATH = "/tunnel/v1/relay"
RELAY_STREAM_PATH = "/tunnel/v2/relay"

Forward = Callable[[str, str, str, bytes], Awaitable[tuple[int, Headers, bytes]]]
"""(next hop's address, its node ID, path, body) → (status, headers, body): a POST on."""
Deliver = Callable[[bytes], Awaitable[bytes]]
"""The destination's services: a padded request in, a padded response out."""


class TunnelError(HyperMeshError):
    """A tunnel request refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Circuit:
    key: bytes
    expires: float
    next: NextHop | None


class TunnelService:
    """The circuits of one node and what it does with their messages."""

    def __init__(
        self,
        identity: Identity,
        key: X25519PrivateKey,
        forward: Forward,
        deliver: Deliver,
        *,
        relays: bool = True,
        max_ttl: float = MAX_TTL,
        max_circuits: int = MAX_CIRCUITS,
        clock: Callable[[], float] = time.time,
        streams: StreamPool | None = None,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.identity = identity
        self._key = key
        self._forward = forward
        self._deliver = deliver
        self.relays = relays
        """Whether this node relays (role ``relay``); otherwise tunnels can only end here."""
        self.max_ttl = max_ttl
        self._max_circuits = max_circuits
        self._clock = clock
        self._circuits: dict[bytes, Circuit] = {}
        self._streams = streams if streams is not None else StreamPool()
        """Anonymous connections to next hops for version 2 messages."""
        self.max_message = max_message
        self.max_gathering = MAX_GATHERING
        self.gathering = 0
        """Bytes of version 2 requests being gathered here (at the destination)."""
        self.sending: set[Outgoing] = set()
        """Version 2 messages being passed on (each bounded by the next hop's pace)."""

    def card(self) -> dict[str, str]:
        """The node's tunnel key card."""
        return key_card(self.identity, self._key)

    def __len__(self) -> int:
        return len(self._circuits)

    async def open(self, message: bytes) -> bytes:
        """Open this node's circuit of a tunnel, extend it to the next hop if there is one;
        returns the answer sealed with this hop's key."""
        layer = open_layer(message, self.identity, self._key)
        now = self._clock()
        if layer.expires <= now:
            raise TunnelError(400, "the tunnel's expiry has already passed")
        if layer.expires > now + self.max_ttl:
            raise TunnelError(400, f"a tunnel lives at most {self.max_ttl:g}s here")
        if layer.next is not None and not self.relays:
            raise TunnelError(403, "this node does not relay (it has no role relay)")
        self.sweep(now)
        if layer.circuit in self._circuits:
            raise TunnelError(409, "that circuit ID is taken")
        if len(self._circuits) >= self._max_circuits:
            raise TunnelError(503, "too many tunnels open here; try another relay")
        self._circuits[layer.circuit] = Circuit(layer.key, layer.expires, layer.next)
        try:
            if layer.next is None:
                reply = OPENED
            else:
                reply = await self._on(layer.next, OPEN_PATH, layer.inner)
        except BaseException:
            self._circuits.pop(layer.circuit, None)
            raise
        return seal_layer(layer.key, layer.circuit, DATA, reply, forward=False)

    async def relay(self, body: bytes) -> bytes:
        """Take one message of a circuit: pass it on (a relay) or answer it (the destination);
        returns the answer sealed with this hop's key."""
        circuit_id, layer = body[:CIRCUIT_SIZE], body[CIRCUIT_SIZE:]
        circuit = self._circuit(circuit_id)
        kind, inner = peel_layer(circuit.key, circuit_id, layer, forward=True)
        if kind == CLOSE:
            del self._circuits[circuit_id]
            if circuit.next is not None:
                with contextlib.suppress(TunnelError):  # else it expires by itself
                    await self._on(circuit.next, RELAY_PATH, circuit.next.circuit + inner)
            return seal_layer(circuit.key, circuit_id, DATA, b"", forward=False)
        if kind != DATA:
            raise BadTunnel(f"unknown tunnel message kind {kind}")
        if circuit.next is None:
            reply = await self._deliver(inner)
        else:
            reply = await self._on(circuit.next, RELAY_PATH, circuit.next.circuit + inner)
        return seal_layer(circuit.key, circuit_id, DATA, reply, forward=False)

    def _circuit(self, circuit_id: bytes) -> Circuit:
        circuit = self._circuits.get(circuit_id)
        if circuit is not None and circuit.expires <= self._clock():
            del self._circuits[circuit_id]
            circuit = None
        if circuit is None:
            raise TunnelError(404, "no such tunnel here (closed or expired)")
        return circuit

    async def relay_stream(self, body: AsyncIterator[bytes]) -> bytes | AsyncGenerator[bytes, None]:
        """Take one version 2 message of a circuit as it arrives (circuit ID || records): pass
        each record on as it opens (a relay; the answer's records come back as they arrive,
        an iterator) or gather the request and answer it (the destination; bytes)."""
        head = b""
        source = aiter(body)
        while len(head) < CIRCUIT_SIZE:
            piece = await anext(source, None)
            if piece is None:
                raise BadTunnel("tunnel message too short")
            head += piece
        circuit_id, rest = head[:CIRCUIT_SIZE], head[CIRCUIT_SIZE:]
        circuit = self._circuit(circuit_id)
        opener = Opener(circuit.key, circuit_id, forward=True)
        if circuit.next is None:
            return await self._end(circuit_id, circuit, opener, _prepend(rest, source))
        return await self._pass_on(circuit_id, circuit, opener, _prepend(rest, source))

    async def _end(
        self, circuit_id: bytes, circuit: Circuit, opener: Opener, source: AsyncIterator[bytes]
    ) -> bytes:
        padded = bytearray()
        try:
            async for piece in source:
                for inner in opener.feed(piece):
                    padded += inner
                    self.gathering += len(inner)
                if len(padded) > self.max_message:
                    raise TunnelError(
                        413, f"a tunnel message is at most {self.max_message} bytes here"
                    )
                if self.gathering > self.max_gathering:
                    raise TunnelError(503, "too many tunnel messages arriving here; try later")
            opener.finish()
        finally:
            self.gathering -= len(padded)
        reply = await self._deliver(bytes(padded))
        sealer = Sealer(circuit.key, circuit_id, forward=False)
        return b"".join(sealer.seal(piece, last=last) for last, piece in pieces(reply))

    async def _pass_on(
        self, circuit_id: bytes, circuit: Circuit, opener: Opener, source: AsyncIterator[bytes]
    ) -> bytes | AsyncGenerator[bytes, None]:
        hop = circuit.next
        assert hop is not None
        try:
            async with asyncio.timeout(FORWARD_TIMEOUT):
                out = await self._streams.open(
                    hop.peer.address, str(hop.peer.node_id), RELAY_STREAM_PATH
                )
        except (TransportError, TimeoutError):
            raise TunnelError(502, "the next hop did not answer") from None
        self.sending.add(out)
        try:
            await _send_on(out, hop.circuit, opener, source)
            async with asyncio.timeout(FORWARD_TIMEOUT):
                status, _ = await out.answer()
        except (TransportError, TimeoutError):
            out.abort()
            raise TunnelError(502, "the next hop did not answer") from None
        except BaseException:
            out.abort()
            raise
        finally:
            self.sending.discard(out)
        if status != 200:
            out.abort()
            raise TunnelError(502, f"the next hop refused ({status})")
        return await _seal_back(out, Sealer(circuit.key, circuit_id, forward=False))

    async def _on(self, hop: NextHop, path: str, body: bytes) -> bytes:
        try:
            status, _, answer = await self._forward(
                hop.peer.address, str(hop.peer.node_id), path, body
            )
        except TransportError:
            raise TunnelError(502, "the next hop did not answer") from None
        if status != 200:
            raise TunnelError(502, f"the next hop refused ({status})")
        return answer

    def sweep(self, now: float | None = None) -> int:
        """Drop the circuits whose expiry has passed; returns how many."""
        now = self._clock() if now is None else now
        expired = [c for c, circuit in self._circuits.items() if circuit.expires <= now]
        for circuit_id in expired:
            del self._circuits[circuit_id]
        return len(expired)

    def clear(self) -> None:
        """Forget every circuit (the node is stopping)."""
        self._circuits.clear()
        self._streams.close_now()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for piece in rest:
        yield piece


async def _send_on(
    out: Outgoing, circuit: bytes, opener: Opener, source: AsyncIterator[bytes]
) -> None:
    """Open each record of ``source`` and send what is inside on, at the next hop's pace;
    stops early when the next hop answers before the end (a refusal)."""
    if not await out.send(circuit):
        return
    async for piece in source:
        for inner in opener.feed(piece):
            if not await out.send(inner):
                return
    opener.finish()
    out.end()


async def _seal_back(out: Outgoing, sealer: Sealer) -> bytes | AsyncGenerator[bytes, None]:
    """The next hop's answer, each record sealed with this hop's layer: whole when it is all
    there already (a small answer: sent in one go), else as it arrives; cut short (the client
    sees a message without its last record) when the next hop's is malformed."""
    framer = Framer()
    ready = out.ready()
    if ready is not None:
        try:
            return b"".join(
                sealer.seal(header + body, last=last)
                for _, last, header, body in framer.feed(ready)
            )
        except BadTunnel:
            pass  # the answer ends here: what the next hop sent does not frame

    async def rest() -> AsyncGenerator[bytes, None]:
        try:
            async for piece in out.pieces():
                for _, last, header, body in framer.feed(piece):
                    yield sealer.seal(header + body, last=last)
        except (BadTunnel, TransportError):
            out.abort()

    return rest()
