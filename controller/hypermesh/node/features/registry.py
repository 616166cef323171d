"""The registry role: its database, its administrator, the zones it signs and serves, its API
and the feed mirrors follow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from hypermesh.dns.source import StaticZones
from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.registry_api import add_registry_routes, expire_due, load_zones, publish_zones
from hypermesh.registry.service import Registry
from hypermesh.revocation import Lookup, Revocation
from hypermesh.transport.identity import load_or_create_identity

log = logging.getLogger("hypermesh.node")

REGISTRY_DB = "registry.db"
"""Under the node's directory: the registry's database."""
REGISTRY_ADMIN_DIR = "registry-admin"
"""Under the node's directory: the registry administrator's key (``identity.key``, 0600),
created with the registry. ``hmctl registry`` signs administration requests with it."""
EXPIRY_INTERVAL = 60.0
"""Seconds between the registry's sweeps: registrations whose term ran out, zones due to be
signed again in full."""


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
        metrics, zones = node.metrics, node.zones
        expire_due(registry, zones)
        load_zones(registry, zones, metrics.zone_serial, metrics.zone_problem)
        start_task(stack, _sweep(registry, zones, metrics.zone_serial))
        feed = zone_feed(zones)
        add_registry_routes(
            node.router,
            registry,
            zones,
            on_registration=metrics.registration,
            on_serial=metrics.zone_serial,
            on_revocation=feed.revoked,
        )
        add_feed_routes(
            node.router,
            registry,
            zones,
            feed,
            node.identity,
            node.config.network,
            members=node.config.directory,
        )


def revocation_in(registry: Registry) -> Lookup:
    """The revocation of a node ID in the registry's own table."""

    def of(node_id: str) -> Revocation | None:
        found = registry.revocations().get(node_id) if registry.is_revoked(node_id) else None
        return None if found is None else Revocation(node_id, found.replaced_by)

    return of


async def _sweep(
    registry: Registry, zones: StaticZones, on_serial: Callable[[str, int], None]
) -> None:
    """Expire the registrations whose term ran out; sign again the zones due for it."""
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL)
        try:
            expired = await asyncio.to_thread(registry.expire_due)
            resigned = await asyncio.to_thread(registry.resign_due)
            publish_zones(registry, zones, resigned, on_serial)
        except HyperMeshError as exc:
            log.warning("registry sweep failed", extra={"error": str(exc)})
            continue
        for name in expired:
            zones.remove(name)
            log.info("registration expired", extra={"tld": name})
        for name in resigned:
            log.info("zone signed again in full", extra={"tld": name})
