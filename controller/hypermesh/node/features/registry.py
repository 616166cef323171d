"""The registry role: its database, its administrator, the zones it signs and serves, its API
and the feed mirrors follow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import dns.zone

from hypermesh.dns.source import StaticZones
from hypermesh.errors import HyperMeshError
from hypermesh.mirror.feed import ZoneFeed
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.registry_api import add_registry_routes, expire_due, load_zones
from hypermesh.registry.directory import Directory
from hypermesh.registry.service import Registry
from hypermesh.registry.zones import serial_of
from hypermesh.revocation import Lookup, Revocation
from hypermesh.transport.identity import load_or_create_identity
from hypermesh.transport.noderecord import DIRECTORY_ZONE

log = logging.getLogger("hypermesh.node")
_T = TypeVar("_T")

REGISTRY_DB = "registry.db"
"""Under the node's directory: the registry's database."""
REGISTRY_ADMIN_DIR = "registry-admin"
"""Under the node's directory: the registry administrator's key (``identity.key``, 0600),
created with the registry. ``hmctl registry`` signs administration requests with it."""
SWEEP_MOST = 3600.0
"""The longest the registry's sweep waits: it wakes when the next term runs out or the next
zone is due to be signed again in full (``Registry.next_due``), reckoned anew after each sweep.
Writes do not re-arm it: a term is whole days and a full signing lasts days, so a write hardly
ever makes anything due sooner; the hour bounds how late such a case, or a clock stepped
forward, is swept."""
SWEEP_RETRY = 60.0
"""Seconds before the registry's sweep is tried again after a failure."""
SWEEP_LEAST = 1.0
"""Seconds the registry's sweep waits at the least (a due time that does not go away when
swept makes no busy loop)."""
SWEEP = 600.0
"""The longest the node directory's expiry timer waits: it wakes at the next record's expiry,
and anew after each change of the directory; this bounds only how late a record is swept
after a step of the wall clock (a record's default lifetime)."""
LATE = 0.05
"""Seconds after a record's expiry when it is swept (so the clock has passed it)."""
MEMBERS_HELD = 1.0
"""Seconds the registry node's gates reuse one reading of its members (a key that joined is
admitted on its interfaces within this long, and a connection costs no database query)."""


class RegistryFeature:
    """A node with role ``registry`` hosts the network's registry."""

    name = "registry"

    def enabled(self, config: NodeConfig) -> bool:
        return "registry" in config.roles

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        admin = load_or_create_identity(node.node_dir / REGISTRY_ADMIN_DIR)
        registry = Registry.open(node.node_dir / REGISTRY_DB, admin=admin.node_id)
        stack.callback(registry.close)
        node.operators.add(admin.node_id)
        node.revocation_sources.append(revocation_in(registry))
        metrics, zones, config = node.metrics, node.zones, node.config
        public = config.network_mode == "public"
        directory = Directory(
            registry,
            config.network,
            static=config.directory,
            public=public,
            trusted=(node.identity.node_id,),
        )
        node.member_source = held_for(MEMBERS_HELD, directory.members)
        metrics.watch_registry(registry)
        expire_due(registry, zones)
        load_zones(registry, zones, metrics.zone_serial, metrics.zone_problem)
        start_task(stack, _sweep(registry, zones, metrics.zone_serial))
        hidden = frozenset({DIRECTORY_ZONE}) if public else frozenset()
        feed = zone_feed(zones, hidden)
        node.reloaders.append(_static_members(directory, feed))
        add_registry_routes(
            node.router,
            registry,
            zones,
            on_registration=metrics.registration,
            on_serial=metrics.zone_serial,
            on_revocation=feed.revoked,
            directory=directory,
        )
        start_task(stack, _expire_records(directory, feed))
        add_feed_routes(
            node.router,
            registry,
            zones,
            feed,
            node.identity,
            config.network,
            members=directory.members,
            hidden=hidden,
        )


