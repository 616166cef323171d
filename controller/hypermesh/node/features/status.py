"""What the node says of itself: ``GET /status`` (with the zones it serves, its mirror's state
and whether it is ready), ``GET /healthz`` and the members it knows at
``GET /network/v1/members``. It opens after the interfaces, whose addresses it reports."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.readiness import readiness
from hypermesh.node.routes import NodeView, add_members_route, add_node_routes
from hypermesh.node.runtime import RuntimeInfo
from hypermesh.registry.zones import serial_of


class StatusFeature:
    """Every node answers for itself."""

    name = "status"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        runtime = node.runtime()
        view = NodeView(node.config, runtime, node.started_monotonic, lambda: _served(node))
        add_node_routes(node.router, view)
        add_members_route(node.router, lambda: _members(node, runtime))


def _served(node: NodeContext) -> dict[str, object]:
    """What ``/status`` says of the zones served: each serial, the mirror's state, whether
    the node is ready (``node.readiness``), and the config it runs (``configDigest``, and
    ``reloadRefused`` while the last config it was told to reload is refused: ``node.reload``)."""
    zones = sorted(node.zones.zones().items())
    out: dict[str, object] = {"zones": {origin.to_text(): serial_of(z) for origin, z in zones}}
    out["configDigest"] = node.config_digest
    if node.reload_refused is not None:
        out["reloadRefused"] = node.reload_refused
    if node.mirror is not None:
        out["mirror"] = node.mirror.status()
    out["readiness"] = readiness(node.mirror, node.chains)
    return out


def _members(node: NodeContext, runtime: RuntimeInfo) -> list[dict[str, object]]:
    """This node, its registry and its peers, each with its address and node ID."""
    config = node.config
    me: dict[str, object] = {
        "name": config.name,
        "address": runtime.address,
        "identity": runtime.identity,
        "roles": list(config.roles),
    }
    known = [(node.upstream(config.registry), ["registry"])]
    known += [(node.upstream(upstream), []) for upstream in config.peers]
    others: list[dict[str, object]] = [
        {"address": p.address, "identity": p.node_id, "roles": roles}
        for p, roles in known
        if p is not None and p.node_id
    ]
    return [me, *others]
