"""The relay role: nodes that cannot reach each other directly reach each other through this one.

With ``relay`` among its roles, a node holds a ``RelayHub`` (``node.relay_hub``) and serves
relay attachments two ways: over QUIC on its public endpoint (ALPN ``hm-relay``, dispatched by
``node.server`` to ``node.relay_serve``) and over TLS on TCP, on the public interface's host and
the same port number as its UDP port, for nodes whose network lets no UDP through: it leaves
that service (``node.relay_tcp.relay_service``) in ``node.tls_services`` for the node's TLS
listener (``features.tls_tcp``), which opens after it and, for a relay, fails the node's start
when it cannot listen.

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
from hypermesh.node.relay_tcp import relay_service
from hypermesh.transport.relaywire import RELAY_ALPN

ROLE = "relay"


class RelayFeature:
    """A relay for the network's nodes (role ``relay``); opens after the public interface,
    whose endpoint asks it for attachments, and before the TLS listener, which serves its
    attachments over TCP."""

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
        node.tls_services[RELAY_ALPN] = relay_service(hub)
        stack.callback(node.tls_services.pop, RELAY_ALPN, None)
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
