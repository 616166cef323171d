"""Following other chains: every block checked on ingest, and a deliberate fork kept as a
transferable proof of equivocation, never overwriting either block."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.chain.block import BadBlock
from hypermesh.chain.replica import Equivocation, ReplicaError, Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.transport.identity import Identity

KEY = Identity.generate()


def test_a_deliberate_fork_is_caught_and_proven(tmp_path: Path) -> None:
    honest = ChainStore.open(tmp_path / "a.db", KEY)
    for i in range(3):
        honest.append(1, bytes([i]))
    # The same key, a restored backup of the first block only: a second history.
    twin = ChainStore.open(tmp_path / "b.db", KEY)
    assert twin.append(1, bytes([0])).seq == 0  # its own first block (another timestamp)
    replicas = Replicas.open(tmp_path / "replicas.db")
    results = [replicas.ingest(b, honest.payload(b)) for b in honest.blocks()]
    assert results == ["added"] * 3
    assert replicas.ingest(honest.block(1)) == "known"

    fork = twin.append(1, b"another history")
    assert fork.seq == 1 and fork.hash != honest.block(1).hash
    assert replicas.ingest(fork) == "equivocation"
    assert replicas.forked_at(KEY.public_key_bytes) == 1
    assert replicas.block(KEY.public_key_bytes, 1) == honest.block(1)  # never overwritten
    with pytest.raises(ReplicaError, match="forked its chain at height 1"):
        replicas.ingest(honest.append(1, b"later"))

    (proof,) = list(replicas.equivocations())
    # Transferable: JSON anyone can check with nothing but the two blocks.
    again = Equivocation.from_json(json.loads(json.dumps(proof.to_json())))
    assert {again.first.hash, again.second.hash} == {fork.hash, honest.block(1).hash}
    other = Replicas.open(tmp_path / "elsewhere.db")
    assert other.add_equivocation(again) and not other.add_equivocation(again)
    assert other.forked_at(KEY.public_key_bytes) == 1
    replicas.close()
    assert Replicas.open(tmp_path / "replicas.db").forked_at(KEY.public_key_bytes) == 1


def test_what_is_not_a_proof(tmp_path: Path) -> None:
    a = ChainStore.open(tmp_path / "a.db", KEY)
    first, second = a.append(1, b"x"), a.append(1, b"y")
    with pytest.raises(BadBlock, match="different heights"):
        Equivocation.check(first.wire, second.wire)
    with pytest.raises(BadBlock, match="same block twice"):
        Equivocation.check(first.wire, first.wire)
    stranger = ChainStore.open(tmp_path / "s.db", Identity.generate()).append(1, b"x")
    with pytest.raises(BadBlock, match="different authors"):
        Equivocation.check(first.wire, stranger.wire)


def test_gaps_and_bad_links_are_refused(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "a.db", KEY)
    blocks = [store.append(1, bytes([i])) for i in range(3)]
    replicas = Replicas.open(tmp_path / "r.db")
    with pytest.raises(ReplicaError, match="does not follow the 0 held"):
        replicas.ingest(blocks[1])
    replicas.ingest(blocks[0])
    with pytest.raises(ReplicaError, match="payload does not match"):
        replicas.ingest(blocks[1], b"not it")
    assert replicas.size(KEY.public_key_bytes) == 1


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=12), st.integers(0, 11))
def test_any_order_of_delivery_keeps_the_chain_or_refuses(order: list[int], fork_at: int) -> None:
    """Blocks delivered in any order (with repeats) either extend the replica in sequence or
    are refused; a fork at any height is always caught."""

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        key = Identity.generate()
        store = ChainStore.open(root / "a.db", key)
        blocks = [store.append(1, bytes([i])) for i in range(6)]
        replicas = Replicas.open(root / "r.db")
        for index in order:
            with contextlib.suppress(ReplicaError):
                replicas.ingest(blocks[index])
        held = replicas.size(key.public_key_bytes)
        assert all(replicas.block(key.public_key_bytes, i) == blocks[i] for i in range(held))
        if held:
            twin = ChainStore.open(root / "twin.db", key)
            height = min(fork_at, held - 1)
            copied = [twin.append(1, bytes([i])) for i in range(height)]
            assert all(c.seq == i for i, c in enumerate(copied))
            forged = twin.append(1, b"forged")
            if forged.hash != blocks[height].hash:
                assert replicas.ingest(forged) == "equivocation"
                assert replicas.forked_at(key.public_key_bytes) == height
