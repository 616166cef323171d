"""DNS over dedicated QUIC connections (RFC 9250), sans I/O: QUIC events in, stream data out.

``DoqConnection`` sits on an aioquic ``QuicConnection`` whose handshake chose ALPN ``doq``
(as ``H3Connection`` does for ``h3``): each client-initiated bidirectional stream carries one
query framed by a 2-byte length and ended with FIN; the answer goes back on the same stream,
framed the same way, with FIN. It never touches a socket or a clock; the caller feeds it
events and transmits what it queued.

Errors are kept to the stream, so one bad query never costs the client its other queries:

- a message that is not a DNS query but has a 12-byte header gets FORMERR (the engine's answer);
- a framing error (length prefix missing or not matching the bytes before FIN, more than
  65,535 bytes), a non-zero message ID (RFC 9250 §4.2.1 requires 0), or a message the engine
  will not answer at all resets the stream and asks the client to stop sending
  (``DOQ_PROTOCOL_ERROR``). RFC 9250 §4.3.3 allows closing the whole connection instead;
- data on a client-initiated unidirectional stream is refused with STOP_SENDING
  (``DOQ_PROTOCOL_ERROR``);
- a query that would take what the connection holds in unfinished queries past
  ``max_buffered``, or that ``hold`` refuses (the caller's or the endpoint's budget across
  connections), resets its stream with ``DOQ_EXCESSIVE_LOAD``;
- ``cancel`` gives up a query still arriving (``DOQ_REQUEST_CANCELLED``): the host calls it
  when the query has taken too long, this class keeping no clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from hypermesh.dns.answers import MAX_MESSAGE

log = logging.getLogger(__name__)

DOQ_ALPN = "doq"
"""The ALPN token of DNS over QUIC."""
DOQ_NO_ERROR = 0x0
DOQ_INTERNAL_ERROR = 0x1
DOQ_PROTOCOL_ERROR = 0x2
DOQ_REQUEST_CANCELLED = 0x3
DOQ_EXCESSIVE_LOAD = 0x4

DnsHandler = Callable[[bytes], bytes | Awaitable[bytes | None] | None]
"""DNS query wire bytes to answer wire bytes, or None for "send nothing"; or an awaitable of
either, for an answer that must be fetched (a forwarded question)."""


Hold = Callable[[int, int], bool]
"""``(stream ID, bytes)``: a query's stream now holds that many more bytes (fewer, when
negative: its buffer was freed, whole); False when that takes a budget beyond the connection's
past its limit. The first positive call of a stream starts it, the negative one ends it."""


class DoqConnection:
    """The DoQ side of one QUIC connection."""

    def __init__(
        self,
        quic: QuicConnection,
        answer: DnsHandler,
        transmit: Callable[[], None] | None = None,
        *,
        max_buffered: int = 4 * 1024 * 1024,
        hold: Hold | None = None,
    ) -> None:
        self._quic = quic
        self._max_buffered = max_buffered
        self._hold = hold
        self.buffered = 0
        """Bytes held in queries whose FIN has not come yet."""
        self._answer = answer
        self._transmit = transmit
        """Sends what was queued; needed for answers that arrive later (awaitables)."""
        self._pending: set[asyncio.Task[None]] = set()
        self._buffers: dict[int, bytearray] = {}
        self._refused: set[int] = set()
        """Streams aborted before their FIN: later data on them is ignored."""

    def handle_event(self, event: QuicEvent) -> bool:
        """Process one QUIC event; True when something was queued to send (transmit then)."""
        if isinstance(event, StreamDataReceived):
            return self._data(event.stream_id, event.data, event.end_stream)
        if isinstance(event, StreamReset):
            self._drop(event.stream_id)
            self._refused.discard(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            for stream_id in list(self._buffers):
                self._drop(stream_id)
            self._refused.clear()
            for task in self._pending:
                task.cancel()
        return False

    def _data(self, stream_id: int, data: bytes, end_stream: bool) -> bool:
        if stream_id in self._refused:
            if end_stream:
                self._refused.discard(stream_id)
            return False
        if stream_id & 0x3 != 0:  # not client-initiated bidirectional
            return self._refuse(stream_id, end_stream, reset=False)
        buffer = self._buffers.get(stream_id)
        if buffer is None:
            if end_stream:  # the whole query in one piece: the common case, no copy
                return self._reply(stream_id, data)
            buffer = self._buffers[stream_id] = bytearray()
        buffer += data
        self.buffered += len(data)
        within = self._hold is None or self._hold(stream_id, len(data))
        if len(buffer) > 2 + MAX_MESSAGE:
            return self._refuse(stream_id, end_stream)
        if self.buffered > self._max_buffered or not within:
            return self._refuse(stream_id, end_stream, code=DOQ_EXCESSIVE_LOAD)
        if not end_stream:
            return False
        self._drop(stream_id)
        return self._reply(stream_id, bytes(buffer))

    def cancel(self, stream_id: int) -> bool:
        """Give up the query still arriving on ``stream_id`` (``DOQ_REQUEST_CANCELLED``, its
        buffer freed); False when there is none (answered, refused or reset meanwhile)."""
        if stream_id not in self._buffers:
            return False
        return self._refuse(stream_id, False, code=DOQ_REQUEST_CANCELLED)

    def _drop(self, stream_id: int) -> None:
        buffer = self._buffers.pop(stream_id, None)
        if buffer is not None:
            self.buffered -= len(buffer)
            if self._hold is not None:
                self._hold(stream_id, -len(buffer))

    def _reply(self, stream_id: int, framed: bytes) -> bool:
        if len(framed) < 2 or int.from_bytes(framed[:2], "big") != len(framed) - 2:
            return self._refuse(stream_id, True)
        if framed[2:4] != b"\0\0":
            return self._refuse(stream_id, True)
        try:
            answer = self._answer(framed[2:])
        except Exception:  # the engine never raises; if it does, only this stream fails
            log.exception("DoQ query not answered")
            return self._refuse(stream_id, True, code=DOQ_INTERNAL_ERROR)
        if answer is not None and type(answer) is not bytes and inspect.isawaitable(answer):
            task = asyncio.ensure_future(self._later(stream_id, answer))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return False
        return self._send(stream_id, answer)

    async def _later(self, stream_id: int, pending: Awaitable[bytes | None]) -> None:
        try:
            answer = await pending
        except Exception:
            log.exception("DoQ query not answered")
            self._refuse(stream_id, True, code=DOQ_INTERNAL_ERROR)
        else:
            self._send(stream_id, answer)
        if self._transmit is not None:
            self._transmit()

    def _send(self, stream_id: int, answer: bytes | None) -> bool:
        if answer is None:
            return self._refuse(stream_id, True)
        try:
            self._quic.send_stream_data(
                stream_id, len(answer).to_bytes(2, "big") + answer, end_stream=True
            )
        except Exception as exc:  # the client reset the stream or the connection is closing
            log.debug("DoQ answer not sent", extra={"stream": stream_id, "error": str(exc)})
            return False
        return True

    def _refuse(
        self, stream_id: int, ended: bool, *, reset: bool = True, code: int = DOQ_PROTOCOL_ERROR
    ) -> bool:
        """Reset our side of the stream and, unless the client already finished, ask it to
        stop sending."""
        self._drop(stream_id)
        with contextlib.suppress(Exception):  # a stream already gone needs no reset
            if reset:
                self._quic.reset_stream(stream_id, code)
            if not ended:
                self._quic.stop_stream(stream_id, code)
                self._refused.add(stream_id)
        return True
