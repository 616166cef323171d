"""Version 2 tunnel messages (records passed on as they arrive) through real QUIC endpoints on
loopback: large bodies arrive intact, a relay's memory stays bounded while the far end reads
slowly, and malformed or oversized records are refused naming what is wrong."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
from collections.abc import AsyncIterator

import pytest

from hypermesh.node.router import BodyStream, Request, Router, RouteResponse, post_streamed
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.identity import Identity
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.client import TunnelFailed
from hypermesh.tunnel.onion import encode_request
from hypermesh.tunnel.records import (
    MAX_RECORD,
    RECORD_DATA,
    Framer,
    Opener,
    Sealer,
    open_records,
    seal_records,
)
from hypermesh.tunnel.relay import RELAY_PATH, RELAY_STREAM_PATH
from hypermesh.tunnel.stream import WINDOW
from tests.tunnel.test_tunnels import Node, mesh, open_through, run

MIB = 1024 * 1024


def digest_route(node: Node) -> None:
    """``POST /digest`` on the destination's API: the body's size and SHA-256."""

    async def digest(request: Request) -> RouteResponse:
        return RouteResponse.json(
            {"size": len(request.body), "sha256": hashlib.sha256(request.body).hexdigest()}
        )

    _api_of(node).add("/digest", digest, methods=("POST",))


def _api_of(node: Node):  # type: ignore[no-untyped-def]
    """The destination's API router (the one ``deliver_to`` answers tunnel requests with)."""
    cells = node.service._deliver.__closure__ or ()
    return next(c.cell_contents for c in cells if hasattr(c.cell_contents, "dispatch"))


def streams_seen(node: Node) -> list[BodyStream]:
    return [r.stream for r in node.router.seen if r.stream is not None]


