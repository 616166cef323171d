"""Provenance across the block-matrix: a path of proofs from a block back to an origin block
on another chain, as a bundle anyone can check offline.

The path steps from block to block, newest first, each step one of:

- ``link``: the newer block lists the older one (author, height, hash) among its links;
- ``history``: both are on one chain, and an RFC 6962 inclusion proof shows the older block in
  the tree head the newer one signed (each block signs the tree of everything before it).

Checking a bundle needs nothing but the bundle: every block's signature, every link's hash,
every inclusion proof. What it shows: when the target's author signed the target, it had seen
— directly or through the chains it linked to — the origin block, exactly as its author signed
it. What it does not show: that the origin's content is true, or when anyone saw it in
wall-clock time (timestamps are the authors' word).
"""

from __future__ import annotations

import base64
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypermesh.chain.block import MAX_BLOCK_TEXT, BadBlock, Block
from hypermesh.chain.merkle import MerkleTree, verify_inclusion
from hypermesh.chain.wire import LINK_SCHEMA
from hypermesh.inputs import BadInput, check, number_text, validator
from hypermesh.transport.identity import node_id_from_public_key, public_key_from_node_id

VERSION = 1
MAX_STEPS = 64
"""Steps a bundle may take, at most (a path longer than that is not looked for)."""
MAX_PROOF = 64
"""Hashes in one inclusion proof, at most (the depth of a tree of 2^64 blocks)."""


@dataclass(frozen=True, slots=True)
class Step:
    via: str
    """``link`` or ``history``."""
    proof: tuple[bytes, ...] = ()
    """For ``history``: the inclusion proof of the older block in the newer one's tree."""


SCHEMA = validator(
    {
        "type": "object",
        "properties": {
            "version": {"type": "integer", "const": VERSION},
            "target": LINK_SCHEMA,
            "origin": LINK_SCHEMA,
            "blocks": {
                "type": "array",
                "items": {"type": "string", "format": "base64", "maxLength": MAX_BLOCK_TEXT},
                "minItems": 1,
                "maxItems": MAX_STEPS + 1,
            },
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "via": {"enum": ["link", "history"]},
                        "proof": {
                            "type": "array",
                            "items": {"type": "string", "format": "hex32"},
                            "maxItems": MAX_PROOF,
                        },
                    },
                    "required": ["via"],
                    "additionalProperties": False,
                    "if": {"properties": {"via": {"const": "history"}}},
                    "then": {"required": ["proof"]},
                    "else": {"properties": {"proof": {"not": {}}}},
                },
                "maxItems": MAX_STEPS,
            },
        },
        "required": ["version", "target", "origin", "blocks", "steps"],
        "additionalProperties": False,
    }
)
"""A bundle in JSON: every field it may hold, and nothing else."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """Blocks from the target (first) to the origin (last), and the step between each pair."""

    blocks: tuple[Block, ...]
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        def ref(block: Block) -> dict[str, Any]:
            return {"author": block.author_id, "seq": block.seq, "hash": block.hash.hex()}

        return {
            "version": VERSION,
            "target": ref(self.blocks[0]),
            "origin": ref(self.blocks[-1]),
            "blocks": [base64.b64encode(b.wire).decode() for b in self.blocks],
            "steps": [
                {
                    "via": s.via,
                    **({"proof": [p.hex() for p in s.proof]} if s.via == "history" else {}),
                }
                for s in self.steps
            ],
        }

    @classmethod
    def from_json(cls, data: Any) -> Bundle:
        """Decode a bundle and check everything it declares besides its steps: its shape
        (every field known, well formed, in range), every block's signature, and that the
        target and origin it names are its first and last blocks. ``BadBlock`` naming the
        first field that does not hold; the steps are checked by ``verify_bundle``."""
        try:
            check(SCHEMA, data)
        except BadInput as exc:
            raise BadBlock(f"not a provenance bundle: {exc}") from None
        blocks: list[Block] = []
        for i, text in enumerate(data["blocks"]):
            try:
                blocks.append(Block.from_wire(base64.b64decode(text)))
            except BadBlock as exc:
                raise BadBlock(f"blocks[{i}]: {exc}") from None
        last = len(blocks) - 1
        for name, index in (("target", 0), ("origin", last)):
            _check_declared(name, data[name], blocks[index], f"blocks[{index}]")
        steps = tuple(
            Step(str(s["via"]), tuple(bytes.fromhex(p) for p in s.get("proof", ())))
            for s in data["steps"]
        )
        return cls(tuple(blocks), steps)


def _check_declared(name: str, declared: dict[str, Any], block: Block, where: str) -> None:
    actual = {"author": block.author_id, "seq": block.seq, "hash": block.hash.hex()}
    for field_name in ("author", "seq", "hash"):
        if declared[field_name] != actual[field_name]:
            raise BadBlock(
                f"{name}.{field_name}: the bundle declares {declared[field_name]!r}, but its "
                f"{name} block ({where}) has {actual[field_name]!r}"
            )


def verify_bundle(bundle: Bundle) -> str:
    """Check every step; returns a sentence saying what the bundle proves, or raises
    ``BadBlock`` naming the first step (``steps[i]``) that fails."""
    blocks, steps = bundle.blocks, bundle.steps
    if not blocks or len(steps) != len(blocks) - 1:
        raise BadBlock(
            f"steps: {len(steps)} for {len(blocks)} blocks: a bundle has one step between "
            "each two blocks"
        )
    if len(steps) > MAX_STEPS:
        raise BadBlock(f"steps: {len(steps)}, at most {MAX_STEPS}")
    for i, step in enumerate(steps):
        newer, older = blocks[i], blocks[i + 1]
        where = (
            f"step {i + 1} (blocks[{i}] {newer.author_id[:12]}…#{newer.seq} → "
            f"blocks[{i + 1}] {older.author_id[:12]}…#{older.seq})"
        )
        if step.via == "link":
            if not any(
                link.author == older.author and link.seq == older.seq and link.hash == older.hash
                for link in newer.links
            ):
                raise BadBlock(
                    f"steps[{i}].via: {where}: the newer block does not link to the older one"
                )
        elif step.via == "history":
            if newer.author != older.author or older.seq >= newer.seq:
                raise BadBlock(f"steps[{i}].via: {where}: not an earlier block of the same chain")
            if not verify_inclusion(older.leaf, older.seq, newer.seq, step.proof, newer.tree_root):
                raise BadBlock(f"steps[{i}].proof: {where}: the inclusion proof does not verify")
        else:
            raise BadBlock(f"steps[{i}].via: {where}: unknown step {step.via!r}")
    target, origin = blocks[0], blocks[-1]
    return (
        f"{target.author_id} had seen block {origin.seq} of {origin.author_id} "
        f"({origin.hash.hex()[:16]}…) when it signed its block {target.seq}, "
        f"through {len(steps)} step(s)"
    )


Lookup = Callable[[bytes, int], Block | None]
"""A block by (author, height), or None when not held."""
Trees = Callable[[bytes], MerkleTree | None]
"""An author's Merkle tree of blocks, as held here."""


