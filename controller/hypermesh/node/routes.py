"""The node's HTTP API: ``GET /status``, ``GET /healthz`` and DNS over HTTPS at ``/dns-query``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.doh import DNS_MESSAGE, DOH_PATH, doh_query_bytes, handle_doh
from hypermesh.node.config import NodeConfig
from hypermesh.node.metrics import NodeMetrics
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.runtime import RuntimeInfo


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the API may say about the node: its configuration and runtime facts."""

    config: NodeConfig
    """The configuration it started with."""
    runtime: RuntimeInfo
    """Pid, address, identity, start time."""
    started_monotonic: float
    """``time.monotonic()`` at start, for the uptime."""
    more: Callable[[], dict[str, object]] = field(default=dict)
    """More of the status, asked for each time (zones served, the mirror's state)."""

    def status(self) -> dict[str, object]:
        """The body of ``GET /status``."""
        return {
            "name": self.config.name,
            "network": self.config.network,
            "identity": self.runtime.identity,
            "address": self.runtime.address,
            "interfaces": list(self.config.interfaces),
            "roles": list(self.config.roles),
            "tags": list(self.config.tags),
            "version": self.runtime.version,
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 3),
            "pid": self.runtime.pid,
            "started_at": self.runtime.started_at,
            "generation": self.runtime.generation,
            "privateAddress": self.runtime.private,
            "ephemeralAddress": self.runtime.ephemeral,
            **self.more(),
        }


def add_node_routes(router: Router, view: NodeView) -> Router:
    """Route the node API for ``view`` on ``router`` (returned for chaining)."""

    async def status(_: Request) -> RouteResponse:
        return RouteResponse.json(view.status())

    async def healthz(_: Request) -> RouteResponse:
        return RouteResponse.json({"ok": True})

    router.add("/status", status)
    router.add("/healthz", healthz)
    return router


Fallback = Callable[[bytes, bytes], bytes | Awaitable[bytes]]
"""(query, the node's own answer) → the answer to send: where a mirror forwards what it
cannot answer itself (``ForwardingCache.answer``)."""


def add_dns_routes(
    router: Router,
    answerer: DnsEngine,
    metrics: NodeMetrics | None = None,
    fallback: Fallback | None = None,
) -> Router:
    """Route DNS over HTTPS (RFC 8484, GET and POST ``/dns-query``) to ``answerer``, and to
    ``fallback`` for what it refuses."""

    async def dns_query(request: Request) -> RouteResponse:
        started = time.perf_counter()
        result = handle_doh(
            answerer, request.method, request.query, request.header("content-type"), request.body
        )
        if fallback is not None and result.status == 200:
            query = request.body if request.method == "POST" else doh_query_bytes(request.query)
            answered = fallback(query, result.message)
            if not isinstance(answered, bytes):
                answered = await answered
            if answered is not result.message:
                result = dataclasses.replace(result, message=answered, max_age=0)
        if metrics is not None and result.status in (200, 400):
            answer = result.message if result.status == 200 else None
            metrics.observe("doh", answer, time.perf_counter() - started)
        if result.status != 200:
            return RouteResponse.error(result.status, result.error)
        return RouteResponse(200, result.message, DNS_MESSAGE, result.headers)

    router.add(DOH_PATH, dns_query, methods=("GET", "POST"))
    return router


def add_members_route(router: Router, members: Callable[[], list[dict[str, object]]]) -> Router:
    """``GET /network/v1/members``: the nodes of the network this node knows (itself, its
    registry, its peers), each with its address and node ID: how nodes find each other."""

    async def serve(_: Request) -> RouteResponse:
        return RouteResponse.json({"members": members()})

    router.add("/network/v1/members", serve)
    return router
