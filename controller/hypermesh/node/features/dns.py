"""DNS: the zones the node serves, answered over HTTPS (``/dns-query``) and, through the
interfaces that open after it, over QUIC; a mirror's fallback forwards what they do not hold."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.doq import DnsHandler
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.metrics import SyncDnsHandler
from hypermesh.node.routes import Fallback, add_dns_routes


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


def _forwarding(local: SyncDnsHandler, fallback: Fallback) -> DnsHandler:
    """``local``, with what it answers passed through ``fallback`` (a mirror forwards what
    its copies do not hold)."""

    def forwarding(query: bytes) -> bytes | Awaitable[bytes | None] | None:
        answer = local(query)
        return answer if answer is None else fallback(query, answer)

    return forwarding
