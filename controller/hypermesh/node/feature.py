"""What a node is made of: features, each one role it plays, opened in order on one exit stack.

A feature (``Feature``) says whether the node's config asks for it (``enabled``) and, when it
does, opens what it holds (``open``): databases, background tasks, sockets, each with its
closing pushed on the ``AsyncExitStack`` it is given, and the paths it answers routed on the
node's ``Router``. ``node.process.serve`` opens the features of ``node.features.FEATURES`` in
that order and serves until told to stop; the stack then closes everything in the reverse
order, and the same happens when a feature fails to open: the features opened before it are
closed, the rest were never opened.

Features never import one another. What one offers those after it (a registry its revocations
and its administrator's key, a mirror its DNS fallback, the chain its appender, an interface
its address) it leaves on the ``NodeContext``, the one place they meet. The order of
``FEATURES`` is therefore the order of those offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hypermesh import __version__
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.store import GroupAppender
from hypermesh.dns.doq import DnsHandler
from hypermesh.dns.source import StaticZones
from hypermesh.mirror.follower import Follower
from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.hostaddresses import is_wildcard
from hypermesh.node.interfaces import Federated, PrivateGate, PublicGate
from hypermesh.node.metrics import NodeMetrics
from hypermesh.node.router import Router
from hypermesh.node.routes import Fallback
from hypermesh.node.runtime import RuntimeInfo
from hypermesh.node.server import Gate, RelayServe
from hypermesh.node.tls_tcp import TlsService
from hypermesh.registry.client import RegistryClient
from hypermesh.revocation import Lookup, Revocation, Revocations
from hypermesh.timefmt import rfc3339
from hypermesh.transport.address import PeerRef, format_address, parse_address
from hypermesh.transport.endpoint import MeshEndpoint
from hypermesh.transport.identity import Identity

log = logging.getLogger("hypermesh.node")


class Feature(Protocol):
    """One role of a node (its DNS, its registry, its chain, an interface, …)."""

    @property
    def name(self) -> str:
        """What the feature is called (``dns``, ``registry``, …)."""
        ...

    def enabled(self, config: NodeConfig) -> bool:
        """Whether ``config`` asks for this feature."""
        ...

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        """Open what the feature holds, pushing each closing on ``stack`` as soon as it is
        opened; route its paths on ``node.router``; leave on ``node`` what it offers the
        features after it."""
        ...


@dataclass(frozen=True, slots=True)
class ChainWriter:
    """How a feature appends to the node's own chain: through the appender, once ``ready``
    (set when the node has taken back from its peers any of its own blocks it had lost)."""

    appender: GroupAppender
    ready: asyncio.Event


@dataclass(slots=True)
class Addresses:
    """Where the node's interfaces are bound (``host:port``), as each one opens."""

    public: str | None = None
    private: str | None = None
    ephemeral: str | None = None
    web: str | None = None
    tls: str | None = None
    """The TLS listener on TCP (DNS over TLS and HTTP/2, the relay), when it is open."""


Reloader = Callable[[NodeConfig], Callable[[], None]]
"""Prepares to take a reloaded config (``ValueError`` when it cannot, nothing changed yet) and
returns the call that swaps it in."""


