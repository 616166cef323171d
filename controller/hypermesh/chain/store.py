"""A node's own chain on disk: SQLite, ``synchronous=FULL``, appends committed in groups.

``ChainStore.open(path, identity)`` reads the chain back (every block checked) and rebuilds its
Merkle tree in memory. ``append`` signs the next block and commits it with its payload before
it returns; the head the store shows (``head``, ``size``, proofs) moves only after the commit,
so nothing is ever published that a crash could take back, and the next block after a crash is
signed at the height after the last durable one — never a second block at a published height.

``append_many`` commits several blocks in one transaction (group commit), and
``GroupAppender`` does so for concurrent callers: appends that arrive while a commit is under
way go together into the next one.

Payloads live in their own table: ``redact`` removes one and leaves the block (which holds only
the payload's hash and size), so the chain still verifies.

Whoever must know of every new block (the follower, which follows every chain the node's own
chain links to) registers with ``on_append``: it hears of each block once it is durable,
whichever way it came — an append through the API, a receipt of a message, the first block of
a successor key's chain, a block taken back from a peer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hypermesh.chain.block import MAX_LINKS, ZERO, BadBlock, Block, Link
from hypermesh.chain.merkle import MerkleTree
from hypermesh.errors import HyperMeshError
from hypermesh.files import open_private_sqlite
from hypermesh.transport.identity import Identity

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    wire BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS payloads (
    hash BLOB PRIMARY KEY,
    data BLOB NOT NULL
);
"""


class ChainError(HyperMeshError):
    """The chain store cannot do what was asked (the message says why)."""

    status = 400


class NoSuchBlock(ChainError):
    """No block at that height (yet)."""

    status = 404


class ChainWriteFailed(ChainError):
    """The chain could not be written (the disk, the database): nothing was published."""

    status = 503


