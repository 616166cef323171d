"""What a Record with ``target: {node: NAME}`` becomes, given the node's live address and key.

Pure: the driver passes in what it observed. A target publishes three record sets under the
record's owner name:

- ``HTTPS``: ``1 . alpn="h3" port=PORT ipv4hint=ADDR`` (or ``ipv6hint``), so a client finds the
  node's QUIC endpoint without another lookup (RFC 9460);
- ``A`` or ``AAAA``: the address itself;
- ``TLSA`` at ``_PORT._udp.NAME``: ``3 1 0`` and the node's SubjectPublicKeyInfo, so the key is
  pinned by DANE (RFC 6698, usage DANE-EE, selector SPKI, full match).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hypermesh.registry.zones import RecordSet
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import public_key_from_node_id


def owner_name(record_name: str, spec: Mapping[str, Any]) -> str:
    """The owner name of a Record relative to its TLD (``www.acme`` under ``acme`` → ``www``)."""
    if "name" in spec:
        return str(spec["name"])
    tld = str(spec["tld"])
    if record_name == tld:
        return "@"
    return record_name.removesuffix(f".{tld}")


def spki_hex(node_id: str) -> str:
    """The DER SubjectPublicKeyInfo of a node's Ed25519 key, hex: the TLSA ``3 1 0`` data."""
    key = Ed25519PublicKey.from_public_bytes(public_key_from_node_id(node_id))
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo).hex()


def target_rrsets(name: str, ttl: int, address: str, node_id: str) -> list[RecordSet]:
    """The HTTPS, A/AAAA and TLSA record sets for a node serving at ``address``."""
    host, port = parse_address(address)
    ip = ipaddress.ip_address(host)
    hint = "ipv4hint" if ip.version == 4 else "ipv6hint"
    tlsa_owner = f"_{port}._udp" if name == "@" else f"_{port}._udp.{name}"
    return [
        RecordSet(name, "HTTPS", ttl, (f'1 . alpn="h3" port={port} {hint}={ip}',)),
        RecordSet(name, "A" if ip.version == 4 else "AAAA", ttl, (str(ip),)),
        RecordSet(tlsa_owner, "TLSA", ttl, (f"3 1 0 {spki_hex(node_id)}",)),
    ]
