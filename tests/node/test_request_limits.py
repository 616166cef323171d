"""What a caller can make the node's HTTP/3 endpoint hold: a real endpoint on 127.0.0.1 with
small limits, abused by aioquic clients that leave requests open, send bodies past the limits,
stall, and send header sections that decode to far more than they weigh.

Every refusal must come at once (not when the client finishes), ask the client to stop sending
(STOP_SENDING, H3_NO_ERROR), leave the connection serving, and free what the request held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.h3.connection import ErrorCode
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamReset

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.doq import DOQ_EXCESSIVE_LOAD, DOQ_REQUEST_CANCELLED
from hypermesh.dns.source import StaticZones
from hypermesh.node.interfaces import PublicGate
from hypermesh.node.limits import KIB, EndpointLimits
from hypermesh.node.qpack import section_size
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.routes import add_dns_routes
from hypermesh.node.server import Gate, PeerOf, QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.client import connect_pinned
from hypermesh.transport.identity import Identity

from .h3raw import (
    WAIT,
    RawH3Client,
    bomb_section,
    insert_literal,
    literal,
    plain_section,
    prefix_int,
    raw_client,
    set_capacity,
)

IDENTITY = Identity.generate()
SMALL = EndpointLimits(
    max_request_body=64 * KIB,
    max_field_section_size=8 * KIB,
    qpack_table_capacity=1 * KIB,
    max_connection_buffered=160 * KIB,
    max_peer_buffered=400 * KIB,
    max_buffered=1024 * KIB,
    max_streams=20,
    request_timeout=10.0,
)
STALLS = dataclasses.replace(SMALL, request_timeout=0.5)
NO_ERROR = ErrorCode.H3_NO_ERROR


def _router() -> Router:
    router = Router()
    add_dns_routes(router, DnsEngine(StaticZones()))

    async def echo(request: Request) -> RouteResponse:
        return RouteResponse.json({"bytes": len(request.body)})

    async def hello(_: Request) -> RouteResponse:
        return RouteResponse.json({"ok": True})

    router.add("/echo", echo, methods=("POST",))
    router.add("/chain/v1/append", echo, methods=("POST",))
    router.add("/status", hello)
    return router


@asynccontextmanager
async def endpoint(
    limits: EndpointLimits = SMALL, *, gate: Gate | None = None, peer_of: PeerOf | None = None
) -> AsyncIterator[QuicEndpoint]:
    served = await bind_endpoint(
        "127.0.0.1",
        0,
        configuration=server_configuration(IDENTITY),
        router=_router(),
        dns_answer=DnsEngine(StaticZones()).answer,
        gate=gate,
        peer_of=peer_of,
        limits=limits,
    )
    try:
        yield served
    finally:
        served.close()


def client(served: QuicEndpoint, identity: Identity | None = None) -> Any:
    return raw_client(served.address, IDENTITY.node_id, identity)


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(60):
            await test()

    asyncio.run(bounded())


async def until(done: Callable[[], bool], within: float = WAIT) -> None:
    """Poll ``done`` (what the server holds changes between packets) for a bounded time."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.01)


async def still_serves(h3: RawH3Client) -> None:
    answer = await h3.answered(h3.request("/status"))
    assert answer.status == 200, answer


def error_of(body: bytes | bytearray) -> str:
    return str(json.loads(body)["error"])


# -- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [SMALL.max_request_body + 1, 2 * SMALL.max_request_body])
@pytest.mark.parametrize("declared", [False, True])
def test_a_body_over_the_limit_is_413_at_once(sent: int, declared: bool) -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            headers = [(b"content-length", str(sent).encode())] if declared else []
            first = sent if not declared else 0
            body = b"x" * first
            stream = h3.request("/echo", method="POST", headers=headers, body=body, end=False)
            answer = await h3.answered(stream)  # the client never finished the request
            assert answer.status == 413
            assert str(SMALL.max_request_body) in error_of(answer.body)
            await h3.until(lambda: answer.stopped is not None)
            assert answer.stopped == NO_ERROR
            await until(lambda: served.stats.held == 0)
            await still_serves(h3)
            assert served.stats.refused[413] == 1

    run(test)


