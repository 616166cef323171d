"""A message reaches its recipient by node ID over the sender's paths (found in the node
directory, reached directly or through a relay), when the sender gives no address or the
address it gives does not answer: a node behind a NAT gets its messages as it gets pings.
(The paths themselves across every kind of NAT are tests/lab/test_paths_matrix.py's.)"""

from __future__ import annotations

import asyncio

import pytest

from hypermesh.sdk import Mesh, PeerRef, Refused
from hypermesh.transport.identity import load_identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter, RunningNode


def _mesh(node: RunningNode) -> Mesh:
    key = load_identity(node.node_dir / "identity.key")
    return Mesh(key, node=PeerRef(node.address, node.identity), timeout=20.0)


def test_a_message_goes_by_key_when_no_address_answers(nodes: NodeStarter) -> None:
    registry = directory.start(
        nodes, "registry", roles=("registry",), members=("alpha", "beta", "ghost")
    )
    alpha = directory.start_with_chain(nodes, "alpha")
    beta = directory.start_with_chain(nodes, "beta")
    directory.wait_record(registry, beta.identity)
    sender, reader = _mesh(alpha), _mesh(beta)

    async def scenario() -> list[str]:
        by_key = await sender.send(beta.identity, "by key")
        # the registry answers at this address with another key: the paths take over
        stale = PeerRef(registry.address, beta.identity)
        fallen_back = await sender.send(stale, "from a stale address")
        assert by_key["receipt"]["seq"] < fallen_back["receipt"]["seq"]
        # a member without a record (it never started) cannot be reached: 502, nothing sent
        ghost = directory.make_key(nodes.base, "ghost").node_id
        with pytest.raises(Refused, match="not delivered") as refused:
            await sender.send(ghost, "to nobody")
        assert refused.value.status == 502
        return [message["text"] for message in await reader.inbox()]

    assert asyncio.run(scenario()) == ["from a stale address", "by key"]
