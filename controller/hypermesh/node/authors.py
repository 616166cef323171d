"""Where the chains a node follows are found across hosts: the authors, by key, in the network's
node directory.

A node follows the chains its own chain links to (``hypermesh.chain.follower``), asking its
peers: the other nodes of its host and its registry. An author on another host is none of
those, and none of them need hold a copy of its chain. Its node record at the registry
(``GET /registry/v1/node?id=``, signed by the author's own key and checked here: signature,
expiry, that very key) says where it answers. ``DirectoryPeers`` looks up each followed author
that is not already a peer, keeps where it was found for ``REFRESH`` seconds (or until its
record expires, whichever is first; a 404 forgets it), and gives the follower its peers plus
those authors, each pinned to its key.

Nothing runs on a fixed interval: ``run`` looks again when a location falls due (the earliest
of those times), when the node's chain links to another author (``wake``), and, while some
author is not located, after ``RETRY`` waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from hypermesh.errors import HyperMeshError
from hypermesh.node.feature import NodeContext
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.address import PeerRef, format_address, parse_address
from hypermesh.transport.identity import node_id_from_public_key
from hypermesh.transport.noderecord import BadNodeRecord, NodeRecord

log = logging.getLogger("hypermesh.chain")

REFRESH = 30.0
"""Seconds an author's address found in the directory is used before it is looked up again."""
RETRY = (2.0, 5.0, 15.0, 30.0, 60.0, 300.0)
"""Waits before looking again for authors not located, the last repeated."""
TIMEOUT = 5.0
MAX_AUTHORS = 256
"""Authors looked up in the directory at most (the rest are followed through the peers only)."""


class DirectoryPeers:
    """The chain follower's peers: the node's own (``NodeContext.chain_peers``) and the authors
    it follows, located by key in the node directory."""

    def __init__(
        self,
        node: NodeContext,
        followed: Callable[[], Iterable[bytes]],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.node = node
        self.followed = followed
        self.on_change = on_change
        """Called when where an author answers changed (the follower watches it there)."""
        self.found: dict[str, tuple[PeerRef, float]] = {}
        """Author node ID -> (where it answers, until when that is used: monotonic)."""
        self.looks = 0
        """Times ``run`` looked at the followed authors."""
        self._wake = asyncio.Event()

    def peers(self) -> list[PeerRef]:
        """The node's peers, then each located author that is not one of them."""
        own = self.node.chain_peers()
        known = {p.node_id for p in own}
        return own + [p for node_id, (p, _) in sorted(self.found.items()) if node_id not in known]

    def incomplete(self) -> bool:
        """Whether a peer the node is configured with (a node of its host, its registry) is
        not running now, or its key is not written yet."""
        node = self.node
        configured = [u for u in (*node.config.peers, node.config.registry) if u is not None]
        found = [node.upstream(u) for u in configured]
        return any(p is None or not p.node_id for p in found)

    def registry(self) -> PeerRef | None:
        """Where the network's registry answers now: the node's upstream, or the node itself
        when it is the registry."""
        node = self.node
        if "registry" in node.config.roles and node.addresses.public is not None:
            host, port = parse_address(node.addresses.public)
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 (compared, never bound)
                host = "::1" if ":" in host else "127.0.0.1"
            return PeerRef(format_address(host, port), node.identity.node_id)
        found = node.upstream(node.config.registry)
        return found if found is not None and found.node_id else None

    async def refresh(self, now: float | None = None) -> int:
        """Look up the followed authors that are neither peers nor freshly located; returns
        how many were looked up."""
        now = time.monotonic() if now is None else now
        registry = self.registry()
        if registry is None:
            return 0
        asked = 0
        for node_id in self._wanted():
            held = self.found.get(node_id)
            if held is not None and held[1] > now:
                continue
            asked += 1
            try:
                record = await self.lookup(registry, node_id)
            except (HyperMeshError, BadNodeRecord, TimeoutError) as exc:
                log.debug("author not located", extra={"author": node_id, "error": str(exc)})
                continue
            if record is None or not record.addresses:
                if self.found.pop(node_id, None) is not None:
                    self.on_change()
                continue
            until = now + min(REFRESH, max(0.0, record.expires_at - time.time()))
            where = PeerRef(record.addresses[0], node_id)
            moved = held is None or held[0] != where
            self.found[node_id] = (where, until)
            if moved:
                self.on_change()
        return asked

    def _wanted(self) -> list[str]:
        """The followed authors to locate: neither this node nor one of its peers."""
        known = {p.node_id for p in self.node.chain_peers()} | {self.node.identity.node_id}
        return sorted({node_id_from_public_key(a) for a in self.followed()} - known)[:MAX_AUTHORS]

    def due(self, now: float | None = None) -> tuple[float | None, bool]:
        """(Seconds until a location falls due, or None: none held; whether some author
        wanted is not located.)"""
        now = time.monotonic() if now is None else now
        wanted = self._wanted()
        held = [self.found[n][1] for n in wanted if n in self.found]
        missing = any(n not in self.found or self.found[n][1] <= now for n in wanted)
        return (max(0.0, min(held) - now) if held else None), missing

    def wake(self) -> None:
        """Look at the followed authors now (the node's chain linked to another)."""
        self._wake.set()

    async def lookup(self, registry: PeerRef, node_id: str) -> NodeRecord | None:
        """``node_id``'s record at ``registry``, verified as that key's; None when it has none."""
        client = RegistryClient(
            registry.address, registry.node_id, identity=self.node.identity, timeout=TIMEOUT
        )
        return await client.node_record(node_id=node_id)

    async def run(self) -> None:
        """Keep the located authors fresh until cancelled: look when a location falls due,
        when woken, and after ``RETRY`` waits while an author is not located."""
        attempt = 0
        while True:
            self._wake.clear()
            self.looks += 1
            try:
                await self.refresh()
                until, missing = self.due()
            except Exception:  # a bug must not end following for the node's lifetime
                log.exception("locating followed authors failed")
                until, missing = None, True
            wait = until
            if missing:
                retry = RETRY[min(attempt, len(RETRY) - 1)]
                wait, attempt = (retry if wait is None else min(wait, retry)), attempt + 1
            else:
                attempt = 0
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
                attempt = 0  # woken: a new author, looked for at once and soon again
            except TimeoutError:
                pass
