"""Witness cosigning of chain heads, on the rules of C2SP tlog-witness.

A checkpoint of a chain is (author, size, tree head): block ``size`` of the chain signs the tree
head of blocks 0 … size-1, so the block itself is the author's signed checkpoint. A witness
cosigns a checkpoint only after checking a consistency proof from the last checkpoint of that
chain it cosigned — so once it has cosigned a size, it never cosigns a history that does not
extend it. A client that requires k cosignatures from witnesses it trusts knows that the
author showed those k witnesses one and the same history.

The rules (``Witness.cosign``), as tlog-witness states them:

- the author's signature on the checkpoint block must verify;
- ``old_size`` must be the size this witness last cosigned for the chain (0 at first), else the
  request is refused as a conflict naming the size it holds (the author retries with it);
- the consistency proof from (old size, old head) to (size, head) must verify; a size smaller
  than the last cosigned, or the same size with another head, is refused.

And HyperMesh's own: a witness cosigns nothing for a revoked key (``KeyRevoked``), and an author
keeps no cosignature made by a revoked key (``hypermesh.revocation``).

A cosignature is Ed25519 by the witness's key over::

    hypermesh-cosignature-v1 NUL || author key (32) || size (8) || tree head (32) || time (8)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypermesh.chain.block import MAX_STORED, Block, Unverified
from hypermesh.chain.merkle import EMPTY_ROOT, verify_consistency
from hypermesh.errors import HyperMeshError
from hypermesh.inputs import BadInput, check, integer_schema, validator
from hypermesh.revocation import NONE, Revocations
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import (
    Identity,
    node_id_from_public_key,
    public_key_from_node_id,
    verify_with_key,
)

log = logging.getLogger("hypermesh.chain")

CONTEXT = b"hypermesh-cosignature-v1\0"

SCHEMA = """
CREATE TABLE IF NOT EXISTS witnessed (
    author BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL,
    witness BLOB NOT NULL,
    root BLOB NOT NULL,
    timestamp INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (size, witness)
);
"""


class WitnessRefusal(HyperMeshError):
    """A witness will not cosign; ``status`` is 409 (conflict: ``held`` says the size it last
    cosigned) or 422 (the checkpoint or proof does not check out)."""

    def __init__(self, message: str, status: int, held: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.held = held


COSIGNATURE = validator(
    {
        "type": "object",
        "properties": {
            "witness": {"type": "string", "format": "node-id"},
            "size": integer_schema(),
            "root": {"type": "string", "format": "hex32"},
            "timestamp": integer_schema(),
            "signature": {"type": "string", "format": "base64", "maxLength": 88},
        },
        "required": ["witness", "size", "root", "timestamp", "signature"],
    }
)


def cosigned_message(author: bytes, size: int, root: bytes, timestamp: int) -> bytes:
    return CONTEXT + author + struct.pack(">Q", size) + root + struct.pack(">Q", timestamp)


@dataclass(frozen=True, slots=True)
class Cosignature:
    witness: bytes
    size: int
    root: bytes
    timestamp: int
    signature: bytes

    def valid_for(self, author: bytes) -> bool:
        message = cosigned_message(author, self.size, self.root, self.timestamp)
        return verify_with_key(self.witness, message, self.signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "witness": node_id_from_public_key(self.witness),
            "size": self.size,
            "root": self.root.hex(),
            "timestamp": self.timestamp,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Cosignature:
        """Decode (the signature is checked by ``valid_for``); ``Unverified`` naming the
        field when malformed."""
        try:
            check(COSIGNATURE, data)
        except BadInput as exc:
            raise Unverified(f"not a cosignature: {exc}") from None
        return cls(
            public_key_from_node_id(data["witness"]),
            data["size"],
            bytes.fromhex(data["root"]),
            data["timestamp"],
            base64.b64decode(data["signature"]),
        )


def checkpoint_of(block: Block) -> tuple[int, bytes]:
    """The checkpoint a block signs: (its height = the size of the tree before it, that head)."""
    return block.seq, block.tree_root


class Witness:
    """This node as a witness of other chains; its state in ``db``."""

    def __init__(
        self,
        db: sqlite3.Connection,
        identity: Identity,
        clock: Callable[[], float] = time.time,
        *,
        revocations: Revocations = NONE,
    ):
        self._db = db
        self.identity = identity
        self.clock = clock
        self.revocations = revocations
        db.executescript(SCHEMA)

    def held(self, author: bytes) -> tuple[int, bytes]:
        row = self._db.execute(
            "SELECT size, root FROM witnessed WHERE author = ?", (author,)
        ).fetchone()
        return (0, EMPTY_ROOT) if row is None else (int(row[0]), bytes(row[1]))

    def cosign(self, block: Block, old_size: int, proof: Sequence[bytes]) -> Cosignature:
        """Cosign the checkpoint ``block`` signs, by the rules above (``block`` is decoded,
        so its author's signature already checked); ``KeyRevoked`` for a revoked author."""
        self.revocations.refuse(block.author, "a checkpoint to cosign")
        size, root = checkpoint_of(block)
        if size > MAX_STORED:
            raise WitnessRefusal(f"size {size}: no chain is that long", 422)
        held_size, held_root = self.held(block.author)
        if old_size != held_size:
            raise WitnessRefusal(
                f"this witness last cosigned size {held_size} of that chain, not {old_size}",
                409,
                held_size,
            )
        if size < held_size:
            raise WitnessRefusal(
                f"size {size} is smaller than the {held_size} already cosigned", 409, held_size
            )
        if held_size == 0:
            consistent = True  # nothing cosigned yet: any history may start here
        elif size == held_size:
            consistent = root == held_root and not proof
        else:
            consistent = verify_consistency(held_size, size, held_root, root, proof)
        if not consistent:
            raise WitnessRefusal(
                f"the chain at size {size} is not consistent with the size {held_size} "
                "this witness cosigned",
                422,
                held_size,
            )
        timestamp = int(self.clock())
        signature = self.identity.sign(cosigned_message(block.author, size, root, timestamp))
        self._db.execute(
            "INSERT INTO witnessed (author, size, root) VALUES (?, ?, ?) "
            "ON CONFLICT(author) DO UPDATE SET size = excluded.size, root = excluded.root",
            (block.author, size, root),
        )
        return Cosignature(self.identity.public_key_bytes, size, root, timestamp, signature)


class CosignatureStore:
    """The cosignatures an author collected for its own checkpoints."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(SCHEMA)
        self._listeners: list[Callable[[Cosignature], None]] = []

    def on_add(self, listener: Callable[[Cosignature], None]) -> None:
        """Call ``listener`` with every cosignature added from now on, once it is stored."""
        self._listeners.append(listener)

    def add(self, cosignature: Cosignature) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO cosignatures (size, witness, root, timestamp, signature) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                cosignature.size,
                cosignature.witness,
                cosignature.root,
                cosignature.timestamp,
                cosignature.signature,
            ),
        )
        for listener in self._listeners:
            listener(cosignature)

    def for_size(self, size: int) -> list[Cosignature]:
        return [
            Cosignature(bytes(w), size, bytes(r), int(t), bytes(s))
            for w, r, t, s in self._db.execute(
                "SELECT witness, root, timestamp, signature FROM cosignatures WHERE size = ?",
                (size,),
            )
        ]

    def last_by(self, witness: bytes) -> int:
        row = self._db.execute(
            "SELECT MAX(size) FROM cosignatures WHERE witness = ?", (witness,)
        ).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])


def count_valid(
    author: bytes,
    size: int,
    root: bytes,
    cosignatures: Sequence[Cosignature],
    trusted: set[bytes] | None = None,
) -> int:
    """How many distinct witnesses (of ``trusted``, when given) validly cosigned exactly this
    checkpoint."""
    good = {
        c.witness
        for c in cosignatures
        if c.size == size
        and c.root == root
        and c.witness != author
        and (trusted is None or c.witness in trusted)
        and c.valid_for(author)
    }
    return len(good)


RETRY = (1.0, 2.0, 5.0, 15.0, 60.0, 300.0)
"""Waits before asking the witnesses again while fewer than wanted have cosigned, the last
repeated (a new checkpoint asks at once)."""


class CosignCollector:
    """Asks peers to witness this node's latest checkpoint until ``wanted`` have cosigned it:
    ``run`` asks as soon as a new checkpoint is durable (``on_append``), and again after
    ``RETRY`` waits only while fewer than ``wanted`` have cosigned it; else it sleeps."""

    def __init__(
        self,
        store: Any,
        cosignatures: CosignatureStore,
        peers: Callable[[], Sequence[PeerRef]],
        wanted: int,
        ask: Callable[[Any, dict[str, Any]], Any],
        *,
        revocations: Revocations = NONE,
    ) -> None:
        self.store = store
        self.cosignatures = cosignatures
        self.peers = peers
        self.wanted = wanted
        self.ask = ask
        """``ask(peer, body)`` → awaitable of (status, JSON answer)."""
        self.revocations = revocations
        self.rounds = 0
        """Rounds ``run`` made."""

    async def run(self) -> None:
        """Ask for cosignatures of each new checkpoint as it is made, until cancelled."""
        new = asyncio.Event()
        new.set()  # the checkpoint there is at the start
        self.store.on_append(lambda _block: new.set())
        while True:
            await new.wait()
            new.clear()
            for attempt in itertools.count():
                self.rounds += 1
                try:
                    have = await self.round()
                except Exception:  # a peer's bad answer must not end the task
                    log.exception("cosigning round failed")
                    have = 0
                if have >= self.wanted or self.store.head is None or new.is_set():
                    break  # done until the next checkpoint (or on to it now)
                try:
                    async with asyncio.timeout(RETRY[min(attempt, len(RETRY) - 1)]):
                        await new.wait()
                    break
                except TimeoutError:
                    continue

    async def round(self) -> int:
        """Ask the peers that have not cosigned the latest checkpoint; returns how many have."""
        head = self.store.head
        if head is None or self.wanted <= 0:
            return 0
        size, root = checkpoint_of(head)
        have = {
            c.witness
            for c in self.cosignatures.for_size(size)
            if c.root == root and not self.revocations.of(c.witness)
        }
        for peer in self.peers():
            if len(have) >= self.wanted:
                break
            if peer.node_id is None:  # a witness is known by its key
                continue
            key = public_key_from_node_id(peer.node_id)
            if key in have or self.revocations.of(key):
                continue
            old = self.cosignatures.last_by(key)
            for _ in range(2):  # a conflict names the size the witness holds: retry with it
                proof = self.store.consistency_proof(old, size) if 0 < old < size else []
                body = {
                    "block": base64.b64encode(head.wire).decode(),
                    "oldSize": old,
                    "proof": [p.hex() for p in proof],
                }
                try:
                    status, answer = await self.ask(peer, body)
                except HyperMeshError:
                    break
                if status == 409 and isinstance(answer.get("held"), int) and answer["held"] != old:
                    old = int(answer["held"])
                    if old > size:
                        break
                    continue
                if status == 200:
                    try:
                        cosignature = Cosignature.from_json(answer)
                    except Unverified:
                        break
                    if (
                        cosignature.size == size
                        and cosignature.root == root
                        and (cosignature.witness == key and cosignature.valid_for(head.author))
                    ):
                        self.cosignatures.add(cosignature)
                        have.add(key)
                break
        return len(have)