def test_a_body_at_the_limit_is_answered() -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            body = b"x" * SMALL.max_request_body
            answer = await h3.answered(h3.request("/echo", method="POST", body=body))
            assert answer.status == 200 and b'"bytes":65536' in answer.body
            await until(lambda: served.stats.held == 0)

    run(test)


# -- the gate -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "operation", "proves_key"),
    [
        ("/chain/v1/append", "chain.write", False),
        ("/echo", "status.read", True),
        ("/dns-query", "dns.query", False),
    ],
)
def test_the_gate_decides_on_the_headers_before_any_body(
    path: str, operation: str, proves_key: bool
) -> None:
    asked: list[tuple[str | None, str]] = []
    key = Identity.generate()

    def gate(caller_id: str | None, source: str, op: str) -> tuple[int, str]:
        asked.append((caller_id, op))
        return 403, f"{op} is denied here"

    async def test() -> None:
        async with endpoint(gate=gate) as served, client(served, key if proves_key else None) as h3:
            stream = h3.request(path, method="POST", body=b"y" * 1000, end=False)
            h3.send_body(stream, b"z" * 30_000)  # more is on its way: dropped as it comes
            answer = await h3.answered(stream)  # no FIN was sent: decided on the headers
            assert answer.status == 403 and operation in error_of(answer.body)
            await h3.until(lambda: answer.stopped is not None)
            await until(lambda: served.stats.held == 0)
            assert asked == [(key.node_id if proves_key else None, operation)]

    run(test)


# -- stalls -------------------------------------------------------------------------------


@pytest.mark.parametrize("stall", ["headers", "body", "headers-frame"])
def test_a_stalled_request_is_408_and_freed(stall: str) -> None:
    async def test() -> None:
        async with endpoint(STALLS) as served, client(served) as h3:
            if stall == "headers-frame":  # a HEADERS frame whose bytes stop coming
                stream = h3.raw_headers(plain_section(b"/status")[:6], end=False, declared=200)
            else:
                body = b"b" * 5000 if stall == "body" else b""
                stream = h3.request("/echo", method="POST", body=body, end=False)
            await until(lambda: served.stats.held > 0)
            answer = await h3.answered(stream)
            assert answer.status == 408 and "0.5 s" in error_of(answer.body)
            assert served.stats.held == 0
            await h3.until(lambda: answer.stopped is not None)
            await still_serves(h3)

    run(test)


# -- budgets ------------------------------------------------------------------------------


def test_a_connection_holds_at_most_its_budget() -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            piece = b"p" * 60_000
            held = [h3.request("/echo", method="POST", body=piece, end=False) for _ in range(2)]
            await until(lambda: served.stats.held >= 120_000)
            third = h3.request("/echo", method="POST", body=piece + piece[:1000], end=False)
            answer = await h3.answered(third)
            assert answer.status == 429 and "this connection holds" in error_of(answer.body)
            assert all(stream not in h3.answers for stream in held)  # untouched
            for stream in held:
                h3.send_body(stream, b"", end=True)
            for stream in held:
                assert (await h3.answered(stream)).status == 200
            await until(lambda: served.stats.held == 0)
            await still_serves(h3)

    run(test)


def test_a_caller_holds_at_most_its_budget_across_connections() -> None:
    async def test() -> None:
        async with endpoint() as served:
            async with (
                client(served) as a,
                client(served) as b,
                client(served) as c,
                client(served) as d,
            ):
                piece = b"q" * 60_000
                for h3 in (a, b, c):  # 120 KB each: within each connection's 160 KiB
                    for _ in range(2):
                        h3.request("/echo", method="POST", body=piece, end=False)
                await until(lambda: served.stats.held >= 360_000)
                assert list(served.stats.held_by_peer) == ["127.0.0.1"]
                answer = await d.answered(d.request("/echo", method="POST", body=piece, end=False))
                assert answer.status == 429
                assert "127.0.0.1 holds" in error_of(answer.body)
                assert "across its connections" in error_of(answer.body)
            # The connections are gone: everything they held is free again.
            await until(lambda: served.stats.held == 0 and not served.stats.held_by_peer)

    run(test)


