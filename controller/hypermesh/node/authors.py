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
INTERVAL = 2.0
"""Seconds between looks at the followed authors (as often as the follower's rounds)."""
TIMEOUT = 5.0
MAX_AUTHORS = 256
"""Authors looked up in the directory at most (the rest are followed through the peers only)."""


class DirectoryPeers:
    """The chain follower's peers: the node's own (``NodeContext.chain_peers``) and the authors
    it follows, located by key in the node directory."""

    def __init__(self, node: NodeContext, followed: Callable[[], Iterable[bytes]]) -> None:
        self.node = node
        self.followed = followed
        self.found: dict[str, tuple[PeerRef, float]] = {}
        """Author node ID -> (where it answers, until when that is used: monotonic)."""

    def peers(self) -> list[PeerRef]:
        """The node's peers, then each located author that is not one of them."""
        own = self.node.chain_peers()
        known = {p.node_id for p in own}
        return own + [p for node_id, (p, _) in sorted(self.found.items()) if node_id not in known]

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
        known = {p.node_id for p in self.node.chain_peers()} | {self.node.identity.node_id}
        wanted = sorted({node_id_from_public_key(a) for a in self.followed()} - known)
        asked = 0
        for node_id in wanted[:MAX_AUTHORS]:
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
                self.found.pop(node_id, None)
                continue
            until = now + min(REFRESH, max(0.0, record.expires_at - time.time()))
            self.found[node_id] = (PeerRef(record.addresses[0], node_id), until)
        return asked

    async def lookup(self, registry: PeerRef, node_id: str) -> NodeRecord | None:
        """``node_id``'s record at ``registry``, verified as that key's; None when it has none."""
        client = RegistryClient(
            registry.address, registry.node_id, identity=self.node.identity, timeout=TIMEOUT
        )
        return await client.node_record(node_id=node_id)

    async def run(self, interval: float = INTERVAL) -> None:
        """Keep the located authors fresh until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug must not end following for the node's lifetime
                log.exception("locating followed authors failed")
            await asyncio.sleep(interval)
