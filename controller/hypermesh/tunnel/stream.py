"""Requests whose body is sent as it is produced, with back-pressure: a relay's way on to the
next hop (tunnel data v2, ``tunnel.records``).

``StreamPool.open`` sends a request's headers on a kept-open anonymous connection and returns
an ``Outgoing``: ``await send(piece)`` queues the piece once the stream holds fewer than
``window`` bytes not yet acknowledged by the peer (so a slow next hop slows the sender instead
of filling its memory), ``end()`` finishes the body, ``answer()`` waits for the status and
``pieces()`` gives the answer's body as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aioquic.quic.connection import NetworkAddress
from aioquic.quic.events import QuicEvent

from hypermesh.errors import TransportError
from hypermesh.transport.client import (
    USER_AGENT,
    H3ClientProtocol,
    Headers,
    _Exchange,
)
from hypermesh.transport.pool import KeptConnections

WINDOW = 256 * 1024
"""Bytes a stream may hold not yet acknowledged by the next hop before ``send`` waits."""


class StreamingH3(H3ClientProtocol):
    """An HTTP/3 client connection that can stream a request's body: it wakes the senders
    waiting for the peer to acknowledge what they sent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._flush_pending = False

    def transmit_soon(self) -> None:
        """Transmit once the loop has run what is ready: what several sends queue in one go
        (headers, a record, the end of the body) leaves in one packet."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.transmit()

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        super().datagram_received(data, addr)
        self._wake()

    def quic_event_received(self, event: QuicEvent) -> None:
        super().quic_event_received(event)
        if self.close_reason is not None:
            self._wake()

    def _wake(self) -> None:
        closed = self.close_reason is not None
        waiting = []
        for stream_id, below, waiter in self._waiters:
            if waiter.done():
                continue
            exchange = self._exchanges.get(stream_id)
            answered = exchange is None or exchange.future.done()
            if closed or answered or self.unacknowledged(stream_id) < below:
                waiter.set_result(None)
            else:
                waiting.append((stream_id, below, waiter))
        self._waiters = waiting

    async def drained(self, stream_id: int, below: int) -> None:
        """Wait until fewer than ``below`` bytes of ``stream_id`` are unacknowledged, or the
        peer answered, or the connection ended: woken once, not at every ACK."""
        waiter = self._loop.create_future()
        self._waiters.append((stream_id, below, waiter))
        await waiter

    def unacknowledged(self, stream_id: int) -> int:
        """Bytes queued on ``stream_id`` that the peer has not acknowledged yet."""
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender._buffer_start

    def open(self, path: str) -> Outgoing:
        """Send a POST's headers on a new stream; the body follows through the ``Outgoing``."""
        if self._http is None:
            raise TransportError(f"{self.address}: HTTP/3 was not negotiated")
        if self.close_reason is not None:
            raise TransportError(f"{self.address}: connection closed: {self.close_reason}")
        stream_id = self._quic.get_next_available_stream_id()
        exchange = _Exchange(self._loop.create_future(), streamed=True)
        self._exchanges[stream_id] = exchange
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", self.address.encode()),
            (b":path", path.encode()),
            (b"user-agent", USER_AGENT.encode()),
        ]
        self._http.send_headers(stream_id, headers, end_stream=False)
        return Outgoing(self, stream_id, exchange)


class Outgoing:
    """A request whose body is being sent."""

    def __init__(self, h3: StreamingH3, stream_id: int, exchange: _Exchange) -> None:
        self._h3 = h3
        self.stream_id = stream_id
        self._exchange = exchange
        self.high_water = 0
        """The most bytes the stream held unacknowledged after a ``send``."""
        self._early: list[bytes] = []

    @property
    def answered(self) -> bool:
        """Whether the answer's headers came (the peer may answer before the body is all
        sent: a refusal)."""
        return self._exchange.future.done()

    async def send(self, piece: bytes, *, window: int = WINDOW) -> bool:
        """Queue ``piece`` once fewer than ``window`` bytes wait for the peer's ACK; False
        (nothing sent) when the peer answered already. ``TransportError`` when the connection
        ended."""
        h3 = self._h3
        while h3.unacknowledged(self.stream_id) >= window and not self.answered:
            if h3.close_reason is not None:
                raise TransportError(f"{h3.address}: connection closed: {h3.close_reason}")
            await h3.drained(self.stream_id, window // 2)
        if self.answered:
            return False
        self._send(piece, end=False)
        self.high_water = max(self.high_water, h3.unacknowledged(self.stream_id))
        return True

    def end(self) -> None:
        """The body is complete."""
        if not self.answered:
            self._send(b"", end=True)

    def _send(self, data: bytes, *, end: bool) -> None:
        h3 = self._h3
        assert h3._http is not None
        try:
            h3._http.send_data(self.stream_id, data, end_stream=end)
        except Exception as exc:  # the peer stopped the stream, or the connection ended
            raise TransportError(f"{h3.address}: the request's stream is closed: {exc}") from exc
        h3.transmit_soon()

    def abort(self) -> None:
        """Give the request up: the stream is reset, the next hop sees no complete message."""
        with contextlib.suppress(Exception):  # already reset or the connection ended
            self._h3._quic.reset_stream(self.stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            self._h3.transmit()
        self._h3._exchanges.pop(self.stream_id, None)

    async def answer(self) -> tuple[int, Headers]:
        """The answer's status and headers."""
        status, headers, _ = await self._exchange.future
        return status, headers

    def ready(self) -> bytes | None:
        """The answer's whole body when all of it has arrived already, else None (and
        ``pieces`` gives it as it comes)."""
        queue = self._exchange.pieces
        assert queue is not None
        while not queue.empty():
            piece = queue.get_nowait()
            if piece is None:
                self._h3._exchanges.pop(self.stream_id, None)
                return b"".join(self._early)
            if isinstance(piece, Exception):
                queue.put_nowait(piece)
                break
            self._early.append(piece)
        return None

    async def pieces(self) -> AsyncIterator[bytes]:
        """The answer's body as it arrives."""
        queue = self._exchange.pieces
        assert queue is not None
        try:
            for early in self._early:
                yield early
            self._early.clear()
            while True:
                piece = await queue.get()
                if piece is None:
                    return
                if isinstance(piece, Exception):
                    raise piece
                yield piece
        finally:
            self._h3._exchanges.pop(self.stream_id, None)

    async def body(self, limit: int) -> bytes:
        """The whole answer's body, at most ``limit`` bytes of it."""
        data = bytearray()
        async for piece in self.pieces():
            data += piece[: max(0, limit - len(data))]
        return bytes(data)


class StreamPool(KeptConnections[StreamingH3]):
    """Kept-open anonymous connections for streamed requests, by (address, node ID)."""

    def __init__(self, max_connections: int = 256) -> None:
        super().__init__(None, StreamingH3, max_connections)

    async def open(self, address: str, node_id: str, path: str) -> Outgoing:
        """A streamed POST of ``path`` to ``address`` (pinned to ``node_id``)."""
        return (await self.connection((address, node_id))).open(path)
