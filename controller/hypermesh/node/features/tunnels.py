"""The ephemeral interface: a third QUIC endpoint that serves anonymous tunnels and nothing
else. A request arriving through a tunnel is answered by the node's own API, as an anonymous
caller, behind the ephemeral policy (the public gate when there is none)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task
from hypermesh.node.interfaces import PublicGate
from hypermesh.node.router import Router
from hypermesh.node.runtime import previous_port
from hypermesh.node.server import Gate, bind_endpoint, server_configuration
from hypermesh.node.tunnel_api import add_tunnel_routes, deliver_to
from hypermesh.transport.address import parse_address
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.onion import new_tunnel_key
from hypermesh.tunnel.relay import FORWARD_TIMEOUT, TunnelService

SWEEP_BUSY = 1.0
"""Seconds between sweeps of expired circuits while there are circuits."""
SWEEP_IDLE = 30.0
"""Seconds between sweeps while there are none: an idle node wakes no more often."""


class TunnelsFeature:
    """A node with ``ephemeral_listen`` serves tunnels (and relays them with role ``relay``)."""

    name = "tunnels"

    def enabled(self, config: NodeConfig) -> bool:
        return config.ephemeral_listen is not None

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        config = node.config
        assert config.ephemeral_listen is not None
        pool = ConnectionPool(None)  # relays forward anonymously: a hop learns no identity
        stack.push_async_callback(pool.aclose)

        async def relay_on(address: str, node_id: str, path: str, body: bytes) -> Any:
            return await pool.request(
                address, node_id, "POST", path, body=body, timeout=FORWARD_TIMEOUT
            )

        gate = _tunnel_gate(node)
        tunnels = TunnelService(
            node.identity,
            new_tunnel_key(),
            relay_on,
            deliver_to(node.router, gate),
            relays="relay" in config.roles,
        )
        stack.callback(tunnels.clear)
        start_task(stack, _sweep_tunnels(tunnels))
        host, port = parse_address(config.ephemeral_listen)
        endpoint = await bind_endpoint(
            host,
            port,
            configuration=server_configuration(node.identity, doq=False),
            router=add_tunnel_routes(Router(), tunnels),
            prefer_port=previous_port(node.node_dir, config.ephemeral_listen, "ephemeral"),
            gate=gate,
            limits=config.limits,
        )
        stack.callback(endpoint.close)
        node.addresses.ephemeral = endpoint.address


def _tunnel_gate(node: NodeContext) -> Gate | None:
    """The ephemeral policy's gate; without one, tunnel requests are held to the public's."""
    config = node.config
    if config.ephemeral_policy is None:
        return node.public_gate()
    gate = PublicGate.of(
        config.name,
        config.directory,
        config.ephemeral_policy,
        node.revoked(),
        node.federated,
        listed=node.listed_members(),
    )
    node.follow(gate, lambda c: c.ephemeral_policy)
    return gate.check


async def _sweep_tunnels(
    tunnels: TunnelService, busy: float = SWEEP_BUSY, idle: float = SWEEP_IDLE
) -> None:
    """Drop the circuits whose expiry has passed, with their keys: every ``busy`` seconds
    while the node holds circuits, every ``idle`` seconds while it holds none (a circuit past
    its expiry is refused when used whether it was swept or not: the sweep only frees its
    memory)."""
    while True:
        await asyncio.sleep(busy if len(tunnels) else idle)
        tunnels.sweep()
