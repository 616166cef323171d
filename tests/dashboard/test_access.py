"""The dashboard's routes on real sockets (HTTP/3 on a QUIC endpoint, HTTP/1.1 on the node's TCP
web listener), bound on every address so that a client can come from loopback or from this
machine's own non-loopback address: who is let in, the page, the events as they change, and
the bounds (viewers, no sampling while nobody watches)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from hypermesh.node.dashboard import EVENTS, QUEUE, DashboardHub, add_dashboard_routes, changes
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.node.web import start_web
from hypermesh.transport.client import connect_h3, h3_get
from hypermesh.transport.identity import Identity

TIMEOUT = 10.0


def outside_address() -> str:
    """This machine's own non-loopback IPv4 address (where a client is not on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.fail("this machine has no non-loopback IPv4 address to test from")
    return address


@dataclass
class Served:
    hub: DashboardHub
    state: dict[str, Any]
    tcp_port: int
    udp_port: int
    node: Identity
    member: Identity


@contextlib.asynccontextmanager
async def served(max_viewers: int = 16) -> AsyncIterator[Served]:
    node, member = Identity.generate(), Identity.generate()
    state: dict[str, Any] = {"node": {"name": "n1", "network": "t", "version": "0"}}

    async def gather() -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(state))
        return copied

    hub = DashboardHub(gather, max_viewers=max_viewers, interval=0.1)
    router = add_dashboard_routes(Router(), hub, lambda key: key == member.node_id)
    endpoint = await bind_endpoint(
        "0.0.0.0", 0, configuration=server_configuration(node), router=router
    )
    web = await start_web("0.0.0.0:0", router, h3_port=int(endpoint.address.rsplit(":", 1)[1]))
    try:
        udp = int(endpoint.address.rsplit(":", 1)[1])
        yield Served(hub, state, int(web.address.rsplit(":", 1)[1]), udp, node, member)
    finally:
        web.close()
        endpoint.close()


