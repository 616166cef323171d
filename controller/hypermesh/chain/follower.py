"""A node following the chains its own chain links to, from its peers, and its own chain back
from them after a loss.

Every ``interval`` seconds, ``ChainFollower.round`` asks each peer (another node of the
network, by address and pinned key) for:

- its own chain, for every author this node follows that the peer *is*, from the height held
  (``GET /chain/v1/blocks``), and the replicas the peer holds of authors this node follows but
  the peer is not (``GET /chain/v1/replica``): each block checked on ingest (``Replicas``);
- the proofs of equivocation it holds (``GET /chain/v1/equivocations``): gossip, each proof
  checked, and kept when it is about a chain this node follows (so strangers cannot fill the
  table with proofs about keys of their own making).

An author is followed once this node's chain links to one of its blocks: the follower hears of
every block of its own chain as it becomes durable (``ChainStore.on_append``), whoever appended
it. When a peer's block at the next height builds on another block than the one held
(``Diverged``), the follower asks that peer for the block below, which makes the proof of
equivocation. Every answer of a peer is checked against a schema; a peer that misbehaves is
logged and skipped, never the end of following.

``recover_own`` runs before a node appends anything after it starts: it asks every peer for the
node's own chain past the height it holds. Blocks the node signed and published but lost (a
restored backup, a disk that lied about ``fsync``) come back, checked, so the node never signs a
second block at a height the world has already seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from hypermesh.chain.block import BadBlock, Block, Unverified
from hypermesh.chain.replica import Diverged, Equivocation, ReplicaError, Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.chain.wire import block_from_json
from hypermesh.errors import HyperMeshError
from hypermesh.inputs import BadInput, check, validator
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import AccessDenied, h3_get_json
from hypermesh.transport.identity import node_id_from_public_key

log = logging.getLogger("hypermesh.chain")

API = "/chain/v1"
INTERVAL = 2.0
"""Seconds between rounds of following."""
TIMEOUT = 5.0
PAGE = 500
"""Blocks asked of a peer at once."""
MAX_PROOFS = 1000
"""Proofs of equivocation taken from one peer's answer, at most."""

BLOCKS = validator(
    {
        "type": "object",
        "properties": {"blocks": {"type": "array", "items": {"type": "object"}, "maxItems": PAGE}},
        "required": ["blocks"],
    }
)
PROOFS = validator(
    {
        "type": "object",
        "properties": {
            "equivocations": {
                "type": "array",
                "items": {"type": "object"},
                "maxItems": MAX_PROOFS,
            }
        },
        "required": ["equivocations"],
    }
)


def _items(schema: Any, data: Any, key: str, peer: str) -> list[Any]:
    """The list ``key`` of a peer's answer once it holds against ``schema``."""
    try:
        check(schema, data)
    except BadInput as exc:
        raise Unverified(f"{peer}: a malformed answer: {exc}") from None
    return list(data[key])