@pytest.mark.parametrize("streaming", [True, False, None])
def test_a_large_body_arrives_intact_through_two_relays(streaming: bool | None) -> None:
    """Forced to v2, to v1, and left to choose (None: v2 for the large body, v1 for a small
    request after it)."""
    size = {True: 6 * MIB, None: MIB, False: 512 * 1024}[streaming]  # v1: 1 MiB at most
    body = os.urandom(size)

    async def scenario() -> None:
        async with mesh("r1", "r2", "dest", relay=False) as nodes:
            digest_route(nodes["dest"])
            pool = ConnectionPool(None)
            try:
                tunnel = await open_through(nodes, ["r1", "r2", "dest"], pool)
                tunnel.streaming = streaming
                answer = await tunnel.request("POST", "/digest", body=body, timeout=60)
                assert answer.status == 200
                assert answer.json() == {
                    "size": size,
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
                small = await tunnel.request("POST", "/echo", body=b"after the large one")
                assert small.json()["got"] == "after the large one"
            finally:
                await pool.aclose()
            paths = [r.path for r in nodes["r1"].router.seen if r.path.endswith("/relay")]
            assert (
                paths
                == {
                    True: [RELAY_STREAM_PATH] * 2,
                    False: [RELAY_PATH] * 2,
                    None: [RELAY_STREAM_PATH, RELAY_PATH],
                }[streaming]
            )
            if streaming:  # each relay read the message as it came, never whole
                for name in ("r1", "r2"):
                    seen = streams_seen(nodes[name])
                    assert seen and max(s.taken for s in seen) > size
                    assert max(s.high_water for s in seen) < size // 3

    run(scenario())


class SlowReader:
    """The destination's side of v2 messages, reading its first ``head`` bytes, then nothing
    for ``pause`` seconds, then the rest: a far end that reads slowly."""

    def __init__(self, node: Node, head: int, pause: float) -> None:
        self.head = head
        self.pause = pause
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()
        service = node.service
        original = service.relay_stream

        async def slow(body: AsyncIterator[bytes]):  # type: ignore[no-untyped-def]
            return await original(self._slowly(body))

        service.relay_stream = slow  # type: ignore[method-assign]

    async def _slowly(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        read = 0
        async for piece in body:
            yield piece
            read += len(piece)
            if read >= self.head and not self.paused.is_set():
                self.paused.set()
                await asyncio.sleep(self.pause)
                self.resumed.set()


def test_a_relay_holds_bounded_memory_while_the_far_end_reads_slowly() -> None:
    """The destination stops reading for 1.5 s after 64 KiB of an 8 MiB message. Meanwhile the
    relays in front of it hold no more than flow control lets in: their incoming credit (the
    QUIC stream's initial 1 MiB, then 256 KiB beyond what they took) and at most ``WINDOW``
    unacknowledged on the way on, each, not the message (8 MiB)."""
    size = 8 * MIB
    body = os.urandom(size)

    async def scenario() -> None:
        async with mesh("r1", "r2", "dest", relay=False) as nodes:
            digest_route(nodes["dest"])
            slow = SlowReader(nodes["dest"], head=64 * 1024, pause=1.5)
            pool = ConnectionPool(None)
            try:
                tunnel = await open_through(nodes, ["r1", "r2", "dest"], pool)
                request = asyncio.ensure_future(
                    tunnel.request("POST", "/digest", body=body, timeout=60)
                )
                await asyncio.wait_for(slow.paused.wait(), 30)
                await asyncio.sleep(1.0)  # the path fills up to its windows, then stalls
                stalled = {
                    name: (
                        sum(s.pending for s in streams_seen(nodes[name])),
                        sum(o.high_water for o in nodes[name].service.sending),
                    )
                    for name in ("r1", "r2")
                }
                dest_taken = max(s.taken for s in streams_seen(nodes["dest"]))
                answer = await request
                assert answer.json()["sha256"] == hashlib.sha256(body).hexdigest()
            finally:
                await pool.aclose()
        bound = MIB + 256 * 1024 + 2 * MAX_RECORD  # initial credit + window + a record
        for name, (pending, unacknowledged) in stalled.items():
            assert pending <= bound, (name, pending)
            assert unacknowledged <= WINDOW + 2 * MAX_RECORD, (name, unacknowledged)
        assert dest_taken < 2 * MIB  # the far end had not read it all: the relays held back
        for name in ("r1", "r2"):
            high = max(s.high_water for s in streams_seen(nodes[name]))
            assert high <= bound, (name, high)

    run(scenario())


async def _post(pool: ConnectionPool, node: Node, body: bytes) -> tuple[int, bytes]:
    status, _, answer = await pool.request(
        node.address, node.identity.node_id, "POST", RELAY_STREAM_PATH, body=body, timeout=10
    )
    return status, answer


def test_malformed_and_oversized_records_are_refused_with_a_clear_error() -> None:
    async def scenario() -> None:
        async with mesh("r1", "r2", "dest", relay=False) as nodes:
            pool = ConnectionPool(None)
            try:
                tunnel = await open_through(nodes, ["r1", "r2", "dest"], pool)
                keys, circuits = tunnel._keys, tunnel._circuits
                r1 = nodes["r1"]

                def message(size: int = 100) -> list[bytes]:
                    sealers = [
                        Sealer(k, c, forward=True) for k, c in zip(keys, circuits, strict=True)
                    ]
                    padded = encode_request("POST", "/echo", (), b"x" * size)
                    return list(seal_records(sealers, padded))

                over = struct.pack(">I", 0xFFFFFF) + bytes(64)
                flags = struct.pack(">I", 0x80 << 24 | 40) + bytes(40)
                records = message(3 * RECORD_DATA)
                tampered = bytearray(records[0])
                tampered[-1] ^= 1
                cases = [
                    (over, f"record 0 is {0xFFFFFF} bytes; a record is at most {MAX_RECORD}"),
                    (flags, "record 0: unknown flags 0x80"),
                    (b"".join(records[:-1]), "without its last"),
                    (records[0] + records[2] + records[1], "record 1 does not open"),
                    (bytes(tampered), "record 0 does not open with this circuit's key"),
                    (b"".join(records) + b"\0\0", "bytes after the last record"),
                    (b"".join(records)[:-7], "ended inside record"),
                ]
                for payload, expected in cases:
                    status, answer = await _post(pool, r1, circuits[0] + payload)
                    assert status == 400, (expected, status, answer)
                    assert expected in answer.decode(), (expected, answer)
                status, answer = await _post(pool, r1, os.urandom(16) + message()[0])
                assert status == 404 and b"no such tunnel" in answer
                status, answer = await _post(pool, r1, b"short")
                assert status == 400 and b"too short" in answer
                # the tunnel still works after all that
                tunnel.streaming = True
                echoed = await tunnel.request("POST", "/echo", body=b"still here")
                assert echoed.json()["got"] == "still here"
            finally:
                await pool.aclose()

    run(scenario())


def test_records_open_only_in_order_for_their_hop() -> None:
    keys = [os.urandom(32) for _ in range(3)]
    circuits = [os.urandom(16) for _ in range(3)]
    padded = os.urandom(5 * RECORD_DATA + 100)
    sealers = [Sealer(k, c, forward=True) for k, c in zip(keys, circuits, strict=True)]
    records = list(seal_records(sealers, padded))
    assert len(records) == 6
    openers = [Opener(k, c, forward=True) for k, c in zip(keys, circuits, strict=True)]
    stream = b"".join(records)
    pieces = [
        p
        for start in range(0, len(stream), 1000)
        for p in open_records(openers, stream[start : start + 1000])
    ]
    assert b"".join(pieces) == padded
    for opener in openers:
        opener.finish()
    # a hop's framer sees only headers; a wrong direction's label does not open
    backward = Opener(keys[0], circuits[0], forward=False)
    with pytest.raises(Exception, match="does not open"):
        backward.feed(records[0])
    framer = Framer()
    assert [last for _, last, _, _ in framer.feed(stream)] == [False] * 5 + [True]


def test_a_streamed_route_reads_as_it_comes_and_may_answer_before_the_end() -> None:
    """The node's HTTP/3 server and a route added with ``post_streamed``: the handler runs
    once the headers are in and reads the body in pieces of at least ``batch`` bytes; one that
    answers before reading the rest is answered at once, the rest is dropped, and the
    connection goes on. Other routes keep the request body limit (413)."""
    got: list[int] = []

    async def count(request: Request) -> RouteResponse:
        assert request.stream is not None and request.body == b""
        request.stream.batch = 64 * 1024
        async for piece in request.stream:
            got.append(len(piece))
        return RouteResponse.json({"size": sum(got)})

    async def refuse(request: Request) -> RouteResponse:
        return RouteResponse.error(403, "not this one")

    async def whole(request: Request) -> RouteResponse:
        return RouteResponse.json({"size": len(request.body)})

    async def scenario() -> None:
        identity = Identity.generate()
        router = Router().add_all(
            [post_streamed("/count", count), post_streamed("/refuse", refuse)]
        )
        router.add("/whole", whole, methods=("POST",))
        endpoint = await bind_endpoint(
            "127.0.0.1", 0, configuration=server_configuration(identity, doq=False), router=router
        )
        pool = ConnectionPool(None)
        try:
            body = os.urandom(3 * MIB)

            async def post(path: str, data: bytes) -> tuple[int, bytes]:
                status, _, answer = await pool.request(
                    endpoint.address, identity.node_id, "POST", path, body=data, timeout=30
                )
                return status, answer

            assert await post("/count", body) == (200, b'{"size":%d}\n' % len(body))
            assert len(got) > 1 and min(got[:-1]) >= 64 * 1024
            status, answer = await post("/refuse", body)
            assert status == 403 and b"not this one" in answer
            assert (await post("/whole", body))[0] == 413
            assert await post("/whole", b"abc") == (200, b'{"size":3}\n')
        finally:
            await pool.aclose()
            endpoint.close()

    run(scenario())


@pytest.mark.parametrize("limit", ["max_message", "max_gathering"])
def test_a_message_over_the_destinations_limit_is_refused_through_the_relays(limit: str) -> None:
    """The destination refuses a v2 message past its ``max_message`` (413), or past what it
    gathers of all tunnels' messages at once (503), before the end of it; each relay stops
    sending on and answers 502, and the tunnel goes on working."""

    async def scenario() -> None:
        async with mesh("r1", "r2", "dest", relay=False) as nodes:
            setattr(nodes["dest"].service, limit, MIB)
            pool = ConnectionPool(None)
            try:
                tunnel = await open_through(nodes, ["r1", "r2", "dest"], pool)
                tunnel.streaming = True
                with pytest.raises(TunnelFailed, match=r"answered 502.*next hop refused"):
                    await tunnel.request("POST", "/echo", body=bytes(4 * MIB), timeout=30)
                sent = max(s.taken for s in streams_seen(nodes["r2"]))
                assert sent < 3 * MIB  # r2 stopped reading when the destination refused
                assert nodes["dest"].service.gathering == 0
                echoed = await tunnel.request("POST", "/echo", body=b"x" * 40_000)
                assert echoed.json()["got"] == "x" * 40_000
            finally:
                await pool.aclose()

    run(scenario())
