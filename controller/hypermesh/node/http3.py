"""HTTP/3 on the node's endpoint: aioquic's ``H3Connection`` with its header sections bounded.

Two things aioquic leaves open, closed here with the least of its internals:

- **Header sections are bounded before they are decoded.** The node advertises
  SETTINGS_MAX_FIELD_SECTION_SIZE (RFC 9114 §4.2.2) and a small QPACK dynamic table. A HEADERS
  frame longer than twice the limit is refused as soon as its length is read, before its bytes
  are buffered; a complete one is bounded from its encoded bytes (``node.qpack``) and refused
  without ever reaching the QPACK decoder when the bound is over the limit. A refusal is a
  ``RequestRefused`` event for that stream alone (431, or 414 when the request target is what
  takes the section past), never a connection error: the client's other requests go on.
- **A request stream can be dropped unread** (``drop``): its buffered bytes go, the QPACK
  encoder is told the section will not be decoded (Stream Cancellation, RFC 9204 §4.4.2), the
  client is asked to stop sending (STOP_SENDING with H3_NO_ERROR, RFC 9114 §4.1.1), and
  whatever still arrives on it is discarded as it comes.
- **A request stream can be paced** (``pace``): the client's credit on it (MAX_STREAM_DATA)
  is raised only as far as the reader allows, instead of aioquic's doubling as data arrives,
  so that a handler reading the body as it comes (``router.BodyStream``) back-pressures the
  client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pylsqpack
from aioquic.h3.connection import (
    ErrorCode,
    FrameType,
    H3Connection,
    H3Stream,
    QpackDecompressionFailed,
    Setting,
)
from aioquic.h3.events import H3Event, Headers
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.events import QuicEvent, StreamDataReceived, StreamReset
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.stream import QuicStream

from hypermesh.node.qpack import MAX_STRING, MalformedSection, bound_section, section_size


@dataclass
class RequestRefused(H3Event):
    """A request refused by the HTTP/3 layer before its headers were decoded; its stream is
    dropped (nothing more of it is read). Answer it with ``status``."""

    stream_id: int
    """The request's stream."""
    status: int
    """431 or 414."""
    reason: str
    """What was wrong, for the answer's body."""


class _Refused(Exception):
    def __init__(self, stream_id: int, status: int, reason: str) -> None:
        super().__init__(reason)
        self.event = RequestRefused(stream_id, status, reason)


