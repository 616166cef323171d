"""A node serving the signed test zone, run in a thread for a module: the real features (DNS,
the public interface, the TLS listener on TCP) opened on a ``NodeContext`` as a node process
opens them, so that blocking clients (dnspython, kdig in a subprocess) can query it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hypermesh.dns.source import StaticZones
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.features.dns import DnsFeature
from hypermesh.node.features.public import PublicInterface
from hypermesh.node.features.tls_tcp import TlsTcpFeature
from hypermesh.node.metrics import NodeMetrics
from hypermesh.node.tls_tcp import spki_pin
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import SignedZone, make_zone, sign
from tests.harness.loop_thread import LoopThread


@dataclass(frozen=True)
class TcpNode:
    """Where the node answers: one port number, UDP (DoQ, DoH3) and TCP (DoT, DoH2)."""

    port: int
    node_id: str
    signed: SignedZone
    metrics: NodeMetrics

    @property
    def pin(self) -> str:
        return spki_pin(self.node_id)

    def answered(self, transport: str) -> float:
        """Queries the node counted under ``transport`` (``hypermesh_dns_queries_total``)."""
        registry = self.metrics.registry
        return sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "hypermesh_dns_queries"
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["transport"] == transport
        )


def node_config(
    base: Path, name: str, listen: str = "127.0.0.1:0", roles: tuple[str, ...] = ()
) -> NodeConfig:
    node_dir = base / name
    node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return NodeConfig(
        name=name,
        network="lab",
        listen=listen,
        prefer_port=None,
        interfaces=("public",),
        roles=roles,
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
    )


class NodeThread(LoopThread):
    """Opens the features in a thread with its own loop until ``stop``; every wait bounded."""

    def __init__(self, config: NodeConfig, zones: StaticZones) -> None:
        super().__init__("the node", timeout=20.0)
        self.config, self.zones = config, zones
        self.node: NodeContext | None = None

    def start(self) -> NodeContext:
        self.start_serving()
        assert self.node is not None
        return self.node

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        node = NodeContext.starting(self.config, Identity.generate())
        node.zones = self.zones
        for feature in (DnsFeature(), PublicInterface(), TlsTcpFeature()):
            await feature.open(node, stack)
        self.node = node


@pytest.fixture(scope="module")
def tcp_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpNode]:
    """One node for the module, serving the signed test zone on UDP and TCP."""
    signed = sign(make_zone())
    base = tmp_path_factory.mktemp("dns-tcp")
    thread = NodeThread(node_config(base, "alpha"), StaticZones([signed.zone]))
    try:
        node = thread.start()
        assert node.addresses.public is not None
        assert node.addresses.tls == node.addresses.public, "TCP on the UDP port's number"
        port = parse_address(node.addresses.public)[1]
        yield TcpNode(port, node.identity.node_id, signed, node.metrics)
    finally:
        thread.stop()
