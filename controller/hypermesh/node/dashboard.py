"""The node's live dashboard: one page (``/dashboard/``) and its server-sent events
(``/dashboard/events``), over HTTP/3 and over HTTP/1.1 on TCP (``node.web``).

The page is static (``node.dashboard_page``); what it shows arrives as JSON on a
``text/event-stream``: an ``event: state`` with the whole view first, then again each time it
changes. The view is gathered by asking the node's own router for what its APIs already serve
(``/status``, ``/paths/v1``, ``/network/v1/members``, on a registry's node ``/registry/v1/tlds``
and ``/registry/v1/nodes``, with the chain ``/chain/v1/head``, ``/chain/v1/checkpoint`` and
``/chain/v1/replicas``), so the dashboard adds no second way of reading any of them.

When it is gathered (``DashboardHub``): only while somebody watches. The first viewer starts
one sampler; it gathers the view at most once a second, and at once (but at most five times a
second) when a feed pushes a change: the zone feed (``/registry/v1/watch``) on a registry's
node and the chain head feed (``/chain/v1/watch``), which the sampler follows as any
subscriber does. The last viewer gone, the sampler and its subscriptions stop: no timer runs
while nobody watches. Every bound is fixed: ``MAX_VIEWERS`` viewers per node, ``QUEUE`` views
queued per viewer (a slow viewer skips to the newest view), ``EVENTS`` recent events, at most
``MAX_ITEMS`` of each list.

Who may watch (``admitted``): a client on loopback, or one that proves the key of a member of
the network or of an operator (the registry's administrator) in the QUIC handshake, as the
node's gates know them (``NodeContext.admits_member``). Anyone else gets 403: over TCP that is
every client but loopback, since plain HTTP proves no key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from hypermesh.node.dashboard_page import PAGE_HEADERS, render_page
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.transport.address import parse_address

PAGE = "/dashboard/"
EVENTS_PATH = "/dashboard/events"
STATE_PATH = "/dashboard/state"

MAX_VIEWERS = 16
"""Viewers one node serves at once; one more is answered 503."""
QUEUE = 4
"""Views queued for one viewer; past it the oldest is dropped (each view is whole)."""
EVENTS = 50
"""Recent events kept."""
MAX_ITEMS = 200
"""Entries of each list in the view (nodes, peers, TLDs, chains)."""
INTERVAL = 1.0
"""Seconds between two samples of the node's own state while somebody watches."""
PUSHED_INTERVAL = 0.2
"""Seconds at least between two views caused by feed pushes."""
HEARTBEAT = 15.0
"""Seconds of silence after which a comment is sent (keeps proxies and QUIC from idling out)."""

Gather = Callable[[], Awaitable[dict[str, Any]]]
Admits = Callable[[str], bool]

SOURCES: tuple[tuple[str, str], ...] = (
    ("node", "/status"),
    ("paths", "/paths/v1"),
    ("members", "/network/v1/members"),
    ("tlds", "/registry/v1/tlds"),
    ("records", f"/registry/v1/nodes?limit={MAX_ITEMS}"),
    ("chain", "/chain/v1/head"),
    ("checkpoint", "/chain/v1/checkpoint"),
    ("replicas", "/chain/v1/replicas"),
)
"""What the view is made of: its key and the node's own route that serves it."""

FEEDS = ("/registry/v1/watch", "/chain/v1/watch")
"""Feeds whose pushes make the sampler gather at once (where the node has them)."""


def is_loopback(peer: str) -> bool:
    """Whether ``peer`` (``host:port``) is a loopback address."""
    try:
        host = parse_address(peer)[0]
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def admitted(request: Request, admits: Admits) -> bool:
    """Whether ``request`` may see the dashboard: from loopback, or proving a member's or an
    operator's key."""
    if is_loopback(request.peer):
        return True
    return request.peer_id is not None and admits(request.peer_id)


REFUSED = (
    "the dashboard answers on loopback, or to a member's or the administrator's key "
    "(a client certificate over HTTP/3)"
)


