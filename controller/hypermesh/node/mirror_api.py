"""What a node serves of the registry's zones to mirrors, over HTTP/3.

On the registry node (``add_feed_routes``):

    GET /registry/v1/anchors                  the signed anchors (``hypermesh.mirror.anchors``)
    GET /registry/v1/ixfr?tld=ZONE&serial=N   {"tld", "serial", "entries": [{from, to, removed,
                                              added}, …]} from serial N on, or {"tld", "serial",
                                              "zone": TEXT} when the journal does not reach back
    GET /registry/v1/watch                    the change feed, streamed (``hypermesh.mirror.feed``)

On every other node of the network, from its mirror (``add_mirror_routes``): the same
``anchors`` (relayed exactly as the registry signed them) and ``ixfr`` (always the whole zone),
so that a node without a copy can take one from any mirror and check it against the registry's
key. Reads are open: zones are public within their network.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import dns.name
import dns.zone

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.anchors import Anchors, ZoneAnchor
from hypermesh.mirror.feed import ZoneFeed
from hypermesh.mirror.follower import API, Follower
from hypermesh.node.registry_api import guarded
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.registry.errors import RegistryError
from hypermesh.registry.service import Registry
from hypermesh.registry.zones import serial_of
from hypermesh.transport.identity import Identity
from hypermesh.zonedata import ZoneDataError, tld_label


def _query(request: Request) -> tuple[str, int]:
    params = urllib.parse.parse_qs(request.query)
    name = params.get("tld", [""])[0]
    text = params.get("serial", ["0"])[0]
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**32):
        raise RegistryError("serial must be a whole number below 2^32, 0 for the whole zone")
    if not name:
        raise RegistryError("tld is required")
    try:
        label = tld_label(name.removesuffix("."))
    except ZoneDataError as exc:
        raise RegistryError(f"tld: {exc}") from None
    return f"{label}.", int(text)


def zone_feed(zones: StaticZones) -> ZoneFeed:
    """The feed of ``zones``' serials, told of every zone set or removed."""
    feed = ZoneFeed(lambda: {o.to_text(): serial_of(z) for o, z in zones.zones().items()})
    zones.listen(
        lambda origin, zone: feed.notify(origin.to_text(), serial_of(zone) if zone else None)
    )
    return feed


def add_feed_routes(
    router: Router,
    registry: Registry,
    zones: StaticZones,
    feed: ZoneFeed,
    identity: Identity,
    network: str,
    clock: Callable[[], float] = time.time,
    members: Mapping[str, Mapping[str, Any]] | None = None,
) -> Router:
    """The registry node's side: anchors, increments and the change feed. ``members`` (the
    network's Nodes and Peers) are published in the anchors, for federated networks."""
    ds: dict[str, tuple[int, tuple[str, ...]]] = {}
    answers: dict[tuple[str, int, int], tuple[dns.zone.Zone, RouteResponse]] = {}

    def anchors(_: Request) -> RouteResponse:
        served = zones.zones()
        known = {o.to_text(): serial_of(z) for o, z in served.items()}
        if any(ds.get(name, (None,))[0] != serial for name, serial in known.items()):
            ds.clear()
            for info in registry.list_tlds():
                ds[f"{info.name}."] = (info.serial, info.ds)
        signed = Anchors.issue(
            identity,
            network,
            {name: ZoneAnchor(ds.get(name, (0, ()))[1], serial) for name, serial in known.items()},
            clock(),
            {
                r.node_id: {"at": r.revoked_at, "reason": r.reason, "replacedBy": r.replaced_by}
                for r in registry.revocations().values()
            },
            members,
        )
        return RouteResponse.json(signed.signed)

    def ixfr(request: Request) -> RouteResponse:
        name, serial = _query(request)
        zone = zones.zones().get(dns.name.from_text(name))
        if zone is None:
            return RouteResponse.error(404, f"{name} is not served here")
        current = serial_of(zone)
        key = (name, serial, current)
        known = answers.get(key)
        if known is not None and known[0] is zone:
            return known[1]  # every mirror asks the same question after a change
        if len(answers) >= 64:
            answers.clear()
        response = increments(name, serial, zone, current)
        answers[key] = (zone, response)
        return response

    def increments(name: str, serial: int, zone: dns.zone.Zone, current: int) -> RouteResponse:
        entries = registry.journal_since(name.rstrip("."), serial) if serial else None
        if entries is not None and (not entries or entries[-1].to_serial == current):
            return RouteResponse.json(
                {
                    "tld": name,
                    "serial": current,
                    "entries": [
                        {
                            "from": e.from_serial,
                            "to": e.to_serial,
                            "removed": list(e.removed),
                            "added": list(e.added),
                        }
                        for e in entries
                    ],
                }
            )
        return RouteResponse.json({"tld": name, "serial": current, "zone": zone.to_text()})

    async def watch(_: Request) -> RouteResponse:
        return RouteResponse(200, b"", "application/x-ndjson", stream=feed.watch())

    router.add(f"{API}/anchors", guarded(anchors))
    router.add(f"{API}/ixfr", guarded(ixfr))
    router.add(f"{API}/watch", watch)
    return router


def add_mirror_routes(router: Router, follower: Follower) -> Router:
    """A mirror's side: the anchors it holds and whole zones from its copies."""

    def anchors(_: Request) -> RouteResponse:
        document = follower.anchors_document()
        if document is None:
            return RouteResponse.error(503, "this mirror holds no anchors yet")
        return RouteResponse.json(document)

    def ixfr(request: Request) -> RouteResponse:
        name, _ = _query(request)
        held = follower.zone_text(name)
        if held is None:
            return RouteResponse.error(404, f"{name} is not mirrored here")
        serial, text = held
        return RouteResponse.json({"tld": name, "serial": serial, "zone": text})

    router.add(f"{API}/anchors", guarded(anchors))
    router.add(f"{API}/ixfr", guarded(ixfr))
    return router