def _static_members(
    directory: Directory, feed: ZoneFeed
) -> Callable[[NodeConfig], Callable[[], None]]:
    """The registry's static members follow the config the node runs (``NodeContext.reload``):
    a member added to the network may publish its record, a removed one no longer. When they
    change, the feed says so (``{"members": N}``), so that mirrors fetch the anchors, which
    list the members, again."""

    def prepare(config: NodeConfig) -> Callable[[], None]:
        static: dict[str, Mapping[str, Any]] = dict(config.directory)

        def swap() -> None:
            changed = static != directory.static
            directory.static = static  # one reference: the writer thread sees old or new
            if changed:
                feed.publish({"members": len(static)})

        return swap

    return prepare


def held_for(seconds: float, read: Callable[[], _T]) -> Callable[[], _T]:
    """``read``, called again only when its last answer is ``seconds`` old (the same object
    meanwhile, so the gates' own cache of it holds)."""
    last: list[tuple[float, _T]] = []

    def now() -> _T:
        at = time.monotonic()
        if not last or at - last[0][0] >= seconds:
            last[:] = [(at, read())]
        return last[0][1]

    return now


def revocation_in(registry: Registry) -> Lookup:
    """The revocation of a node ID in the registry's own table."""

    def of(node_id: str) -> Revocation | None:
        found = registry.revocations().get(node_id) if registry.is_revoked(node_id) else None
        return None if found is None else Revocation(node_id, found.replaced_by)

    return of


async def _expire_records(directory: Directory, feed: ZoneFeed) -> None:
    """Remove node records as they expire: a timer set for the next expiry, set anew after each
    change of the directory (a new record may expire sooner). The sweep runs on the event loop,
    as the directory's handlers do, since it serves the changed zone."""
    changed = asyncio.Event()
    directory.listeners.append(changed.set)
    while True:
        changed.clear()
        try:
            due = await directory.registry.worker.run(directory.next_expiry)
            wait = SWEEP if due is None else min(SWEEP, max(0.0, due - time.time()) + LATE)
        except HyperMeshError as exc:
            log.warning("node directory sweep failed", extra={"error": str(exc)})
            wait = SWEEP
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), wait)
        if changed.is_set():
            continue
        try:
            removed = directory.sweep()
        except HyperMeshError as exc:
            log.warning("node directory sweep failed", extra={"error": str(exc)})
            continue
        if removed:
            log.info("node records expired", extra={"nodes": len(removed)})
            feed.revoked(removed[0])  # the anchors' members may have changed: followers refetch


async def _sweep(
    registry: Registry, zones: StaticZones, on_serial: Callable[[str, int], None]
) -> None:
    """Expire the registrations whose term ran out; sign again the zones due for it; each when
    it is due, not on a fixed interval (``SWEEP_MOST``). The work is the registry's writer
    thread's (in turn with the API's writes); the zones are served on
    the loop."""
    while True:
        try:
            due = await registry.worker.run(registry.next_due)
            wait = SWEEP_MOST if due is None else min(SWEEP_MOST, due - registry.clock() + LATE)
        except HyperMeshError as exc:
            log.warning("registry sweep failed", extra={"error": str(exc)})
            wait = SWEEP_RETRY
        await asyncio.sleep(max(SWEEP_LEAST, wait))
        try:
            expired = await registry.worker.run(registry.expire_due)
            resigned = await registry.worker.run(registry.resign_due)
            signed = await registry.worker.run(_zones_of, registry, resigned)
            for name, zone in zip(resigned, signed, strict=True):
                zones.set(zone)
                on_serial(name, serial_of(zone))
        except HyperMeshError as exc:
            log.warning("registry sweep failed", extra={"error": str(exc)})
            continue
        for name in expired:
            zones.remove(name)
            log.info("registration expired", extra={"tld": name})
        for name in resigned:
            log.info("zone signed again in full", extra={"tld": name})


def _zones_of(registry: Registry, names: list[str]) -> list[dns.zone.Zone]:
    """The current zone of each of ``names`` (on the registry's writer thread)."""
    return [registry.zone(name) for name in names]
