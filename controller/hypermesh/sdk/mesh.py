"""The Python SDK: one client for everything a program does with a HyperMesh network.

    from hypermesh.sdk import Mesh

    async with Mesh.from_state(".hypermesh", node="alpha") as mesh:
        answer = await mesh.resolve("www.acme", "HTTPS")          # checked from the registry key
        page = await mesh.fetch("https://www.acme/status")      # endpoint from HTTPS, key from TLSA
        await mesh.set_records("acme", "api", "A", ["192.0.2.10"])
        block = await mesh.append(b"hello")                      # on alpha's chain
        await mesh.send(mesh.peer("beta"), "hi")                  # sealed, receipts on both chains
        async with await mesh.tunnel(mesh.peer("beta"), [mesh.peer("r1"), mesh.peer("r2")]) as t:
            status = await t.request("GET", "/status")

A ``Mesh`` acts as one identity (a node key), which it proves in every handshake (so the nodes'
InterfacePolicies know who asks; ``fetch(identify=False)`` and tunnels stay anonymous), and
talks to the network through nodes whose keys it pins (``PeerRef``; the
directory's are ``MeshNode``s): its own node (chains,
messages), any node for names, the registry for registrations. Every error it raises is one of
HyperMesh's own (``hypermesh.errors``): transport failures are ``TransportError``, refusals
``Refused``, answers that do not check out ``Unverified`` — never a raw aioquic, socket or SQL
exception. ``hypermesh.sdk.sync`` has the same operations as plain functions for scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype

from hypermesh.chain import verify as chain_verify
from hypermesh.chain.block import Block, Link
from hypermesh.chain.block import Unverified as BadChain
from hypermesh.chain.client import RETRY, ChainClient, Head
from hypermesh.chain.merkle import MerkleTree
from hypermesh.chain.provenance import Bundle, verify_bundle
from hypermesh.chain.wire import WATCH_SILENCE
from hypermesh.chain.witness import count_valid
from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.mirror.verify import Unverified
from hypermesh.registry.client import API as REGISTRY_API
from hypermesh.registry.client import RegistryClient, refusal, tld_path
from hypermesh.registry.signing import sign_request
from hypermesh.sdk.dial import dial
from hypermesh.sdk.names import Asker, DnsTransport, ask, endpoint_of, node_id_of
from hypermesh.sdk.paths import BadPaths, NodePing, PathsView
from hypermesh.sdk.results import (
    DnsResult,
    MeshNode,
    NodeResponse,
    PingResult,
    Refused,
    VerifiedChain,
)
from hypermesh.transport.address import PeerRef, format_address
from hypermesh.transport.client import AccessDenied, connect_h3
from hypermesh.transport.feeds import NoFeed, watched
from hypermesh.transport.identity import (
    Identity,
    is_node_id,
    load_identity,
    public_key_from_node_id,
)
from hypermesh.transport.noderecord import BadNodeRecord, NodeRecord, directory_name
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.client import Tunnel, fetch_hops

__all__ = [
    "DnsResult",
    "DnsTransport",
    "Mesh",
    "MeshNode",
    "NodeResponse",
    "PathsView",
    "PingResult",
    "Refused",
    "Unverified",
    "VerifiedChain",
]


@contextlib.contextmanager
def _boundary(what: str) -> Iterator[None]:
    """HyperMesh's errors pass; anything from below becomes a ``TransportError`` naming
    ``what`` (never a raw library exception for the SDK's callers)."""
    try:
        yield
    except HyperMeshError:
        raise
    except TimeoutError:
        raise TransportError(f"{what}: no answer in time") from None
    except (OSError, ConnectionError, dns.exception.DNSException, ValueError) as exc:
        raise TransportError(f"{what}: {exc}") from exc


class Mesh:
    """A connection to a network as one identity. ``node`` is the identity's own node (chains,
    messages, default resolver), ``registry`` the network's registry (registrations and the
    key that answers are checked from)."""

    def __init__(
        self,
        identity: Identity | None,
        *,
        node: PeerRef | None = None,
        registry: PeerRef | None = None,
        directory: dict[str, MeshNode] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.identity = identity
        self.node = node
        self.registry = registry
        self.directory = dict(directory or {})
        """Nodes by name, for ``peer``."""
        self.timeout = timeout
        self._pool = ConnectionPool(None)  # for tunnels, which are anonymous

    # -- connecting ---------------------------------------------------------------------

    @classmethod
    def from_state(cls, state: str | Path = ".hypermesh", *, node: str | None = None) -> Mesh:
        """A Mesh from ``hmctl``'s state directory: every running node by name, the network's
        registry, and with ``node``, that node's key as this Mesh's identity."""
        from hypermesh.sdk.state import read_state  # the store is only needed here

        directory, registries = read_state(Path(state))
        identity = None
        own = None
        if node is not None:
            own = directory.get(node)
            if own is None:
                known = ", ".join(sorted(directory)) or "none"
                raise HyperMeshError(f"no running node {node!r} in {state} (nodes: {known})")
            identity = load_identity(Path(state) / "nodes" / node / "identity.key")
        network_of = registries.get(node or "", next(iter(registries.values()), None))
        return cls(identity, node=own, registry=network_of, directory=directory)

    def peer(self, name: str) -> MeshNode:
        """The node called ``name`` in this Mesh's directory."""
        found = self.directory.get(name)
        if found is None:
            known = ", ".join(sorted(self.directory)) or "none"
            raise HyperMeshError(f"no node {name!r} known (nodes: {known})")
        return found

    async def close(self) -> None:
        """Close the connections kept open (tunnels')."""
        await self._pool.aclose()

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _key(self) -> Identity:
        if self.identity is None:
            raise HyperMeshError("this needs the Mesh's key (Mesh(identity, …))")
        return self.identity

    def _own(self) -> tuple[Identity, PeerRef]:
        if self.identity is None or self.node is None:
            raise HyperMeshError("this needs the Mesh's own node and key (Mesh(identity, node=…))")
        return self.identity, self.node

    def _registry(self) -> PeerRef:
        if self.registry is None:
            raise HyperMeshError("no registry known to this Mesh (Mesh(…, registry=…))")
        return self.registry

    # -- names --------------------------------------------------------------------------

    async def resolve(
        self, name: str, type: str = "A", *, via: PeerRef | None = None, verify: bool = True
    ) -> DnsResult:
        """Ask ``via`` (default: the own node, else the registry) over DNS over QUIC. With
        ``verify``, the answer is checked from the registry's key down and ``Unverified`` is
        raised when it does not check out."""
        server = via or self.node or self._registry()
        qname = name if name.endswith(".") else name + "."
        with _boundary(f"resolving {name} {type} at {server}"):
            query = dns.message.make_query(qname, dns.rdatatype.from_text(type))
        result = await self.query(query, via=server, verify=verify)
        if result.failure is not None:
            raise Unverified(f"{name} {type} from {server}: {result.failure}")
        return dataclasses.replace(result, name=name, type=type)

    async def query(
        self,
        message: dns.message.Message,
        *,
        via: PeerRef | None = None,
        transport: DnsTransport = "doq",
        verify: bool = False,
        anchor: str | None = None,
    ) -> DnsResult:
        """Ask one DNS message as the caller built it (flags, EDNS, the DO bit) of ``via``
        (default: the own node, else the registry), over ``transport``, the server's key
        pinned. With ``verify``, the answer is checked from the registry's key down —
        ``anchor`` names that key (a node ID) when this Mesh has no registry — and the verdict
        is in the result (``verified``, ``zone``, ``failure``): a failed check still returns
        what the server said. ``resolve`` is the shorthand that raises instead."""
        server = via or self.node or self._registry()
        if not message.question:
            raise HyperMeshError("a DNS query asks one question; this message has none")
        question = message.question[0]
        what = f"{question.name} {dns.rdatatype.to_text(question.rdtype)}"
        if verify and anchor is None:
            anchor = self._registry().node_id
            if anchor is None:
                raise HyperMeshError("the registry's node ID is needed to verify answers")
        asker = Asker(server, self.identity, transport, self.timeout)
        with _boundary(f"resolving {what} at {server}"):
            return await ask(asker, message, anchor if verify else None)

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        verify: bool = True,
        identify: bool = True,
    ) -> NodeResponse:
        """``https://NAME.TLD/path`` over HTTP/3: the endpoint from the name's HTTPS record
        (``alpn=h3``, port, address hint), the key pinned from its TLSA record (``3 1 0``,
        the node's Ed25519 key); both checked from the registry's key with ``verify``. With
        ``identify`` (and a key), the client proves this Mesh's key in the handshake, so the
        server knows who asks; without, it stays anonymous."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise HyperMeshError(f"{url}: fetch takes https://NAME/PATH")
        name = parts.hostname
        https = await self.resolve(name, "HTTPS", verify=verify)
        if not https.records:
            raise HyperMeshError(f"{name} has no HTTPS record ({https.rcode})")
        address, port = endpoint_of(https.response, name, parts.port)
        tlsa = await self.resolve(f"_{port}._udp.{name}", "TLSA", verify=verify)
        node_id = node_id_of(tlsa.response)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with _boundary(f"fetching {url}"):
            async with (
                asyncio.timeout(self.timeout),
                connect_h3(
                    format_address(address, port),
                    expected_id=node_id,
                    identity=self.identity if identify else None,
                ) as h3,
            ):
                status, answered, data = await h3.request(
                    method, path, headers=list(headers), body=body
                )
        return NodeResponse(status, dict(answered), data)

    # -- requests to nodes --------------------------------------------------------------

    async def _call(
        self,
        to: PeerRef,
        method: str,
        path: str,
        body: Any = None,
        *,
        signed: bool = True,
        cosigner: Identity | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """One JSON request to ``to``, signed by this Mesh's key (``signed``), its refusal
        raised as ``Refused``."""
        signer = self._key() if signed else None
        client = RegistryClient(
            to.address,
            to.node_id,
            identity=self.identity,
            timeout=self.timeout,
            label=label or str(to),
        )
        with _boundary(f"{method} {path} at {to}"):
            status, data = await client.call(method, path, body, signer=signer, cosigner=cosigner)
        if not 200 <= status < 300:
            reason = refusal(status, data)
            raise Refused(status, f"{to}: {reason}", reason)
        return data

    async def _at_registry(
        self, method: str, path: str, body: Any = None, **options: Any
    ) -> dict[str, Any]:
        """A request to the registry: signed by this Mesh's key unless ``signed=False``."""
        return await self._call(
            self._registry(), method, f"{REGISTRY_API}{path}", body, label="registry", **options
        )

    # -- the registry -------------------------------------------------------------------

    async def register_tld(
        self, tld: str, *, network: str, dnssec: bool = True, ttl: int = 3600
    ) -> dict[str, Any]:
        """Register ``tld`` at the registry, owned by this Mesh's key."""
        body = {"tld": tld, "network": network, "dnssec": dnssec, "ttl": ttl}
        return await self._at_registry("POST", "/register", body)

    async def tlds(self) -> list[dict[str, Any]]:
        """Every TLD of the registry (name, status, owner, serial, expiresAt, DS …)."""
        data = await self._at_registry("GET", "/tlds", signed=False)
        return list(data.get("items", []))

    async def tld(self, name: str) -> dict[str, Any]:
        """One TLD with its record sets, as the registry holds it."""
        registry = self._registry()
        return await self._call(registry, "GET", tld_path(name), signed=False, label="registry")

    async def approve_tld(self, tld: str) -> dict[str, Any]:
        """Approve a pending TLD (manual approval); signed by this Mesh's key, which must be
        the registry's administrator key. Returns the TLD."""
        return await self._at_registry("POST", "/admin/approve", {"tld": tld})

    async def reject_tld(self, tld: str, reason: str = "") -> dict[str, Any]:
        """Reject a pending TLD with a reason its owner sees (administrator key)."""
        return await self._at_registry("POST", "/admin/reject", {"tld": tld, "reason": reason})

    async def expire_tld(self, tld: str, reason: str = "") -> dict[str, Any]:
        """End a registration now; its zone is no longer served (administrator key)."""
        return await self._at_registry("POST", "/admin/expire", {"tld": tld, "reason": reason})

    async def renew_tld(self, tld: str) -> dict[str, Any]:
        """Renew ``tld`` for another term; this Mesh's key must own it."""
        return await self._at_registry("POST", "/renew", {"tld": tld})

    async def transfer_tld(self, tld: str, new_owner: Identity) -> dict[str, Any]:
        """Hand ``tld`` to ``new_owner``: signed by this Mesh's key (the owner's), cosigned by
        the new owner's, so that nobody is given a TLD without consenting."""
        body = {"tld": tld, "newOwner": new_owner.node_id}
        return await self._at_registry("POST", "/transfer", body, cosigner=new_owner)

    async def reserve_name(self, name: str) -> dict[str, Any]:
        """Reserve ``name`` so that nobody can register it (administrator key); returns the
        registry's policy."""
        return await self._at_registry("POST", "/admin/reserve", {"name": name})

    async def unreserve_name(self, name: str) -> dict[str, Any]:
        """Release a reserved name (administrator key); returns the registry's policy."""
        return await self._at_registry("POST", "/admin/unreserve", {"name": name})

    async def registry_policy(self) -> dict[str, Any]:
        """The registry's policy: approval mode, term, quota per owner, reserved names."""
        return await self._at_registry("GET", "/policy", signed=False)

    async def change_registry_policy(
        self,
        *,
        approval: str | None = None,
        term_days: int | None = None,
        max_tlds_per_owner: int | None = None,
    ) -> dict[str, Any]:
        """Change what is given of the registry's policy (administrator key); returns it."""
        changes: dict[str, Any] = {}
        if approval:
            changes["approval"] = approval
        if term_days is not None:
            changes["termDays"] = term_days
        if max_tlds_per_owner is not None:
            changes["maxTldsPerOwner"] = max_tlds_per_owner
        return await self._at_registry("POST", "/admin/policy", changes)

    async def revoke_key(
        self, node_id: str, *, reason: str = "", replaced_by: str | None = None
    ) -> dict[str, Any]:
        """Revoke the node key ``node_id``: signed by the administrator's key or by that key
        itself (a rotation names its successor with ``replaced_by``). Every node of the
        network refuses it once the revocation reaches it."""
        body: dict[str, Any] = {"nodeId": node_id, "reason": reason}
        if replaced_by is not None:
            body["replacedBy"] = replaced_by
        return await self._at_registry("POST", "/revoke", body)

    async def revocations(self) -> list[dict[str, Any]]:
        """The node keys the registry has revoked (nodeId, revokedAt, signer, replacedBy …)."""
        data = await self._at_registry("GET", "/revocations", signed=False)
        return list(data.get("items", []))

    async def set_records(
        self, tld: str, name: str, type: str, values: Sequence[str], *, ttl: int | None = None
    ) -> int:
        """Replace the record set ``name`` ``type`` under ``tld``; returns the zone's serial."""
        change: dict[str, Any] = {
            "name": name,
            "type": type,
            "changetype": "REPLACE",
            "values": list(values),
        }
        if ttl is not None:
            change["ttl"] = ttl
        data = await self._at_registry("POST", "/rrsets", {"tld": tld, "rrsets": [change]})
        return int(data["serial"])

    async def delete_records(self, tld: str, name: str, type: str) -> int:
        """Delete the record set ``name`` ``type`` under ``tld``; returns the zone's serial."""
        change = {"name": name, "type": type, "changetype": "DELETE"}
        data = await self._at_registry("POST", "/rrsets", {"tld": tld, "rrsets": [change]})
        return int(data["serial"])

    # -- chains -------------------------------------------------------------------------

    def chain(self, of: PeerRef | None = None) -> ChainClient:
        """The chain of ``of`` (default: the own node): head, blocks, proofs, bundles."""
        node = of or self._own()[1]
        return ChainClient(node.address, node.node_id, caller=self.identity, timeout=self.timeout)

    def _reader(self, of: PeerRef | None) -> ChainClient:
        """The chain of ``of``, else of the own node (which may be known without its key)."""
        node = of or self.node
        if node is None:
            raise HyperMeshError("name the node whose chain (of=…), or give the Mesh its node")
        return self.chain(node)

    async def append(
        self, payload: bytes, *, kind: str = "note", links: Sequence[Link] = ()
    ) -> Block:
        """Append a block to the own node's chain, signed by this Mesh's key."""
        identity, node = self._own()
        with _boundary(f"appending to {node}'s chain"):
            return await self.chain(node).append(identity, kind, payload, tuple(links))

    async def head(self, of: PeerRef | None = None) -> Head:
        """What a chain's node says of it (author, size, tree head), its fields checked."""
        with _boundary("reading a chain's head"):
            return await self._reader(of).checked_head()

    async def block(self, seq: int, of: PeerRef | None = None) -> tuple[Block, bytes | None]:
        """Block ``seq`` of a chain, checked, with its payload (None when redacted)."""
        with _boundary(f"reading block {seq}"):
            return await self._reader(of).block(seq)

    async def blocks(self, of: PeerRef | None = None, start: int = 0) -> list[Block]:
        """The blocks of a chain from ``start``, each checked."""
        return [block for block, _ in await self.entries(of, start)]

    async def entries(
        self, of: PeerRef | None = None, start: int = 0
    ) -> list[tuple[Block, bytes | None]]:
        """The blocks of a chain from ``start`` with their payloads (None when redacted),
        each checked on arrival."""
        with _boundary("reading a chain"):
            return [item async for item in self._reader(of).blocks(start)]

    async def verify_chain(self, of: PeerRef | None = None) -> VerifiedChain:
        """Fetch a whole chain and check every block, link, payload, and that they make the
        tree head its node shows, signed by the author it names. ``hypermesh.chain``'s
        ``Unverified`` naming the first thing that fails."""
        reader = self._reader(of)
        with _boundary("verifying a chain"):
            head = await reader.checked_head()
            got = [item async for item in reader.blocks(0)]
            result = chain_verify.verify_chain(got, public_key_from_node_id(head.author))
        if result.root != head.root or result.size != head.size:
            raise BadChain("the blocks do not make the head it shows")
        return VerifiedChain(head.author, result.size, result.root, result.payloads_checked, got)

    async def witnesses(
        self, chain: VerifiedChain, trusted: Iterable[str], of: PeerRef | None = None
    ) -> tuple[int, int]:
        """How many of the ``trusted`` nodes (node IDs; the author never counts) cosigned the
        latest checkpoint of ``chain``, verified by ``verify_chain`` from the same node
        ``of``: ``(checkpoint size, count)``. ``hypermesh.chain``'s ``Unverified`` when the
        checkpoint is malformed or is not a head of that chain."""
        with _boundary("reading a checkpoint"):
            try:
                size, root, cosignatures = await self._reader(of).checked_checkpoint()
            except BadChain as exc:
                raise BadChain(f"the checkpoint: {exc}") from None
        tree = MerkleTree(block.leaf for block, _ in chain.blocks)
        if size > tree.size or tree.root(size) != root:
            raise BadChain(f"the checkpoint (size {size}) is not a head of the chain verified")
        try:
            author = public_key_from_node_id(chain.author)
            keys = {public_key_from_node_id(node_id) for node_id in trusted} - {author}
        except ValueError as exc:
            raise HyperMeshError(f"trusted witnesses: {exc}") from None
        return size, count_valid(author, size, root, cosignatures, keys)

    async def inclusion(
        self, seq: int, size: int | None = None, of: PeerRef | None = None
    ) -> dict[str, Any]:
        """The proof that block ``seq`` is in the tree of ``size`` blocks (default: all),
        checked here; ``BadBlock`` when it does not verify."""
        with _boundary("asking for an inclusion proof"):
            return await self._reader(of).inclusion(seq, size)

    async def consistency(
        self, old: int, new: int | None = None, of: PeerRef | None = None
    ) -> dict[str, Any]:
        """The proof that the first ``old`` blocks are a prefix of the first ``new`` (default:
        all), checked here; ``BadBlock`` when it does not verify."""
        with _boundary("asking for a consistency proof"):
            return await self._reader(of).consistency(old, new)

    async def provenance(self, seq: int, origin: str, of: PeerRef | None = None) -> Bundle:
        """The bundle of proofs from block ``seq`` of a chain (default the own node's) back to
        ``origin`` (``NODE_ID:SEQ``), checked step by step (``verify_bundle``); ``BadBlock``
        when it does not verify. Anyone can check it again later, offline, with
        ``Mesh.verify_bundle``."""
        with _boundary("asking for a provenance bundle"):
            bundle = Bundle.from_json(await self._reader(of).provenance(seq, origin))
        verify_bundle(bundle)
        return bundle

    @staticmethod
    def verify_bundle(data: Any) -> str:
        """Check a provenance bundle (a ``Bundle`` or its JSON), offline; returns what it
        proves, or raises ``BadBlock`` naming the first step that fails."""
        bundle = data if isinstance(data, Bundle) else Bundle.from_json(data)
        return verify_bundle(bundle)

    # -- messages -----------------------------------------------------------------------

    async def send(self, to: PeerRef | str, text: str) -> dict[str, Any]:
        """Send ``text`` from the own node to ``to``: sealed for it, recorded on both chains.
        ``to`` is a ``PeerRef`` (tried at its address first), or a node ID that the own node
        finds in the node directory and reaches over its paths, directly or through a relay
        (a node behind a NAT)."""
        _, node = self._own()
        body: dict[str, str] = {"text": text}
        if isinstance(to, str):
            body["to"] = to
        else:
            if to.node_id is None:
                raise HyperMeshError(f"{to.address}: a message needs the recipient's node ID")
            body |= {"to": to.node_id, "address": to.address}
        return await self._call(node, "POST", "/message/v1/send", body)

    async def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        """The messages the own node received, newest first."""
        _, node = self._own()
        data = await self._call(node, "GET", f"/message/v1/inbox?limit={limit}")
        return list(data.get("messages", []))

    async def messages(
        self, *, poll: float = 0.5, since_now: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Every message the own node receives, oldest first, as it arrives; with
        ``since_now``, only those that arrive from now on. The node pushes each one over its
        message feed (``GET /message/v1/watch``): nothing is polled. The inbox is read when the
        feed opens (and after a resynchronisation), so nothing sent meanwhile is missed; a lost
        feed is watched again after ``RETRY`` waits. A node without the feed (404) has its
        inbox read every ``poll`` seconds instead; a refusal (``AccessDenied``) ends it."""
        identity, node = self._own()
        seen: set[str] = set()
        if since_now:
            seen = {m["id"] for m in await self.inbox()}
        attempt = 0
        while True:
            try:
                async for message in self._pushed(identity, node, seen):
                    attempt = 0
                    yield message
            except NoFeed:
                break
            except AccessDenied:
                raise
            except (TransportError, TimeoutError, OSError):
                pass
            await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
            attempt += 1
        while True:  # a node from before the feed
            for message in await self._unseen(seen):
                yield message
            await asyncio.sleep(poll)

    async def _unseen(self, seen: set[str]) -> list[dict[str, Any]]:
        """The inbox's messages not in ``seen``, oldest first; they join ``seen``."""
        fresh = [m for m in reversed(await self.inbox()) if m["id"] not in seen]
        seen.update(m["id"] for m in fresh)
        return fresh

    async def _pushed(
        self, identity: Identity, node: PeerRef, seen: set[str]
    ) -> AsyncIterator[dict[str, Any]]:
        """The messages of one watch of the node's message feed not in ``seen``: the inbox's
        on each snapshot line, then each one announced."""
        path = "/message/v1/watch"
        headers = sign_request(identity, "GET", path, b"", now=time.time())
        async with watched(
            node.address,
            node.node_id,
            path,
            identity=identity,
            silence=WATCH_SILENCE,
            headers=headers.items(),
            timeout=self.timeout,
        ) as (_, notices):
            async for notice in notices:
                message = notice.get("message")
                if isinstance(message, dict) and "id" in message:
                    if message["id"] not in seen:
                        seen.add(message["id"])
                        yield message
                elif "received" in notice:  # the first line, or a resynchronisation
                    for message in await self._unseen(seen):
                        yield message
        raise TransportError(f"{node}: the node ended the message feed")

    # -- the node directory -------------------------------------------------------------

    async def locate(self, node_id: str, *, via: PeerRef | None = None) -> NodeRecord:
        """The node record of ``node_id``: asked as TXT ``<id>._nodes.`` of ``via`` (default:
        the own node, else the registry), else of the registry's ``GET /registry/v1/node``;
        its signature (by that very key) and expiry checked. ``HyperMeshError`` saying what
        each source answered when no live record is found."""
        if not is_node_id(node_id):
            raise HyperMeshError(f"{node_id!r} is not a node ID (hm1 and 52 base32 characters)")
        tried: list[str] = []
        server = via or self.node or self.registry
        if server is not None:
            try:
                return await self._locate_in_dns(node_id, server)
            except (HyperMeshError, BadNodeRecord) as exc:
                tried.append(f"DNS at {server}: {exc}")
        if self.registry is not None:
            try:
                data = await self._at_registry("GET", f"/node?id={node_id}", signed=False)
                return NodeRecord.verify(data, now=time.time(), node_id=node_id)
            except (HyperMeshError, BadNodeRecord) as exc:
                tried.append(f"registry: {exc}")
        if not tried:
            raise HyperMeshError("locating a node needs a node or a registry (Mesh(node=…))")
        raise HyperMeshError(f"no node record of {node_id} found ({'; '.join(tried)})")

    async def _locate_in_dns(self, node_id: str, server: PeerRef) -> NodeRecord:
        query = dns.message.make_query(directory_name(node_id), dns.rdatatype.TXT)
        result = await self.query(query, via=server)
        answer = result.response.get_rrset(
            result.response.answer,
            dns.name.from_text(directory_name(node_id)),
            dns.rdataclass.IN,
            dns.rdatatype.TXT,
        )
        if answer is None or not len(answer):
            raise HyperMeshError(f"no TXT record ({result.rcode})")
        errors = []
        for rdata in answer:
            try:
                return NodeRecord.from_txt(list(rdata.strings), now=time.time(), node_id=node_id)
            except BadNodeRecord as exc:
                errors.append(str(exc))
        raise BadNodeRecord("; ".join(errors))

    async def _target(self, target: str, via: PeerRef | None) -> tuple[str, str, list[str]]:
        """``(node ID, name, addresses)`` of a node ID (its record), a node of this Mesh's
        directory, or a member name (its record at the registry, ``?name=``)."""
        if is_node_id(target):
            record = await self.locate(target, via=via)
            return record.node_id, record.name, list(record.addresses)
        known = self.directory.get(target)
        if known is not None and known.node_id:
            return known.node_id, target, [known.address]
        if self.registry is None:
            names = ", ".join(sorted(self.directory)) or "none"
            raise HyperMeshError(
                f"{target!r} is neither a node ID nor a node known here (nodes: {names}), "
                "and no registry is known to look the name up"
            )
        query = urllib.parse.urlencode({"name": target})
        try:
            data = await self._at_registry("GET", f"/node?{query}", signed=False)
            record = NodeRecord.verify(data, now=time.time())
        except (HyperMeshError, BadNodeRecord) as exc:
            raise HyperMeshError(f"no node record for the member {target!r}: {exc}") from None
        return record.node_id, record.name, list(record.addresses)

    async def connect(self, target: str, *, via: PeerRef | None = None) -> MeshNode:
        """The node ``target`` (a node ID, a node of this Mesh's directory, or a member name)
        at the address of its record that answers first as its key (happy eyeballs: one
        handshake, the next 250 ms later, the first to prove the key wins)."""
        node_id, name, addresses = await self._target(target, via)
        async with dial(addresses, node_id, identity=self.identity, timeout=self.timeout) as (
            address,
            _,
        ):
            return MeshNode(address, node_id, name=name)

    async def ping(
        self,
        target: str,
        count: int = 3,
        *,
        via: PeerRef | None = None,
        from_node: bool | None = None,
    ) -> PingResult:
        """Time ``count`` round trips to ``target`` on one connection. ``from_node``: the own
        node pings (``POST /paths/v1/ping``) on whichever path it has — direct or through a
        relay — and the result says which (``path``, ``relay``, ``upgraded``); else this
        process connects (as ``connect``) and times ``GET /healthz``, always direct. By
        default the own node pings when this Mesh holds its key."""
        if not 1 <= count <= 1000:
            raise HyperMeshError(f"count must be 1..1000, not {count}")
        if from_node is None:
            from_node = self._is_own_node()
        if from_node:
            return await self._ping_from_node(target, count)
        node_id, name, addresses = await self._target(target, via)
        started = time.perf_counter()
        rtts: list[float] = []
        async with dial(addresses, node_id, identity=self.identity, timeout=self.timeout) as (
            address,
            h3,
        ):
            handshake = (time.perf_counter() - started) * 1000
            with _boundary(f"pinging {target} at {address}"):
                for _ in range(count):
                    sent = time.perf_counter()
                    async with asyncio.timeout(self.timeout):
                        status, _, body = await h3.request("GET", "/healthz")
                    rtts.append((time.perf_counter() - sent) * 1000)
                    if status != 200:
                        reason = body[:200].decode(errors="replace")
                        raise Refused(status, f"{address}: GET /healthz: {status} {reason}")
        return PingResult(node_id, address, "direct", tuple(rtts), name, handshake)

    # -- paths --------------------------------------------------------------------------

    def _is_own_node(self) -> bool:
        """This Mesh holds its own node's key (so that node admits it to its paths API)."""
        return (
            self.identity is not None
            and self.node is not None
            and self.node.node_id == self.identity.node_id
        )

    async def paths(self, of: PeerRef | None = None) -> PathsView:
        """How the own node (or ``of``, whose key or operator key this Mesh holds) reaches
        each peer now — direct or relayed, the address pair, the RTT, since when — with its
        NAT kind, reflexive addresses and home relay (``GET /paths/v1``, checked field by
        field: ``BadPaths`` names what is wrong)."""
        node = of or self._own()[1]
        data = await self._call(node, "GET", "/paths/v1")
        try:
            return PathsView.parse(data)
        except BadPaths as exc:
            raise BadPaths(f"{node}: GET /paths/v1: {exc}") from None

    async def _ping_from_node(self, target: str, count: int) -> PingResult:
        """The own node pings ``target`` (at most 10 round trips per request, as its API
        takes them), then says from which address and over which relay transport."""
        _, node = self._own()
        known = self.directory.get(target)
        asked = known.node_id if known is not None and known.node_id else target
        rtts: list[float] = []
        upgraded = False
        answer: NodePing | None = None
        while len(rtts) < count:  # each answer holds at least one: at most ``count`` turns
            batch = min(10, count - len(rtts))
            data = await self._call(node, "POST", "/paths/v1/ping", {"node": asked, "count": batch})
            try:
                answer = NodePing.parse(data, batch)
            except BadPaths as exc:
                raise BadPaths(f"{node}: POST /paths/v1/ping: {exc}") from None
            rtts.extend(answer.rtt_ms)
            upgraded = upgraded or answer.upgraded
        assert answer is not None
        local = transport = None
        with contextlib.suppress(HyperMeshError):  # the path's details are a bonus
            view = await self.paths(node)
            peer = view.peer(answer.node_id)
            local = peer.local if peer is not None else None
            if view.relay is not None and view.relay.node_id == answer.relay:
                transport = view.relay.transport
        name = answer.name or (known.name if known is not None else "")
        return PingResult(
            answer.node_id,
            answer.remote or "",
            answer.path,
            tuple(rtts),
            name,
            relay=answer.relay,
            relay_transport=transport,
            local=local,
            upgraded=upgraded,
            via=node.node_id,
        )

    # -- tunnels ------------------------------------------------------------------------

    async def tunnel(
        self, destination: MeshNode, relays: Sequence[MeshNode], *, ttl: float = 60.0
    ) -> Tunnel:
        """Open an anonymous tunnel to ``destination`` through ``relays`` (two or more), all
        nodes of the directory with an ephemeral interface."""
        nodes = [*relays, destination]
        missing = [str(n) for n in nodes if not n.ephemeral]
        if missing:
            raise HyperMeshError(f"no ephemeral interface known for {', '.join(missing)}")
        with _boundary("opening a tunnel"):
            known = list(self.directory.values()) + nodes
            cards = {(e.ephemeral, e.node_id) for e in known if e.ephemeral}
            hops = await fetch_hops(self._pool, sorted((str(a), str(i)) for a, i in cards))
            return await Tunnel.open(
                [hops[str(n.node_id)] for n in nodes],
                ttl=ttl,
                pool=self._pool,
                timeout=self.timeout,
            )