class ChainFollower:
    """Keeps ``replicas`` of the chains ``store`` links to, from ``peers()``."""

    def __init__(
        self,
        store: ChainStore,
        replicas: Replicas,
        peers: Callable[[], Sequence[PeerRef]],
        *,
        interval: float = INTERVAL,
    ) -> None:
        self.store = store
        self.replicas = replicas
        self.peers = peers
        self.interval = interval
        self.followed: set[bytes] = set(replicas.authors())
        self.refused: dict[str, str] = {}
        """Peers (by node ID) that refused this node's key at their last round, and why."""
        for block in store.blocks():
            self.note_links(block)
        store.on_append(self.note_links)

    def note_links(self, block: Block) -> None:
        """Follow the authors ``block`` (of this node's chain) links to."""
        for link in block.links:
            if link.author != self.store.identity.public_key_bytes:
                self.followed.add(link.author)

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # a bug must not end following for the node's lifetime
                log.exception("chain following round failed")
            await asyncio.sleep(self.interval)

    async def round(self) -> int:
        """One pass over the peers; returns how many blocks were taken in."""
        taken = 0
        for peer in self.peers():
            if peer.node_id is None:  # a peer whose key is not pinned is not asked
                continue
            refusal = None
            try:
                taken += await self._from(peer)
            except (HyperMeshError, TimeoutError, ValueError, KeyError) as exc:
                refusal = str(exc) if isinstance(exc, AccessDenied) else None
                log.debug("peer unreachable", extra={"peer": peer.address, "error": str(exc)})
            if refusal is None:
                self.refused.pop(peer.node_id, None)
            else:
                self.refused[peer.node_id] = refusal
        return taken

    async def _from(self, peer: PeerRef) -> int:
        taken, me = 0, self.store.identity
        for author in sorted(self.followed):
            held = self.replicas.size(author)
            if self.replicas.forked_at(author) is not None:
                continue
            for item in await self._fetch(peer, author, held):
                try:
                    block, payload = block_from_json(item)
                    if block.author != author:
                        raise BadBlock("a block of another author")
                    result = self.replicas.ingest(block, payload)
                except Diverged as exc:
                    await self._prove_fork(peer, author, exc.height)
                    break
                except (BadBlock, ReplicaError) as exc:
                    log.warning(
                        "block refused",
                        extra={
                            "peer": peer.address,
                            "author": node_id_from_public_key(author),
                            "error": str(exc),
                        },
                    )
                    break
                if result == "equivocation":
                    log.warning(
                        "equivocation",
                        extra={"author": node_id_from_public_key(author), "seq": block.seq},
                    )
                    break
                taken += result == "added"
        proofs = await h3_get_json(
            peer.address,
            f"{API}/equivocations",
            expected_id=peer.node_id,
            identity=me,
            timeout=TIMEOUT,
        )
        for item in _items(PROOFS, proofs, "equivocations", peer.address):
            try:
                proof = Equivocation.from_json(item)
            except BadBlock as exc:
                log.warning("bad equivocation proof", extra={"error": str(exc)})
                continue
            if proof.first.author not in self.followed:
                continue  # kept by those who follow that chain: strangers cannot fill the table
            if self.replicas.add_equivocation(proof):
                log.warning(
                    "equivocation heard",
                    extra={"author": proof.first.author_id, "seq": proof.first.seq},
                )
        return taken

    async def _fetch(self, peer: PeerRef, author: bytes, start: int) -> list[Any]:
        """The blocks of ``author`` from ``start`` that ``peer`` holds (as JSON, unchecked):
        its own chain when it is the author, else its replica."""
        if node_id_from_public_key(author) == peer.node_id:
            path = f"{API}/blocks?from={start}&limit={PAGE}"
        else:
            path = f"{API}/replica?author={node_id_from_public_key(author)}&from={start}"
        data = await h3_get_json(
            peer.address,
            path,
            expected_id=peer.node_id,
            identity=self.store.identity,
            timeout=TIMEOUT,
        )
        return _items(BLOCKS, data, "blocks", peer.address)

    async def _prove_fork(self, peer: PeerRef, author: bytes, height: int) -> None:
        """``peer`` showed a block of ``author`` that builds on another block at ``height``
        than the one held: take that block from it, which makes the proof of equivocation."""
        items = await self._fetch(peer, author, height)
        try:
            block, payload = block_from_json(items[0]) if items else (None, None)
            if block is None or block.author != author or block.seq != height:
                raise BadBlock(f"asked for block {height}, the peer did not show it")
            result = self.replicas.ingest(block, payload)
        except (BadBlock, ReplicaError) as exc:
            log.warning(
                "diverging chain, no proof",
                extra={
                    "peer": peer.address,
                    "author": node_id_from_public_key(author),
                    "error": str(exc),
                },
            )
            return
        if result == "equivocation":
            log.warning(
                "equivocation", extra={"author": node_id_from_public_key(author), "seq": height}
            )

    async def recover_own(self) -> int:
        """Take back, from the peers, blocks of this node's own chain it has lost; returns how
        many. Run before the first append after a start. The peers are asked at once."""
        me = self.store.identity.node_id
        path = f"{API}/replica?author={me}&from={self.store.size}"

        async def ask(peer: PeerRef) -> dict[str, Any] | None:
            try:
                return await h3_get_json(
                    peer.address,
                    path,
                    expected_id=peer.node_id,
                    identity=self.store.identity,
                    timeout=TIMEOUT,
                )
            except (HyperMeshError, TimeoutError, ValueError) as exc:
                log.debug("peer unreachable", extra={"peer": peer.address, "error": str(exc)})
                return None

        peers = [peer for peer in self.peers() if peer.node_id is not None]
        answers = await asyncio.gather(*(ask(peer) for peer in peers))
        recovered = 0
        for peer, data in zip(peers, answers, strict=True):
            items = data.get("blocks", []) if data else []
            try:
                blocks = [block_from_json(item) for item in items]
                recovered += self.store.restore(blocks)
            except (BadBlock, HyperMeshError) as exc:
                log.error(
                    "own chain differs from a peer's copy",
                    extra={"peer": peer.address, "error": str(exc)},
                )
        if recovered:
            log.warning("own blocks recovered from peers", extra={"blocks": recovered})
        return recovered
