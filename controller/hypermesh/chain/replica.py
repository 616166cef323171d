"""Other nodes' chains, as this node has seen them: every block checked on ingest, and two
valid blocks at one height kept side by side as a proof of equivocation.

A chain has one writer, so it needs no consensus — but it needs fork detection: a node that
signs two different blocks at the same height (a restored backup, a bug, a lie) has shown two
histories to the world. ``Replicas.ingest`` never overwrites a block it holds; a second, valid
block at a held height is stored with the first as an ``Equivocation`` (transferable: anyone can
check it with nothing but the two blocks), and the author is marked forked from that height.
Blocks past a fork are not accepted from that author any more. A block at the next height that
does not build on the block held (``Diverged``) shows that its author holds another block at
the height below: whoever fetched it asks for that one, which is then the proof.

A key's chain ends at the block that hands it over to a successor (``chain.rotation``): nothing
past it is taken. And a block not held yet is taken from a revoked key only up to that hand-over
(``hypermesh.revocation``); a key revoked without a successor gives nothing more.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypermesh.chain.block import MAX_BLOCK_TEXT, MAX_STORED, ZERO, BadBlock, Block
from hypermesh.chain.merkle import EMPTY_ROOT, MerkleTree
from hypermesh.chain.rotation import KEY, check_rotation
from hypermesh.errors import HyperMeshError
from hypermesh.files import open_private_sqlite
from hypermesh.inputs import BadInput, check, integer_schema, validator
from hypermesh.revocation import NONE, Revocations

SCHEMA = """
CREATE TABLE IF NOT EXISTS replica_blocks (
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    wire BLOB NOT NULL,
    PRIMARY KEY (author, seq)
);
CREATE TABLE IF NOT EXISTS replica_payloads (
    hash BLOB PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS equivocations (
    author BLOB NOT NULL,
    seq INTEGER NOT NULL,
    wire_a BLOB NOT NULL,
    wire_b BLOB NOT NULL,
    PRIMARY KEY (author, seq)
);
"""


_WIRE = {"type": "string", "format": "base64", "maxLength": MAX_BLOCK_TEXT}
PROOF = validator(
    {
        "type": "object",
        "properties": {
            "author": {"type": "string", "format": "node-id"},
            "seq": integer_schema(),
            "first": _WIRE,
            "second": _WIRE,
        },
        "required": ["author", "seq", "first", "second"],
        "additionalProperties": False,
    }
)
"""A proof of equivocation in JSON (``Equivocation.to_json``)."""


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Two blocks by one author at one height: the proof that the author forked its chain."""

    first: Block
    second: Block

    @classmethod
    def check(cls, first: bytes, second: bytes) -> Equivocation:
        """Check two blocks' bytes form a proof; ``BadBlock`` when they do not (a signature
        fails, other authors or heights, or the same block twice)."""
        a, b = Block.from_wire(first), Block.from_wire(second)
        if a.author != b.author:
            raise BadBlock("the two blocks are by different authors: no equivocation")
        if a.seq != b.seq:
            raise BadBlock("the two blocks are at different heights: no equivocation")
        if a.hash == b.hash:
            raise BadBlock("the same block twice: no equivocation")
        return cls(a, b)

    def to_json(self) -> dict[str, Any]:
        return {
            "author": self.first.author_id,
            "seq": self.first.seq,
            "first": base64.b64encode(self.first.wire).decode(),
            "second": base64.b64encode(self.second.wire).decode(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Equivocation:
        """Decode and check a proof; ``BadBlock`` naming what does not hold."""
        try:
            check(PROOF, data)
        except BadInput as exc:
            raise BadBlock(f"not an equivocation proof: {exc}") from None
        proof = cls.check(base64.b64decode(data["first"]), base64.b64decode(data["second"]))
        if (data["author"], data["seq"]) != (proof.first.author_id, proof.first.seq):
            raise BadBlock("author, seq: not the author and height of the two blocks")
        return proof


class ReplicaError(HyperMeshError):
    """A block that cannot be taken into a replica (the message says why)."""


class Diverged(ReplicaError):
    """A block at the next height that builds on another block than the one held: its author
    signed two blocks at the height below (``height``), and the peer holds the other one."""

    def __init__(self, message: str, height: int) -> None:
        super().__init__(message)
        self.height = height


@dataclass(slots=True)
class _Chain:
    tree: MerkleTree
    last: Block | None
    forked_at: int | None


class Replicas:
    """The chains of other authors that this node follows, in SQLite at ``path``; blocks of
    keys ``revocations`` lists are taken as ``hypermesh.revocation`` says."""

    def __init__(self, db: sqlite3.Connection, revocations: Revocations = NONE) -> None:
        self._db = db
        self.revocations = revocations
        self._chains: dict[bytes, _Chain] = {}
        self._listeners: list[Callable[[bytes, str], None]] = []
        for (author,) in db.execute("SELECT DISTINCT author FROM replica_blocks"):
            chain = self._chain(author)
            for (wire,) in db.execute(
                "SELECT wire FROM replica_blocks WHERE author = ? ORDER BY seq", (author,)
            ):
                block = Block.from_wire(wire)
                chain.tree.append(block.leaf)
                chain.last = block
        for author, seq in db.execute("SELECT author, MIN(seq) FROM equivocations GROUP BY author"):
            self._chain(author).forked_at = seq

    @classmethod
    def open(cls, path: Path, revocations: Revocations = NONE) -> Replicas:
        return cls(open_private_sqlite(path, SCHEMA), revocations)

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for what lives beside the replicas (a witness's state)."""
        return self._db

    def on_change(self, listener: Callable[[bytes, str], None]) -> None:
        """Call ``listener(author, what)`` whenever a replica changes from now on: ``block``
        once a block is taken in (committed), ``equivocation`` once a proof is recorded."""
        self._listeners.append(listener)

    def _changed(self, author: bytes, what: str) -> None:
        for listener in self._listeners:
            listener(author, what)

    def _chain(self, author: bytes) -> _Chain:
        chain = self._chains.get(author)
        if chain is None:
            chain = self._chains[author] = _Chain(MerkleTree(), None, None)
        return chain

    # -- reading ---------------------------------------------------------------------------

    def authors(self) -> list[bytes]:
        return sorted(self._chains)

    def size(self, author: bytes) -> int:
        chain = self._chains.get(author)
        return 0 if chain is None else chain.tree.size

    def forked_at(self, author: bytes) -> int | None:
        chain = self._chains.get(author)
        return None if chain is None else chain.forked_at

    def block(self, author: bytes, seq: int) -> Block | None:
        """The block held at ``seq`` (any u64), or None."""
        if not 0 <= seq < self.size(author):
            return None
        row = self._db.execute(
            "SELECT wire FROM replica_blocks WHERE author = ? AND seq = ?", (author, seq)
        ).fetchone()
        return None if row is None else Block.from_wire(row[0])

    def blocks(self, author: bytes, start: int = 0, limit: int = 500) -> list[Block]:
        """Up to ``limit`` held blocks from ``start`` (none when ``start`` is past them)."""
        if not 0 <= start < self.size(author):
            return []
        return [
            Block.from_wire(wire)
            for (wire,) in self._db.execute(
                "SELECT wire FROM replica_blocks WHERE author = ? AND seq >= ? ORDER BY seq "
                "LIMIT ?",
                (author, start, limit),
            )
        ]

    def payload(self, block: Block) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM replica_payloads WHERE hash = ?", (block.payload_hash,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def tree(self, author: bytes) -> MerkleTree:
        return self._chain(author).tree

    def equivocations(self) -> Iterator[Equivocation]:
        for first, second in self._db.execute("SELECT wire_a, wire_b FROM equivocations"):
            yield Equivocation.check(first, second)

    # -- ingest ----------------------------------------------------------------------------

    def ingest(self, block: Block, payload: bytes | None = None) -> str:
        """Take ``block`` (already decoded, so its signature checked) into its author's
        replica. Returns ``added``, ``known`` or ``equivocation``; ``ReplicaError`` when it
        does not follow on (a gap, a wrong tree head; ``Diverged``: another block below), the
        author has forked, its chain has ended at a hand-over, or its key is revoked."""
        chain = self._chain(block.author)
        held = self.block(block.author, block.seq)
        if held is not None:
            if held.hash == block.hash:
                return "known"
            self._record(held, block)  # evidence, whoever the author: taken even if revoked
            return "equivocation"
        if chain.forked_at is not None:
            raise ReplicaError(
                f"{block.author_id} forked its chain at height {chain.forked_at}: "
                "nothing more is taken from it"
            )
        if chain.last is not None and self._hands_over(chain.last):
            raise ReplicaError(
                f"{block.author_id} handed its chain over to a new key at block "
                f"{chain.last.seq}: nothing past it is taken"
            )
        revocation = self.revocations.of(block.author)
        if revocation is not None and revocation.successor is None:
            raise ReplicaError(
                f"block {block.seq} of {block.author_id}: the key was revoked at the registry"
            )
        if block.seq != chain.tree.size:
            raise ReplicaError(
                f"block {block.seq} of {block.author_id} does not follow the {chain.tree.size} held"
            )
        if chain.last is not None and block.prev != chain.last.hash:
            raise Diverged(
                f"block {block.seq} of {block.author_id} builds on another block "
                f"{chain.last.seq} than the one held",
                chain.last.seq,
            )
        try:
            if chain.last is None:
                if block.prev != ZERO or block.tree_root != EMPTY_ROOT:
                    raise BadBlock("a first block must link to nothing")
            else:
                block.follows(chain.last, chain.tree.root())
        except BadBlock as exc:
            raise ReplicaError(str(exc)) from None
        if payload is not None and not block.payload_matches(payload):
            raise ReplicaError(f"block {block.seq}: the payload does not match its hash")
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(
            "INSERT INTO replica_blocks (author, seq, hash, wire) VALUES (?, ?, ?, ?)",
            (block.author, block.seq, block.hash, block.wire),
        )
        if payload is not None:
            self._db.execute(
                "INSERT OR IGNORE INTO replica_payloads (hash, data) VALUES (?, ?)",
                (block.payload_hash, payload),
            )
        self._db.execute("COMMIT")
        chain.tree.append(block.leaf)
        chain.last = block
        self._changed(block.author, "block")
        return "added"

    def _hands_over(self, block: Block) -> bool:
        """Whether ``block`` (held) is its key's hand-over to a successor."""
        if block.kind != KEY:
            return False
        payload = self.payload(block)
        if payload is None:
            return False
        try:
            check_rotation(block, payload)
        except BadBlock:
            return False
        return True

    def add_equivocation(self, proof: Equivocation) -> bool:
        """Take a proof heard from elsewhere (gossip); True if it was new. A proof at a height
        no chain reaches (past ``MAX_STORED``) is not kept."""
        if proof.first.seq > MAX_STORED:
            return False
        known = self._db.execute(
            "SELECT 1 FROM equivocations WHERE author = ? AND seq = ?",
            (proof.first.author, proof.first.seq),
        ).fetchone()
        if known:
            return False
        self._record(proof.first, proof.second)
        return True

    def _record(self, first: Block, second: Block) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO equivocations (author, seq, wire_a, wire_b) VALUES (?,?,?,?)",
            (first.author, first.seq, first.wire, second.wire),
        )
        chain = self._chain(first.author)
        seq = first.seq
        chain.forked_at = seq if chain.forked_at is None else min(chain.forked_at, seq)
        self._changed(first.author, "equivocation")
