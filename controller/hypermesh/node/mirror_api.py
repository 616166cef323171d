"""What a node serves of the registry's zones to mirrors, over HTTP/3.

On the registry node (``add_feed_routes``):

    GET /registry/v1/anchors                  the signed anchors (``hypermesh.mirror.anchors``)
    GET /registry/v1/ixfr?tld=ZONE&serial=N   {"tld", "serial", "entries": [{from, to, removed,
                                              added}, …]} from serial N on, or {"tld", "serial",
                                              "zone": TEXT} when the journal does not reach back
                                              (N older than its horizon, ``journal_keep``)
    GET /registry/v1/watch                    the change feed, streamed (``hypermesh.mirror.feed``)

On every other node of the network, from its mirror (``add_mirror_routes``): the same
``anchors`` (relayed exactly as the registry signed them) and ``ixfr`` (always the whole zone),
so that a node without a copy can take one from any mirror and check it against the registry's
key. Reads are open: zones are public within their network.

The registry node reads its journal, and writes a whole zone as text, on the registry's writer
thread (``Registry.worker``), not on the event loop.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import dns.name
import dns.zone

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.anchors import Anchors, ZoneAnchor
from hypermesh.mirror.feed import ZoneFeed
from hypermesh.mirror.follower import API, Follower
from hypermesh.node.router import Request, Route, Router, RouteResponse, get
from hypermesh.registry.errors import RegistryError
from hypermesh.registry.zones import serial_of
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import DIRECTORY_ZONE
from hypermesh.zonedata import ZoneDataError, tld_label

if TYPE_CHECKING:  # the registry's node only: a mirror loads no database layer
    from hypermesh.registry.service import Registry


def _query(request: Request) -> tuple[str, int]:
    params = urllib.parse.parse_qs(request.query)
    name = params.get("tld", [""])[0]
    text = params.get("serial", ["0"])[0]
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**32):
        raise RegistryError("serial must be a whole number below 2^32, 0 for the whole zone")
    if not name:
        raise RegistryError("tld is required")
    if name in (DIRECTORY_ZONE, DIRECTORY_ZONE.rstrip(".")):
        return DIRECTORY_ZONE, int(text)  # the registry's own zone, outside the TLD rules
    try:
        label = tld_label(name.removesuffix("."))
    except ZoneDataError as exc:
        raise RegistryError(f"tld: {exc}") from None
    return f"{label}.", int(text)


Members = Mapping[str, Mapping[str, Any]] | Callable[[], Mapping[str, Mapping[str, Any]]] | None
"""The network's members for the anchors: fixed, or read anew for each anchors document."""


def zone_feed(zones: StaticZones, hidden: frozenset[str] = frozenset()) -> ZoneFeed:
    """The feed of ``zones``' serials, told of every zone set or removed; zones in ``hidden``
    (left out of the anchors) are left out of it too, or followers would ask for them."""
    feed = ZoneFeed(
        lambda: {
            o.to_text(): serial_of(z) for o, z in zones.zones().items() if o.to_text() not in hidden
        }
    )

    def told(origin: dns.name.Name, zone: dns.zone.Zone | None) -> None:
        if origin.to_text() not in hidden:
            feed.notify(origin.to_text(), serial_of(zone) if zone else None)

    zones.listen(told)
    return feed


def add_feed_routes(
    router: Router,
    registry: Registry,
    zones: StaticZones,
    feed: ZoneFeed,
    identity: Identity,
    network: str,
    clock: Callable[[], float] = time.time,
    members: Members = None,
    hidden: frozenset[str] = frozenset(),
) -> Router:
    """The registry node's side: anchors, increments and the change feed. ``members`` (the
    network's Nodes and Peers: static ones, or what reads static and joined ones now) are
    published in the anchors, for federated networks and the gates. Zones in ``hidden``
    (``_nodes.`` of a public network) are served but left out of the anchors."""
    api = FeedApi(registry, zones, feed, identity, network, clock, members, hidden)
    return router.add_all(api.routes())