class BoundedH3Connection(H3Connection):
    """The server side of HTTP/3 with request header sections bounded before decoding."""

    def __init__(
        self, quic: QuicConnection, *, max_field_section_size: int, table_capacity: int
    ) -> None:
        self._section_limit = max_field_section_size
        self._table_capacity = table_capacity
        self._dropped: set[int] = set()
        self.largest_section = 0
        """The largest header section decoded so far (RFC 9114 size)."""
        self.sections_refused = 0
        """Header sections refused without being decoded."""
        self._paced: dict[int, int] = {}
        self._aioquic_limits: Callable[..., None] | None = None
        super().__init__(quic)

    def handle_event(self, event: QuicEvent) -> list[H3Event]:
        """aioquic's, but for the events of dropped streams (ignored) and refused header
        sections (a ``RequestRefused`` event)."""
        if isinstance(event, StreamReset) or (
            isinstance(event, StreamDataReceived) and event.end_stream
        ):
            self._paced.pop(event.stream_id, None)  # nothing more to give credit for
        if isinstance(event, StreamDataReceived | StreamReset) and event.stream_id in self._dropped:
            if isinstance(event, StreamReset) or event.end_stream:
                self._dropped.discard(event.stream_id)
            return []
        try:
            return super().handle_event(event)
        except _Refused as refused:
            self.sections_refused += 1
            self.drop(refused.event.stream_id, ended=False)
            return [refused.event]

    def drop(self, stream_id: int, *, ended: bool) -> None:
        """Read nothing more of request stream ``stream_id`` (``ended``: the client already
        sent all of it). Sending the answer stays possible."""
        with self._get_or_create_stream(stream_id) as stream:
            stream.buffer = b""
            stream.blocked = False
            stream.blocked_frame_size = None
            stream.blocked_frame_type = None
            stream.frame_size = None
            stream.frame_type = None
            stream.receiving_ended = True
        self._paced.pop(stream_id, None)
        cancel = self._decoder.cancel_stream(stream_id)
        if cancel and self._local_decoder_stream_id is not None:
            self._quic.send_stream_data(self._local_decoder_stream_id, cancel)
        if not ended:
            self._dropped.add(stream_id)
            with contextlib.suppress(ValueError):  # QUIC already forgot the stream
                self._quic.stop_stream(stream_id, ErrorCode.H3_NO_ERROR)

    def dropped(self, stream_id: int) -> bool:
        """Whether ``stream_id`` was dropped and the client may still be sending on it."""
        return stream_id in self._dropped

    def buffered(self, stream_id: int) -> int:
        """Bytes buffered for ``stream_id`` in a frame not yet complete."""
        stream = self._stream.get(stream_id)
        return len(stream.buffer) if stream is not None else 0

    def pace(self, stream_id: int, limit: int | None) -> bool:
        """Let the client send on request stream ``stream_id`` up to offset ``limit`` at most
        (never less than it was already allowed); None: aioquic's own credit again. True when
        the credit grows (transmit to send it)."""
        if limit is None:
            self._paced.pop(stream_id, None)
            return False
        if self._aioquic_limits is None:  # aioquic 1.7 raises stream credit in this method
            self._aioquic_limits = self._quic._write_stream_limits
            setattr(self._quic, "_write_stream_limits", self._write_stream_limits)  # noqa: B010
        self._paced[stream_id] = limit
        stream = self._quic._streams.get(stream_id)
        return stream is not None and limit > stream.max_stream_data_local

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: object, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        limit = None if stream_id is None else self._paced.get(stream_id)
        if stream_id is None or limit is None:
            assert self._aioquic_limits is not None
            self._aioquic_limits(builder=builder, space=space, stream=stream)
            return
        stream.max_stream_data_local = max(stream.max_stream_data_local, limit)
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._quic._on_max_stream_data_delivery,
                handler_args=(stream,),
            )
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    # -- aioquic's hooks ----------------------------------------------------------------

    def _init_connection(self) -> None:
        self._max_table_capacity = self._table_capacity
        self._decoder = pylsqpack.Decoder(self._table_capacity, self._blocked_streams)
        super()._init_connection()

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[Setting.MAX_FIELD_SECTION_SIZE] = self._section_limit
        return settings

    def _check_request_or_push_frame_type(self, frame_type: int, stream: H3Stream) -> None:
        super()._check_request_or_push_frame_type(frame_type, stream)
        size = stream.frame_size or 0
        if frame_type == FrameType.HEADERS and size > 2 * self._section_limit:
            raise _Refused(
                stream.stream_id,
                431,
                f"the request's HEADERS frame is {size} bytes; the header section may "
                f"decode to at most {self._section_limit} bytes",
            )

    def _decode_headers(self, stream_id: int, frame_data: bytes | None) -> Headers:
        if frame_data is not None:  # None: resuming a section bounded when it arrived
            self._bound(stream_id, frame_data)
        headers = super()._decode_headers(stream_id, frame_data)
        self.largest_section = max(self.largest_section, section_size(headers))
        return headers

    def _bound(self, stream_id: int, frame_data: bytes) -> None:
        try:
            bound = bound_section(frame_data, self._table_capacity, self._section_limit)
        except MalformedSection as exc:
            raise QpackDecompressionFailed(str(exc)) from exc
        limit = self._section_limit
        rest = bound.size - bound.path
        if bound.size <= limit and bound.longest <= MAX_STRING and bound.path <= MAX_STRING:
            return
        if bound.path and rest <= limit and bound.longest <= MAX_STRING:
            raise _Refused(
                stream_id,
                414,
                f"the request target (:path) may decode to {bound.path} bytes; the header "
                f"section may hold at most {limit}",
            )
        raise _Refused(
            stream_id,
            431,
            f"the request's header section may decode to {bound.size} bytes; at most "
            f"{limit} are accepted (SETTINGS_MAX_FIELD_SECTION_SIZE)",
        )
