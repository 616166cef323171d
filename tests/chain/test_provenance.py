"""Provenance bundles: a path of link and history steps across three chains, checked offline
with nothing but the bundle; any tampering caught."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from hypermesh.chain.block import BadBlock, Block, Link
from hypermesh.chain.provenance import Bundle, Step, find_path, verify_bundle
from hypermesh.chain.store import ChainStore
from hypermesh.transport.identity import Identity
from tests.harness.provenance import bundle_between


def link(block: Block) -> Link:
    return Link(block.author, block.seq, block.hash)


def test_a_path_across_three_chains(tmp_path: Path) -> None:
    keys = {name: Identity.generate() for name in "abc"}
    stores = {name: ChainStore.open(tmp_path / f"{name}.db", k) for name, k in keys.items()}
    a, b, c = stores["a"], stores["b"], stores["c"]
    origin = a.append(1, b"the origin")
    a.append(1, b"later on a")
    b.append(1, b"unrelated")
    b1 = b.append(2, b"", [link(origin)])
    b.append(1, b"more on b")
    b3 = b.append(1, b"and more")
    c.append(1, b"start")
    target = c.append(2, b"", [link(b3)])
    bundle = bundle_between(stores.values(), target, origin)
    assert bundle is not None
    assert [s.via for s in bundle.steps] == ["link", "history", "link"]
    assert bundle.blocks[0] == target and bundle.blocks[-1] == origin
    # Offline: through JSON and back, with nothing else.
    carried = Bundle.from_json(json.loads(json.dumps(bundle.to_json())))
    statement = verify_bundle(carried)
    assert f"block {origin.seq} of {keys['a'].node_id}" in statement
    assert b1 in carried.blocks

    history = bundle.steps[1]
    bad_proof = Step("history", (bytes(32), *history.proof[1:]))
    tampered = Bundle(bundle.blocks, (bundle.steps[0], bad_proof, bundle.steps[2]))
    with pytest.raises(BadBlock, match=r"step 2 .*inclusion proof"):
        verify_bundle(tampered)
    skipped = Bundle((bundle.blocks[0], bundle.blocks[3]), (Step("link"),))
    with pytest.raises(BadBlock, match="does not link"):
        verify_bundle(skipped)
    raw = bundle.to_json()
    wire = bytearray(base64.b64decode(raw["blocks"][1]))
    wire[-1] ^= 0x01  # one bit of the signature: always a change (zeroing bytes was not)
    raw["blocks"][1] = base64.b64encode(bytes(wire)).decode()
    with pytest.raises(BadBlock):
        verify_bundle(Bundle.from_json(raw))

    nowhere = bundle_between(stores.values(), origin, target)
    assert nowhere is None  # the origin never saw the target


def test_a_search_reads_each_chain_once_and_stops_at_the_longest_bundle(tmp_path: Path) -> None:
    """A stranger's provenance request costs one pass over each chain, not one per block, and
    looks no further than a bundle that could verify (``MAX_STEPS``)."""
    key = Identity.generate()
    store = ChainStore.open(tmp_path / "long.db", key)
    other = ChainStore.open(tmp_path / "other.db", Identity.generate())
    origin = other.append(1, b"origin")
    made = [store.append(2, b"", [link(origin)])]
    for _ in range(100):  # each block links to the one before it
        made.append(store.append(2, b"", [link(made[-1])]))
    asked: list[bytes] = []

    def linked(author: bytes) -> list[int]:
        asked.append(author)
        return [b.seq for b in store.blocks() if b.links] if author == key.public_key_bytes else []

    def lookup(author: bytes, seq: int) -> Block | None:
        held = store if author == key.public_key_bytes else other
        return held.block(seq) if seq < held.size else None

    def trees(author: bytes):  # type: ignore[no-untyped-def]
        return (store if author == key.public_key_bytes else other).tree

    found = find_path(made[-1], origin.author, origin.seq, lookup, trees, linked)
    assert found is not None and [s.via for s in found.steps] == ["history", "link"]
    assert sorted(asked) == sorted(set(asked))  # each author asked once

    # 70 chains of one block each, each linking to the one before: a path of 70 link steps,
    # longer than a bundle may be, is not looked for.
    chain = [origin]
    for _ in range(70):
        chain.append(
            Block.create(
                Identity.generate(),
                kind=2,
                seq=0,
                prev=bytes(32),
                tree_root=chain[0].tree_root,
                timestamp_ms=1,
                payload=b"",
                links=(link(chain[-1]),),
            )
        )
    by_ref = {(b.author, b.seq): b for b in chain}
    far = find_path(
        chain[-1], origin.author, 0, lambda a, s: by_ref.get((a, s)), trees, lambda a: []
    )
    assert far is None
    near = find_path(
        chain[60], origin.author, 0, lambda a, s: by_ref.get((a, s)), trees, lambda a: []
    )
    assert near is not None and len(near.steps) == 60 and verify_bundle(near)
