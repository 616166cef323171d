"""The node's local validating stub resolver (``spec.resolver``): plain DNS over UDP and TCP
for the operating system, HyperMesh names answered from the node's own DNS handler (its
mirror's copies and fallback cache, or the registry's zones) and checked from the registry's
key before they are sent, with AD; other names forwarded to the system's resolvers or refused
(``hypermesh.resolver``). Its status is kept in ``resolver.json`` in the node's directory."""

from __future__ import annotations

import contextlib
import inspect
import logging

import dns.exception
import dns.message

from hypermesh.dns.doq import DnsHandler
from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.verify import fetch_anchors
from hypermesh.node.config import NodeConfig, ResolverConfig
from hypermesh.node.feature import NodeContext
from hypermesh.resolver import KeptAnchors, Resolver, Settings, Upstreams, running, system_upstreams

log = logging.getLogger("hypermesh.node")

STATUS_FILE = "resolver.json"
"""The stub's status in the node's directory (``hmctl resolver status`` reads it)."""


class ResolverFeature:
    """A node with ``spec.resolver`` runs a stub resolver for its host."""

    name = "resolver"

    def enabled(self, config: NodeConfig) -> bool:
        return config.resolver is not None

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        config = node.config.resolver
        assert config is not None
        source = NodeSource(node)
        stack.push_async_callback(source.kept.close)
        resolver = Resolver(
            Settings(listen=config.listen, forward=config.forward), source, upstreams_of(config)
        )
        bound = await stack.enter_async_context(running(resolver, node.node_dir / STATUS_FILE))
        log.info("stub resolver listening", extra={"address": bound.address})


def upstreams_of(config: ResolverConfig) -> Upstreams:
    """The configured upstreams, or the system's (read once, at start)."""
    if config.upstreams is not None:
        return Upstreams(config.upstreams)
    return Upstreams(system_upstreams(config.resolv_conf, config.listen))


class NodeSource:
    """The node's own DNS handler, and the registry's anchors as the node holds them (its
    mirror's), or, on the registry's node, as its registry signs them."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self._handler: DnsHandler | None = None
        """The node's DNS, counted as ``stub`` (made at the first question: the DNS feature
        may open after this one)."""
        self.kept = KeptAnchors(self._fetch_own)

    def describe(self) -> str:
        return f"node {self.node.config.name} (this node)"

    async def anchors(self) -> Anchors | None:
        mirror = self.node.mirror
        if mirror is not None:
            return mirror.state.anchors
        return await self.kept.get()

    async def _fetch_own(self) -> Anchors:
        registry = self.node.registry_ref()
        if registry is None or registry.node_id is None:
            raise HyperMeshError("the registry is not known")
        return await fetch_anchors(
            registry.address, registry.node_id, registry.node_id, caller=self.node.identity
        )

    async def ask(self, query: dns.message.Message) -> dns.message.Message:
        if self._handler is None and self.node.dns_handler_for is not None:
            self._handler = self.node.dns_handler_for("stub")
        handler = self._handler
        if handler is None:
            raise TransportError("the node does not answer DNS")
        answer = handler(query.to_wire())
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is None:
            raise TransportError("the node sent no answer")
        try:
            return dns.message.from_wire(answer)
        except dns.exception.DNSException as exc:
            raise TransportError(f"the node's answer is not DNS: {exc}") from exc
