"""The private interface: a second QUIC endpoint with the same API, for the network's members
(admitted by the node ID they prove, under the private InterfacePolicy)."""

from __future__ import annotations

import contextlib

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.interfaces import PrivateGate
from hypermesh.node.runtime import previous_port
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.address import parse_address


class PrivateInterface:
    """A node with ``private_listen`` has one."""

    name = "private"

    def enabled(self, config: NodeConfig) -> bool:
        return config.private_listen is not None

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        config = node.config
        assert config.private_listen is not None
        gate = PrivateGate.of(
            config.name,
            config.directory,
            config.private_policy,
            node.revoked(),
            node.federated,
            frozenset(node.operators),
            node.listed_members(),
        )
        node.follow(gate, lambda c: c.private_policy)
        host, port = parse_address(config.private_listen)
        endpoint = await bind_endpoint(
            host,
            port,
            configuration=server_configuration(node.identity),
            router=node.router,
            dns_answer=node.dns_handler,
            prefer_port=previous_port(node.node_dir, config.private_listen, "private"),
            gate=gate.check,
            peer_of=gate.who,
            limits=config.limits,
        )
        stack.callback(endpoint.close)
        node.addresses.private = endpoint.address
