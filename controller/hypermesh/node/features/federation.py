"""Federation: the members of the networks federated with this node's, from their registries'
signed anchors, so that the gates admit them as ``NETWORK/MEMBER``. A reloaded config
(``node.reload``) changes the networks followed: those it still names keep the members last
fetched, new ones are fetched at once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable

from hypermesh.mirror.federation import FederatedNetwork, Federation
from hypermesh.node.config import Federated, NodeConfig
from hypermesh.node.feature import NodeContext, start_task


class FederationFeature:
    """Follows the registries of the federated networks the config names."""

    name = "federation"

    def enabled(self, config: NodeConfig) -> bool:
        return bool(config.federation)

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        followed = {f: _network(node, f) for f in node.config.federation}
        federation = Federation(list(followed.values()), identity=node.identity)
        start_task(stack, federation.run())
        node.federated = federation.member
        pending: set[asyncio.Task[None]] = set()
        stack.callback(lambda: [task.cancel() for task in pending])

        def prepare(config: NodeConfig) -> Callable[[], None]:
            def swap() -> None:
                now = {f: followed.get(f) or _network(node, f) for f in config.federation}
                for network in (n for f, n in now.items() if f not in followed):
                    task = asyncio.get_running_loop().create_task(federation.refresh(network))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                followed.clear()
                followed.update(now)
                federation.networks = list(now.values())

            return swap

        node.reloaders.append(prepare)


def _network(node: NodeContext, federated: Federated) -> FederatedNetwork:
    return FederatedNetwork(federated.name, functools.partial(node.upstream, federated.registry))
