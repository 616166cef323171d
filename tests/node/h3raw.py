"""An HTTP/3 client for abusing the node's endpoint: requests left open, bodies in pieces,
hand-made QPACK (encoder instructions and header sections), and everything the server sends
back per stream (answers, resets, STOP_SENDING).

It is aioquic's own client (``H3Connection`` over a pinned QUIC connection); only what a
well-behaved client would never send is written by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pylsqpack
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, encode_frame
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamReset,
)

from hypermesh.transport.client import connect_pinned
from hypermesh.transport.identity import Identity

WAIT = 10.0
"""The longest any wait in these tests lasts."""


@dataclass
class Answer:
    """What came back on one request stream."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    """The error code of the server's RESET_STREAM, if it reset its side."""
    stopped: int | None = None
    """The error code of the server's STOP_SENDING, if it asked us to stop."""

    @property
    def status(self) -> int | None:
        for name, value in self.headers:
            if name == b":status":
                return int(value)
        return None


def prefix_int(value: int, bits: int, flags: int = 0) -> bytes:
    """An integer with a ``bits``-bit prefix (RFC 7541 §5.1), ``flags`` in the first byte."""
    mask = (1 << bits) - 1
    if value < mask:
        return bytes([flags | value])
    out = bytearray([flags | mask])
    value -= mask
    while value >= 0x80:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(value: bytes, bits: int = 7, flags: int = 0) -> bytes:
    """A string literal, not Huffman-coded."""
    return prefix_int(len(value), bits, flags) + value


def insert_literal(name: bytes, value: bytes) -> bytes:
    """Encoder instruction: Insert with Literal Name (RFC 9204 §4.3.3)."""
    return literal(name, 5, 0x40) + literal(value)


def set_capacity(capacity: int) -> bytes:
    """Encoder instruction: Set Dynamic Table Capacity (RFC 9204 §4.3.1)."""
    return prefix_int(capacity, 5, 0x20)


def bomb_section(references: int, capacity: int) -> bytes:
    """A field section of :method, :scheme, :authority, :path (as literals naming static
    entries) and then ``references`` one-byte references to dynamic entry 0 (Required Insert
    Count 1, Base 1)."""
    max_entries = capacity // 32
    encoded_insert_count = 1 % (2 * max_entries) + 1
    head = prefix_int(encoded_insert_count, 8) + prefix_int(0, 7)
    head += request_lines(b"/status")
    return head + bytes([0x80]) * references


def request_lines(path: bytes, method: bytes = b"GET") -> bytes:
    """:method, :scheme https, :authority and :path as field lines (static table: 17 is
    ``:method GET``, 20 ``:method POST``, 23 ``:scheme https``, 0 ``:authority``, 1
    ``:path``)."""
    lines = bytes([0xC0 | (17 if method == b"GET" else 20)]) + bytes([0xC0 | 23])
    lines += prefix_int(0, 4, 0x50) + literal(b"node")
    lines += prefix_int(1, 4, 0x50) + literal(path)
    return lines


