"""A node following the chains its own chain links to, from its peers, and its own chain back
from them after a loss.

Every ``interval`` seconds, ``ChainFollower.round`` asks each peer (another node of the
network, by address and pinned key) for:

- its own chain, for every author this node follows that the peer *is*, from the height held
  (``GET /chain/v1/blocks``), and the replicas the peer holds of authors this node follows but
  the peer is not (``GET /chain/v1/replica``): each block checked on ingest (``Replicas``);
- the proofs of equivocation it holds (``GET /chain/v1/equivocations``): gossip, each proof
  checked before it is kept.

An author is followed once this node's chain links to one of its blocks.

``recover_own`` runs before a node appends anything after it starts: it asks every peer for the
node's own chain past the height it holds. Blocks the node signed and published but lost (a
restored backup, a disk that lied about ``fsync``) come back, checked, so the node never signs a
second block at a height the world has already seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypermesh.chain.block import BadBlock, Block
from hypermesh.chain.replica import Equivocation, ReplicaError, Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.chain.wire import block_from_json
from hypermesh.errors import HyperMeshError
from hypermesh.transport.client import AccessDenied, h3_get_json
from hypermesh.transport.identity import node_id_from_public_key

log = logging.getLogger("hypermesh.chain")

API = "/chain/v1"
INTERVAL = 2.0
"""Seconds between rounds of following."""
TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ChainPeer:
    address: str
    identity: str


class ChainFollower:
    """Keeps ``replicas`` of the chains ``store`` links to, from ``peers()``."""

    def __init__(
        self,
        store: ChainStore,
        replicas: Replicas,
        peers: Callable[[], Sequence[ChainPeer]],
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

    def note_links(self, block: Block) -> None:
        """Follow the authors ``block`` links to (call it for each new own block)."""
        for link in block.links:
            if link.author != self.store.identity.public_key_bytes:
                self.followed.add(link.author)

    async def run(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self.interval)

    async def round(self) -> int:
        """One pass over the peers; returns how many blocks were taken in."""
        taken = 0
        for peer in self.peers():
            refusal = None
            try:
                taken += await self._from(peer)
            except (HyperMeshError, TimeoutError, ValueError, KeyError) as exc:
                refusal = str(exc) if isinstance(exc, AccessDenied) else None
                log.debug("peer unreachable", extra={"peer": peer.address, "error": str(exc)})
            if refusal is None:
                self.refused.pop(peer.identity, None)
            else:
                self.refused[peer.identity] = refusal
        return taken

    async def _from(self, peer: ChainPeer) -> int:
        taken, me = 0, self.store.identity
        for author in sorted(self.followed):
            held = self.replicas.size(author)
            if self.replicas.forked_at(author) is not None:
                continue
            if node_id_from_public_key(author) == peer.identity:
                path = f"{API}/blocks?from={held}&limit=500"
            else:
                path = f"{API}/replica?author={node_id_from_public_key(author)}&from={held}"
            data = await h3_get_json(
                peer.address, path, expected_id=peer.identity, identity=me, timeout=TIMEOUT
            )
            for item in data.get("blocks", []):
                try:
                    block, payload = block_from_json(item)
                    if block.author != author:
                        raise BadBlock("a block of another author")
                    result = self.replicas.ingest(block, payload)
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
            expected_id=peer.identity,
            identity=me,
            timeout=TIMEOUT,
        )
        for item in proofs.get("equivocations", []):
            try:
                proof = Equivocation.from_json(item)
            except BadBlock as exc:
                log.warning("bad equivocation proof", extra={"error": str(exc)})
                continue
            if self.replicas.add_equivocation(proof):
                log.warning(
                    "equivocation heard",
                    extra={"author": proof.first.author_id, "seq": proof.first.seq},
                )
        return taken

    async def recover_own(self) -> int:
        """Take back, from the peers, blocks of this node's own chain it has lost; returns how
        many. Run before the first append after a start. The peers are asked at once."""
        me = self.store.identity.node_id
        path = f"{API}/replica?author={me}&from={self.store.size}"

        async def ask(peer: ChainPeer) -> dict[str, Any] | None:
            try:
                return await h3_get_json(
                    peer.address,
                    path,
                    expected_id=peer.identity,
                    identity=self.store.identity,
                    timeout=TIMEOUT,
                )
            except (HyperMeshError, TimeoutError, ValueError) as exc:
                log.debug("peer unreachable", extra={"peer": peer.address, "error": str(exc)})
                return None

        peers = list(self.peers())
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
