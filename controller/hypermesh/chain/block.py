"""Block format v1: one signed, hash-linked entry of a node's chain.

Every integer is big-endian; the layout is fixed except for the links::

    offset  size  field
         0     4  magic "HMCB"
         4     1  format version (1)
         5     1  kind (``KINDS``)
         6     2  number of links, 0 to 16
         8    32  author: the Ed25519 public key of the chain's node
        40     8  sequence number (height), 0 for the first block
        48    32  SHA-256 of the previous block's bytes (zeros at height 0)
        80    32  RFC 6962 tree head of blocks 0 … seq-1 (SHA-256("") at height 0)
       112     8  author's timestamp, milliseconds since 1970 (advisory, never decreasing)
       120     8  payload length in bytes
       128    32  SHA-256 of the payload
       160  72·n  links: (author 32, sequence 8, block hash 32) of blocks of other chains
    160+72n   64  Ed25519 signature over "hypermesh-block-v1" NUL || bytes 0 … 160+72n

A block's hash is SHA-256 of all its bytes, signature included; its leaf in the chain's Merkle
tree is ``SHA-256(0x00 || bytes)``. Because each block carries the tree head of everything
before it, every block is also a signed tree head. The exact bytes are what is stored, hashed
and sent: a block is never encoded again from its fields once signed.

Refused on decoding: a wrong magic or version, a length that does not match the link count,
more than 16 links, a weak author key (small order or non-canonical) and a signature that is
not canonical or does not verify.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from hypermesh.chain.merkle import EMPTY_ROOT, leaf_hash
from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import (
    Identity,
    is_weak_public_key,
    node_id_from_public_key,
    verify_with_key,
)

MAGIC = b"HMCB"
VERSION = 1
MAX_LINKS = 16
CONTEXT = b"hypermesh-block-v1\0"
ZERO = bytes(32)

_HEADER = struct.Struct(">4sBBH32sQ32s32sQQ32s")
_LINK = struct.Struct(">32sQ32s")
HEADER_SIZE = _HEADER.size
LINK_SIZE = _LINK.size
SIGNATURE_SIZE = 64
MAX_U64 = 2**64 - 1
"""The widest integer field (height, timestamp, payload length, a link's height)."""
MAX_STORED = 2**63 - 1
"""The highest height a node stores (SQLite integers are signed 64-bit): the format allows up
to 2^64-1, which no chain reaches; a proof or checkpoint claiming a height past this is
refused, never stored."""
MAX_BLOCK = HEADER_SIZE + MAX_LINKS * LINK_SIZE + SIGNATURE_SIZE
"""Bytes of the largest block (16 links)."""
MAX_BLOCK_TEXT = 4 * -(-MAX_BLOCK // 3)
"""Base64 characters of the largest block."""

KINDS = {1: "note", 2: "link", 3: "receipt", 4: "message", 5: "key"}
"""Block kinds by number: free data, links only, a receipt answering a link, a message sent,
a key event."""
KIND_NUMBERS = {name: number for number, name in KINDS.items()}


class Unverified(HyperMeshError):
    """Chain data that does not check out: a block, a payload, a proof, a bundle, a node's
    answer about its chain (the message says what is wrong). Whoever checks it reports a
    failed verification, never a crash; the command line exits 1."""


class BadBlock(Unverified):
    """Bytes that are not a valid block v1 (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A reference to a block of another chain: its author, height and hash."""

    author: bytes
    seq: int
    hash: bytes

    def __post_init__(self) -> None:
        if len(self.author) != 32 or len(self.hash) != 32:
            raise BadBlock("a link holds a 32-byte author key and a 32-byte block hash")
        if not 0 <= self.seq <= MAX_U64:
            raise BadBlock(f"a link's height {self.seq} is not 0 to {MAX_U64}")


@dataclass(frozen=True, slots=True)
class Block:
    """A decoded block; ``wire`` holds the exact signed bytes it came from."""

    kind: int
    author: bytes
    seq: int
    prev: bytes
    tree_root: bytes
    timestamp_ms: int
    payload_size: int
    payload_hash: bytes
    links: tuple[Link, ...]
    signature: bytes
    wire: bytes
    hash: bytes = field(default=b"", compare=False)
    """SHA-256 of the block's bytes (computed once, on construction)."""
    leaf: bytes = field(default=b"", compare=False)
    """The block's leaf hash in its chain's Merkle tree (computed once)."""

    HEADER_SIZE: ClassVar[int] = _HEADER.size

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", hashlib.sha256(self.wire).digest())
        object.__setattr__(self, "leaf", leaf_hash(self.wire))

    @property
    def author_id(self) -> str:
        """The author's node ID."""
        return node_id_from_public_key(self.author)

    @property
    def kind_name(self) -> str:
        return KINDS.get(self.kind, str(self.kind))

    def to_wire(self) -> bytes:
        return self.wire

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        kind: int,
        seq: int,
        prev: bytes,
        tree_root: bytes,
        timestamp_ms: int,
        payload: bytes,
        links: tuple[Link, ...] = (),
    ) -> Block:
        """Sign a new block as ``identity``; ``BadBlock`` when a field does not fit its width."""
        if not 0 <= kind <= 255:
            raise BadBlock(f"kind {kind} is not 0-255")
        if len(links) > MAX_LINKS:
            raise BadBlock(f"{len(links)} links: a block has at most {MAX_LINKS}")
        if not (0 <= seq <= MAX_U64 and 0 <= timestamp_ms <= MAX_U64):
            raise BadBlock(f"height {seq} or time {timestamp_ms} is not 0 to {MAX_U64}")
        if seq == 0 and (prev != ZERO or tree_root != EMPTY_ROOT):
            raise BadBlock("the first block links to nothing and covers the empty tree")
        digest = hashlib.sha256(payload).digest()
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            kind,
            len(links),
            identity.public_key_bytes,
            seq,
            prev,
            tree_root,
            timestamp_ms,
            len(payload),
            digest,
        ) + b"".join(_LINK.pack(link.author, link.seq, link.hash) for link in links)
        signature = identity.sign(CONTEXT + header)
        # Built from the fields just packed: decoding our own bytes again would only verify a
        # signature we made (the round trip is what the tests check).
        return cls(
            kind,
            identity.public_key_bytes,
            seq,
            prev,
            tree_root,
            timestamp_ms,
            len(payload),
            digest,
            tuple(links),
            signature,
            header + signature,
        )

    @classmethod
    def from_wire(cls, wire: bytes) -> Block:
        """Decode and check ``wire``; ``BadBlock`` saying what is wrong."""
        if len(wire) < _HEADER.size + SIGNATURE_SIZE:
            raise BadBlock(f"{len(wire)} bytes: too short for a block")
        (magic, version, kind, count, author, seq, prev, root, ts, size, digest) = (
            _HEADER.unpack_from(wire)
        )
        if magic != MAGIC:
            raise BadBlock("not a HyperMesh block (wrong magic)")
        if version != VERSION:
            raise BadBlock(f"block format version {version} is not known (this code reads 1)")
        if count > MAX_LINKS:
            raise BadBlock(f"{count} links: a block has at most {MAX_LINKS}")
        body = _HEADER.size + count * _LINK.size
        if len(wire) != body + SIGNATURE_SIZE:
            raise BadBlock(f"{len(wire)} bytes, but {count} links make {body + SIGNATURE_SIZE}")
        if is_weak_public_key(author):
            raise BadBlock("the author key is weak (small order or not canonical)")
        if seq == 0 and (prev != ZERO or root != EMPTY_ROOT):
            raise BadBlock("the first block must link to nothing and cover the empty tree")
        signature = wire[body:]
        if not verify_with_key(author, CONTEXT + wire[:body], signature):
            raise BadBlock(f"block {seq}: the signature does not verify")
        links = tuple(
            Link(*_LINK.unpack_from(wire, _HEADER.size + i * _LINK.size)) for i in range(count)
        )
        return cls(kind, author, seq, prev, root, ts, size, digest, links, signature, bytes(wire))

    def follows(self, previous: Block, tree_root: bytes) -> None:
        """Check that this block comes right after ``previous`` on the same chain, whose tree
        of blocks 0 … previous.seq has head ``tree_root``; ``BadBlock`` otherwise."""
        if self.author != previous.author:
            raise BadBlock(f"block {self.seq} is by another author")
        if self.seq != previous.seq + 1:
            raise BadBlock(f"block {self.seq} does not follow block {previous.seq}")
        if self.prev != previous.hash:
            raise BadBlock(f"block {self.seq} does not link to block {previous.seq}'s hash")
        if self.tree_root != tree_root:
            raise BadBlock(f"block {self.seq} carries a tree head that is not its chain's")
        if self.timestamp_ms < previous.timestamp_ms:
            raise BadBlock(f"block {self.seq} is timed before block {previous.seq}")

    def payload_matches(self, payload: bytes) -> bool:
        return len(payload) == self.payload_size and (
            hashlib.sha256(payload).digest() == self.payload_hash
        )
