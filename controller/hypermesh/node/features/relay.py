"""The relay role: nodes that cannot reach each other directly reach each other through this one.

With ``relay`` among its roles, a node holds a ``RelayHub`` (``node.relay_hub``) and serves
relay attachments two ways: over QUIC on its public endpoint (ALPN ``hm-relay``, dispatched by
``node.server`` to ``node.relay_serve``) and over TLS on TCP, on the public interface's host and
the same port number as its UDP port, for nodes whose network lets no UDP through.

In a private network only members attach: the Nodes and Peers of the node's config, the members
the registry's anchors name, members of federated networks, the node's own key and its
operators; revoked keys never. In a public network anyone attaches, under
``RelayLimits.public()`` (short circuits, attachments rate-limited per source).

Its counters are the node's metrics: ``hypermesh_relay_attached``,
``hypermesh_relay_bytes_total``, ``hypermesh_relay_refused_total{reason}`` and the circuits'.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.relay_hub import RelayHub, RelayLimits
from hypermesh.node.relay_tcp import open_tcp_listener
from hypermesh.transport.address import parse_address

ROLE = "relay"


class RelayFeature:
    """A relay for the network's nodes (role ``relay``); opens after the public interface,
    whose address it shares."""

    name = ROLE

    def enabled(self, config: NodeConfig) -> bool:
        return ROLE in config.roles

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        config = node.config
        public = config.network_mode == "public"
        hub = RelayHub(
            node.identity,
            None if public else node.admits_member(),
            RelayLimits.public() if public else RelayLimits(),
            network=config.network,
        )
        stack.callback(hub.close)
        if node.addresses.public is None:
            raise RuntimeError("the relay opens after the public interface, whose port it shares")
        host, port = parse_address(node.addresses.public)
        try:
            server = await open_tcp_listener(hub, host, port, node.identity)
        except OSError as exc:
            raise OSError(
                exc.errno, f"the relay cannot listen on TCP {node.addresses.public}: {exc.strerror}"
            ) from exc

        async def close_listener() -> None:
            server.close()
            hub.close()
            await server.wait_closed()

        stack.push_async_callback(close_listener)
        collector = RelayCollector(hub)
        node.metrics.registry.register(collector)
        stack.callback(node.metrics.registry.unregister, collector)
        node.relay_hub = hub
        node.relay_serve = hub.serve_stream


class RelayCollector(Collector):
    """The hub's counters as Prometheus metrics, read at each scrape (nothing on the hot path)."""

    def __init__(self, hub: RelayHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        stats = self.hub.stats
        yield GaugeMetricFamily(
            "hypermesh_relay_attached", "Nodes attached to this relay now.", value=stats.attached
        )
        yield CounterMetricFamily(
            "hypermesh_relay_bytes",
            "Bytes of packets this relay forwarded between nodes.",
            value=stats.bytes_relayed,
        )
        yield CounterMetricFamily(
            "hypermesh_relay_packets",
            "Packets this relay forwarded between nodes.",
            value=stats.packets_relayed,
        )
        refused = CounterMetricFamily(
            "hypermesh_relay_refused",
            "Attachments this relay refused, by reason (member, full, rate, signature, "
            "protocol, timeout).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield GaugeMetricFamily(
            "hypermesh_relay_circuits",
            "Circuits open through this relay now.",
            value=stats.circuits,
        )
        yield CounterMetricFamily(
            "hypermesh_relay_limits",
            "Circuits ended, or refused, by a limit of this relay.",
            value=stats.limits_hit,
        )
        yield CounterMetricFamily(
            "hypermesh_relay_dropped",
            "Packets this relay dropped because the receiving node read too slowly.",
            value=stats.dropped,
        )