def test_members_are_counted_by_name_and_strangers_by_source() -> None:
    member, stranger = Identity.generate(), Identity.generate()
    directory = {"beta": {"kind": "Node", "identity": member.node_id}}
    gate = PublicGate.of("alpha", directory, None)

    async def test() -> None:
        async with (
            endpoint(peer_of=gate.who) as served,
            client(served, member) as m,
            client(served, stranger) as s,
        ):
            m.request("/echo", method="POST", body=b"m" * 1000, end=False)
            s.request("/echo", method="POST", body=b"s" * 1000, end=False)
            await until(lambda: len(served.stats.held_by_peer) == 2)
            assert set(served.stats.held_by_peer) == {"beta", "127.0.0.1"}

    run(test)


def test_all_callers_together_hold_at_most_the_endpoint_budget() -> None:
    limits = EndpointLimits(
        max_request_body=64 * KIB,
        max_connection_buffered=160 * KIB,
        max_peer_buffered=400 * KIB,
        max_buffered=100 * KIB,
        request_timeout=5,
    )

    async def test() -> None:
        async with endpoint(limits) as served, client(served) as h3:
            h3.request("/echo", method="POST", body=b"a" * 60_000, end=False)
            await until(lambda: served.stats.held >= 60_000)
            answer = await h3.answered(
                h3.request("/echo", method="POST", body=b"a" * 60_000, end=False)
            )
            assert answer.status == 503 and "try again later" in error_of(answer.body)

    run(test)


def test_everything_a_connection_held_is_freed_when_it_closes() -> None:
    async def test() -> None:
        async with endpoint() as served:
            async with client(served) as h3:
                for size in (10_000, 30_000, 50_000):
                    h3.request("/echo", method="POST", body=b"c" * size, end=False)
                h3.raw_headers(plain_section(b"/status")[:4], end=False, declared=100)
                await until(lambda: served.stats.held >= 90_000)
            await until(lambda: served.stats.held == 0 and not served.stats.held_by_peer)
            assert not served.stats.refused  # freed because the client left, not refused

    run(test)


def test_a_client_reset_frees_its_request() -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            stream = h3.request("/echo", method="POST", body=b"r" * 40_000, end=False)
            await until(lambda: served.stats.held >= 40_000)
            h3._quic.reset_stream(stream, ErrorCode.H3_REQUEST_CANCELLED)
            h3.transmit()
            await until(lambda: served.stats.held == 0)
            await still_serves(h3)

    run(test)


def test_the_limits_are_advertised() -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            settings = await h3.settings()
            assert settings[0x6] == SMALL.max_field_section_size  # MAX_FIELD_SECTION_SIZE
            assert settings[0x1] == SMALL.qpack_table_capacity  # QPACK_MAX_TABLE_CAPACITY
            assert h3._quic._remote_max_streams_bidi == SMALL.max_streams

    run(test)


def test_stream_data_held_out_of_order_past_the_budget_closes_the_connection() -> None:
    """Data past a gap never reaches the requests (QUIC holds it until the gap fills), so it
    is counted where QUIC holds it."""

    async def test() -> None:
        async with endpoint() as served, client(served) as gapped, client(served) as other:
            gapped.out_of_order(b"g" * 120_000, gap=10)
            gapped.out_of_order(b"g" * 120_000, gap=10)
            await gapped.until(lambda: gapped.closed is not None)
            assert "0x107" in str(gapped.closed)  # H3_EXCESSIVE_LOAD
            assert "received out of order" in str(gapped.closed)
            assert served.stats.connections_closed == 1
            await still_serves(other)

    run(test)