@dataclass(frozen=True, slots=True)
class Entry:
    """What to append: a kind, a payload and links to other chains; ``BadBlock`` when it
    could not make a block (so one bad entry never fails the others committed with it)."""

    kind: int
    payload: bytes = b""
    links: tuple[Link, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.kind <= 255:
            raise BadBlock(f"kind {self.kind} is not 0-255")
        if len(self.links) > MAX_LINKS:
            raise BadBlock(f"{len(self.links)} links: a block has at most {MAX_LINKS}")


class ChainStore:
    """The chain of ``identity``, kept in the SQLite file at ``path``."""

    def __init__(self, db: sqlite3.Connection, identity: Identity, blocks: list[Block]) -> None:
        self._db = db
        self.identity = identity
        self.tree = MerkleTree(b.leaf for b in blocks)
        """Every block's leaf; may run ahead of ``size`` while a commit is under way."""
        self._durable = self.tree.size
        self._last: Block | None = blocks[-1] if blocks else None
        self._listeners: list[Callable[[Block], None]] = []

    @classmethod
    def open(cls, path: Path, identity: Identity) -> ChainStore:
        """Open (creating, mode 0600) and check the chain at ``path``."""
        db = open_private_sqlite(path, SCHEMA, synchronous="FULL")
        blocks: list[Block] = []
        tree = MerkleTree()
        for seq, wire in db.execute("SELECT seq, wire FROM blocks ORDER BY seq"):
            try:
                block = Block.from_wire(wire)
                if block.seq != seq or block.author != identity.public_key_bytes:
                    raise BadBlock(f"row {seq} holds block {block.seq} of another author")
                if blocks:
                    block.follows(blocks[-1], tree.root())
            except BadBlock as exc:
                db.close()
                raise ChainError(f"{path}: the chain is damaged at block {seq}: {exc}") from None
            blocks.append(block)
            tree.append(block.leaf)
        return cls(db, identity, blocks)

    def close(self) -> None:
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for the tables that live beside the chain (cosignatures)."""
        return self._db

    def on_append(self, listener: Callable[[Block], None]) -> None:
        """Call ``listener`` with every block that becomes durable from now on, appended or
        restored, in order, once it is durable."""
        self._listeners.append(listener)

    def _published_now(self, blocks: Sequence[Block]) -> None:
        for block in blocks:
            for listener in self._listeners:
                listener(block)

    # -- reading --------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many blocks are durable (and published)."""
        return self._durable

    def root(self, size: int | None = None) -> bytes:
        """The tree head of the first ``size`` blocks (default: all durable ones)."""
        return self.tree.root(self._published(size))

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        size = self._published(size)
        if not 0 <= seq < size:
            raise ChainError(f"block {seq} is not in the first {size} blocks")
        return self.tree.inclusion_proof(seq, size)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self._published(new)
        if not 0 < old <= new:
            raise ChainError(f"no consistency proof from {old} to {new} blocks")
        return self.tree.consistency_proof(old, new)

    def _published(self, size: int | None) -> int:
        if size is None:
            return self._durable
        if not 0 <= size <= self._durable:
            raise ChainError(f"the chain has {self._durable} blocks, not {size}")
        return size

    @property
    def head(self) -> Block | None:
        """The last durable block."""
        return self._last

    def block(self, seq: int) -> Block:
        """Block ``seq``; ``NoSuchBlock`` past the head (whatever the height: any u64)."""
        if not 0 <= seq < self.size:
            raise NoSuchBlock(f"no block {seq}: the chain has {self.size}")
        row = self._db.execute("SELECT wire FROM blocks WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise NoSuchBlock(f"no block {seq}: the chain has {self.size}")
        return Block.from_wire(row[0])

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[Block]:
        """Blocks ``start`` … ``end``-1 that are durable (none when ``start`` is past them)."""
        end = self.size if end is None else min(end, self.size)
        if not 0 <= start < end:
            return
        for (wire,) in self._db.execute(
            "SELECT wire FROM blocks WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
        ):
            yield Block.from_wire(wire)

    def payload(self, block: Block) -> bytes | None:
        """The block's payload, or None when it was redacted (or never stored)."""
        row = self._db.execute(
            "SELECT data FROM payloads WHERE hash = ?", (block.payload_hash,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    # -- writing --------------------------------------------------------------------------

    def append(self, kind: int, payload: bytes = b"", links: Sequence[Link] = ()) -> Block:
        """Sign and commit the next block; returns it once it is durable. ``BadBlock`` when
        the entry cannot make a block."""
        return self.append_many([Entry(kind, payload, tuple(links))])[0]

    def append_many(self, entries: Sequence[Entry]) -> list[Block]:
        """Sign the next blocks and commit them in one transaction (one fsync)."""
        durable, last = self._durable, self._last
        made: list[Block] = []
        now = int(time.time() * 1000)
        try:
            for entry in entries:
                block = Block.create(
                    self.identity,
                    kind=entry.kind,
                    seq=self.tree.size,
                    prev=ZERO if last is None else last.hash,
                    tree_root=self.tree.root(),
                    timestamp_ms=max(now, last.timestamp_ms if last else 0),
                    payload=entry.payload,
                    links=entry.links,
                )
                self.tree.append(block.leaf)  # not published: ``size`` stays at ``durable``
                made.append(block)
                last = block
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO blocks (seq, hash, wire) VALUES (?, ?, ?)",
                [(b.seq, b.hash, b.wire) for b in made],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO payloads (hash, data) VALUES (?, ?)",
                [(b.payload_hash, e.payload) for b, e in zip(made, entries, strict=True)],
            )
            self._db.execute("COMMIT")
        except BadBlock as exc:  # only when an entry was built around its checks
            self.tree.truncate(durable)
            raise ChainError(f"the block cannot be made: {exc}") from exc
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self.tree.truncate(durable)
            raise ChainWriteFailed(f"the chain could not be written: {exc}") from exc
        self._durable, self._last = self.tree.size, last  # durable now: publish
        self._published_now(made)
        return made

    def restore(self, blocks: Sequence[tuple[Block, bytes | None]]) -> int:
        """Take back blocks of this chain signed earlier and lost here (from a peer's copy):
        each must be by this node and follow on; returns how many were added. ``BadBlock``
        when one differs from what is held at its height (a fork already made)."""
        added: list[tuple[Block, bytes | None]] = []
        last, tree_size = self._last, self.tree.size
        try:
            for block, payload in blocks:
                if block.author != self.identity.public_key_bytes:
                    raise BadBlock(f"block {block.seq} is by another author")
                if block.seq < self.tree.size:
                    if self.block(block.seq).hash != block.hash:
                        raise BadBlock(f"a peer holds another block at height {block.seq}")
                    continue
                if last is None:
                    if block.seq != 0 or block.prev != ZERO:
                        raise BadBlock(f"block {block.seq} does not start the chain")
                else:
                    block.follows(last, self.tree.root())
                self.tree.append(block.leaf)
                added.append((block, payload))
                last = block
            if added:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO blocks (seq, hash, wire) VALUES (?, ?, ?)",
                    [(b.seq, b.hash, b.wire) for b, _ in added],
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO payloads (hash, data) VALUES (?, ?)",
                    [(b.payload_hash, p) for b, p in added if p is not None],
                )
                self._db.execute("COMMIT")
        except (sqlite3.Error, BadBlock):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self.tree.truncate(tree_size)
            raise
        self._durable, self._last = self.tree.size, last
        self._published_now([b for b, _ in added])
        return len(added)

    def redact(self, seq: int) -> bool:
        """Remove block ``seq``'s payload (the block stays, and the chain still verifies)."""
        block = self.block(seq)
        cursor = self._db.execute("DELETE FROM payloads WHERE hash = ?", (block.payload_hash,))
        return cursor.rowcount > 0


class GroupAppender:
    """Appends from many coroutines, committed together: while one commit runs (in a
    thread), new appends queue up and go into the next transaction."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._queue: list[tuple[Entry, asyncio.Future[Block]]] = []
        self._running = False
        self._task: asyncio.Future[None] | None = None

    async def append(self, kind: int, payload: bytes = b"", links: Sequence[Link] = ()) -> Block:
        future: asyncio.Future[Block] = asyncio.get_running_loop().create_future()
        self._queue.append((Entry(kind, payload, tuple(links)), future))
        if not self._running:
            self._running = True
            self._task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    blocks = await asyncio.to_thread(
                        self.store.append_many, [entry for entry, _ in batch]
                    )
                except Exception as exc:  # every waiter hears of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), block in zip(batch, blocks, strict=True):
                    if not future.done():
                        future.set_result(block)
        finally:
            self._running = False
