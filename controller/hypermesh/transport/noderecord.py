"""Node records: what a node says of itself in its network's node directory, signed by its key.

A node publishes one to its registry and refreshes it before it expires; the registry stores it
after checking the signature and the membership, and serves it in the directory zone
(``DIRECTORY_ZONE``) as a TXT record at ``<node ID>._nodes.``, next to A/AAAA records of its
addresses — so a node is found by key with any DNS client, and a record relayed by a mirror is
still the node's own word. The signature is Ed25519 by the node's key over::

    hypermesh-node-record-v1 NUL <the document's JSON bytes>

The document (keys sorted, no spaces)::

    {"network": "acme", "node": "<node ID>", "name": "gamma", "host": "c",
     "interfaces": {"public": ["198.18.1.3:4433"], "private": ["198.18.1.3:4434"]},
     "alpn": ["doq", "h3"], "roles": ["mirror"], "version": "0.1.0",
     "issuedAt": 1764633600.0, "expiresAt": 1764634200.0, "seq": 3,
     "reflexive": ["203.0.113.7:61002"],
     "relay": {"node": "<relay's node ID>", "addresses": ["198.18.1.9:4433"]}}

``reflexive`` (optional) lists the addresses the node's packets were seen to come from by the
relay and the registry (its NAT's outside mapping of its one UDP port); ``relay`` (optional) is
its home relay, where it is reachable when nothing answers directly.

``seq`` only grows for one key: the registry keeps the record with the highest ``seq`` (then
the latest ``issuedAt``), so an old record replayed never replaces a newer one. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import Identity, is_node_id, verify_signature

CONTEXT = b"hypermesh-node-record-v1\0"
DIRECTORY_ZONE = "_nodes."
"""The zone the registry serves the directory in: ``<node ID>._nodes.``."""
INTERFACES = ("public", "private", "ephemeral")
MAX_ADDRESSES = 16
"""Addresses per interface in one record."""
MAX_LIFETIME = 86400.0
"""The longest a record may live (seconds from ``issuedAt`` to ``expiresAt``)."""
DEFAULT_LIFETIME = 600.0
"""How long a node's records live unless configured otherwise; refreshed at half of it."""
VERIFIED_KEPT = 512
"""Verified records remembered (at most ``MAX_DOCUMENT`` bytes each: about 1.5 MiB at most)."""
MAX_DOCUMENT = 2048
"""Bytes of one document."""
_TXT_CHUNK = 250


class BadNodeRecord(HyperMeshError):
    """A node record that is malformed, not signed by its node's key, or expired."""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A verified node record and the exact signed form it came in (to relay unchanged)."""

    node_id: str
    network: str
    name: str
    host: str | None
    interfaces: Mapping[str, tuple[str, ...]]
    """Interface → the ``host:port`` addresses it is reached at, best first."""
    alpn: tuple[str, ...]
    roles: tuple[str, ...]
    version: str
    issued_at: float
    expires_at: float
    seq: int
    signed: Mapping[str, str]
    """``{"document": …, "signature": …}`` as the node signed it."""
    reflexive: tuple[str, ...] = ()
    """Where the node's packets were seen to come from (its NAT's mapping), best first."""
    relay_id: str | None = None
    """Its home relay's node ID, where it is attached."""
    relay_addresses: tuple[str, ...] = ()
    """Where that relay answers (UDP, and TCP on the same port numbers)."""

    @property
    def addresses(self) -> tuple[str, ...]:
        """The public interface's addresses (where the node's API, DoQ and DoH3 answer)."""
        return self.interfaces.get("public", ())

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def newer_than(self, other: NodeRecord) -> bool:
        return (self.seq, self.issued_at) > (other.seq, other.issued_at)

    @classmethod
    def issue(
        cls,
        identity: Identity,
        *,
        network: str,
        name: str,
        interfaces: Mapping[str, Sequence[str]],
        issued_at: float,
        lifetime: float = DEFAULT_LIFETIME,
        seq: int,
        host: str | None = None,
        alpn: Sequence[str] = ("doq", "h3"),
        roles: Sequence[str] = (),
        version: str = "",
        reflexive: Sequence[str] = (),
        relay: tuple[str, Sequence[str]] | None = None,
    ) -> NodeRecord:
        """Sign a record as ``identity``; ``BadNodeRecord`` when a field is out of bounds."""
        body: dict[str, Any] = {
            "network": network,
            "node": identity.node_id,
            "name": name,
            "host": host,
            "interfaces": {k: list(v) for k, v in sorted(interfaces.items()) if v},
            "alpn": sorted(alpn),
            "roles": sorted(roles),
            "version": version,
            "issuedAt": float(issued_at),
            "expiresAt": float(issued_at) + float(lifetime),
            "seq": int(seq),
        }
        if reflexive:
            body["reflexive"] = list(reflexive)
        if relay is not None:
            body["relay"] = {"node": relay[0], "addresses": list(relay[1])}
        document = json.dumps(body, separators=(",", ":"), sort_keys=True)
        signature = base64.b64encode(identity.sign(CONTEXT + document.encode())).decode()
        return _parsed(document, signature)

    @classmethod
    def verify(
        cls, signed: Any, *, now: float | None = None, node_id: str | None = None
    ) -> NodeRecord:
        """The record in ``signed`` (``{"document", "signature"}``) after checking its shape
        and its node's signature; given ``now``, that it has not expired; given ``node_id``,
        that it is that key's record (not another node's, answered for it)."""
        if not isinstance(signed, Mapping):
            raise BadNodeRecord("a node record is a JSON object of document and signature")
        document, signature = signed.get("document"), signed.get("signature")
        if not isinstance(document, str) or not isinstance(signature, str):
            raise BadNodeRecord("a node record needs a document and a signature (strings)")
        if len(document.encode()) > MAX_DOCUMENT:
            raise BadNodeRecord(f"a node record's document has at most {MAX_DOCUMENT} bytes")
        record = _signed(document, signature)
        if now is not None and record.expired(now):
            raise BadNodeRecord(f"the node record of {record.node_id} has expired")
        if node_id is not None and record.node_id != node_id:
            raise BadNodeRecord(f"the record found is {record.node_id}'s, not {node_id}'s")
        return record

    def to_json(self) -> dict[str, str]:
        """The signed form, for a request body or an answer."""
        return dict(self.signed)

    def txt_strings(self) -> list[str]:
        """The signed form as TXT character-strings (base64 of its JSON, in chunks)."""
        raw = json.dumps(dict(self.signed), separators=(",", ":"), sort_keys=True)
        text = base64.b64encode(raw.encode()).decode()
        return [text[i : i + _TXT_CHUNK] for i in range(0, len(text), _TXT_CHUNK)]

    @classmethod
    def from_txt(
        cls, strings: Sequence[str | bytes], *, now: float | None = None, node_id: str | None = None
    ) -> NodeRecord:
        """``txt_strings`` read back from a TXT record, then ``verify``."""
        joined = "".join(s.decode() if isinstance(s, bytes) else s for s in strings)
        try:
            signed = json.loads(base64.b64decode(joined, validate=True))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise BadNodeRecord("the TXT record does not hold a node record") from None
        return cls.verify(signed, now=now, node_id=node_id)


