"""The SDK for scripts: the same operations as ``hypermesh.sdk.Mesh``, each a plain call that
runs to completion (an event loop of its own per call; not for use inside a running loop).

    from hypermesh.sdk.sync import Mesh

    mesh = Mesh.from_state(".hypermesh", node="alpha")
    print(mesh.resolve("www.acme", "HTTPS").records)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hypermesh.chain.block import Block, Link
from hypermesh.chain.client import Head
from hypermesh.chain.provenance import Bundle
from hypermesh.sdk import mesh as aio
from hypermesh.sdk.names import DnsTransport
from hypermesh.sdk.paths import PathsView
from hypermesh.sdk.results import DnsResult, MeshNode, NodeResponse, PingResult, VerifiedChain
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord

T = TypeVar("T")


def _run(make: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(make)


class Mesh:
    """``hypermesh.sdk.Mesh``, synchronously: every operation a call of its own."""

    def __init__(self, inner: aio.Mesh) -> None:
        self.inner = inner

    @classmethod
    def from_state(cls, state: str | Path = ".hypermesh", *, node: str | None = None) -> Mesh:
        """``hypermesh.sdk.Mesh.from_state``, wrapped."""
        return cls(aio.Mesh.from_state(state, node=node))

    @classmethod
    def of(
        cls,
        identity: Identity | None,
        *,
        node: PeerRef | None = None,
        registry: PeerRef | None = None,
        timeout: float = 10.0,
    ) -> Mesh:
        """A Mesh from its parts, as ``hypermesh.sdk.Mesh(identity, node=, registry=)``."""
        return cls(aio.Mesh(identity, node=node, registry=registry, timeout=timeout))

    def peer(self, name: str) -> MeshNode:
        """The node called ``name`` in the directory."""
        return self.inner.peer(name)

    def _fresh(self) -> aio.Mesh:
        """A Mesh for one call: kept-open connections belong to one event loop."""
        inner = self.inner
        return aio.Mesh(
            inner.identity,
            node=inner.node,
            registry=inner.registry,
            directory=inner.directory,
            timeout=inner.timeout,
        )

    def _do(self, name: str, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            async with self._fresh() as mesh:
                return await getattr(mesh, name)(*args, **kwargs)

        return _run(call())

    # -- names --------------------------------------------------------------------------

    # -- nodes by key -------------------------------------------------------------------

    def locate(self, node_id: str, *, via: PeerRef | None = None) -> NodeRecord:
        """``Mesh.locate``: a node's signed record, by its key."""
        record: NodeRecord = self._do("locate", node_id, via=via)
        return record

    def connect(self, target: str, *, via: PeerRef | None = None) -> MeshNode:
        """``Mesh.connect``: where a node (ID or name) answers as its key."""
        node: MeshNode = self._do("connect", target, via=via)
        return node

    def ping(
        self,
        target: str,
        count: int = 3,
        *,
        via: PeerRef | None = None,
        from_node: bool | None = None,
    ) -> PingResult:
        """``Mesh.ping``: round trips to a node on one connection, and the path they took."""
        result: PingResult = self._do("ping", target, count, via=via, from_node=from_node)
        return result

    def paths(self, of: PeerRef | None = None) -> PathsView:
        """``Mesh.paths``: how the own node reaches each peer now."""
        view: PathsView = self._do("paths", of)
        return view

    def resolve(self, name: str, type: str = "A", **kwargs: Any) -> DnsResult:
        """``Mesh.resolve``: a name checked from the registry's key."""
        result: DnsResult = self._do("resolve", name, type, **kwargs)
        return result

    def query(
        self,
        message: Any,
        *,
        via: PeerRef | None = None,
        transport: DnsTransport = "doq",
        verify: bool = False,
        anchor: str | None = None,
    ) -> DnsResult:
        """``Mesh.query``: one DNS message, the verdict in the result."""
        result: DnsResult = self._do(
            "query", message, via=via, transport=transport, verify=verify, anchor=anchor
        )
        return result

    def fetch(self, url: str, **kwargs: Any) -> NodeResponse:
        """``Mesh.fetch``: ``https://NAME/path`` over HTTP/3, endpoint and key from DNS."""
        result: NodeResponse = self._do("fetch", url, **kwargs)
        return result

    # -- the registry -------------------------------------------------------------------

    def _dict(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._do(name, *args, **kwargs)
        return result

    def register_tld(self, tld: str, **kwargs: Any) -> dict[str, Any]:
        """``Mesh.register_tld``."""
        return self._dict("register_tld", tld, **kwargs)

    def tlds(self) -> list[dict[str, Any]]:
        """``Mesh.tlds``: every TLD of the registry."""
        result: list[dict[str, Any]] = self._do("tlds")
        return result

    def tld(self, name: str) -> dict[str, Any]:
        """``Mesh.tld``: one TLD with its record sets."""
        return self._dict("tld", name)

    def approve_tld(self, tld: str) -> dict[str, Any]:
        """``Mesh.approve_tld`` (administrator key)."""
        return self._dict("approve_tld", tld)

    def reject_tld(self, tld: str, reason: str = "") -> dict[str, Any]:
        """``Mesh.reject_tld`` (administrator key)."""
        return self._dict("reject_tld", tld, reason)

    def expire_tld(self, tld: str, reason: str = "") -> dict[str, Any]:
        """``Mesh.expire_tld`` (administrator key)."""
        return self._dict("expire_tld", tld, reason)

    def renew_tld(self, tld: str) -> dict[str, Any]:
        """``Mesh.renew_tld`` (the owner's key)."""
        return self._dict("renew_tld", tld)

    def transfer_tld(self, tld: str, new_owner: Identity) -> dict[str, Any]:
        """``Mesh.transfer_tld`` (the owner's key, cosigned by ``new_owner``)."""
        return self._dict("transfer_tld", tld, new_owner)

    def reserve_name(self, name: str) -> dict[str, Any]:
        """``Mesh.reserve_name`` (administrator key); returns the policy."""
        return self._dict("reserve_name", name)

    def unreserve_name(self, name: str) -> dict[str, Any]:
        """``Mesh.unreserve_name`` (administrator key); returns the policy."""
        return self._dict("unreserve_name", name)

    def registry_policy(self) -> dict[str, Any]:
        """``Mesh.registry_policy``."""
        return self._dict("registry_policy")

    def change_registry_policy(self, **changes: Any) -> dict[str, Any]:
        """``Mesh.change_registry_policy`` (administrator key)."""
        return self._dict("change_registry_policy", **changes)

    def revoke_key(self, node_id: str, **kwargs: Any) -> dict[str, Any]:
        """``Mesh.revoke_key`` (administrator key, or the key itself)."""
        return self._dict("revoke_key", node_id, **kwargs)

    def revocations(self) -> list[dict[str, Any]]:
        """``Mesh.revocations``: the revoked node keys."""
        result: list[dict[str, Any]] = self._do("revocations")
        return result

    def set_records(self, tld: str, name: str, type: str, values: Sequence[str], **kw: Any) -> int:
        """``Mesh.set_records``; returns the zone's serial."""
        return int(self._do("set_records", tld, name, type, values, **kw))

    def delete_records(self, tld: str, name: str, type: str) -> int:
        """``Mesh.delete_records``; returns the zone's serial."""
        return int(self._do("delete_records", tld, name, type))

    # -- chains -------------------------------------------------------------------------

    def append(self, payload: bytes, *, kind: str = "note", links: Sequence[Link] = ()) -> Block:
        """``Mesh.append``: a block on the own node's chain."""
        result: Block = self._do("append", payload, kind=kind, links=links)
        return result

    def head(self, of: PeerRef | None = None) -> Head:
        """``Mesh.head``: a chain's head, checked."""
        result: Head = self._do("head", of)
        return result

    def block(self, seq: int, of: PeerRef | None = None) -> tuple[Block, bytes | None]:
        """``Mesh.block``: one block with its payload."""
        result: tuple[Block, bytes | None] = self._do("block", seq, of)
        return result

    def blocks(self, of: PeerRef | None = None, start: int = 0) -> list[Block]:
        """``Mesh.blocks``: the blocks of a chain from ``start``."""
        result: list[Block] = self._do("blocks", of, start)
        return result

    def entries(
        self, of: PeerRef | None = None, start: int = 0
    ) -> list[tuple[Block, bytes | None]]:
        """``Mesh.entries``: the blocks with their payloads."""
        result: list[tuple[Block, bytes | None]] = self._do("entries", of, start)
        return result

    def verify_chain(self, of: PeerRef | None = None) -> VerifiedChain:
        """``Mesh.verify_chain``: a whole chain, checked."""
        result: VerifiedChain = self._do("verify_chain", of)
        return result

    def witnesses(
        self, chain: VerifiedChain, trusted: Iterable[str], of: PeerRef | None = None
    ) -> tuple[int, int]:
        """``Mesh.witnesses``: (checkpoint size, trusted cosignatures)."""
        result: tuple[int, int] = self._do("witnesses", chain, list(trusted), of)
        return result

    def inclusion(
        self, seq: int, size: int | None = None, of: PeerRef | None = None
    ) -> dict[str, Any]:
        """``Mesh.inclusion``: an inclusion proof, checked."""
        return self._dict("inclusion", seq, size, of)

    def consistency(
        self, old: int, new: int | None = None, of: PeerRef | None = None
    ) -> dict[str, Any]:
        """``Mesh.consistency``: a consistency proof, checked."""
        return self._dict("consistency", old, new, of)

    def provenance(self, seq: int, origin: str, of: PeerRef | None = None) -> Bundle:
        """``Mesh.provenance``: a provenance bundle, checked."""
        result: Bundle = self._do("provenance", seq, origin, of)
        return result

    verify_bundle = staticmethod(aio.Mesh.verify_bundle)

    # -- messages and tunnels -----------------------------------------------------------

    def send(self, to: PeerRef | str, text: str) -> dict[str, Any]:
        """``Mesh.send``: a sealed message from the own node."""
        return self._dict("send", to, text)

    def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        """``Mesh.inbox``: what the own node received, newest first."""
        result: list[dict[str, Any]] = self._do("inbox", limit)
        return result

    def request(
        self,
        destination: MeshNode,
        relays: Sequence[MeshNode],
        method: str,
        path: str,
        *,
        body: bytes = b"",
        ttl: float = 60.0,
    ) -> Any:
        """One request through a fresh tunnel (opened and closed in this call)."""

        async def call() -> Any:
            async with self._fresh() as mesh:
                tunnel = await mesh.tunnel(destination, relays, ttl=ttl)
                async with tunnel:
                    return await tunnel.request(method, path, body=body)

        return _run(call())
