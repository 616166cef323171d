"""The node's Prometheus metrics at ``GET /metrics`` (the features before it count into them)."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.metrics import add_metrics_route


class MetricsFeature:
    """Every node serves its metrics."""

    name = "metrics"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        add_metrics_route(node.router, node.metrics)
        node.metrics.watch_node(node)