async def http1(host: str, port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_loopback_is_let_in_and_elsewhere_is_refused_over_tcp() -> None:
    asyncio.run(_loopback_is_let_in_and_elsewhere_is_refused_over_tcp())


async def _loopback_is_let_in_and_elsewhere_is_refused_over_tcp() -> None:
    outside = outside_address()
    async with served() as s:
        status, body = await http1("127.0.0.1", s.tcp_port, "/dashboard/")
        assert status == 200 and b"<title>HyperMesh dashboard</title>" in body
        assert b"<script" in body and b"src=" not in body  # inline, nothing fetched elsewhere
        status, body = await http1(outside, s.tcp_port, "/dashboard/")
        assert status == 403 and b"loopback" in body
        assert (await http1(outside, s.tcp_port, "/dashboard/events"))[0] == 403
        assert (await http1(outside, s.tcp_port, "/dashboard/state"))[0] == 403


def test_over_http3_elsewhere_only_a_members_key_is_let_in() -> None:
    asyncio.run(_over_http3_elsewhere_only_a_members_key_is_let_in())


async def _over_http3_elsewhere_only_a_members_key_is_let_in() -> None:
    outside = outside_address()
    async with served() as s:
        at = f"{outside}:{s.udp_port}"
        expected = s.node.node_id
        anonymous = await h3_get(at, "/dashboard/state", expected_id=expected, identity=None)
        assert anonymous[0] == 403
        stranger = Identity.generate()
        refused = await h3_get(at, "/dashboard/state", expected_id=expected, identity=stranger)
        assert refused[0] == 403
        status, _, body = await h3_get(
            at, "/dashboard/state", expected_id=expected, identity=s.member
        )
        assert status == 200 and json.loads(body)["node"]["name"] == "n1"


async def _events(reader: asyncio.StreamReader, count: int) -> list[dict[str, Any]]:
    """The next ``count`` ``state`` events of an SSE stream (chunked HTTP/1.1)."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while len(found) < count:
            line = await reader.readline()
            if line.startswith(b"data: "):
                found.append(json.loads(line[6:]))
    return found


def test_events_follow_changes_and_sampling_stops_with_the_last_viewer() -> None:
    asyncio.run(_events_follow_changes_and_sampling_stops_with_the_last_viewer())


async def _events_follow_changes_and_sampling_stops_with_the_last_viewer() -> None:
    async with served() as s:
        assert not s.hub.sampling and s.hub.views == 0  # nobody watches: nothing gathered
        reader, writer = await asyncio.open_connection("127.0.0.1", s.tcp_port)
        writer.write(b"GET /dashboard/events HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head and b"text/event-stream" in head
        (first,) = await _events(reader, 1)
        assert first["node"]["name"] == "n1" and s.hub.sampling and s.hub.viewers == 1
        s.state["node"]["version"] = "1"
        (second,) = await _events(reader, 1)
        assert second["node"]["version"] == "1"
        writer.close()
        for _ in range(500):
            if not (s.hub.sampling or s.hub.viewers):
                break
            await asyncio.sleep(0.02)
        assert not s.hub.sampling and s.hub.viewers == 0
        views = s.hub.views
        await asyncio.sleep(0.5)
        assert s.hub.views == views  # no timer runs while nobody watches


def test_events_over_http3() -> None:
    asyncio.run(_events_over_http3())


async def _events_over_http3() -> None:
    async with served() as s, asyncio.timeout(TIMEOUT):
        at = f"127.0.0.1:{s.udp_port}"
        async with (
            connect_h3(at, expected_id=s.node.node_id, identity=None) as h3,
            h3.subscribe("GET", "/dashboard/events") as (status, headers, pieces),
        ):
            assert status == 200 and headers["content-type"] == "text/event-stream"
            text = b""
            async for piece in pieces:
                text += piece
                if b"data: " in text and text.endswith(b"\n\n"):
                    break
            assert b'"name":"n1"' in text


def test_viewers_are_bounded() -> None:
    asyncio.run(_viewers_are_bounded())


async def _viewers_are_bounded() -> None:
    async with served(max_viewers=1) as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.tcp_port)
        writer.write(b"GET /dashboard/events HTTP/1.1\r\nhost: x\r\n\r\n")
        await _events(reader, 1)
        status, body = await http1("127.0.0.1", s.tcp_port, "/dashboard/events")
        assert status == 503 and b"viewers" in body
        writer.close()


def test_a_slow_viewer_holds_a_bounded_queue_of_whole_views() -> None:
    asyncio.run(_a_slow_viewer_holds_a_bounded_queue_of_whole_views())


async def _a_slow_viewer_holds_a_bounded_queue_of_whole_views() -> None:
    count = 0

    async def gather() -> dict[str, Any]:
        nonlocal count
        count += 1
        return {"node": {"name": "n1", "version": str(count)}}

    hub = DashboardHub(gather, interval=0.01)
    stream = hub.watch()
    assert await anext(stream) == b"retry: 2000\n\n"
    for _ in range(200):  # a viewer that reads nothing while the view changes 50 times
        if hub.views >= 50:
            break
        await asyncio.sleep(0.01)
    queued = [await anext(stream) for _ in range(QUEUE)]
    versions = [json.loads(q.split(b"data: ", 1)[1])["node"]["version"] for q in queued]
    assert int(versions[-1]) >= 50 and versions == sorted(versions, key=int)  # the newest
    assert len(hub.events) <= EVENTS
    await stream.aclose()
    assert not hub.sampling and hub.viewers == 0


def test_changes_are_told_in_words() -> None:
    before = {
        "records": [{"name": "alpha"}, {"name": "gone"}],
        "tlds": {"items": [{"name": "acme", "status": "pending"}]},
        "paths": {"peers": [{"name": "beta", "path": "relayed"}]},
        "chain": {"size": 3},
    }
    after = {
        "records": [{"name": "alpha"}, {"name": "beta"}],
        "tlds": {
            "items": [{"name": "acme", "status": "active"}, {"name": "shop", "status": "pending"}]
        },
        "paths": {"peers": [{"name": "beta", "path": "direct"}]},
        "chain": {"size": 4},
    }
    assert changes(before, after) == [
        "node beta appeared",
        "node gone left",
        "TLD acme is active",
        "TLD shop is pending",
        "path to beta is direct",
        "chain grew to 4",
    ]
    assert changes(None, after) == [] and changes(after, after) == []
