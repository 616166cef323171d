"""RFC 6962 Merkle trees: the published reference vectors (transparency-dev/merkle's test data,
taken as data), and every proof of every small tree checked both ways."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.chain.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    split,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, audit path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY = [  # (old size, new size, proof)
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
TREE = MerkleTree(leaf_hash(d) for d in LEAVES)


def test_the_reference_tree_heads() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0] == hashlib.sha256(b"").hexdigest()
    assert [TREE.root(n).hex() for n in range(9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_the_reference_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = TREE.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == path
    assert verify_inclusion(TREE.leaf(index), index, size, proof, TREE.root(size))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_the_reference_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = TREE.consistency_proof(old, new)
    assert [p.hex() for p in proof] == path
    assert verify_consistency(old, new, TREE.root(old), TREE.root(new), proof)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written as the RFC writes it, to check the tree against."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def test_every_proof_of_every_small_tree_verifies_and_nothing_else_does() -> None:
    leaves = [leaf_hash(bytes([i, i * 7 % 256])) for i in range(33)]
    tree = MerkleTree(leaves)
    flipped = bytes([tree.root()[0] ^ 1]) + tree.root()[1:]
    for size in range(1, 34):
        root = tree.root(size)
        assert root == mth(leaves[:size])
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert verify_inclusion(leaves[index], index, size, proof, root)
            assert not verify_inclusion(leaves[index], index, size, proof, flipped)
            if size > 1:
                other = (index + 1) % size
                assert not verify_inclusion(leaves[index], other, size, proof, root)
                if proof:  # (the size is bound by the signed head, not by the path)
                    bad = [*proof[:-1], bytes(32)]
                    assert not verify_inclusion(leaves[index], index, size, bad, root)
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert verify_consistency(old, size, tree.root(old), root, proof)
            if old < size:
                assert not verify_consistency(old, size, tree.root(old), flipped, proof)
                assert not verify_consistency(old, size, root, root, proof)
                if proof:
                    bad = [bytes(32), *proof[1:]]
                    assert not verify_consistency(old, size, tree.root(old), root, bad)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_large_trees_agree_with_the_rfc_recursion(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    tree = MerkleTree(leaves)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert tree.root() == mth(leaves)
    assert verify_inclusion(leaves[index], index, size, tree.inclusion_proof(index), tree.root())
    proof = tree.consistency_proof(old)
    assert verify_consistency(old, size, tree.root(old), tree.root(), proof)
    assert len(proof) <= 2 * size.bit_length()