def plain_section(path: bytes, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    """A field section using no dynamic table: a request for ``path`` and ``extra`` lines."""
    return b"\x00\x00" + request_lines(path, method) + extra


class _OwnTableEncoder:
    """The client's QPACK encoder when the test writes the encoder stream by hand: the
    server's acknowledgements of entries the test inserted mean nothing to pylsqpack's encoder,
    so they are not fed to it."""

    def __init__(self, encoder: pylsqpack.Encoder) -> None:
        self._encoder = encoder

    def apply_settings(self, max_table_capacity: int, blocked_streams: int) -> bytes:
        return self._encoder.apply_settings(0, 0)  # its own requests use no dynamic table

    def encode(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        return self._encoder.encode(stream_id, headers)

    def feed_decoder(self, data: bytes) -> None:
        pass


class RawH3Client(QuicConnectionProtocol):
    """aioquic's HTTP/3 client, with the stream-level controls a test needs."""

    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None):
        super().__init__(quic, stream_handler)
        self.address = "?"
        self.http: H3Connection | None = None
        self.answers: dict[int, Answer] = {}
        self.closed: str | None = None
        self._changed = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.http = H3Connection(self._quic)
            self.http._encoder = _OwnTableEncoder(self.http._encoder)  # type: ignore[assignment]
        elif isinstance(event, ConnectionTerminated):
            self.closed = f"{event.reason_phrase} (0x{event.error_code:x})"
        elif isinstance(event, StreamReset):
            self._answer(event.stream_id).reset = event.error_code
        elif isinstance(event, StopSendingReceived):
            self._answer(event.stream_id).stopped = event.error_code
        if self.http is not None:
            for h3_event in self.http.handle_event(event):
                if isinstance(h3_event, HeadersReceived):
                    answer = self._answer(h3_event.stream_id)
                    answer.headers = list(h3_event.headers)
                    answer.ended |= h3_event.stream_ended
                elif isinstance(h3_event, DataReceived):
                    answer = self._answer(h3_event.stream_id)
                    answer.body += h3_event.data
                    answer.ended |= h3_event.stream_ended
        self._changed.set()

    def _answer(self, stream_id: int) -> Answer:
        return self.answers.setdefault(stream_id, Answer())

    # -- sending --------------------------------------------------------------------------

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        end: bool = True,
    ) -> int:
        """Send a request's headers (and ``body``); with ``end`` False the stream stays open."""
        assert self.http is not None
        stream_id = self._quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"node"),
            (b":path", path.encode()),
            *(headers or []),
        ]
        self.http.send_headers(stream_id, fields, end_stream=end and not body)
        if body:
            self.http.send_data(stream_id, body, end_stream=end)
        self.transmit()
        return stream_id

    def send_body(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        assert self.http is not None
        self.http.send_data(stream_id, data, end_stream=end)
        self.transmit()

    def raw_headers(self, section: bytes, *, end: bool = True, declared: int | None = None) -> int:
        """Open a stream with a hand-made HEADERS frame carrying ``section`` (or only its
        frame header claiming ``declared`` bytes, then ``section`` as the start of it)."""
        stream_id = self._quic.get_next_available_stream_id()
        if declared is None:
            frame = encode_frame(FrameType.HEADERS, section)
        else:
            frame = encode_uint_var(FrameType.HEADERS) + encode_uint_var(declared) + section
        self._quic.send_stream_data(stream_id, frame, end_stream=end)
        self.transmit()
        return stream_id

    def out_of_order(self, data: bytes, *, gap: int) -> int:
        """Open a stream and send ``data`` but for its first ``gap`` bytes, which never leave:
        the server can only hold the rest, waiting for them."""
        stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(stream_id, data)
        self._quic._streams[stream_id].sender._pending.subtract(0, gap)
        self.transmit()
        return stream_id

    def encoder_instructions(self, data: bytes) -> None:
        """Write ``data`` on our QPACK encoder stream."""
        assert self.http is not None and self.http._local_encoder_stream_id is not None
        self._quic.send_stream_data(self.http._local_encoder_stream_id, data)
        self.transmit()

    def acknowledged(self, stream_id: int) -> bool:
        """Whether the server acknowledged everything sent on ``stream_id`` so far."""
        stream = self._quic._streams.get(stream_id)
        return stream is None or stream.sender._buffer_start == stream.sender._buffer_stop

    # -- waiting --------------------------------------------------------------------------

    async def until(self, done: Callable[[], bool], within: float = WAIT) -> None:
        """Wait until ``done()`` holds; ``TimeoutError`` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not done():
            if self.closed is not None and not done():
                raise ConnectionError(f"connection closed: {self.closed}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not answer in time")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):  # some changes (ACKs) make no event
                await asyncio.wait_for(self._changed.wait(), min(left, 0.05))

    async def answered(self, stream_id: int, within: float = WAIT) -> Answer:
        """The answer on ``stream_id`` once its headers arrived and it ended."""
        await self.until(lambda: (a := self.answers.get(stream_id)) is not None and a.ended, within)
        return self.answers[stream_id]

    async def settings(self) -> dict[int, int]:
        """The server's HTTP/3 SETTINGS, once they arrived."""
        await self.until(lambda: self.http is not None and self.http.received_settings is not None)
        assert self.http is not None and self.http.received_settings is not None
        return self.http.received_settings


@asynccontextmanager
async def raw_client(
    address: str, node_id: str, identity: Identity | None = None
) -> AsyncIterator[RawH3Client]:
    """A connected ``RawH3Client`` (HTTP/3 negotiated, the server's SETTINGS in)."""
    async with asyncio.timeout(WAIT):
        opened = connect_pinned(
            address, expected_id=node_id, protocol=RawH3Client, identity=identity
        )
        client = await opened.__aenter__()
    try:
        await client.settings()
        yield client
    finally:
        await opened.__aexit__(None, None, None)
