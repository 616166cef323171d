"""Fuzzing the node's HTTP/3 endpoint itself, over a real QUIC socket: header blocks no
well-behaved client sends (pseudo-headers missing, repeated, unknown or out of order; names
and values of any bytes; many or long fields) with or without a body. Each request is answered
without a 5xx, or refused at the protocol level (the stream reset, or the connection closed);
and after each, another connection is still served (``GET /dns-query`` answers 200)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import dns.message
import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StreamReset
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.dns.source import StaticZones
from hypermesh.transport.client import connect_pinned
from tests.harness.dns_server import DnsServer, ServerThread, make_zone

from .budget import fuzz

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

TIMEOUT = 5.0
PROBE = (
    "/dns-query?dns="
    + base64.urlsafe_b64encode(dns.message.make_query("www.hmtest.", "A").to_wire())
    .rstrip(b"=")
    .decode()
)


class RawH3(QuicConnectionProtocol):
    """An HTTP/3 client that sends the header block it is given, as it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http: H3Connection | None = None
        self.closed = False
        self._waiting: dict[int, asyncio.Future[int | None]] = {}

    async def send(self, headers: list[tuple[bytes, bytes]], body: bytes) -> int | None:
        """The response's status; None when the stream was reset or the connection closed."""
        assert self.http is not None
        if self.closed:
            return None
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[int | None] = self._loop.create_future()
        self._waiting[stream_id] = future
        self.http.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.http.send_data(stream_id, body, end_stream=True)
        self.transmit()
        async with asyncio.timeout(TIMEOUT):
            return await future

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.http = H3Connection(self._quic)
        elif isinstance(event, ConnectionTerminated):
            self.closed = True
            for future in self._waiting.values():
                if not future.done():
                    future.set_result(None)
        elif isinstance(event, StreamReset):
            reset = self._waiting.get(event.stream_id)
            if reset is not None and not reset.done():
                reset.set_result(None)
        if self.http is None:
            return
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                answered = self._waiting.get(h3_event.stream_id)
                if answered is not None and not answered.done():
                    status = dict(h3_event.headers).get(b":status", b"")
                    answered.set_result(int(status) if status.isdigit() else -1)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[DnsServer]:
    thread = ServerThread(StaticZones([make_zone()]))
    try:
        yield thread.start()
    finally:
        thread.stop()


async def _exchange(
    server: DnsServer, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int | None, int | None]:
    """(the fuzzed request's status, a well-formed request's status on a new connection)."""
    pin = server.identity.node_id
    async with (
        asyncio.timeout(3 * TIMEOUT),
        connect_pinned(server.address, expected_id=pin, identity=None, protocol=RawH3) as h3,
    ):
        status = await h3.send(headers, body)
    async with (
        asyncio.timeout(3 * TIMEOUT),
        connect_pinned(server.address, expected_id=pin, identity=None, protocol=RawH3) as probe,
    ):
        alive = await probe.send(
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"x"),
                (b":path", PROBE.encode()),
            ],
            b"",
        )
    return status, alive


PSEUDO = [b":method", b":path", b":scheme", b":authority", b":protocol", b":status", b":x"]
VALUES = [b"GET", b"POST", b"CONNECT", b"/", b"/dns-query", b"*", b"https", b"", b"\x00", b"\r\n"]


def header_blocks() -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    value = st.one_of(st.sampled_from(VALUES), st.binary(max_size=64))
    pseudo = st.tuples(st.sampled_from(PSEUDO), value)
    regular = st.tuples(
        st.one_of(
            st.sampled_from([b"content-type", b"content-length", b"Upper", b"a:b", b" ", b"te"]),
            st.binary(min_size=1, max_size=16),
        ),
        st.one_of(value, st.binary(min_size=1000, max_size=8000)),
    )
    usual = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/")]
    token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
    well_formed = st.builds(
        lambda method, path, extra: [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", b"x"),
            (b":path", path),
            *extra,
        ],
        st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"get"]),
        st.one_of(
            st.sampled_from([b"/dns-query", PROBE.encode(), b"/dns-query?dns=%%", b"/?a=\xff"]),
            printable.map(lambda t: b"/" + t.encode()),
        ),
        st.lists(
            st.tuples(
                st.one_of(token, st.sampled_from(["content-type", "accept", "user-agent"])),
                printable.map(str.strip),
            ).map(lambda pair: (pair[0].encode(), pair[1].encode())),
            max_size=30,
        ),
    )
    return st.one_of(
        well_formed,
        well_formed,
        st.lists(st.one_of(pseudo, regular), max_size=12),
        st.lists(regular, max_size=24).map(lambda extra: usual + extra),
        st.permutations(usual).flatmap(
            lambda block: st.lists(pseudo, max_size=3).map(lambda more: list(block) + more)
        ),
    )


@fuzz(40)
@given(headers=header_blocks(), body=st.one_of(st.just(b""), st.binary(max_size=2000)))
def test_header_blocks(
    endpoint: DnsServer, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    status, alive = asyncio.run(_exchange(endpoint, headers, body))
    assert status is None or 0 < status < 500, f"answered {status}"
    assert alive == 200, f"after that request, a well-formed one got {alive}"