def find_path(
    target: Block,
    origin_author: bytes,
    origin_seq: int,
    lookup: Lookup,
    trees: Trees,
    linked: Callable[[bytes], list[int]],
) -> Bundle | None:
    """The shortest path of steps from ``target`` back to (origin_author, origin_seq) through
    the blocks held here; None when there is none within ``MAX_STEPS`` steps (a longer bundle
    would not verify). ``linked(author)`` lists the heights of that author's blocks that carry
    links (where a path can leave a chain); it is asked once per author, so one search reads
    each chain once, however many of its blocks the search passes through."""
    linked = functools.cache(linked)
    start = (target.author, target.seq)
    came: dict[tuple[bytes, int], tuple[tuple[bytes, int], str] | None] = {start: None}
    blocks: dict[tuple[bytes, int], Block] = {start: target}
    depth = {start: 0}
    queue = deque([start])
    goal = (origin_author, origin_seq)
    while queue:
        here = queue.popleft()
        block = blocks[here]
        if depth[here] >= MAX_STEPS:
            continue
        moves: list[tuple[tuple[bytes, int], str]] = []
        if block.author == origin_author and origin_seq < block.seq:
            moves.append((goal, "history"))
        moves += [((link.author, link.seq), "link") for link in block.links]
        moves += [((block.author, s), "history") for s in linked(block.author) if s < block.seq]
        for there, via in moves:
            if there in came:
                continue
            found = lookup(*there)
            if found is None:
                continue
            if via == "link" and not any(
                link.author == found.author and link.seq == found.seq and link.hash == found.hash
                for link in block.links
            ):
                continue  # the block held there is not the one linked (a fork): not a path
            came[there] = (here, via)
            blocks[there] = found
            depth[there] = depth[here] + 1
            if there == goal:
                return _bundle(there, came, blocks, trees)
            queue.append(there)
    return None


def _bundle(
    end: tuple[bytes, int],
    came: dict[tuple[bytes, int], tuple[tuple[bytes, int], str] | None],
    blocks: dict[tuple[bytes, int], Block],
    trees: Trees,
) -> Bundle:
    path: list[tuple[bytes, int]] = [end]
    vias: list[str] = []
    while (previous := came[path[-1]]) is not None:
        path.append(previous[0])
        vias.append(previous[1])
    path.reverse()
    vias.reverse()
    steps = []
    for i, via in enumerate(vias):
        newer, older = blocks[path[i]], blocks[path[i + 1]]
        if via == "history":
            tree = trees(newer.author)
            if tree is None:
                raise BadBlock(f"no tree held for {newer.author_id}")
            steps.append(Step("history", tuple(tree.inclusion_proof(older.seq, newer.seq))))
        else:
            steps.append(Step("link"))
    return Bundle(tuple(blocks[p] for p in path), tuple(steps))


def parse_ref(text: str) -> tuple[bytes, int]:
    """``NODE_ID:SEQ`` as (author key, height)."""
    author, _, seq = text.rpartition(":")
    if not author:
        raise ValueError(f"{text[:80]!r}: write NODE_ID:SEQ")
    try:
        height = number_text(seq, "SEQ")
    except BadInput as exc:
        raise ValueError(f"{text[:80]!r}: write NODE_ID:SEQ ({exc})") from None
    return public_key_from_node_id(author), height


def ref_text(author: bytes, seq: int) -> str:
    return f"{node_id_from_public_key(author)}:{seq}"
