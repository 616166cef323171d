"""A node following the chains its own chain links to, from its peers, and its own chain back
from them after a loss.

``ChainFollower.run`` watches each peer's head feed (``GET /chain/v1/watch``: another node of
the network, by address and pinned key, announcing its head, the sizes of the replicas it holds
and the proofs of equivocation it records as they change) and, when a peer announces more than
is held, or the node starts following another author, asks that peer for:

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

A node that follows no chain watches no peer (its first link starts the watches).
Nothing is polled: an idle network wakes no follower, but for the feeds' heartbeats (every
``WATCH_HEARTBEAT`` s, for QUIC's idle timeout) and one safety round over every peer each
``RESYNC`` seconds. A lost feed is watched again after ``RETRY`` waits (a peer with no feed at
all, 404, after ``RESYNC``); each new subscription starts with a snapshot, so nothing announced
while it was away is missed. While a peer the node is configured with is not running yet
(``incomplete``), the peers are looked at again after ``LOOK`` waits. Fetches go over the
watch's own connection while it is open (no handshake per fetch). ``round`` is one pass over
every peer, as the safety round makes.

``recover_own`` runs before a node appends anything after it starts (unless no node started
with its key before: then nobody can hold its blocks): it asks every peer for the
node's own chain past the height it holds. Blocks the node signed and published but lost (a
restored backup, a disk that lied about ``fsync``) come back, checked, so the node never signs a
second block at a height the world has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from hypermesh.chain.block import BadBlock, Block, Unverified
from hypermesh.chain.client import ChainClient
from hypermesh.chain.replica import Diverged, Equivocation, ReplicaError, Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.chain.wire import block_from_json
from hypermesh.errors import HyperMeshError
from hypermesh.inputs import BadInput, check, validator
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import (
    AccessDenied,
    H3ClientProtocol,
    get_json,
    h3_get_json,
)
from hypermesh.transport.feeds import NoFeed
from hypermesh.transport.identity import node_id_from_public_key

log = logging.getLogger("hypermesh.chain")

API = "/chain/v1"
RESYNC = 300.0
"""Seconds between safety rounds over every peer (what the feeds announce is taken at once)."""
RETRY = (0.2, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0)
"""Waits before watching a lost feed again, the last repeated."""
LOOK = (0.5, 1.0, 2.0, 5.0, 15.0, 60.0)
"""Waits before looking at the peers again while one is not running, the last repeated."""
TIMEOUT = 5.0
JSON = "application/json"
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


class _Wants:
    """What one peer's worker is to fetch from it next, and the event that wakes it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.everything = False
        self.authors: set[bytes] = set()
        self.proofs = False

    def want(self, author: bytes | None = None, *, everything: bool = False) -> None:
        """Ask for ``author``'s blocks, or the proofs (None), or ``everything``."""
        if everything:
            self.everything = True
        elif author is None:
            self.proofs = True
        else:
            self.authors.add(author)
        self.event.set()

    def take(self) -> tuple[bool, set[bytes], bool]:
        taken = (self.everything, self.authors, self.proofs)
        self.everything, self.authors, self.proofs = False, set(), False
        self.event.clear()
        return taken


