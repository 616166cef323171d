"""Who asks the peers for its own chain at start (``ChainFollower.recover_own``): a node whose
key was there before it started asks them (it may have lost blocks it signed); a node whose
key this start created does not (nobody can hold blocks of a key that did not exist), which
spares a network of new nodes a request to every peer each. Real node processes; the asks
are read from the registry's request log (the registry is each node's chain peer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypermesh.chain.client import ChainClient
from hypermesh.transport.identity import load_identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode
from tests.node.test_chain_authors import _with_chain


def _recovery_asks(registry: RunningNode) -> int:
    """Requests for a replica the registry served (``GET /chain/v1/replica?author=…``)."""
    text = (Path(registry.node_dir) / "node.log").read_text()
    return sum(
        1
        for line in text.splitlines()
        if '"msg": "request"' in line and '"path": "/chain/v1/replica"' in line
    )


def _appended(node: RunningNode) -> None:
    """Append a block on ``node``: it answers only once its start's recovery is over."""
    key = load_identity(Path(node.node_dir) / "identity.key")
    client = ChainClient(node.address, node.identity, caller=key)
    asyncio.run(asyncio.wait_for(client.append(key, "note", b"after the start"), 30))


def test_only_a_node_whose_key_it_did_not_create_asks_its_peers(nodes: NodeStarter) -> None:
    registry = directory.start(nodes, "registry", roles=("registry",), members=("alpha", "beta"))
    assert _recovery_asks(registry) == 0

    alpha = _with_chain(nodes, "alpha")  # its key was made before it started
    _appended(alpha)
    assert _recovery_asks(registry) == 1

    beta = _with_chain(nodes, "beta", new_key=True)  # its key is made by its own start
    _appended(beta)
    assert _recovery_asks(registry) == 1
