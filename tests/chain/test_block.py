"""Block format v1: round trips, a bit flipped anywhere refused, weak keys and non-canonical
signatures refused, the exact signed bytes kept."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.chain.block import CONTEXT, MAX_LINKS, ZERO, BadBlock, Block, Link
from hypermesh.chain.merkle import EMPTY_ROOT, leaf_hash
from hypermesh.transport.identity import Identity

KEY = Identity.generate()
OTHER = Identity.generate()
L = 2**252 + 27742317777372353535851937790883648493  # the order of the Ed25519 group


def first(payload: bytes = b"hello", links: tuple[Link, ...] = ()) -> Block:
    return Block.create(
        KEY,
        kind=1,
        seq=0,
        prev=ZERO,
        tree_root=EMPTY_ROOT,
        timestamp_ms=1_800_000_000_000,
        payload=payload,
        links=links,
    )


links = st.lists(
    st.builds(
        Link,
        st.binary(min_size=32, max_size=32),
        st.integers(0, 2**64 - 1),
        st.binary(min_size=32, max_size=32),
    ),
    max_size=MAX_LINKS,
)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 255),
    st.integers(1, 2**40),
    st.binary(max_size=300),
    links,
    st.integers(0, 2**63),
)
def test_round_trip(kind: int, seq: int, payload: bytes, chosen: list[Link], ts: int) -> None:
    block = Block.create(
        KEY,
        kind=kind,
        seq=seq,
        prev=hashlib.sha256(b"p").digest(),
        tree_root=hashlib.sha256(b"r").digest(),
        timestamp_ms=ts,
        payload=payload,
        links=tuple(chosen),
    )
    again = Block.from_wire(block.to_wire())
    assert again == block and again.wire == block.wire
    assert again.links == tuple(chosen) and again.payload_matches(payload)
    assert again.author_id == KEY.node_id and again.leaf == leaf_hash(block.wire)
    assert len(block.wire) == Block.HEADER_SIZE + 72 * len(chosen) + 64


def test_a_bit_flipped_anywhere_is_refused() -> None:
    block = first(links=(Link(OTHER.public_key_bytes, 3, bytes(range(32))),))
    for i in range(len(block.wire)):
        for bit in (0x01, 0x80):
            flipped = bytearray(block.wire)
            flipped[i] ^= bit
            with pytest.raises(BadBlock):
                Block.from_wire(bytes(flipped))


def test_lengths_versions_and_link_counts() -> None:
    wire = first().wire
    with pytest.raises(BadBlock, match="too short"):
        Block.from_wire(wire[:100])
    with pytest.raises(BadBlock, match="bytes, but 0 links"):
        Block.from_wire(wire + b"\0")
    with pytest.raises(BadBlock, match="wrong magic"):
        Block.from_wire(b"XXXX" + wire[4:])
    with pytest.raises(BadBlock, match="version 2"):
        Block.from_wire(wire[:4] + b"\x02" + wire[5:])
    with pytest.raises(BadBlock, match="at most 16"):
        first(links=(Link(bytes(32), 0, bytes(32)),) * 17)
    with pytest.raises(BadBlock, match="first block"):
        Block.create(
            KEY, kind=1, seq=0, prev=b"\1" * 32, tree_root=EMPTY_ROOT, timestamp_ms=0, payload=b""
        )


def test_small_order_and_non_canonical_keys_and_signatures_are_refused() -> None:
    wire = bytearray(first().wire)
    for weak in (bytes(32), bytes([1]) + bytes(31), b"\xec" + b"\xff" * 30 + b"\x7f"):
        forged = bytes(wire[:8]) + weak + bytes(wire[40:])
        with pytest.raises(BadBlock, match="weak"):
            Block.from_wire(forged)
    # S + L verifies arithmetically on lenient libraries; it is not canonical and refused.
    s = int.from_bytes(wire[-32:], "little") + L
    if s < 2**256:
        malleable = bytes(wire[:-32]) + s.to_bytes(32, "little")
        with pytest.raises(BadBlock, match="signature"):
            Block.from_wire(malleable)


def test_the_signature_covers_the_domain_separated_header() -> None:
    block = first()
    header = block.wire[:-64]
    from hypermesh.transport.identity import verify_signature

    assert verify_signature(KEY.node_id, CONTEXT + header, block.signature)
    assert not verify_signature(KEY.node_id, header, block.signature)
    (size,) = struct.unpack_from(">Q", block.wire, 120)
    assert size == len(b"hello")


def test_follows_checks_height_link_tree_and_time() -> None:
    a = first()
    b = Block.create(
        KEY,
        kind=1,
        seq=1,
        prev=a.hash,
        tree_root=leaf_hash(a.wire),
        timestamp_ms=a.timestamp_ms,
        payload=b"",
    )
    b.follows(a, leaf_hash(a.wire))
    with pytest.raises(BadBlock, match="tree head"):
        b.follows(a, EMPTY_ROOT)
    earlier = Block.create(
        KEY,
        kind=1,
        seq=1,
        prev=a.hash,
        tree_root=leaf_hash(a.wire),
        timestamp_ms=a.timestamp_ms - 1,
        payload=b"",
    )
    with pytest.raises(BadBlock, match="timed before"):
        earlier.follows(a, leaf_hash(a.wire))
    stranger = Block.create(
        OTHER,
        kind=1,
        seq=1,
        prev=a.hash,
        tree_root=leaf_hash(a.wire),
        timestamp_ms=a.timestamp_ms,
        payload=b"",
    )
    with pytest.raises(BadBlock, match="another author"):
        stranger.follows(a, leaf_hash(a.wire))
