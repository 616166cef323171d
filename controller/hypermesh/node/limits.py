"""What one caller may make a node's QUIC endpoint hold: the limits on unfinished requests.

A request costs the node memory from its first byte until it is answered: the bytes of its
stream (the HEADERS frame until it is decoded, then the body), and its decoded header section.
These limits bound that cost per request, per connection, per caller and in all, and bound how
long a request may take to arrive. They come from the node's config (``limits`` in
``config.json``); the defaults hold without one. ``docs/protocols.md`` says what a client sees
when it passes one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    """The limits of one QUIC endpoint (public, private or ephemeral) of a node."""

    max_request_body: int = 1 * MIB
    """Bytes of one request's body. Past it the request is answered 413 at once and the rest
    of its body is not read (the client is asked to stop sending)."""
    max_field_section_size: int = 64 * KIB
    """Bytes of one request's decoded header section, counted as RFC 9114 §4.2.2 does (each
    field's name and value plus 32). Advertised to clients as SETTINGS_MAX_FIELD_SECTION_SIZE
    and enforced *before* decoding, from an upper bound of what the QPACK section can decode
    to: past it the request is 431, or 414 when it is the request target (``:path``) that takes
    it past. It is also the longest URL a request can have."""
    qpack_table_capacity: int = 1 * KIB
    """Bytes of QPACK dynamic table a client may use (SETTINGS_QPACK_MAX_TABLE_CAPACITY). A
    reference into the table is counted at this size when a header section is bounded before
    decoding, so a small table keeps one byte from standing for kilobytes of headers."""
    max_connection_buffered: int = 4 * MIB
    """Bytes one connection may hold in requests not yet answered (their stream bytes and
    decoded headers), and in what QUIC and HTTP/3 buffer for it below the requests (data
    received out of order, a frame not yet complete). A request that would take a connection
    past it is answered 429; buffers below the requests past it close the connection
    (H3_EXCESSIVE_LOAD)."""
    max_peer_buffered: int = 16 * MIB
    """Bytes one caller may hold in requests not yet answered across all its connections. The
    caller is the member a proven key names, else its source address (an IPv6 source by its
    /64). Past it the request is answered 429."""
    max_buffered: int = 256 * MIB
    """Bytes all callers together may hold in requests not yet answered on this endpoint. Past
    it the request is answered 503."""
    max_streams: int = 100
    """Requests one connection may have open at once (QUIC's initial_max_streams_bidi; a
    client waits for a stream to close before opening another)."""
    request_timeout: float = 30.0
    """Seconds from a request's first byte to its end (the stream's FIN). A request still
    arriving then is answered 408 and what it held is freed."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            number = int | float if item.name == "request_timeout" else int
            if isinstance(value, bool) or not isinstance(value, number) or value <= 0:
                kind = (
                    "a positive number" if item.name == "request_timeout" else "a positive integer"
                )
                raise ValueError(f"limits.{item.name} must be {kind}, not {value!r}")
        if self.max_field_section_size > 1 * MIB:
            raise ValueError("limits.max_field_section_size must be at most 1048576")
        if self.qpack_table_capacity > self.max_field_section_size:
            raise ValueError("limits.qpack_table_capacity must not exceed max_field_section_size")

    @classmethod
    def from_dict(cls, data: Any) -> EndpointLimits:
        """From the ``limits`` object of a node config: any subset of the fields, the rest
        default; ``ValueError`` naming an unknown or bad field."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("limits must be an object")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"limits: unknown field(s) {', '.join(unknown)}")
        return cls(**data)
