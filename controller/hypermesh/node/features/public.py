"""The public interface: the node's QUIC endpoint (HTTP/3 and DNS over QUIC on one UDP port),
behind the public gate."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.interfaces import PublicGate
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.address import parse_address


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
            tcp_twin=_fixed_tcp_ports(config),
        )
        stack.callback(endpoint.close)
        node.addresses.public = endpoint.address
        node.endpoint = endpoint.server


def _fixed_tcp_ports(config: NodeConfig) -> set[int]:
    """The TCP port numbers the node's config names for listeners of its own (the operator's
    certificate's, the web listener's): never the public UDP port's number when that is any,
    since the TLS listener takes that number on TCP too."""
    ports: set[int] = set()
    if config.tls is not None:
        ports.add(parse_address(config.tls.listen_on(config.host))[1])
    if config.web_listen is not None:
        ports.add(parse_address(config.web_listen)[1])
    return ports
