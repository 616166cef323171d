"""Chains followed across hosts: a node follows a chain it links to from the author itself,
found by key in the node directory, when none of its peers holds that chain (issue 16: the
author runs on another host, so it is neither a node of this host nor the registry)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypermesh.chain.block import Link
from hypermesh.chain.client import ChainClient
from hypermesh.node.config import NodeConfig
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import load_identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode
from tests.harness.nodes import wait_for


def _replicas(node: RunningNode) -> dict[str, dict[str, Any]]:
    data = asyncio.run(
        h3_get_json(node.address, "/chain/v1/replicas", expected_id=node.identity, identity=None)
    )
    return {chain["author"]: chain for chain in data["chains"]}


def test_a_linked_chain_is_followed_from_its_author_found_in_the_directory(
    nodes: NodeStarter,
) -> None:
    registry = directory.start(nodes, "registry", roles=("registry",), members=("alpha", "beta"))
    alpha, beta = (
        directory.start_with_chain(nodes, "alpha"),
        directory.start_with_chain(nodes, "beta"),
    )
    assert NodeConfig.from_json(beta.config_path.read_text()).peers == ()  # none but the registry
    directory.wait_record(registry, alpha.identity)
    alpha_key = load_identity(Path(alpha.node_dir) / "identity.key")
    beta_key = load_identity(Path(beta.node_dir) / "identity.key")
    own = ChainClient(alpha.address, alpha.identity, caller=alpha_key)
    block = asyncio.run(own.append(alpha_key, "note", b"on alpha's host"))
    link = Link(alpha_key.public_key_bytes, block.seq, block.hash)
    theirs = ChainClient(beta.address, beta.identity, caller=beta_key)
    asyncio.run(theirs.append(beta_key, "link", b"", (link,)))

    def followed() -> dict[str, Any] | None:
        held = _replicas(beta).get(alpha.identity)
        return held if held and held["size"] == 1 else None

    held = wait_for(followed, what="beta follows alpha's chain, from alpha itself")
    assert isinstance(held, dict) and held["forkedAt"] is None
