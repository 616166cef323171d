"""Who asks the peers for its own chain at start (``ChainFollower.recover_own``): a node whose
key a node process used before asks them (it may have lost blocks it signed); a node whose key
is new (``identity.new`` beside it: made by its own start, or beforehand as the controller
makes them) does not, since nobody can hold blocks of a key never used, which spares a network
of new nodes a request to every peer each. Real node processes; the asks
are read from the registry's request log (the registry is each node's chain peer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypermesh.chain.client import ChainClient
from hypermesh.transport.identity import NEW_KEY_MARK, load_identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode, stop


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


def test_only_a_node_whose_key_was_used_before_asks_its_peers(nodes: NodeStarter) -> None:
    members = ("alpha", "beta", "gamma")
    registry = directory.start(nodes, "registry", roles=("registry",), members=members)
    assert _recovery_asks(registry) == 0

    # alpha's key was used before (its mark gone, as after a first start, or a key restored
    # from a backup): it asks
    directory.make_key(nodes.base, "alpha")
    (nodes.base / "alpha" / NEW_KEY_MARK).unlink()
    alpha = directory.start_with_chain(nodes, "alpha")
    _appended(alpha)
    assert _recovery_asks(registry) == 1
    assert not (nodes.base / "alpha" / NEW_KEY_MARK).exists()

    beta = directory.start_with_chain(
        nodes, "beta"
    )  # its key made beforehand, as the controller makes them
    _appended(beta)
    gamma = directory.start_with_chain(
        nodes, "gamma", new_key=True
    )  # its key made by its own start
    _appended(gamma)
    assert _recovery_asks(registry) == 1
    assert not (nodes.base / "beta" / NEW_KEY_MARK).exists()

    # beta again: its key is no longer new, so a restart asks
    stop(beta.proc)
    beta = nodes.restart(beta.config_path)
    _appended(beta)
    assert _recovery_asks(registry) == 2