@dataclass(eq=False)
class NodeContext:
    """The node being started, as its features see it: what it was given, and what each
    feature offers the ones opened after it."""

    config: NodeConfig
    identity: Identity
    metrics: NodeMetrics
    router: Router = field(default_factory=Router)
    """The node's API, served on its public and private interfaces (and over TCP, read-only)."""
    zones: StaticZones = field(default_factory=StaticZones)
    """The zones it serves over DoQ and DoH (a registry's own, or a mirror's copies)."""
    started_at: str = field(default_factory=lambda: rfc3339(datetime.datetime.now(datetime.UTC)))
    started_monotonic: float = field(default_factory=time.monotonic)
    operators: set[str] = field(default_factory=set)
    new_key: bool = False
    """No node process had started with the node's key before this one (``NEW_KEY_MARK``): no
    peer can hold a block it signed, so there is none of its own chain to take back from them
    (``ChainFollower.recover_own``)."""
    """Keys the gates admit as this node's own besides its key (a registry's administrator)."""
    revocation_sources: list[Lookup] = field(default_factory=list)
    """Where revoked keys are known: the registry's table, or its anchors as a mirror holds
    them. Asked in order, at every question."""
    revocations: Revocations = field(init=False)
    dns_fallback: Fallback | None = None
    """Where a mirror forwards the DNS queries its copies do not answer."""
    dns_handler: DnsHandler | None = None
    """What answers DNS over QUIC on the public and private interfaces."""
    dns_handler_for: Callable[[str], DnsHandler] | None = None
    """What answers DNS over another transport (``dot``; ``stub``, the node's own stub
    resolver), its queries counted under that transport's name."""
    mirror: Follower | None = None
    chains: ChainFollower | None = None
    chain_writer: ChainWriter | None = None
    federated: Federated | None = None
    """Who a key is in a federated network (``NETWORK/MEMBER``), when the node federates."""
    member_source: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    """The members the registry itself knows (static and joined), on the registry's node,
    which holds no mirror of its own anchors."""
    addresses: Addresses = field(default_factory=Addresses)
    endpoint: MeshEndpoint | None = None
    """The public interface's endpoint: the node's one UDP socket, which also carries its
    outgoing connections to peers, relayed paths and hole-punch probes."""
    relay_serve: RelayServe | None = None
    """How a relay attachment is served, on a node with role ``relay`` (set by the relay
    feature, which opens after the public interface: the endpoint asks for it per
    connection)."""
    tls_services: dict[str, TlsService] = field(default_factory=dict)
    """What the node serves on its TLS listener on TCP besides DNS, by ALPN (the relay's
    ``hm-relay``), left by the features that open before the listener (``features.tls_tcp``)."""
    relay_hub: Any = None
    """The relay's hub (``node.relay_hub.RelayHub``), on a node with role ``relay``."""
    paths: Any = None
    """The node's paths to its peers (``node.paths.PathManager``), once opened."""
    config_digest: str = ""
    """The digest of the config file the node runs (``node.reload``), in ``GET /status``."""
    reload_refused: dict[str, str] | None = None
    """The last config the node refused to reload (``{"digest", "error"}``), until one loads."""
    reloaders: list[Reloader] = field(default_factory=list)
    """What takes a reloaded config's members, policies and federation (``reload``): each
    feature that holds them adds its own as it opens."""
    _public_gate: Gate | None = field(default=None, init=False)
    _public_gate_made: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.revocations = Revocations(self._revocation_of)

    @classmethod
    def starting(cls, config: NodeConfig, identity: Identity) -> NodeContext:
        """A context for a node starting now, with its metrics."""
        metrics = NodeMetrics(
            name=config.name, network=config.network, identity=identity.node_id, version=__version__
        )
        return cls(config, identity, metrics)

    @property
    def node_dir(self) -> Path:
        return Path(self.config.node_dir)

    def _revocation_of(self, node_id: str) -> Revocation | None:
        return next(
            (found for found in (of(node_id) for of in self.revocation_sources) if found), None
        )

    def revoked(self) -> Callable[[str], bool] | None:
        """The gates' test of a revoked key; None when the node knows of no revocations."""
        return self.revocations.is_revoked if self.revocation_sources else None

    def follow(
        self,
        gate: PrivateGate | PublicGate,
        policy: Callable[[NodeConfig], Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Keep ``gate`` on the members of the config the node runs (and on the policy
        ``policy`` picks from it), across reloads."""

        def reloader(config: NodeConfig) -> Callable[[], None]:
            return gate.swap(config.directory, policy(config) if policy is not None else None)

        self.reloaders.append(reloader)

    def reload(self, config: NodeConfig) -> None:
        """Run ``config`` from now on: every reloader prepares first (``ValueError`` when one
        cannot take it: nothing is changed then), then all swap at once, on the event loop.
        Only the fields of ``node.reload.RELOADED`` may differ (the caller checks)."""
        swaps = [prepare(config) for prepare in self.reloaders]
        self.config = config
        for swap in swaps:
            swap()

    def public_gate(self) -> Gate | None:
        """The public interface's gate (made once: it counts rate limits), also the tunnels'
        when the ephemeral interface has no policy of its own. None: it admits everyone."""
        if not self._public_gate_made:
            config, revoked = self.config, self.revoked()
            if config.public_policy is not None or revoked is not None:
                gate = PublicGate.of(
                    config.name,
                    config.directory,
                    config.public_policy,
                    revoked,
                    self.federated,
                    frozenset(self.operators),
                    self.listed_members(),
                )
                self.follow(gate, lambda c: c.public_policy)
                self._public_gate = gate.check
            self._public_gate_made = True
        return self._public_gate

    def listed_members(self) -> Callable[[], Mapping[str, Mapping[str, Any]]] | None:
        """Where the gates read the members the registry names beyond the node's config: the
        anchors its mirror holds, or the registry's own list on the registry's node."""
        return self.mirror.member_entries if self.mirror is not None else self.member_source

    def upstream(self, upstream: Upstream | None) -> PeerRef | None:
        """Where ``upstream`` answers now (a local node: from its runtime file and key)."""
        return None if upstream is None else upstream.now()

    def registry_ref(self) -> PeerRef | None:
        """Where the node's registry answers now: the configured upstream (with its key), or
        this node itself on the registry's node (a wildcard bind asked on loopback)."""
        if "registry" in self.config.roles:
            address = self.addresses.public
            if address is None:
                return None
            host, port = parse_address(address)
            if is_wildcard(host):
                host = "::1" if ":" in host else "127.0.0.1"
            return PeerRef(format_address(host, port), self.identity.node_id)
        found = self.upstream(self.config.registry)
        return found if found is not None and found.node_id else None

    def registry_client(self, registry: PeerRef) -> RegistryClient:
        """A client of ``registry`` proving the node's key, over the node's paths once they
        are open (direct, or through its home relay when UDP does not get through), unless
        the node is the registry."""
        opener = None
        if self.paths is not None and registry.node_id and "registry" not in self.config.roles:
            opener = self.paths.opener(registry.node_id, registry.address, "registry")
        return RegistryClient(
            registry.address, registry.node_id, identity=self.identity, opener=opener
        )

    def admits_member(self) -> Callable[[str], bool]:
        """Whether a node ID is a member of the node's network now (its config's directory,
        the registry's listed members, federated members, the node itself and its operators;
        never a revoked key), asked at each question so later joins and revocations count."""
        config = self.config
        gate = PrivateGate.of(
            config.name,
            config.directory,
            None,
            revoked=self.revoked(),
            federated=self.federated,
            listed=self.listed_members(),
        )
        self.follow(gate)
        own = self.identity.node_id

        def admits(node_id: str) -> bool:
            if gate.revoked(node_id):
                return False
            return node_id == own or node_id in self.operators or gate.named(node_id) is not None

        return admits

    def mirror_peers(self) -> list[PeerRef]:
        """The other mirrors, as far as they answer now."""
        return [p for p in map(self.upstream, self.config.peers) if p is not None]

    def chain_peers(self) -> list[PeerRef]:
        """The peers as the chain follower needs them: reachable now, key known."""
        found = [self.upstream(u) for u in (*self.config.peers, self.config.registry)]
        return [p for p in found if p is not None and p.node_id]

    def runtime(self) -> RuntimeInfo:
        """What ``runtime.json`` says of the node once its public interface is bound."""
        assert self.addresses.public is not None, "the public interface opens first"
        return RuntimeInfo(
            pid=os.getpid(),
            address=self.addresses.public,
            identity=self.identity.node_id,
            started_at=self.started_at,
            version=__version__,
            generation=self.config.generation,
            web=self.addresses.web,
            private=self.addresses.private,
            ephemeral=self.addresses.ephemeral,
        )


def start_task(stack: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` in the background until the stack closes, then cancel it."""
    task = asyncio.create_task(work)
    stack.push_async_callback(_stop, task)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.error("background task had failed", exc_info=task.exception())
