"""The public interface: the node's QUIC endpoint (HTTP/3 and DNS over QUIC on one UDP port),
behind the public gate."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.interfaces import PublicGate
from hypermesh.node.server import bind_endpoint, server_configuration


class PublicInterface:
    """Every node has one; its address is the node's address."""

    name = "public"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        config = node.config
        listed = node.mirror.member_entries if node.mirror is not None else None
        counted_as = PublicGate.of(
            config.name, config.directory, None, federated=node.federated, listed=listed
        )
        node.follow(counted_as)
        endpoint = await bind_endpoint(
            config.host,
            config.port,
            configuration=server_configuration(node.identity, relay="relay" in config.roles),
            router=node.router,
            dns_answer=node.dns_handler,
            prefer_port=config.prefer_port,
            gate=node.public_gate(),
            peer_of=counted_as.who,
            limits=config.limits,
            relay=lambda: node.relay_serve,
        )
        stack.callback(endpoint.close)
        node.addresses.public = endpoint.address
        node.endpoint = endpoint.server
