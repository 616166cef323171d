"""Provenance bundles: a path of link and history steps across three chains, checked offline
with nothing but the bundle; any tampering caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypermesh.chain.block import BadBlock, Block, Link
from hypermesh.chain.provenance import Bundle, Step, find_path, verify_bundle
from hypermesh.chain.store import ChainStore
from hypermesh.transport.identity import Identity


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
    by_author = {s.identity.public_key_bytes: s for s in stores.values()}

    def lookup(author: bytes, seq: int) -> Block | None:
        store = by_author.get(author)
        return store.block(seq) if store is not None and seq < store.size else None

    bundle = find_path(
        target,
        origin.author,
        origin.seq,
        lookup,
        lambda author: by_author[author].tree,
        lambda author: [x.seq for x in by_author[author].blocks() if x.links],
    )
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
    raw["blocks"][1] = raw["blocks"][1][:-4] + "AAA="
    with pytest.raises(BadBlock):
        verify_bundle(Bundle.from_json(raw))

    nowhere = find_path(
        origin,
        target.author,
        target.seq,
        lookup,
        lambda author: by_author[author].tree,
        lambda author: [],
    )
    assert nowhere is None  # the origin never saw the target