def directory_name(node_id: str) -> str:
    """The DNS name a node's record is served at (absolute)."""
    return f"{node_id}.{DIRECTORY_ZONE}"


@functools.lru_cache(maxsize=VERIFIED_KEPT)
def _signed(document: str, signature: str) -> NodeRecord:
    """The record of a document whose signature checks out, remembered: a node reads the
    same records again and again (the directory after each change, members, relays), and
    the Ed25519 check is most of the cost. A record that fails is checked again each time."""
    record = _parsed(document, signature)
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadNodeRecord("the node record's signature is not base64") from None
    if not verify_signature(record.node_id, CONTEXT + document.encode(), raw):
        raise BadNodeRecord(f"the node record is not signed by {record.node_id}")
    return record


def _parsed(document: str, signature: str) -> NodeRecord:
    try:
        body = json.loads(document)
    except ValueError:
        raise BadNodeRecord("the node record's document is not JSON") from None
    if not isinstance(body, dict):
        raise BadNodeRecord("the node record's document is not a JSON object")
    try:
        return _record(body, document, signature)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadNodeRecord(f"the node record's document is malformed: {exc}") from None


def _record(body: dict[str, Any], document: str, signature: str) -> NodeRecord:
    node_id = body["node"]
    if not isinstance(node_id, str) or not is_node_id(node_id):
        raise ValueError("node is not a node ID")
    interfaces: dict[str, tuple[str, ...]] = {}
    for interface, addresses in dict(body["interfaces"]).items():
        if interface not in INTERFACES:
            raise ValueError(f"unknown interface {interface!r}")
        if not isinstance(addresses, list) or not 0 < len(addresses) <= MAX_ADDRESSES:
            raise ValueError(f"interfaces.{interface}: 1 to {MAX_ADDRESSES} addresses")
        for address in addresses:
            parse_address(_text(address, "an address", 261))
        interfaces[interface] = tuple(addresses)
    issued, expires, seq = body["issuedAt"], body["expiresAt"], body["seq"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (issued, expires)):
        raise ValueError("issuedAt and expiresAt are numbers")
    if not 0 < expires - issued <= MAX_LIFETIME:
        raise ValueError(f"a record lives more than 0 and at most {MAX_LIFETIME:g} seconds")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise ValueError("seq is a non-negative integer")
    host = body.get("host")
    relay_id, relay_addresses = _relay(body.get("relay"))
    return NodeRecord(
        node_id=node_id,
        network=_text(body["network"], "network", 253),
        name=_text(body["name"], "name", 253),
        host=None if host is None else _text(host, "host", 253),
        interfaces=interfaces,
        alpn=tuple(_text(a, "an ALPN", 32) for a in _list(body["alpn"], "alpn")),
        roles=tuple(_text(r, "a role", 32) for r in _list(body["roles"], "roles")),
        version=_text(body["version"], "version", 64, least=0),
        issued_at=float(issued),
        expires_at=float(expires),
        seq=seq,
        signed={"document": document, "signature": signature},
        reflexive=_addresses(body.get("reflexive", []), "reflexive", least=0),
        relay_id=relay_id,
        relay_addresses=relay_addresses,
    )


def _addresses(value: Any, what: str, least: int = 1) -> tuple[str, ...]:
    if not isinstance(value, list) or not least <= len(value) <= MAX_ADDRESSES:
        raise ValueError(f"{what}: {least} to {MAX_ADDRESSES} addresses")
    for address in value:
        parse_address(_text(address, "an address", 261))
    return tuple(value)


def _relay(value: Any) -> tuple[str | None, tuple[str, ...]]:
    if value is None:
        return None, ()
    if not isinstance(value, dict):
        raise ValueError("relay is an object of node and addresses")
    relay_id = value.get("node")
    if not isinstance(relay_id, str) or not is_node_id(relay_id):
        raise ValueError("relay.node is not a node ID")
    return relay_id, _addresses(value.get("addresses"), "relay.addresses")


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > 16:
        raise ValueError(f"{what} is a list of at most 16 items")
    return value


def _text(value: Any, what: str, most: int, least: int = 1) -> str:
    if not isinstance(value, str) or not least <= len(value) <= most:
        raise ValueError(f"{what} is a string of {least} to {most} characters")
    return value
