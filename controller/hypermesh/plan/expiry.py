"""Ephemeral networks: whether one has expired, what belongs to it, and whether its manifests
changed since it was torn down.

Pure: no I/O, no clock (``now`` comes in). The reconciler tears down what these functions name.

- An ephemeral Network records ``status.createdAt`` when the controller first creates it and
  ``status.expiresAt`` (``createdAt + spec.ttl``); both are RFC 3339 texts in the state store
  (:mod:`hypermesh.timefmt`).
- Once ``expiresAt`` has passed, the network and everything of it is torn down, and the Network
  is kept as a *tombstone* (a row with no inventory, no last-applied spec, ``Ready=False``
  reason ``Expired``) carrying the :func:`fingerprint` of its declaration at that moment. A
  running loop leaves it alone while the fingerprint still matches the files; an apply, or a
  change of the manifests, lifts the tombstone and the network is created anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from hypermesh.model.resources import DesiredState, ResourceKey, canonical_json
from hypermesh.timefmt import parse_rfc3339

EXPIRED = "Expired"
"""The reason of the Ready condition of a Network that expired and was torn down."""

TOMBSTONE = "expired"
"""The key, in a Network's handle, of the mark left when it was torn down."""


def expires_at(created_at: datetime, ttl_seconds: float) -> datetime:
    """When a network created at ``created_at`` with a TTL of ``ttl_seconds`` expires."""
    return created_at + timedelta(seconds=ttl_seconds)


def is_expired(spec: Mapping[str, Any] | None, status: Mapping[str, Any], now: datetime) -> bool:
    """True when the last-applied ``spec`` is an ephemeral network and its recorded
    ``expiresAt`` is ``now`` or earlier. A network never applied, or whose expiry was never
    recorded, has not expired."""
    if spec is None or spec.get("mode") != "ephemeral":
        return False
    deadline = parse_rfc3339(status.get("expiresAt"))
    return deadline is not None and deadline <= now


def is_tombstone(handle: Mapping[str, Any], applied: Mapping[str, Any] | None) -> bool:
    """True for the row a torn-down Network leaves behind."""
    return applied is None and isinstance(handle.get(TOMBSTONE), Mapping)


def members(
    network: ResourceKey, specs: Mapping[ResourceKey, Mapping[str, Any]]
) -> tuple[ResourceKey, ...]:
    """The resources of ``network`` among ``specs`` (Nodes, Peers, TLDs and InterfacePolicies
    naming it, Records under its TLDs; same namespace), in teardown order: a kind at a time,
    dependents first (the reverse of creation), names in order. The network is not included."""
    ns, name = network.namespace, network.name
    own = {
        key
        for key, spec in specs.items()
        if key.namespace == ns and key.kind != "Network" and spec.get("network") == name
    }
    tlds = {key.name for key in own if key.kind == "TLD"}
    own |= {
        key
        for key, spec in specs.items()
        if key.namespace == ns and key.kind == "Record" and spec.get("tld") in tlds
    }
    return tuple(sorted(own, key=lambda k: (-k.order[0], *k.order[1:])))


def fingerprint(desired: DesiredState, network: ResourceKey) -> str | None:
    """A digest of how ``desired`` declares ``network`` and its members (metadata and spec),
    or None when it does not declare the network. Equal digests: the files did not change."""
    if desired.get(network.kind, network.name, network.namespace) is None:
        return None
    by_key = desired.by_key()
    keys = (network, *members(network, {k: r.spec for k, r in by_key.items()}))
    text = canonical_json([by_key[k].to_manifest() for k in sorted(keys)])
    return hashlib.sha256(text.encode()).hexdigest()


def specs_of(
    stored: Iterable[tuple[ResourceKey, Mapping[str, Any] | None]], desired: DesiredState
) -> dict[ResourceKey, Mapping[str, Any]]:
    """Every known spec by key: what was stored (last applied, else declared), then what the
    files declare now for keys the store does not know."""
    out: dict[ResourceKey, Mapping[str, Any]] = {k: s for k, s in stored if s is not None}
    for resource in desired:
        out.setdefault(resource.key, resource.spec)
    return out
