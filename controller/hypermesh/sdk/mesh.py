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
talks to the network through nodes whose keys it pins (``Endpoint``): its own node (chains,
messages), any node for names, the registry for registrations. Every error it raises is one of
HyperMesh's own (``hypermesh.errors``): transport failures are ``TransportError``, refusals
``Refused``, answers that do not check out ``Unverified`` — never a raw aioquic, socket or SQL
exception. ``hypermesh.sdk.sync`` has the same operations as plain functions for scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from hypermesh.chain.block import Block, Link
from hypermesh.chain.client import ChainClient
from hypermesh.chain.provenance import Bundle, verify_bundle
from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.mirror.verify import Unverified, fetch_anchors, verified_query
from hypermesh.registry.client import API as REGISTRY_API
from hypermesh.registry.client import RegistryClient, refusal
from hypermesh.transport.client import connect_h3
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity, load_identity, node_id_from_public_key
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.client import Tunnel, fetch_hops

__all__ = ["Answer", "Endpoint", "Mesh", "Refused", "Response", "Unverified"]


class Refused(HyperMeshError):
    """The other end answered, and said no (the status and its reason are in the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A node: where it answers and the key it must hold."""

    address: str
    identity: str
    name: str = ""
    """What this SDK's directory calls it (empty when unknown)."""
    ephemeral: str | None = None
    """Its ephemeral interface (tunnels), when it has one."""

    def __str__(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class Answer:
    """A DNS answer: its rcode, the records (as text) of the type asked, and the check."""

    name: str
    type: str
    rcode: str
    records: tuple[str, ...]
    verified: bool
    """True when checked from the registry's key down (``verify=True``)."""
    response: dns.message.Message = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP/3 answer from a node."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


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
        node: Endpoint | None = None,
        registry: Endpoint | None = None,
        directory: dict[str, Endpoint] | None = None,
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

    def peer(self, name: str) -> Endpoint:
        """The node called ``name`` in this Mesh's directory."""
        found = self.directory.get(name)
        if found is None:
            known = ", ".join(sorted(self.directory)) or "none"
            raise HyperMeshError(f"no node {name!r} known (nodes: {known})")
        return found

    async def close(self) -> None:
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

    def _own(self) -> tuple[Identity, Endpoint]:
        if self.identity is None or self.node is None:
            raise HyperMeshError("this needs the Mesh's own node and key (Mesh(identity, node=…))")
        return self.identity, self.node

    def _registry(self) -> Endpoint:
        if self.registry is None:
            raise HyperMeshError("no registry known to this Mesh (Mesh(…, registry=…))")
        return self.registry

    # -- names --------------------------------------------------------------------------

    async def resolve(
        self, name: str, type: str = "A", *, via: Endpoint | None = None, verify: bool = True
    ) -> Answer:
        """Ask ``via`` (default: the own node, else the registry) over DNS over QUIC. With
        ``verify``, the answer is checked from the registry's key down and ``Unverified`` is
        raised when it does not check out."""
        server = via or self.node or self._registry()
        qname = name if name.endswith(".") else name + "."
        with _boundary(f"resolving {name} {type} at {server}"):
            rdtype = dns.rdatatype.from_text(type)

            async def ask(query: dns.message.Message) -> dns.message.Message:
                wire = await doq_query(
                    server.address,
                    query.to_wire(),
                    expected_id=server.identity,
                    identity=self.identity,
                    timeout=self.timeout,
                )
                return dns.message.from_wire(wire)

            query = dns.message.make_query(qname, rdtype)
            verified = False
            if verify:
                registry = self._registry()
                anchors = await fetch_anchors(
                    server.address, server.identity, registry.identity, caller=self.identity
                )
                checked = await verified_query(ask, query, anchors)
                if checked.failure is not None:
                    raise Unverified(f"{name} {type} from {server}: {checked.failure}")
                response, verified = checked.response, True
            else:
                response = await ask(query)
            records = tuple(
                rd.to_text() for rrset in response.answer if rrset.rdtype == rdtype for rd in rrset
            )
            return Answer(
                name, type, dns.rcode.to_text(response.rcode()), records, verified, response
            )

    async def fetch(
        self,
        url: str,
        *,
        method: str = "GET",
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        verify: bool = True,
        identify: bool = True,
    ) -> Response:
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
        address, port = _endpoint_of(https.response, name, parts.port)
        tlsa = await self.resolve(f"_{port}._udp.{name}", "TLSA", verify=verify)
        node_id = _node_id_of(tlsa.response)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        with _boundary(f"fetching {url}"):
            async with (
                asyncio.timeout(self.timeout),
                connect_h3(
                    target, expected_id=node_id, identity=self.identity if identify else None
                ) as h3,
            ):
                status, answered, data = await h3.request(
                    method, path, headers=list(headers), body=body
                )
        return Response(status, dict(answered), data)

    # -- the registry -------------------------------------------------------------------

    async def _call(
        self, to: Endpoint, method: str, path: str, body: Any = None, *, signed: bool = True
    ) -> dict[str, Any]:
        signer = self._own()[0] if signed else None
        client = RegistryClient(
            to.address, to.identity, identity=self.identity, timeout=self.timeout, label=str(to)
        )
        with _boundary(f"{method} {path} at {to}"):
            status, data = await client.call(method, path, body, signer=signer)
        if not 200 <= status < 300:
            raise Refused(status, f"{to}: {refusal(status, data)}")
        return data

    async def register_tld(
        self, tld: str, *, network: str, dnssec: bool = True, ttl: int = 3600
    ) -> dict[str, Any]:
        """Register ``tld`` at the registry, owned by this Mesh's key."""
        body = {"tld": tld, "network": network, "dnssec": dnssec, "ttl": ttl}
        return await self._call(self._registry(), "POST", f"{REGISTRY_API}/register", body)

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
        data = await self._call(
            self._registry(), "POST", f"{REGISTRY_API}/rrsets", {"tld": tld, "rrsets": [change]}
        )
        return int(data["serial"])

    async def delete_records(self, tld: str, name: str, type: str) -> int:
        change = {"name": name, "type": type, "changetype": "DELETE"}
        data = await self._call(
            self._registry(), "POST", f"{REGISTRY_API}/rrsets", {"tld": tld, "rrsets": [change]}
        )
        return int(data["serial"])

    # -- chains -------------------------------------------------------------------------

    def chain(self, of: Endpoint | None = None) -> ChainClient:
        """The chain of ``of`` (default: the own node): head, blocks, proofs, bundles."""
        node = of or self._own()[1]
        return ChainClient(node.address, node.identity, caller=self.identity, timeout=self.timeout)

    async def append(
        self, payload: bytes, *, kind: str = "note", links: Sequence[Link] = ()
    ) -> Block:
        """Append a block to the own node's chain, signed by this Mesh's key."""
        identity, node = self._own()
        with _boundary(f"appending to {node}'s chain"):
            return await self.chain(node).append(identity, kind, payload, tuple(links))

    async def blocks(self, of: Endpoint | None = None, start: int = 0) -> list[Block]:
        """The blocks of a chain from ``start``, each checked."""
        with _boundary("reading a chain"):
            return [block async for block, _ in self.chain(of).blocks(start)]

    async def provenance(self, seq: int, origin: str, of: Endpoint | None = None) -> Bundle:
        """The bundle of proofs from block ``seq`` of a chain (default the own node's) back to
        ``origin`` (``NODE_ID:SEQ``), checked step by step (``verify_bundle``); ``BadBlock``
        when it does not verify. Anyone can check it again later, offline, with
        ``Mesh.verify_bundle``."""
        with _boundary("asking for a provenance bundle"):
            bundle = Bundle.from_json(await self.chain(of).provenance(seq, origin))
        verify_bundle(bundle)
        return bundle

    @staticmethod
    def verify_bundle(data: Any) -> str:
        """Check a provenance bundle (a ``Bundle`` or its JSON), offline; returns what it
        proves, or raises ``BadBlock`` naming the first step that fails."""
        bundle = data if isinstance(data, Bundle) else Bundle.from_json(data)
        return verify_bundle(bundle)

    # -- messages -----------------------------------------------------------------------

    async def send(self, to: Endpoint, text: str) -> dict[str, Any]:
        """Send ``text`` from the own node to ``to``: sealed for it, recorded on both chains."""
        _, node = self._own()
        body = {"to": to.identity, "address": to.address, "text": text}
        return await self._call(node, "POST", "/message/v1/send", body)

    async def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        """The messages the own node received, newest first."""
        _, node = self._own()
        data = await self._call(node, "GET", f"/message/v1/inbox?limit={limit}")
        return list(data.get("messages", []))

    async def messages(
        self, *, poll: float = 0.5, since_now: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Every message the own node receives, oldest first, as it arrives (polled every
        ``poll`` seconds); with ``since_now``, only those that arrive from now on."""
        seen: set[str] = set()
        if since_now:
            seen = {m["id"] for m in await self.inbox()}
        while True:
            fresh = [m for m in reversed(await self.inbox()) if m["id"] not in seen]
            for message in fresh:
                seen.add(message["id"])
                yield message
            await asyncio.sleep(poll)

    # -- tunnels ------------------------------------------------------------------------

    async def tunnel(
        self, destination: Endpoint, relays: Sequence[Endpoint], *, ttl: float = 60.0
    ) -> Tunnel:
        """Open an anonymous tunnel to ``destination`` through ``relays`` (two or more)."""
        nodes = [*relays, destination]
        missing = [str(n) for n in nodes if not n.ephemeral]
        if missing:
            raise HyperMeshError(f"no ephemeral interface known for {', '.join(missing)}")
        with _boundary("opening a tunnel"):
            known = list(self.directory.values()) + nodes
            cards = {(e.ephemeral, e.identity) for e in known if e.ephemeral}
            hops = await fetch_hops(self._pool, sorted((str(a), i) for a, i in cards))
            return await Tunnel.open(
                [hops[n.identity] for n in nodes], ttl=ttl, pool=self._pool, timeout=self.timeout
            )


def _endpoint_of(response: dns.message.Message, name: str, port: int | None) -> tuple[str, int]:
    """(address, port) from an HTTPS answer: its port and address hint, else ``port``/443."""
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.HTTPS:
            continue
        for rd in rrset:
            params = rd.params
            alpn = params.get(dns.rdtypes.svcbbase.ParamKey.ALPN)
            if alpn is not None and b"h3" not in alpn.ids:
                continue
            found = params.get(dns.rdtypes.svcbbase.ParamKey.PORT)
            hints = params.get(dns.rdtypes.svcbbase.ParamKey.IPV4HINT) or params.get(
                dns.rdtypes.svcbbase.ParamKey.IPV6HINT
            )
            if hints is None:
                raise HyperMeshError(f"{name}: the HTTPS record has no address hint")
            return str(hints.addresses[0]), int(found.port) if found else (port or 443)
    raise HyperMeshError(f"{name}: no HTTPS record offering h3")


def _node_id_of(response: dns.message.Message) -> str:
    """The node ID a TLSA ``3 1 0`` record pins (the DER SubjectPublicKeyInfo of an Ed25519
    key)."""
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.TLSA:
            continue
        for rd in rrset:
            if (rd.usage, rd.selector, rd.mtype) != (3, 1, 0):
                continue
            key = load_der_public_key(rd.cert)
            if isinstance(key, Ed25519PublicKey):
                return node_id_from_public_key(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    raise HyperMeshError("no TLSA 3 1 0 record with an Ed25519 key pins this name")