class _Watch:
    """A peer watched: where it answered when the watch began, its wants, its two tasks."""

    def __init__(self, peer: PeerRef) -> None:
        self.peer = peer
        self.wants = _Wants()
        self.tasks: list[asyncio.Task[None]] = []

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class ChainFollower:
    """Keeps ``replicas`` of the chains ``store`` links to, from ``peers()``."""

    def __init__(
        self,
        store: ChainStore,
        replicas: Replicas,
        peers: Callable[[], Sequence[PeerRef]],
        *,
        resync: float = RESYNC,
        incomplete: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.replicas = replicas
        self.peers = peers
        self.resync = resync
        self.incomplete = incomplete
        """Whether some peer the node is configured with is not running (not in ``peers()``)."""
        self.followed: set[bytes] = set(replicas.authors())
        self.refused: dict[str, str] = {}
        """Peers (by node ID) that refused this node's key at their last round, and why."""
        self.syncs = 0
        """Exchanges with a peer made (one a wake of a peer's worker, or a peer in a round)."""
        self.wakes = 0
        """Times the watch of the peers woke (a poke, or the safety round)."""
        self._watches: dict[str, _Watch] = {}
        self._open: dict[PeerRef, H3ClientProtocol] = {}
        """The connection of each peer's watch, while it lasts: fetches go over it."""
        self._poked = asyncio.Event()
        for block in store.blocks():
            self.note_links(block)
        store.on_append(self.note_links)

    def note_links(self, block: Block) -> None:
        """Follow the authors ``block`` (of this node's chain) links to."""
        for link in block.links:
            if link.author != self.store.identity.public_key_bytes:
                if link.author not in self.followed:
                    for watch in self._watches.values():
                        watch.wants.want(link.author)
                    self._poked.set()  # the peers may change with it (an author located)
                self.followed.add(link.author)

    def poke(self) -> None:
        """The peers may have changed: watch the new ones now."""
        self._poked.set()

    async def run(self) -> None:
        """Watch every peer's feed until cancelled; a safety round each ``resync`` s. While
        ``incomplete()`` (a peer is not running yet), look at the peers again after ``LOOK``
        waits, from the first again each time they change."""
        attempt, due = 0, time.monotonic() + self.resync
        try:
            while True:
                self._poked.clear()
                if await self._watch_peers():
                    attempt = 0
                wait = due - time.monotonic()
                if self.incomplete():
                    wait, attempt = min(wait, LOOK[min(attempt, len(LOOK) - 1)]), attempt + 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, wait)):
                        await self._poked.wait()
                if time.monotonic() >= due:
                    for watch in self._watches.values():
                        watch.wants.want(everything=True)
                    due = time.monotonic() + self.resync
                self.wakes += 1
        finally:
            for watch in self._watches.values():
                await watch.stop()
            self._watches.clear()

    async def _watch_peers(self) -> bool:
        """Watch each peer with a pinned key not watched yet (again if it moved); stop
        watching those no longer peers. None while the node follows no chain: there is nothing
        to fetch (a network of n new nodes would hold n(n - 1) feeds for nothing). Whether
        anything changed."""
        peers = self.peers() if self.followed else ()
        now = {p.node_id: p for p in peers if p.node_id is not None}
        changed = False
        for node_id, watch in list(self._watches.items()):
            if now.get(node_id) != watch.peer:
                del self._watches[node_id]
                await watch.stop()
                changed = True
        for node_id, peer in now.items():
            if node_id not in self._watches:
                watch = self._watches[node_id] = _Watch(peer)
                for author in self.followed:  # as note_links asks of the watches it finds
                    watch.wants.want(author)
                watch.tasks = [
                    asyncio.create_task(self._listen(watch)),
                    asyncio.create_task(self._work(watch)),
                ]
                changed = True
        return changed

    def _current(self, node_id: str) -> PeerRef | None:
        return next((p for p in self.peers() if p.node_id == node_id), None)

    async def _listen(self, watch: _Watch) -> None:
        """Read the peer's feed, marking what it announces that is not held; watch it again
        after a loss."""
        peer, attempt = watch.peer, 0
        assert peer.node_id is not None
        while True:
            client = ChainClient(
                peer.address, peer.node_id, caller=self.store.identity, timeout=TIMEOUT
            )
            wait = RETRY[min(attempt, len(RETRY) - 1)]
            try:
                async for notice in client.watch(functools.partial(self._open.__setitem__, peer)):
                    attempt = 0
                    self.refused.pop(peer.node_id, None)
                    self._on_notice(watch, notice)
            except AccessDenied as exc:
                self.refused[peer.node_id] = str(exc)
                log.debug("peer refused the watch", extra={"peer": peer.address})
            except NoFeed:
                self.refused.pop(peer.node_id, None)  # unhelpful, not refusing
                wait = self.resync  # no chain there (yet): tried again at the safety pace
            except (HyperMeshError, TimeoutError, OSError, ValueError) as exc:
                self.refused.pop(peer.node_id, None)
                log.debug("peer's feed lost", extra={"peer": peer.address, "error": str(exc)})
            finally:
                self._open.pop(peer, None)
            if self._current(peer.node_id) != peer:
                self.poke()  # moved or gone: the watch of the peers makes a new one
            await asyncio.sleep(wait)
            attempt += 1

    def _on_notice(self, watch: _Watch, notice: dict[str, Any]) -> None:
        """Mark for fetching what ``notice`` (a line of the peer's feed) shows is not held."""
        peer_id, wants = str(watch.peer.node_id), watch.wants
        followed = {node_id_from_public_key(a): a for a in self.followed}
        sizes: dict[str, Any] = {}
        if isinstance(notice.get("replicas"), dict):  # a snapshot: all it holds
            sizes = dict(notice["replicas"])
            wants.want(None)
        if notice.get("author") == peer_id:
            sizes[peer_id] = notice.get("size")
        if isinstance(notice.get("replica"), str):
            sizes[notice["replica"]] = notice.get("size")
        if isinstance(notice.get("equivocation"), str) and notice["equivocation"] in followed:
            wants.want(None)
        for node_id, size in sizes.items():
            author = followed.get(node_id)
            if (
                author is not None
                and isinstance(size, int)
                and size > self.replicas.size(author)
                and self.replicas.forked_at(author) is None
            ):
                wants.want(author)

    async def _work(self, watch: _Watch) -> None:
        """Fetch from the peer what its feed (or a new link) asked for, when asked."""
        peer = watch.peer
        assert peer.node_id is not None
        while True:
            await watch.wants.event.wait()
            everything, authors, proofs = watch.wants.take()
            self.syncs += 1
            try:
                if everything:
                    await self._from(peer)
                else:
                    for author in sorted(authors & self.followed):
                        await self._author_from(peer, author)
                    if proofs:
                        await self._proofs_from(peer)
            except AccessDenied as exc:
                self.refused[peer.node_id] = str(exc)
            except (HyperMeshError, TimeoutError, ValueError, KeyError) as exc:
                log.debug("peer unreachable", extra={"peer": peer.address, "error": str(exc)})
            except Exception:  # a bug must not end following for the node's lifetime
                log.exception("chain following failed")

    async def round(self) -> int:
        """One pass over the peers; returns how many blocks were taken in."""
        taken = 0
        for peer in self.peers():
            if peer.node_id is None:  # a peer whose key is not pinned is not asked
                continue
            refusal = None
            self.syncs += 1
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
        """Every followed chain and the proofs from ``peer``; how many blocks were taken."""
        taken = 0
        for author in sorted(self.followed):
            taken += await self._author_from(peer, author)
        await self._proofs_from(peer)
        return taken

    async def _author_from(self, peer: PeerRef, author: bytes) -> int:
        """The blocks of ``author`` past those held, from ``peer``; how many were taken."""
        held, taken = self.replicas.size(author), 0
        if self.replicas.forked_at(author) is not None:
            return 0
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
        return taken

    async def _proofs_from(self, peer: PeerRef) -> None:
        """The proofs of equivocation ``peer`` holds about chains this node follows."""
        proofs = await self._get(peer, f"{API}/equivocations")
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

    async def _fetch(self, peer: PeerRef, author: bytes, start: int) -> list[Any]:
        """The blocks of ``author`` from ``start`` that ``peer`` holds (as JSON, unchecked):
        its own chain when it is the author, else its replica."""
        if node_id_from_public_key(author) == peer.node_id:
            path = f"{API}/blocks?from={start}&limit={PAGE}"
        else:
            path = f"{API}/replica?author={node_id_from_public_key(author)}&from={start}"
        return _items(BLOCKS, await self._get(peer, path), "blocks", peer.address)

    async def _get(self, peer: PeerRef, path: str) -> dict[str, Any]:
        """GET ``path`` of ``peer`` as JSON: over its watch's connection when one is open
        (no handshake), else over a new one."""
        h3 = self._open.get(peer)
        if h3 is None or h3.close_reason is not None:
            return await h3_get_json(
                peer.address,
                path,
                expected_id=peer.node_id,
                identity=self.store.identity,
                timeout=TIMEOUT,
            )
        return await get_json(h3, path, timeout=TIMEOUT)

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
