"""Federation: the members of the networks federated with this node's, from their registries'
signed anchors, so that the gates admit them as ``NETWORK/MEMBER``."""

from __future__ import annotations

import contextlib
import functools

from hypermesh.mirror.federation import FederatedNetwork, Federation
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext, start_task


class FederationFeature:
    """Follows the registries of the federated networks the config names."""

    name = "federation"

    def enabled(self, config: NodeConfig) -> bool:
        return bool(config.federation)

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        networks = [
            FederatedNetwork(f.name, functools.partial(node.upstream, f.registry))
            for f in node.config.federation
        ]
        federation = Federation(networks, identity=node.identity)
        start_task(stack, federation.run())
        node.federated = federation.member
