"""The node's own chain: its store, the chains it follows (from its peers, and from the authors
themselves, found by key in the node directory: ``hypermesh.node.authors``), the witnesses it asks
to cosign, and the chain API. Appends wait until the node has taken back its own lost blocks.

Nothing here polls: the follower watches its peers' head feeds, the witnesses are asked when a
new checkpoint is durable, and the authors are looked up when the chain links to a new one or
a location falls due."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from hypermesh.chain.client import ask_witness
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.chain.witness import CosignatureStore, CosignCollector, Witness
from hypermesh.node.authors import DirectoryPeers
from hypermesh.node.chain_api import add_chain_routes
from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import ChainWriter, NodeContext, start_task
from hypermesh.node.rotation import start_successor_chain

log = logging.getLogger("hypermesh.node")

CHAIN_DB = "chain.db"
"""Under the node's directory: its own chain (SQLite, 0600)."""
REPLICAS_DB = "replicas.db"
"""Under the node's directory: the chains it follows and the equivocations it knows."""
RECOVERY_TIMEOUT = 10.0
"""Seconds a starting node waits for its peers' copies of its own chain before appending."""


class ChainFeature:
    """A node with ``chain`` on keeps its own chain and the chains its blocks link to."""

    name = "chain"

    def enabled(self, config: NodeConfig) -> bool:
        return config.chain

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        chain = ChainStore.open(node.node_dir / CHAIN_DB, node.identity)
        stack.callback(chain.close)
        start_successor_chain(node.node_dir, chain)
        replicas = Replicas.open(node.node_dir / REPLICAS_DB, node.revocations)
        stack.callback(replicas.close)
        # The peers, and the followed authors on other hosts found by key in the directory.
        authors = DirectoryPeers(node, lambda: follower.followed, lambda: follower.poke())
        follower = ChainFollower(chain, replicas, authors.peers, incomplete=authors.incomplete)
        chain.on_append(lambda block: authors.wake() if block.links else None)
        start_task(stack, authors.run())
        ready = asyncio.Event()
        start_task(stack, _follow_chains(follower, ready, recover=not node.new_key))
        cosignatures = CosignatureStore(chain.connection)
        if node.config.witnesses:
            start_task(stack, _collector(node, chain, cosignatures).run())
        appender = GroupAppender(chain)
        add_chain_routes(
            node.router,
            chain,
            replicas=replicas,
            ready=ready,
            witness=Witness(replicas.connection, node.identity, revocations=node.revocations),
            cosignatures=cosignatures,
            appender=appender,
            revocations=node.revocations,
        )
        node.chains = follower
        node.chain_writer = ChainWriter(appender, ready)


def _collector(
    node: NodeContext, chain: ChainStore, cosignatures: CosignatureStore
) -> CosignCollector:
    """Who asks the peers to witness the chain's checkpoints, as many as the config wants."""
    return CosignCollector(
        chain,
        cosignatures,
        node.chain_peers,
        node.config.witnesses,
        functools.partial(ask_witness, identity=node.identity),
        revocations=node.revocations,
    )


async def _follow_chains(follower: ChainFollower, ready: asyncio.Event, *, recover: bool) -> None:
    """Take back lost own blocks from the peers (bounded; not with a key no node started with
    before, which nobody can hold blocks of), allow appends, then follow."""
    try:
        async with asyncio.timeout(RECOVERY_TIMEOUT):
            if recover:
                await follower.recover_own()
    except TimeoutError:
        log.warning("peers did not answer about the node's own chain in time")
    finally:
        ready.set()
    await follower.run()
