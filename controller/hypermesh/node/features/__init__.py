"""The features a node is made of, in the order they open (``node.feature``).

Each module here is one feature and imports none of the others; what one offers the next it
leaves on the ``NodeContext``. A new feature is one more module and one more line below.

The list names each feature by its module and says, from the config alone, whether a node has
it; a feature's module is imported only when a node opens it (``LazyFeature``), so a node
loads only what its roles use (the registry's database layer on the registry's node, the
resolver on a resolver, …): less memory and a quicker start. ``preload`` imports the ones
most nodes open, for a parent that forks nodes (``hypermesh.drivers.forkserver``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypermesh.node.config import NodeConfig
    from hypermesh.node.feature import Feature, NodeContext


@dataclass(frozen=True, slots=True)
class LazyFeature:
    """A feature by name: whether the config asks for it, answered without importing it, and
    its module imported (once) when it opens."""

    name: str
    module: str
    """The module under ``hypermesh.node.features``."""
    attr: str
    """The feature's class in that module."""
    wanted: Callable[[NodeConfig], bool]

    def enabled(self, config: NodeConfig) -> bool:
        return self.wanted(config)

    def load(self) -> Feature:
        """The feature itself (its module imported now, if it was not yet)."""
        module = importlib.import_module(f"{__name__}.{self.module}")
        feature: Feature = getattr(module, self.attr)()
        return feature

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        await self.load().open(node, stack)


def _always(config: NodeConfig) -> bool:
    return True


def _has_registry(config: NodeConfig) -> bool:
    return config.registry is not None or "registry" in config.roles


FEATURES: tuple[LazyFeature, ...] = (
    # offers: revocations, its administrator as an operator
    LazyFeature("registry", "registry", "RegistryFeature", lambda c: "registry" in c.roles),
    # offers: revocations (the anchors), the DNS fallback, its state
    LazyFeature(
        "mirror",
        "mirror",
        "MirrorFeature",
        lambda c: "registry" not in c.roles and c.registry is not None,
    ),
    # needs: revocations; offers: the chain writer, the chain follower
    LazyFeature("chain", "chain", "ChainFeature", lambda c: c.chain),
    # needs: the chain writer
    LazyFeature("messaging", "messaging", "MessagingFeature", lambda c: c.chain),
    # offers: who federated keys are
    LazyFeature("federation", "federation", "FederationFeature", lambda c: bool(c.federation)),
    # needs: the DNS fallback; offers: the DNS over QUIC handler
    LazyFeature("dns", "dns", "DnsFeature", _always),
    # needs: the DNS handler, the mirror's anchors (or the registry's)
    LazyFeature("resolver", "resolver", "ResolverFeature", lambda c: c.resolver is not None),
    LazyFeature("metrics", "metrics", "MetricsFeature", _always),
    # needs: revocations, operators, federation, the DNS handler
    LazyFeature("public", "public", "PublicInterface", _always),
    # needs: the same
    LazyFeature("private", "private", "PrivateInterface", lambda c: c.private_listen is not None),
    # needs: the public endpoint; offers: its service over TLS on TCP
    LazyFeature("relay", "relay", "RelayFeature", lambda c: "relay" in c.roles),
    # needs: the public port (TCP, same number), the DNS handler, the relay
    LazyFeature("tls", "tls_tcp", "TlsTcpFeature", _always),
    # needs: the public endpoint; offers: the paths (reflexive, home relay)
    LazyFeature("paths", "paths", "PathsFeature", lambda c: _has_registry(c) or bool(c.relays)),
    # needs: the public gate
    LazyFeature("tunnels", "tunnels", "TunnelsFeature", lambda c: c.ephemeral_listen is not None),
    # needs: the interfaces' addresses
    LazyFeature("status", "status", "StatusFeature", _always),
    # needs: the interfaces' addresses and the paths (publishes the record)
    LazyFeature("directory", "directory", "DirectoryFeature", _has_registry),
    # needs: the paths, the registry's and the chain's routes (reads them through the router)
    LazyFeature("dashboard", "dashboard", "DashboardFeature", _always),
    # needs: the public interface's port
    LazyFeature("web", "web", "WebFeature", lambda c: c.web_listen is not None),
)
"""Every feature a node may have, in opening order (each opens only if its config asks)."""

COMMON: tuple[str, ...] = (
    *("mirror", "chain", "messaging", "dns", "metrics", "public", "private"),
    *("tls", "paths", "status", "directory", "dashboard"),
)
"""The features most nodes open (a mirror of a network with its chain, on public and private
interfaces): what a parent that forks nodes imports beforehand."""


def preload(names: tuple[str, ...] = COMMON) -> None:
    """Import the modules of the features ``names`` now (their ``open`` then imports nothing)."""
    for feature in FEATURES:
        if feature.name in names:
            feature.load()


__all__ = ["COMMON", "FEATURES", "LazyFeature", "preload"]