def test_stream_data_held_out_of_order_within_the_budget_is_kept() -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            h3.out_of_order(b"g" * 100_000, gap=10)
            await still_serves(h3)
            assert h3.closed is None and served.stats.connections_closed == 0

    run(test)


class _DoqClient(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None):
        super().__init__(quic, stream_handler)
        self.resets: dict[int, int] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self.resets[event.stream_id] = event.error_code


def test_unfinished_doq_queries_hold_at_most_the_connection_budget() -> None:
    async def test() -> None:
        async with (
            endpoint() as served,
            connect_pinned(
                served.address,
                expected_id=IDENTITY.node_id,
                protocol=_DoqClient,
                alpn="doq",
                identity=None,
            ) as doq,
        ):
            streams = []
            for _ in range(3):  # 3 x 60 KB unfinished: past the connection's 160 KiB
                stream = doq._quic.get_next_available_stream_id()
                doq._quic.send_stream_data(stream, (65_535).to_bytes(2, "big") + b"q" * 60_000)
                doq.transmit()
                streams.append(stream)
            await until(lambda: bool(doq.resets))
            assert list(doq.resets.values()) == [DOQ_EXCESSIVE_LOAD]

    run(test)


def _doq(served: QuicEndpoint) -> Any:
    return connect_pinned(
        served.address, expected_id=IDENTITY.node_id, protocol=_DoqClient, alpn="doq", identity=None
    )


def _unfinished_query(doq: Any, size: int = 60_000) -> int:
    stream = doq._quic.get_next_available_stream_id()
    doq._quic.send_stream_data(stream, (65_535).to_bytes(2, "big") + b"q" * size)
    doq.transmit()
    return stream


def test_unfinished_doq_queries_count_against_the_callers_budget_across_connections() -> None:
    # Two connections from one address, each within its own 160 KiB: 2 x 2 x 60 KB is past
    # the caller's 200 KiB, so the fourth query is refused, whichever connection carries it.
    limits = dataclasses.replace(SMALL, max_peer_buffered=200 * KIB)

    async def test() -> None:
        async with endpoint(limits) as served, _doq(served) as one, _doq(served) as two:
            for doq in (one, two, one):
                _unfinished_query(doq)
            await until(lambda: served.stats.held >= 180_000)
            assert not one.resets and not two.resets
            _unfinished_query(two)
            await until(lambda: bool(two.resets))
            assert list(two.resets.values()) == [DOQ_EXCESSIVE_LOAD]
            assert served.stats.held <= limits.max_peer_buffered
        await until(lambda: served.stats.held == 0)  # freed when the connections closed

    run(test)


def test_a_stalled_doq_query_is_cancelled_and_freed() -> None:
    async def test() -> None:
        async with endpoint(STALLS) as served, _doq(served) as doq:
            stream = _unfinished_query(doq, 1_000)
            await until(lambda: served.stats.held > 0)
            await until(lambda: stream in doq.resets)  # after request_timeout (0.5 s)
            assert doq.resets[stream] == DOQ_REQUEST_CANCELLED
            assert served.stats.held == 0 and served.stats.refused[408] == 1

    run(test)


# -- header sections ----------------------------------------------------------------------


@pytest.mark.parametrize("references", [200, 5_000, 20_000])
def test_a_qpack_bomb_is_refused_before_it_is_decoded(references: int) -> None:
    capacity = SMALL.qpack_table_capacity
    entry = (b"x-bomb", b"a" * (capacity - 32 - len(b"x-bomb")))

    async def test() -> None:
        async with endpoint() as served, client(served) as bomber, client(served) as other:
            bomber.encoder_instructions(set_capacity(capacity) + insert_literal(*entry))
            stream = bomber.raw_headers(bomb_section(references, capacity))
            pending = other.request("/status")
            answer = await bomber.answered(stream)
            assert answer.status == 431
            assert f"at most {SMALL.max_field_section_size}" in error_of(answer.body)
            assert (await other.answered(pending)).status == 200  # the other client is served
            assert served.stats.sections_refused == 1
            assert served.stats.largest_section <= SMALL.max_field_section_size
            await still_serves(bomber)  # the bomber's connection itself goes on
            await until(lambda: served.stats.held == 0)

    run(test)


