"""The node's paths over HTTP/3: what ``hmctl get paths``, ``hmctl ping`` and peers ask.

- ``GET /paths/v1``: every peer's path (direct or relayed, the addresses, RTT, since when), the
  node's NAT kind, reflexive addresses and home relay. The node's own key or its operators only.
- ``POST /paths/v1/ping`` ``{"node": ID or name, "count": 1..10, "bytes": 0..4 MiB}``: dial
  the node (if need be) and time ``count`` requests; says the path taken and whether it moved
  to a direct one; with ``bytes``, then fetches that many from the peer's ``/paths/v1/bulk``
  and says the throughput and on which path. The node's own key or its operators only: it makes
  the node dial out.
- ``GET /paths/v1/bulk?bytes=N``: N zero bytes (at most 4 MiB), to measure a path's throughput;
  a proven key that ``admits`` (a member, in a private network) only.
- ``POST /paths/v1/punch``: a peer, over a relayed connection, asks for a hole punch
  (``PathManager.punch_requested``); a proven key that ``admits`` (a member, in a private
  network) only.
- ``POST /paths/v1/forget`` ``{"node": ID or name}``: close the link to that node, so that the
  next request dials afresh (for benchmarks and after a change). The node's own key only.
- ``GET /paths/v1/observed``: the caller's address as this node sees it (its reflexive
  address, when the caller is behind a NAT); anyone.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.node.paths import PathManager, PeerNotFound
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.transport.endpoint import describe

MAX_BODY = 4096
MAX_COUNT = 10
MAX_BULK = 4 * 1024 * 1024
"""Bytes ``/paths/v1/bulk`` sends at most (one answer, held in memory while it is sent)."""


def add_paths_routes(
    router: Router,
    paths: PathManager,
    *,
    own: Callable[[], Collection[str]],
    admits: Callable[[str], bool],
) -> None:
    """Route the paths API to ``paths``; ``own()`` are the keys that may read and ping (the
    node's and its operators'), ``admits`` says who may ask for a punch."""

    def mine(request: Request) -> RouteResponse | None:
        if request.peer_id is None or request.peer_id not in own():
            return RouteResponse.error(403, "only the node's own key or its operators may do this")
        return None

    async def view(request: Request) -> RouteResponse:
        return mine(request) or RouteResponse.json(paths.view())

    async def observed(request: Request) -> RouteResponse:
        return RouteResponse.json({"observed": request.peer})

    async def punch(request: Request) -> RouteResponse:
        if request.peer_id is None or not admits(request.peer_id):
            return RouteResponse.error(403, "only a member of the network may ask for a punch")
        try:
            body = _json(request.body)
            return RouteResponse.json(paths.punch_requested(request.peer_id, body))
        except ValueError as exc:
            return RouteResponse.error(400, f"punch: {exc}")

    async def ping(request: Request) -> RouteResponse:
        refused = mine(request)
        if refused is not None:
            return refused
        try:
            body = _json(request.body)
            target, count = _ping_body(body)
            size = _bulk_size(body.get("bytes", 0), "bytes")
        except ValueError as exc:
            return RouteResponse.error(400, f"ping: {exc}")
        try:
            return RouteResponse.json(await ping_peer(paths, target, count, size))
        except PeerNotFound as exc:
            return RouteResponse.error(404, str(exc))
        except TransportError as exc:
            return RouteResponse.error(504, str(exc))
        except HyperMeshError as exc:
            return RouteResponse.error(400, str(exc))

    router.add("/paths/v1", view)
    router.add("/paths/v1/observed", observed)
    router.add("/paths/v1/bulk", _bulk_route(admits))
    router.add("/paths/v1/punch", punch, methods=("POST",))
    router.add("/paths/v1/ping", ping, methods=("POST",))

    async def forget(request: Request) -> RouteResponse:
        refused = mine(request)
        if refused is not None:
            return refused
        try:
            target, _ = _ping_body(_json(request.body))
        except ValueError as exc:
            return RouteResponse.error(400, f"forget: {exc}")
        try:
            record = await paths.locate(target)
        except PeerNotFound as exc:
            return RouteResponse.error(404, str(exc))
        except HyperMeshError as exc:
            return RouteResponse.error(504, str(exc))
        forgotten = paths.forget(record.node_id)
        return RouteResponse.json({"node": record.node_id, "forgotten": forgotten})

    router.add("/paths/v1/forget", forget, methods=("POST",))


def _bulk_route(admits: Callable[[str], bool]) -> Callable[[Request], Awaitable[RouteResponse]]:
    """``GET /paths/v1/bulk?bytes=N``: N zero bytes, for members only."""

    async def bulk(request: Request) -> RouteResponse:
        if request.peer_id is None or not admits(request.peer_id):
            return RouteResponse.error(403, "only a member of the network may fetch bulk bytes")
        try:
            size = _bulk_size(_query_int(request.query, "bytes"), "bytes")
        except ValueError as exc:
            return RouteResponse.error(400, f"bulk: {exc}")
        return RouteResponse(200, bytes(size), content_type="application/octet-stream")

    return bulk


async def ping_peer(paths: PathManager, target: str, count: int, size: int = 0) -> dict[str, Any]:
    """Dial ``target`` and time ``count`` requests to it; after the first, a punch in flight
    is given its time, so that the answer says where the path ended. With ``size``, then time
    a fetch of that many bytes (``bulk`` in the answer)."""
    dial_started = time.perf_counter()
    link = await paths.link(target)
    dialled_ms = round((time.perf_counter() - dial_started) * 1000, 3)
    first_path = link.path
    rtts: list[float] = []
    for index in range(count):
        started = time.perf_counter()
        status, _, body = await paths.request(link.node_id, "GET", "/paths/v1/observed")
        rtts.append(round((time.perf_counter() - started) * 1000, 3))
        if status != 200:
            raise TransportError(f"{target}: answered {status}: {body[:200]!r}")
        if index == 0 and link.punching is not None and not link.punching.done():
            await _settle(link.punching)
    bulk = None if size == 0 else await _fetch_bulk(paths, link.node_id, target, size)
    current = link.current()
    where = None
    if current is link.direct and link.direct_addr is not None:
        where = describe(link.direct_addr)
    return {
        "node": link.node_id,
        "name": link.name,
        "path": link.path,
        "remote": where,
        "relay": link.relay_id if link.path == "relayed" else None,
        "rtt_ms": rtts,
        "dial_ms": dialled_ms,
        "upgraded": first_path == "relayed" and link.path == "direct",
        "direct_after_ms": (
            None if link.direct_after is None else round(link.direct_after * 1000, 3)
        ),
        "bulk": bulk,
    }


async def _fetch_bulk(paths: PathManager, node_id: str, target: str, size: int) -> dict[str, Any]:
    """Fetch ``size`` bytes of the peer's ``/paths/v1/bulk``: how long, how fast, which path."""
    link = await paths.link(node_id)
    path = link.path
    started = time.perf_counter()
    status, _, body = await paths.request(
        node_id, "GET", f"/paths/v1/bulk?bytes={size}", timeout=60.0
    )
    seconds = time.perf_counter() - started
    if status != 200 or len(body) != size:
        raise TransportError(f"{target}: bulk answered {status} with {len(body)} bytes")
    return {
        "bytes": size,
        "ms": round(seconds * 1000, 3),
        "mbit_s": round(size * 8 / seconds / 1e6, 3),
        "path": path if path == link.path else f"{path}, then {link.path}",
    }


async def _settle(task: asyncio.Task[None]) -> None:
    await asyncio.wait({task}, timeout=5.0)


def _json(body: bytes) -> Any:
    if len(body) > MAX_BODY:
        raise ValueError(f"the body has more than {MAX_BODY} bytes")
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON") from None


def _bulk_size(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_BULK:
        raise ValueError(f"{field}: an integer from 0 to {MAX_BULK}")
    return value


def _query_int(query: str, name: str) -> int:
    """The one integer ``name`` of a request's query (``ValueError`` naming it otherwise)."""
    values = urllib.parse.parse_qs(query[:256]).get(name, [])
    if len(values) != 1 or not values[0].isdigit() or len(values[0]) > 10:
        raise ValueError(f"{name}: one integer in the query (?{name}=N)")
    return int(values[0])


def _ping_body(body: Any) -> tuple[str, int]:
    if not isinstance(body, dict):
        raise ValueError('the body is a JSON object: {"node": ID or name, "count": 1..10}')
    target = body.get("node")
    if not isinstance(target, str) or not 0 < len(target) <= 253:
        raise ValueError("node: a node ID or a member's name")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count: an integer from 1 to {MAX_COUNT}")
    return target, count