def router_gather(router: Router, own_id: str) -> Gather:
    """The view, read from ``router``'s own routes as the node's own key would read them."""

    async def gather() -> dict[str, Any]:
        view: dict[str, Any] = {}
        for key, target in SOURCES:
            path, _, query = target.partition("?")
            request = Request("GET", path, query, (), b"", "127.0.0.1:0", own_id)
            response = await router.dispatch(request)
            if response.status == 200 and response.stream is None:
                view[key] = _bounded(json.loads(response.body))
        if isinstance(view.get("node"), dict):
            view["node"].pop("uptime_seconds", None)  # changes every time, says nothing new
        if "records" in view:
            view["records"] = [_record(r) for r in view["records"].get("items", [])]
        return view

    return gather


def _bounded(value: Any) -> Any:
    """``value`` with every list cut to ``MAX_ITEMS``."""
    if isinstance(value, list):
        return [_bounded(v) for v in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    return value


def _record(signed: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows of a signed node record: its document's plain fields."""
    try:
        document = json.loads(str(signed.get("document", "")))
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    keep = ("node", "name", "host", "version", "roles", "expiresAt")
    out = {k: document[k] for k in keep if k in document}
    public = document.get("interfaces", {})
    if isinstance(public, dict):
        out["addresses"] = public.get("public", [])
    return out


def changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What changed between two views, in words (the recent events)."""
    if before is None:
        return []
    found: list[str] = []
    old_nodes, new_nodes = _names(before.get("records")), _names(after.get("records"))
    found += [f"node {n} appeared" for n in sorted(new_nodes - old_nodes)]
    found += [f"node {n} left" for n in sorted(old_nodes - new_nodes)]
    old_tlds, new_tlds = _tld_status(before), _tld_status(after)
    for name, status in sorted(new_tlds.items()):
        if old_tlds.get(name) != status:
            found.append(f"TLD {name} is {status}")
    for name in sorted(set(old_tlds) - set(new_tlds)):
        found.append(f"TLD {name} is gone")
    old_paths, new_paths = _path_kinds(before), _path_kinds(after)
    for peer, kind in sorted(new_paths.items()):
        if old_paths.get(peer) != kind:
            found.append(f"path to {peer} is {kind}")
    old_size = (before.get("chain") or {}).get("size")
    new_size = (after.get("chain") or {}).get("size")
    if new_size != old_size:
        found.append(f"chain grew to {new_size}")
    return found


def _names(records: Any) -> set[str]:
    return {str(r.get("name")) for r in records or () if isinstance(r, dict) and r.get("name")}


def _tld_status(view: dict[str, Any]) -> dict[str, str]:
    items = (view.get("tlds") or {}).get("items", [])
    return {str(i.get("name")): str(i.get("status")) for i in items if isinstance(i, dict)}


def _path_kinds(view: dict[str, Any]) -> dict[str, str]:
    peers = (view.get("paths") or {}).get("peers", [])
    out: dict[str, str] = {}
    for peer in peers:
        if isinstance(peer, dict):
            out[str(peer.get("name") or peer.get("node"))] = str(peer.get("path"))
    return out


class DashboardHub:
    """The viewers of one node's dashboard and the one sampler that feeds them."""

    def __init__(
        self,
        gather: Gather,
        feeds: Callable[[], list[AsyncGenerator[bytes, None]]] = list,
        *,
        max_viewers: int = MAX_VIEWERS,
        interval: float = INTERVAL,
    ) -> None:
        self._gather = gather
        self._feeds = feeds
        self._max = max_viewers
        self._interval = interval
        self._viewers: set[asyncio.Queue[bytes]] = set()
        self._sampler: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self.events: deque[dict[str, str]] = deque(maxlen=EVENTS)
        self.last: dict[str, Any] | None = None
        self.views = 0
        """Views gathered so far (for tests and the benchmark)."""

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @property
    def sampling(self) -> bool:
        """Whether the sampler runs (only while somebody watches)."""
        return self._sampler is not None and not self._sampler.done()

    def full(self) -> bool:
        return len(self._viewers) >= self._max

    async def state(self) -> dict[str, Any]:
        """The view now (gathered afresh when nobody watches)."""
        if self.last is None or not self.sampling:
            await self._sample()
        assert self.last is not None
        return self.last

    async def _sample(self) -> bool:
        """Gather the view; whether it changed."""
        view = await self._gather()
        self.views += 1
        body = {k: v for k, v in (self.last or {}).items() if k in ("events", "at")}
        if self.last is not None and {**view, **body} == self.last:
            return False
        now = time.time()
        for text in changes(self.last, view):
            self.events.appendleft({"at": f"{now:.3f}", "text": text})
        self.last = {**view, "events": list(self.events), "at": round(now, 3)}
        return True

    def _publish(self) -> None:
        line = _event(self.last)
        for queue in self._viewers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(line)

    async def _run(self) -> None:
        followers = [asyncio.create_task(self._follow(feed)) for feed in self._feeds()]
        try:
            while self._viewers:
                started = time.monotonic()
                if await self._sample():
                    self._publish()
                self._poked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poked.wait(), self._interval)
                    rest = PUSHED_INTERVAL - (time.monotonic() - started)
                    if rest > 0:
                        await asyncio.sleep(rest)
        finally:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    async def _follow(self, feed: AsyncGenerator[bytes, None]) -> None:
        try:
            first = True
            async for line in feed:
                if line.strip() != b"{}" and not first:
                    self._poked.set()
                first = False
        finally:
            await feed.aclose()

    async def watch(self) -> AsyncGenerator[bytes, None]:
        """One viewer's stream: the view now, then each new view, until it goes."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)
        self._viewers.add(queue)
        try:
            if not self.sampling:
                self.last = None  # the sampler's first view goes to every viewer
                self._sampler = asyncio.create_task(self._run())
            elif self.last is not None:
                queue.put_nowait(_event(self.last))  # joining: the view the others have
            yield b"retry: 2000\n\n"
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except TimeoutError:
                    line = b": idle\n\n"
                yield line
        finally:
            self._viewers.discard(queue)
            if not self._viewers and self._sampler is not None:
                self._sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sampler
                self._sampler = None


def _event(view: object) -> bytes:
    return b"event: state\ndata: " + json.dumps(view, separators=(",", ":")).encode() + b"\n\n"


def router_feeds(router: Router, own_id: str) -> Callable[[], list[AsyncGenerator[bytes, None]]]:
    """The node's feeds, subscribed to through its router (a route it does not have is
    skipped)."""

    def feeds() -> list[AsyncGenerator[bytes, None]]:
        return [_feed(router, path, own_id) for path in FEEDS if path in router.paths()]

    return feeds


async def _feed(router: Router, path: str, own_id: str) -> AsyncGenerator[bytes, None]:
    response = await router.dispatch(Request("GET", path, "", (), b"", "127.0.0.1:0", own_id))
    if response.status != 200 or response.stream is None:
        return
    stream = response.stream
    try:
        async for line in stream:
            yield line
    finally:
        await stream.aclose()


def add_dashboard_routes(router: Router, hub: DashboardHub, admits: Admits) -> Router:
    """Route the page, its events and its state as JSON on ``router``."""
    page = render_page().encode()

    def refused(request: Request) -> RouteResponse | None:
        return None if admitted(request, admits) else RouteResponse.error(403, REFUSED)

    async def serve_page(request: Request) -> RouteResponse:
        return refused(request) or RouteResponse(
            200, page, "text/html; charset=utf-8", PAGE_HEADERS
        )

    async def serve_state(request: Request) -> RouteResponse:
        return refused(request) or RouteResponse.json(await hub.state())

    async def serve_events(request: Request) -> RouteResponse:
        if (no := refused(request)) is not None:
            return no
        if hub.full():
            return RouteResponse.error(503, f"the dashboard has {MAX_VIEWERS} viewers already")
        headers = (("cache-control", "no-store"), ("x-accel-buffering", "no"))
        return RouteResponse(200, b"", "text/event-stream", headers, stream=hub.watch())

    router.add(PAGE, serve_page, methods=("GET", "HEAD"))
    router.add(STATE_PATH, serve_state)
    router.add(EVENTS_PATH, serve_events)
    return router
