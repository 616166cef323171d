"""Checking a chain as a whole, with nothing but its blocks: every signature, every link to the
block before, every tree head each block carries, and every payload that came along."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hypermesh.chain.block import ZERO, BadBlock, Block
from hypermesh.chain.merkle import EMPTY_ROOT, MerkleTree


@dataclass(frozen=True, slots=True)
class Verified:
    """A chain that checked out: its size, its tree head and its last block."""

    size: int
    root: bytes
    head: Block | None
    payloads_checked: int


def verify_chain(
    blocks: Iterable[tuple[Block, bytes | None]], author: bytes | None = None
) -> Verified:
    """Check blocks 0, 1, 2, … in order (each with its payload or None); ``BadBlock`` naming
    the first that does not hold. With ``author``, every block must be by that key."""
    tree = MerkleTree()
    previous: Block | None = None
    checked = 0
    for block, payload in blocks:
        if author is not None and block.author != author:
            raise BadBlock(f"block {block.seq} is by another author")
        if previous is None:
            if block.seq != 0 or block.prev != ZERO or block.tree_root != EMPTY_ROOT:
                raise BadBlock(f"the chain starts at block {block.seq}, not at a first block")
        else:
            block.follows(previous, tree.root())
        if payload is not None:
            if not block.payload_matches(payload):
                raise BadBlock(f"block {block.seq}: the payload does not match its hash")
            checked += 1
        tree.append(block.leaf)
        previous = block
    return Verified(tree.size, tree.root(), previous, checked)
