"""The features a node is made of, in the order they open (``node.feature``).

Each module here is one feature and imports none of the others; what one offers the next it
leaves on the ``NodeContext``. A new feature is one more module and one more line below.
"""

from __future__ import annotations

from hypermesh.node.feature import Feature
from hypermesh.node.features.chain import ChainFeature
from hypermesh.node.features.directory import DirectoryFeature
from hypermesh.node.features.dns import DnsFeature
from hypermesh.node.features.federation import FederationFeature
from hypermesh.node.features.messaging import MessagingFeature
from hypermesh.node.features.metrics import MetricsFeature
from hypermesh.node.features.mirror import MirrorFeature
from hypermesh.node.features.paths import PathsFeature
from hypermesh.node.features.private import PrivateInterface
from hypermesh.node.features.public import PublicInterface
from hypermesh.node.features.registry import RegistryFeature
from hypermesh.node.features.relay import RelayFeature
from hypermesh.node.features.resolver import ResolverFeature
from hypermesh.node.features.status import StatusFeature
from hypermesh.node.features.tls_tcp import TlsTcpFeature
from hypermesh.node.features.tunnels import TunnelsFeature
from hypermesh.node.features.web import WebFeature

FEATURES: tuple[Feature, ...] = (
    RegistryFeature(),  # offers: revocations, its administrator as an operator
    MirrorFeature(),  # offers: revocations (the anchors), the DNS fallback, its state
    ChainFeature(),  # needs: revocations; offers: the chain writer, the chain follower
    MessagingFeature(),  # needs: the chain writer
    FederationFeature(),  # offers: who federated keys are
    DnsFeature(),  # needs: the DNS fallback; offers: the DNS over QUIC handler
    ResolverFeature(),  # needs: the DNS handler, the mirror's anchors (or the registry's)
    MetricsFeature(),
    PublicInterface(),  # needs: revocations, operators, federation, the DNS handler
    PrivateInterface(),  # needs: the same
    RelayFeature(),  # needs: the public endpoint; offers: its service over TLS on TCP
    TlsTcpFeature(),  # needs: the public port (TCP, same number), the DNS handler, the relay
    PathsFeature(),  # needs: the public endpoint; offers: the paths (reflexive, home relay)
    TunnelsFeature(),  # needs: the public gate
    StatusFeature(),  # needs: the interfaces' addresses
    DirectoryFeature(),  # needs: the interfaces' addresses and the paths (publishes the record)
    WebFeature(),  # needs: the public interface's port
)
"""Every feature a node may have, in opening order (each opens only if its config asks)."""

__all__ = ["FEATURES"]
