"""The mirror role: every node that is not the registry keeps verified copies of the
registry's zones, serves them, and forwards what its copies do not answer."""

from __future__ import annotations

import contextlib

from hypermesh.mirror.cache import ForwardingCache
from hypermesh.mirror.follower import Follower
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.node.mirror_api import add_mirror_routes
from hypermesh.revocation import Lookup, Revocation


class MirrorFeature:
    """Follows the network's registry (and the other mirrors while it is out of reach)."""

    name = "mirror"

    def enabled(self, config: NodeConfig) -> bool:
        return "registry" not in config.roles and config.registry is not None

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        config = node.config
        follower = Follower(
            node.zones,
            lambda: node.upstream(config.registry),
            node.mirror_peers,
            identity=node.identity,
            expire=config.mirror_expire,
            on_serial=node.metrics.zone_serial,
        )
        cache = ForwardingCache(
            lambda: node.upstream(config.registry), follower.knows, identity=node.identity
        )
        node.zones.listen(cache.zone_changed)
        start_task(stack, follower.run())
        start_task(stack, follower.keep_marking_stale())
        add_mirror_routes(node.router, follower)
        node.mirror = follower
        node.dns_fallback = cache.answer
        node.revocation_sources.append(revocation_in_anchors(follower))


def revocation_in_anchors(follower: Follower) -> Lookup:
    """The revocation of a node ID in the registry's anchors, as the mirror holds them."""

    def of(node_id: str) -> Revocation | None:
        anchors = follower.state.anchors
        entry = anchors.revoked.get(node_id) if anchors is not None else None
        if entry is None:
            return None
        successor = entry.get("replacedBy")
        return Revocation(node_id, successor if isinstance(successor, str) else None)

    return of
