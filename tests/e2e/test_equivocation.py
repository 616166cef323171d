"""Equivocation between real node processes: a key signs two blocks at one height and shows one
history to node A and the other to node B. Following that chain, a node catches the fork in the
other's copy (a block built on another block than the one it holds) and keeps the proof; a node
that did not catch it learns of it by gossip. Node C follows the chain through A alone, whose
copy holds one history: C can only hear of the fork, and does. All three then hold the proof,
and all three mark the chain forked.

The equivocating key is not a node: its two histories are crafted with the chain library and
served by two in-process QUIC endpoints holding that key (one for A, one for B), as an author
showing different histories to different peers would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypermesh.chain.block import Block, Link
from hypermesh.chain.client import ChainClient
from hypermesh.chain.merkle import EMPTY_ROOT, MerkleTree
from hypermesh.chain.replica import Equivocation
from hypermesh.chain.wire import block_json
from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import Identity, load_identity
from tests.harness.loop_thread import LoopThread
from tests.harness.node_process import NodeStarter

X = Identity.generate()
"""The equivocating key."""
PAYLOADS: dict[bytes, bytes] = {}
"""Each block's payload, by the block's hash."""


def history(*payloads: bytes) -> list[Block]:
    """A chain of X with these payloads, each block signed by X."""
    blocks: list[Block] = []
    tree = MerkleTree()
    for i, payload in enumerate(payloads):
        block = Block.create(
            X,
            kind=1,
            seq=i,
            prev=blocks[-1].hash if blocks else bytes(32),
            tree_root=tree.root() if blocks else EMPTY_ROOT,
            timestamp_ms=1_800_000_000_000 + i,
            payload=payload,
        )
        tree.append(block.leaf)
        blocks.append(block)
        PAYLOADS[block.hash] = payload
    return blocks


SHOWN_TO_A = history(b"genesis", b"pay alice")
SHOWN_TO_B = history(b"genesis", b"pay bob", b"and more")
assert SHOWN_TO_A[0] == SHOWN_TO_B[0] and SHOWN_TO_A[1].hash != SHOWN_TO_B[1].hash


def serving(blocks: list[Block]) -> Router:
    """X's chain API as far as a follower asks: its blocks from a height, no proofs."""

    async def chain_blocks(request: Request) -> RouteResponse:
        query = urllib.parse.parse_qs(request.query)
        start = int(query.get("from", ["0"])[0])
        shown = [block_json(b, PAYLOADS[b.hash]) for b in blocks if b.seq >= start]
        return RouteResponse.json({"author": X.node_id, "blocks": shown})

    async def nothing(_: Request) -> RouteResponse:
        return RouteResponse.json({"equivocations": [], "blocks": []})

    router = Router()
    router.add("/chain/v1/blocks", chain_blocks)
    router.add("/chain/v1/equivocations", nothing)
    router.add("/chain/v1/replica", nothing)
    return router


class Equivocator(LoopThread):
    """Two QUIC endpoints holding X's key in a thread: one shows A's history, one B's."""

    def __init__(self) -> None:
        super().__init__("the equivocator's endpoints")
        self.addresses: list[str] = []

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        for shown in (SHOWN_TO_A, SHOWN_TO_B):
            endpoint = await bind_endpoint(
                "127.0.0.1", 0, configuration=server_configuration(X), router=serving(shown)
            )
            stack.callback(endpoint.close)
            self.addresses.append(endpoint.address)

    def __enter__(self) -> Equivocator:
        self.start_serving()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@pytest.fixture
def equivocator() -> Iterator[Equivocator]:
    with Equivocator() as running:
        yield running


def config(base: Path, name: str, peers: tuple[Upstream, ...]) -> Path:
    node_dir = base / name
    node_dir.mkdir(mode=0o700, exist_ok=True)
    path = node_dir / "config.json"
    path.write_text(
        NodeConfig(
            name=name,
            network="demo",
            listen="127.0.0.1:0",
            prefer_port=None,
            interfaces=("public",),
            roles=("mirror",),
            tags=(),
            generation=1,
            node_dir=str(node_dir),
            log_file=str(node_dir / "node.log"),
            log_level="debug",
            peers=peers,
        ).to_json()
    )
    return path