class FeedApi:
    """The registry node's handlers for mirrors, one a route."""

    def __init__(
        self,
        registry: Registry,
        zones: StaticZones,
        feed: ZoneFeed,
        identity: Identity,
        network: str,
        clock: Callable[[], float],
        members: Members,
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        self.registry = registry
        self.zones = zones
        self.feed = feed
        self.identity = identity
        self.network = network
        self.clock = clock
        self.members = members
        self.hidden = hidden
        self.ds: dict[str, tuple[int, tuple[str, ...]]] = {}
        """Each TLD's DS records at the serial they were read."""
        self.answers: dict[tuple[str, int, int], tuple[dns.zone.Zone, RouteResponse]] = {}
        """The last increments asked for: every mirror asks the same after a change."""

    def routes(self) -> list[Route]:
        """Each path, its handler and its methods."""
        return [
            get(f"{API}/anchors", self.anchors),
            get(f"{API}/ixfr", self.ixfr),
            get(f"{API}/watch", self.watch),
        ]

    async def anchors(self, _: Request) -> RouteResponse:
        known = {
            o.to_text(): serial_of(z)
            for o, z in self.zones.zones().items()
            if o.to_text() not in self.hidden
        }
        ds = self.ds
        if any(ds.get(name, (None,))[0] != serial for name, serial in known.items()):
            infos = await self.registry.worker.run(self.registry.list_tlds, internal=True)
            ds.clear()
            for info in infos:
                ds[f"{info.name}."] = (info.serial, info.ds)
        members = self.members() if callable(self.members) else self.members
        revoked = {
            r.node_id: {"at": r.revoked_at, "reason": r.reason, "replacedBy": r.replaced_by}
            for r in self.registry.revocations().values()
        }
        signed = Anchors.issue(
            self.identity,
            self.network,
            {name: ZoneAnchor(ds.get(name, (0, ()))[1], serial) for name, serial in known.items()},
            self.clock(),
            revoked,
            members,
        )
        return RouteResponse.json(signed.signed)

    async def ixfr(self, request: Request) -> RouteResponse:
        name, serial = _query(request)
        zone = self.zones.zones().get(dns.name.from_text(name))
        if zone is None:
            return RouteResponse.error(404, f"{name} is not served here")
        current = serial_of(zone)
        key = (name, serial, current)
        known = self.answers.get(key)
        if known is not None and known[0] is zone:
            return known[1]
        if len(self.answers) >= 64:
            self.answers.clear()
        response = await self.registry.worker.run(self._increments, name, serial, zone, current)
        self.answers[key] = (zone, response)
        return response

    def _increments(
        self, name: str, serial: int, zone: dns.zone.Zone, current: int
    ) -> RouteResponse:
        """The journal's entries from ``serial`` to ``current``, else the whole zone (a mirror
        behind the journal's horizon takes a full transfer). On the writer thread."""
        entries = self.registry.journal_since(name.rstrip("."), serial) if serial else None
        if entries is None or (entries and entries[-1].to_serial != current):
            return RouteResponse.json({"tld": name, "serial": current, "zone": zone.to_text()})
        steps = [
            {
                "from": e.from_serial,
                "to": e.to_serial,
                "removed": list(e.removed),
                "added": list(e.added),
            }
            for e in entries
        ]
        return RouteResponse.json({"tld": name, "serial": current, "entries": steps})

    async def watch(self, _: Request) -> RouteResponse:
        return RouteResponse(200, b"", "application/x-ndjson", stream=self.feed.watch())


def add_mirror_routes(router: Router, follower: Follower) -> Router:
    """A mirror's side: the anchors it holds and whole zones from its copies."""
    return router.add_all(MirrorApi(follower).routes())


class MirrorApi:
    """A mirror's handlers, one a route."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower

    def routes(self) -> list[Route]:
        """Each path, its handler and its methods."""
        return [get(f"{API}/anchors", self.anchors), get(f"{API}/ixfr", self.ixfr)]

    async def anchors(self, _: Request) -> RouteResponse:
        document = self.follower.anchors_document()
        if document is None:
            return RouteResponse.error(503, "this mirror holds no anchors yet")
        return RouteResponse.json(document)

    async def ixfr(self, request: Request) -> RouteResponse:
        name, _ = _query(request)
        held = self.follower.zone_text(name)
        if held is None:
            return RouteResponse.error(404, f"{name} is not mirrored here")
        serial, text = held
        return RouteResponse.json({"tld": name, "serial": serial, "zone": text})
