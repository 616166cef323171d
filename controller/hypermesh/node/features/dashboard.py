"""The live dashboard (``node.dashboard``) at ``/dashboard/``: every node has one, on its
public interface over HTTP/3 and, with ``web_listen``, over HTTP/1.1 on TCP. Opening it only
routes three paths; nothing runs until somebody watches."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.dashboard import (
    DashboardHub,
    add_dashboard_routes,
    router_feeds,
    router_gather,
)
from hypermesh.node.feature import NodeContext


class DashboardFeature:
    """Every node serves its dashboard."""

    name = "dashboard"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        own = node.identity.node_id
        hub = DashboardHub(router_gather(node.router, own), router_feeds(node.router, own))
        members = node.admits_member()

        def admits(node_id: str) -> bool:
            return node_id in node.operators or members(node_id)

        add_dashboard_routes(node.router, hub, admits)
