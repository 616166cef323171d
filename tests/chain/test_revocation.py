"""A revoked key's word is taken nowhere a node accepts signed data from another node
(``hypermesh.revocation``): no new block of its chain (up to its hand-over to a successor, when
it was rotated), no checkpoint cosigned, no cosignature kept. What is still taken: a proof of
equivocation against it, and the blocks held before the revocation was known. And nothing past
a key's hand-over block is ever taken, revoked or not."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from hypermesh.chain.replica import Diverged, ReplicaError, Replicas
from hypermesh.chain.rotation import KEY as KEY_KIND
from hypermesh.chain.rotation import rotation_payload
from hypermesh.chain.store import ChainStore
from hypermesh.chain.witness import (
    CosignatureStore,
    CosignCollector,
    Witness,
    checkpoint_of,
)
from hypermesh.revocation import KeyRevoked, Revocation, Revocations
from hypermesh.transport.identity import Identity

OLD, NEW, STRANGER = Identity.generate(), Identity.generate(), Identity.generate()


class Table:
    """Revocations as a test sets them."""

    def __init__(self) -> None:
        self.revoked: dict[str, Revocation] = {}

    def revoke(self, key: Identity, successor: Identity | None = None) -> None:
        self.revoked[key.node_id] = Revocation(
            key.node_id, successor.node_id if successor else None
        )

    def __call__(self, node_id: str) -> Revocation | None:
        return self.revoked.get(node_id)


def chain(tmp_path: Path, key: Identity, n: int, name: str = "a") -> ChainStore:
    store = ChainStore.open(tmp_path / f"{name}.db", key)
    for i in range(n):
        store.append(1, bytes([i]))
    return store


def test_a_revoked_key_gives_no_new_block_and_keeps_what_was_held(tmp_path: Path) -> None:
    table = Table()
    store = chain(tmp_path, STRANGER, 4)
    replicas = Replicas.open(tmp_path / "r.db", Revocations(table))
    blocks = list(store.blocks())
    assert [replicas.ingest(b, store.payload(b)) for b in blocks[:2]] == ["added", "added"]
    table.revoke(STRANGER)
    with pytest.raises(ReplicaError, match="the key was revoked at the registry"):
        replicas.ingest(blocks[2], store.payload(blocks[2]))
    assert replicas.size(STRANGER.public_key_bytes) == 2  # held blocks stay
    assert replicas.ingest(blocks[1]) == "known"
    # Evidence against the key is still taken: a second block at a held height.
    twin = ChainStore.open(tmp_path / "twin.db", STRANGER)
    twin.append(1, bytes([0]))
    forged = twin.append(1, b"another history")
    assert replicas.ingest(forged) == "equivocation"
    assert replicas.forked_at(STRANGER.public_key_bytes) == 1


def test_a_rotated_key_gives_its_chain_up_to_the_hand_over_and_nothing_past_it(
    tmp_path: Path,
) -> None:
    table = Table()
    table.revoke(OLD, successor=NEW)  # revoked first: a follower that held nothing of it
    store = chain(tmp_path, OLD, 2)
    handover = store.append(KEY_KIND, rotation_payload(OLD, NEW, int(time.time() * 1000)))
    after = store.append(1, b"signed with the old key after the hand-over")
    replicas = Replicas.open(tmp_path / "r.db", Revocations(table))
    taken = [replicas.ingest(b, store.payload(b)) for b in list(store.blocks())[:3]]
    assert taken == ["added"] * 3 and replicas.block(OLD.public_key_bytes, 2) == handover
    with pytest.raises(ReplicaError, match="handed its chain over to a new key at block 2"):
        replicas.ingest(after, store.payload(after))
    # Nothing past a hand-over, even from a key the registry has not revoked (yet).
    quiet = Replicas.open(tmp_path / "quiet.db")
    for block in list(store.blocks())[:3]:
        quiet.ingest(block, store.payload(block))
    with pytest.raises(ReplicaError, match="handed its chain over"):
        quiet.ingest(after, store.payload(after))


def test_a_block_on_another_branch_says_where_the_fork_is(tmp_path: Path) -> None:
    honest = chain(tmp_path, STRANGER, 3)
    twin = ChainStore.open(tmp_path / "twin.db", STRANGER)
    for block in list(honest.blocks())[:1]:
        twin.restore([(block, honest.payload(block))])
    twin.append(1, b"fork at 1")
    beyond = twin.append(1, b"and on")
    replicas = Replicas.open(tmp_path / "r.db")
    for block in list(honest.blocks())[:2]:
        replicas.ingest(block, honest.payload(block))
    with pytest.raises(Diverged) as diverged:
        replicas.ingest(beyond)
    assert diverged.value.height == 1
    assert replicas.ingest(twin.block(1)) == "equivocation"


def test_no_checkpoint_of_a_revoked_key_is_cosigned(tmp_path: Path) -> None:
    table = Table()
    store = chain(tmp_path, STRANGER, 3)
    witness = Witness(
        sqlite3.connect(tmp_path / "w.db", isolation_level=None),
        Identity.generate(),
        revocations=Revocations(table),
    )
    assert witness.cosign(store.head, 0, []).size == 2
    table.revoke(STRANGER)
    with pytest.raises(KeyRevoked, match=f"cosign: the key {STRANGER.node_id} was revoked"):
        witness.cosign(store.head, 2, [])


class Peer:
    def __init__(self, key: Identity) -> None:
        self.node_id, self.key, self.asked = key.node_id, key, 0


def test_no_cosignature_by_a_revoked_witness_is_kept_or_counted(tmp_path: Path) -> None:
    table = Table()
    store = chain(tmp_path, OLD, 3)
    cosignatures = CosignatureStore(store.connection)
    good, bad = Peer(Identity.generate()), Peer(Identity.generate())
    table.revoke(bad.key)

    async def ask(peer: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        peer.asked += 1
        db = sqlite3.connect(tmp_path / f"{peer.node_id}.db", isolation_level=None)
        witness = Witness(db, peer.key)
        made = witness.cosign(store.head, int(body["oldSize"]), [])
        return 200, made.to_json()

    collector = CosignCollector(
        store, cosignatures, lambda: [bad, good], 2, ask, revocations=Revocations(table)
    )
    assert asyncio.run(collector.round()) == 1
    assert bad.asked == 0 and good.asked == 1
    size, _ = checkpoint_of(store.head)
    # One the revoked witness made earlier is held, but not counted.
    earlier = Witness(sqlite3.connect(":memory:", isolation_level=None), bad.key)
    cosignatures.add(earlier.cosign(store.head, 0, []))
    assert len(cosignatures.for_size(size)) == 2
    assert asyncio.run(collector.round()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"event": "rotate", "old": OLD.node_id, "new": NEW.node_id, "atMs": -1},
        {"event": "rotate", "old": OLD.node_id, "new": NEW.node_id, "atMs": 2**64},
        {"event": "rotate", "old": OLD.node_id, "new": "hm1", "atMs": 1},
        [1, 2],
        "not json",
    ],
)
def test_a_malformed_hand_over_is_no_hand_over_and_breaks_nothing(
    tmp_path: Path, body: Any
) -> None:
    payload = (
        body.encode()
        if isinstance(body, str)
        else json.dumps(
            {**body, "newSignature": "QQ=="} if isinstance(body, dict) else body
        ).encode()
    )
    store = chain(tmp_path, OLD, 1)
    odd = store.append(KEY_KIND, payload)
    after = store.append(1, b"on")
    replicas = Replicas.open(tmp_path / "r.db")
    for block in (store.block(0), odd, after):
        assert replicas.ingest(block, store.payload(block)) == "added"