def get(node: Any, path: str) -> dict[str, Any]:
    return asyncio.run(h3_get_json(node.address, path, expected_id=node.identity, identity=None))


def followed(node: Any) -> dict[str, Any]:
    chains = get(node, "/chain/v1/replicas")["chains"]
    return next((c for c in chains if c["author"] == X.node_id), {"size": 0, "forkedAt": None})


def proofs(node: Any) -> list[Equivocation]:
    return [
        Equivocation.from_json(p) for p in get(node, "/chain/v1/equivocations")["equivocations"]
    ]


def wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.25)


def messages(log: Path) -> set[str]:
    return {json.loads(line).get("msg", "") for line in log.read_text().splitlines() if line}


def link_from(node: Any, block: Block) -> None:
    """The node appends a block linking to ``block`` (signed by its own key): it follows X."""
    key = load_identity(node.node_dir / "identity.key")
    client = ChainClient(node.address, node.identity, caller=key)
    asyncio.run(client.append(key, "link", b"", (Link(block.author, block.seq, block.hash),)))


def test_an_equivocation_is_caught_and_gossiped_between_two_nodes(
    tmp_path: Path, equivocator: Equivocator
) -> None:
    to_a, to_b = equivocator.addresses
    starter = NodeStarter(tmp_path)
    try:
        a_peers = (Upstream(PeerRef(to_a, X.node_id)), Upstream(node_dir=str(tmp_path / "b")))
        b_peers = (Upstream(PeerRef(to_b, X.node_id)), Upstream(node_dir=str(tmp_path / "a")))
        a = starter.restart(config(tmp_path, "a", a_peers))
        b = starter.restart(config(tmp_path, "b", b_peers))
        c = starter.restart(config(tmp_path, "c", (Upstream(node_dir=str(tmp_path / "a")),)))

        # A follows X and takes the history shown to it; C takes it from A's copy.
        link_from(a, SHOWN_TO_A[1])
        wait(lambda: followed(a)["size"] == 2, "A holds the 2 blocks X showed it")
        link_from(c, SHOWN_TO_A[1])
        wait(lambda: followed(c)["size"] == 2, "C holds A's copy of X's chain")
        # B follows X too, and takes the history shown to it (or A's copy, if it asks A
        # first). Either way the node holding the shorter history then sees in the other's copy
        # a block 2 built on another block 1 than its own, asks for that block 1 — two blocks
        # X signed at one height, the proof — and the other node hears of it by gossip.
        link_from(b, SHOWN_TO_B[2])
        wait(lambda: followed(a)["forkedAt"] == 1, "A knows of the fork")
        wait(lambda: followed(b)["forkedAt"] == 1, "B knows of the fork")
        wait(lambda: followed(c)["forkedAt"] == 1, "C heard of the fork")
        forks = {SHOWN_TO_A[1].hash, SHOWN_TO_B[1].hash}
        for node in (a, b, c):
            (proof,) = proofs(node)
            assert proof.first.author == X.public_key_bytes and proof.first.seq == 1
            assert {proof.first.hash, proof.second.hash} == forks
            held = get(node, f"/chain/v1/replica?author={X.node_id}&from=1")["blocks"]
            assert bytes.fromhex(held[0]["hash"]) in forks  # the first taken, never overwritten

        said = {n.node_dir.name: messages(n.log_file) for n in (a, b, c)}
        caught = {name for name, lines in said.items() if "equivocation" in lines}
        assert caught and caught <= {"a", "b"}, said  # caught in the other's copy (A or B) ...
        for other in set(said) - caught:
            assert "equivocation heard" in said[other], said  # ... the others heard: gossip
        assert "c" not in caught and "equivocation heard" in said["c"]
    finally:
        starter.stop_all()
