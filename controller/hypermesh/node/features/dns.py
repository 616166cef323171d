"""DNS: the zones the node serves, answered over HTTPS (``/dns-query``) and, through the
interfaces that open after it, over QUIC; a mirror's fallback forwards what they do not hold."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.doq import DnsHandler
from hypermesh.errors import HyperMeshError
from hypermesh.node.config import DOQ_PORT, NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.metrics import SyncDnsHandler
from hypermesh.node.routes import Fallback, add_dns_routes
from hypermesh.transport.address import format_address

log = logging.getLogger("hypermesh.dns")


class DnsFeature:
    """Every node answers DNS for the zones it serves."""

    name = "dns"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        engine = DnsEngine(node.zones)
        add_dns_routes(node.router, engine, node.metrics, node.dns_fallback)
        fallback = node.dns_fallback

        def handler(transport: str) -> DnsHandler:
            local = node.metrics.metered(transport, engine.answer)
            return local if fallback is None else _forwarding(local, fallback)

        node.dns_handler = handler("doq")
        node.dns_handler_for = handler
        if node.config.dns_workers > 1:
            await _open_workers(node, stack)


async def _open_workers(node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
    """DNS over QUIC from ``dns_workers`` processes on ``dns_listen`` (``hypermesh.dns.workers``:
    imported only by a node that asks for them)."""
    from hypermesh.dns.workers import DnsWorkers, WorkerQueries
    from hypermesh.node.dns_worker import MODULE

    config = node.config
    if config.public_policy is not None:
        raise HyperMeshError(
            "dns_workers: the DNS workers do not apply the network's public InterfacePolicy; "
            "a node under one answers DNS on its own port only (dns_workers 1)"
        )
    listen = config.dns_listen or format_address(config.host, DOQ_PORT)
    limits = dataclasses.asdict(config.limits)
    workers = DnsWorkers(
        node.zones, node.identity, listen, config.dns_workers, limits, module=MODULE
    )
    try:
        await workers.start()
    except OSError as exc:
        raise HyperMeshError(f"dns_listen: cannot listen on UDP {listen}: {exc.strerror}") from None
    stack.push_async_callback(workers.close)
    node.metrics.registry.register(WorkerQueries(workers))
    log.info("DNS workers serve", extra={"address": workers.address, "pids": workers.pids})


def _forwarding(local: SyncDnsHandler, fallback: Fallback) -> DnsHandler:
    """``local``, with what it answers passed through ``fallback`` (a mirror forwards what
    its copies do not hold)."""

    def forwarding(query: bytes) -> bytes | Awaitable[bytes | None] | None:
        answer = local(query)
        return answer if answer is None else fallback(query, answer)

    return forwarding
