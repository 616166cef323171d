"""Witnesses cosign a chain's checkpoints by the C2SP tlog-witness rules: only an extension of
what they cosigned before, proven by a consistency proof; a fork or a rollback is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hypermesh.chain.store import ChainStore
from hypermesh.chain.witness import (
    Cosignature,
    CosignatureStore,
    Witness,
    WitnessRefusal,
    checkpoint_of,
    count_valid,
)
from hypermesh.transport.identity import Identity

AUTHOR = Identity.generate()


def witness(tmp_path: Path, name: str = "w") -> Witness:
    return Witness(
        sqlite3.connect(tmp_path / f"{name}.db", isolation_level=None), Identity.generate()
    )


def test_cosigning_follows_the_chain_by_consistency_proofs(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", AUTHOR)
    w = witness(tmp_path)
    for i in range(4):
        store.append(1, bytes([i]))
    first = w.cosign(store.head, 0, [])  # nothing cosigned yet: any history may start
    size, root = checkpoint_of(store.head)
    assert (first.size, first.root) == (size, root) == (3, store.root(3))
    assert first.valid_for(AUTHOR.public_key_bytes)
    assert not first.valid_for(Identity.generate().public_key_bytes)

    for i in range(5):
        store.append(1, bytes([10 + i]))
    proof = store.consistency_proof(3, store.head.seq)
    second = w.cosign(store.head, 3, proof)
    assert second.size == 8 and w.held(AUTHOR.public_key_bytes) == (8, store.root(8))

    # The author must say what it believes the witness holds; the witness names its own.
    with pytest.raises(WitnessRefusal) as conflict:
        w.cosign(store.head, 3, proof)
    assert conflict.value.status == 409 and conflict.value.held == 8
    assert w.cosign(store.head, 8, []).size == 8  # the same checkpoint again: fine


def test_a_fork_and_a_rollback_are_refused(tmp_path: Path) -> None:
    honest = ChainStore.open(tmp_path / "a.db", AUTHOR)
    for i in range(4):
        honest.append(1, bytes([i]))
    w = witness(tmp_path)
    w.cosign(honest.head, 0, [])  # size 3

    # Another history from the same key, longer: its proof cannot start from the cosigned head.
    twin = ChainStore.open(tmp_path / "b.db", AUTHOR)
    for i in range(7):
        twin.append(1, bytes([100 + i]))
    with pytest.raises(WitnessRefusal) as fork:
        w.cosign(twin.head, 3, twin.consistency_proof(3, twin.head.seq))
    assert fork.value.status == 422 and w.held(AUTHOR.public_key_bytes)[0] == 3

    short = ChainStore.open(tmp_path / "c.db", AUTHOR)
    short.append(1, b"x")
    short.append(1, b"y")
    with pytest.raises(WitnessRefusal, match="smaller than the 3"):
        w.cosign(short.head, 3, [])


def test_counting_cosignatures_a_client_requires(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", AUTHOR)
    store.append(1, b"a")
    store.append(1, b"b")
    size, root = checkpoint_of(store.head)
    witnesses = [witness(tmp_path, f"w{i}") for i in range(3)]
    made = [w.cosign(store.head, 0, []) for w in witnesses]
    kept = CosignatureStore(store.connection)
    for c in made:
        kept.add(c)
    assert kept.last_by(made[0].witness) == size
    found = kept.for_size(size)
    author = AUTHOR.public_key_bytes
    assert count_valid(author, size, root, found) == 3
    trusted = {made[0].witness, made[1].witness}
    assert count_valid(author, size, root, found, trusted) == 2
    forged = Cosignature(made[2].witness, size, root, made[2].timestamp + 1, made[2].signature)
    assert count_valid(author, size, root, [forged, made[0]]) == 1
    assert count_valid(author, size, bytes(32), found) == 0