def test_a_section_within_the_limit_that_uses_the_dynamic_table_is_decoded() -> None:
    capacity = SMALL.qpack_table_capacity
    entry = (b"x-small", b"v" * 100)

    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            h3.encoder_instructions(set_capacity(capacity) + insert_literal(*entry))
            stream = h3.raw_headers(bomb_section(4, capacity))  # 4 references: 4 KiB at most
            assert (await h3.answered(stream)).status == 200
            assert served.stats.sections_refused == 0
            request = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"node")]
            request += [(b":path", b"/status"), *[entry] * 4]
            assert served.stats.largest_section == section_size(request)

    run(test)


@pytest.mark.parametrize(
    ("path_length", "how", "status"),
    [
        (1_000, "aioquic", 404),
        (20_000, "aioquic", 414),
        (12_000, "raw", 414),
        (20_000, "raw", 431),  # a HEADERS frame over twice the limit: refused before it is read
    ],
)
def test_a_request_target_past_the_limit_is_414(path_length: int, how: str, status: int) -> None:
    path = "/dns-query?dns=" + "A" * (path_length - len("/dns-query?dns="))
    if status == 404:
        path = "/nothing" + "A" * (path_length - len("/nothing"))

    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            if how == "aioquic":
                stream = h3.request(path)
            else:
                stream = h3.raw_headers(plain_section(path.encode()))
            answer = await h3.answered(stream)
            assert answer.status == status
            if status == 414:
                assert ":path" in error_of(answer.body)
            await still_serves(h3)
            assert served.stats.largest_section <= SMALL.max_field_section_size

    run(test)


def test_many_headers_past_the_limit_are_431() -> None:
    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            headers = [(f"x-h{i}".encode(), b"v" * 200) for i in range(60)]  # ~14 KiB
            answer = await h3.answered(h3.request("/status", headers=headers))
            assert answer.status == 431 and "header section" in error_of(answer.body)
            await still_serves(h3)

    run(test)


@pytest.mark.parametrize(
    "section",
    [
        b"\x00",  # no Delta Base
        b"\x00\x00\xff",  # a static index cut short
        b"\x00\x00" + bytes([0xC0 | 63, 0x7F]),  # static entry 190 does not exist
        b"\x00\x00" + prefix_int(1, 4, 0x50) + prefix_int(500, 7),  # a value cut short
        b"\x00\x00" + literal(b":path", 3, 0x20),  # a name with no value
    ],
)
def test_a_section_that_is_not_qpack_closes_the_connection(section: bytes) -> None:
    """RFC 9204 §2.2.3: a field section that cannot be decoded is a connection error."""

    async def test() -> None:
        async with endpoint() as served, client(served) as h3:
            h3.raw_headers(section)
            await h3.until(lambda: h3.closed is not None)
            assert "0x200" in str(h3.closed)  # QPACK_DECOMPRESSION_FAILED
            assert served.stats.largest_section == 0

    run(test)


def test_a_doh_get_past_the_url_limit_is_414_and_the_connection_stays() -> None:
    """With the default limits: a GET whose URL cannot be decoded (longer than pylsqpack can
    decode, 65,535 bytes) used to close the whole connection."""

    async def test() -> None:
        async with endpoint(EndpointLimits()) as served, client(served) as h3:
            target = b"/dns-query?dns=" + b"A" * 70_000
            answer = await h3.answered(h3.raw_headers(plain_section(target)))
            assert answer.status == 414
            assert "request target (:path)" in error_of(answer.body)
            await still_serves(h3)

    run(test)
