"""The registry's trust anchors: which zones it serves, their DS and serials, signed by the
registry node's key.

Mirrors relay this document as they got it, so a node that fetches zones from another mirror
checks them against the registry's own word: a mirror can withhold or delay a zone, but it
cannot make a record verify that the registry's zone key did not sign. The signature is
Ed25519 by the registry node's identity over a domain-separated message::

    hypermesh-anchors-v1 NUL <the document's JSON bytes>

The document::

    {"network": "acme", "registry": "<node ID>", "issuedAt": 1764633600.0,
     "zones": {"acme.": {"ds": ["12345 15 2 ab…"], "serial": 7}, …},
     "revoked": {"<node ID>": {"at": 1764633500.0, "reason": "…", "replacedBy": null}, …},
     "members": {"alpha": {"identity": "<node ID>", "kind": "Node", "tags": ["web"]}, …}}

``revoked`` lists the node keys the registry has revoked: every node that gets these anchors
refuses them. Because mirrors keep only anchors newer than the ones they hold, a mirror cannot
bring a revoked key back by relaying old anchors to a node that has seen the new ones.
``members`` lists the network's Nodes and Peers: what a network federated with this one admits
as its members (``hypermesh.mirror.federation``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import Identity, verify_signature

CONTEXT = b"hypermesh-anchors-v1\0"


class BadAnchors(HyperMeshError):
    """Anchors that are malformed or not signed by the registry's key."""


@dataclass(frozen=True, slots=True)
class ZoneAnchor:
    """What the registry says of one zone."""

    ds: tuple[str, ...]
    serial: int


@dataclass(frozen=True, slots=True)
class Anchors:
    """A verified anchors document and the exact bytes it came in (to relay unchanged)."""

    network: str
    registry: str
    issued_at: float
    zones: Mapping[str, ZoneAnchor]
    signed: dict[str, str]
    """``{"document": …, "signature": …}``: what the registry sent."""
    revoked: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Revoked node keys: ``{node ID: {"at", "reason", "replacedBy"}}``."""
    members: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The network's members by name: ``{"identity", "kind", "tags"}``."""

    @classmethod
    def issue(
        cls,
        identity: Identity,
        network: str,
        zones: Mapping[str, ZoneAnchor],
        issued_at: float,
        revoked: Mapping[str, Mapping[str, Any]] | None = None,
        members: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Anchors:
        """Sign an anchors document as the registry node ``identity``."""
        revoked = dict(revoked or {})
        members = {name: dict(entry) for name, entry in (members or {}).items()}
        body = {
            "network": network,
            "registry": identity.node_id,
            "issuedAt": issued_at,
            "zones": {
                name: {"ds": list(anchor.ds), "serial": anchor.serial}
                for name, anchor in sorted(zones.items())
            },
            "revoked": revoked,
            "members": members,
        }
        document = json.dumps(body, separators=(",", ":"), sort_keys=True)
        signature = identity.sign(CONTEXT + document.encode())
        signed = {"document": document, "signature": base64.b64encode(signature).decode()}
        return cls(network, identity.node_id, issued_at, dict(zones), signed, revoked, members)

    @classmethod
    def verify(cls, signed: Any, registry: str) -> Anchors:
        """Anchors from ``signed`` (as ``issue`` made them) after checking the signature of
        ``registry`` (its node ID); ``BadAnchors`` otherwise."""
        if not isinstance(signed, dict):
            raise BadAnchors("the anchors are not a JSON object")
        document, signature = signed.get("document"), signed.get("signature")
        if not isinstance(document, str) or not isinstance(signature, str):
            raise BadAnchors("the anchors lack a document or a signature")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise BadAnchors("the anchors' signature is not base64") from None
        if not verify_signature(registry, CONTEXT + document.encode(), raw):
            raise BadAnchors(f"the anchors are not signed by the registry {registry}")
        try:
            body = json.loads(document)
            zones = {
                str(name): ZoneAnchor(tuple(str(d) for d in z["ds"]), int(z["serial"]))
                for name, z in body["zones"].items()
            }
            revoked, members = body.get("revoked", {}), body.get("members", {})
            for what, value in (("revoked", revoked), ("members", members)):
                if not isinstance(value, dict) or not all(
                    isinstance(v, dict) for v in value.values()
                ):
                    raise ValueError(f"{what} must map names to objects")
            return cls(
                str(body["network"]),
                str(body["registry"]),
                float(body["issuedAt"]),
                zones,
                {"document": document, "signature": signature},
                {str(k): dict(v) for k, v in revoked.items()},
                {str(k): dict(v) for k, v in members.items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadAnchors(f"the anchors document is malformed: {exc!r}") from None
