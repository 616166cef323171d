"""DNS over QUIC (RFC 9250) and over HTTP/3 (RFC 8484) to a node whose key is pinned.

The same pinning as every other exchange with a node: TLS without a CA, and the peer's key must
be the node ID the caller names before a query is sent.
"""

from __future__ import annotations

import asyncio
import base64
import struct

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from hypermesh.errors import TransportError
from hypermesh.transport.client import connect_h3, connect_pinned
from hypermesh.transport.identity import Identity

DOQ_ALPN = "doq"
DNS_MESSAGE = "application/dns-message"


class DoqClientProtocol(QuicConnectionProtocol):
    """One query a stream: 2-byte length prefix, message ID 0, FIN after the query."""

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self.address = ""
        self.close_reason: str | None = None
        self._pending: dict[int, tuple[asyncio.Future[bytes], bytearray]] = {}

    async def query(self, wire: bytes) -> bytes:
        """Send one DNS message; returns the answer with the caller's message ID restored."""
        if len(wire) < 12:
            raise TransportError(f"{self.address}: a DNS message has at least 12 bytes")
        if self.close_reason is not None:
            raise TransportError(f"{self.address}: connection closed: {self.close_reason}")
        query_id = wire[:2]
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._pending[stream_id] = (future, bytearray())
        message = b"\0\0" + wire[2:]
        self._quic.send_stream_data(stream_id, struct.pack("!H", len(message)) + message, True)
        self.transmit()
        try:
            answer = await future
        finally:
            self._pending.pop(stream_id, None)
        return query_id + answer[2:]

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id in self._pending:
            future, buffer = self._pending[event.stream_id]
            buffer.extend(event.data)
            if event.end_stream and not future.done():
                if len(buffer) < 2 or struct.unpack("!H", buffer[:2])[0] != len(buffer) - 2:
                    future.set_exception(
                        TransportError(f"{self.address}: malformed DoQ answer framing")
                    )
                else:
                    future.set_result(bytes(buffer[2:]))
        elif isinstance(event, StreamReset) and event.stream_id in self._pending:
            future, _ = self._pending[event.stream_id]
            if not future.done():
                future.set_exception(
                    TransportError(
                        f"{self.address}: the server reset the query stream "
                        f"(error {event.error_code:#x})"
                    )
                )
        elif isinstance(event, ConnectionTerminated):
            self.close_reason = event.reason_phrase or f"error {event.error_code:#x}"
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(
                        TransportError(f"{self.address}: connection closed: {self.close_reason}")
                    )


async def doq_query(
    address: str,
    query: bytes,
    *,
    expected_id: str | None,
    identity: Identity | None,
    timeout: float = 5.0,  # noqa: ASYNC109 - named in the error message
) -> bytes:
    """Ask the node at ``address`` over DNS over QUIC, proving ``identity`` (``None``:
    anonymous); returns the answer's wire bytes."""
    try:
        async with (
            asyncio.timeout(timeout),
            connect_pinned(
                address,
                expected_id=expected_id,
                identity=identity,
                protocol=DoqClientProtocol,
                alpn=DOQ_ALPN,
            ) as client,
        ):
            return await client.query(query)
    except TimeoutError:
        raise TransportError(f"{address}: no DoQ answer within {timeout:g}s") from None


async def doh3_query(
    address: str,
    query: bytes,
    *,
    expected_id: str | None,
    identity: Identity | None,
    method: str = "POST",
    timeout: float = 5.0,  # noqa: ASYNC109 - named in the error message
) -> bytes:
    """Ask the node at ``address`` over DNS over HTTPS on HTTP/3 (GET or POST /dns-query),
    proving ``identity`` (``None``: anonymous)."""
    headers = [("accept", DNS_MESSAGE)]
    try:
        async with (
            asyncio.timeout(timeout),
            connect_h3(address, expected_id=expected_id, identity=identity) as h3,
        ):
            if method == "GET":
                param = base64.urlsafe_b64encode(query).rstrip(b"=").decode()
                status, _, body = await h3.request(
                    "GET", f"/dns-query?dns={param}", headers=headers
                )
            else:
                status, _, body = await h3.request(
                    "POST",
                    "/dns-query",
                    headers=[*headers, ("content-type", DNS_MESSAGE)],
                    body=query,
                )
    except TimeoutError:
        raise TransportError(f"{address}: no DoH answer within {timeout:g}s") from None
    if status != 200:
        raise TransportError(f"{address}: /dns-query answered HTTP {status}: {body[:200]!r}")
    return body
