"""Status that follows what is live: a Network is as ready as its members, and a resource is
not Ready while something it stands on is not.

Pure: records and readiness in, readiness and status fields out. A resource's own readiness is
what its driver last saw of it (this pass's observation, or the outcome of acting on it); this
module adds what no single driver can see:

- a **Network** counts the Nodes whose last-applied spec puts them in it (``status.nodes``),
  how many of those are Ready (``status.readyNodes``) and its Peers (``status.peers``). It is
  Ready only while at least one member is live: a Ready Node, or a Peer (peers are recorded,
  not probed). A node moved to another network by a later apply leaves the old one's counts.
- a **TLD**, **Record** or **InterfacePolicy** is Ready only while every resource it depends
  on (its Network, owner, TLD, target) is Ready; otherwise its reason is
  ``DependencyNotReady`` and its message names the first such dependency and why.

Nodes and Peers are not held back by their Network: they are what makes it ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypermesh.model.references import dependencies
from hypermesh.model.resources import KIND_ORDER, Resource, ResourceKey
from hypermesh.plan.expiry import is_tombstone
from hypermesh.reconcile.conditions import READY, Condition, condition, set_condition
from hypermesh.store import ResourceRecord

__all__ = [
    "DEPENDENCY_NOT_READY",
    "NO_MEMBERS",
    "NO_NODE_READY",
    "Readiness",
    "Summary",
    "overlay",
    "own_readiness",
    "summarise",
]

NO_MEMBERS = "NoMembers"
"""A Network no Node or Peer is in."""
NO_NODE_READY = "NoNodeReady"
"""A Network whose nodes are all down, and that has no Peer."""
DEPENDENCY_NOT_READY = "DependencyNotReady"
"""A resource whose Network, owner, TLD or target is not Ready."""

_HELD_BACK = frozenset({"TLD", "Record", "InterfacePolicy"})
"""Kinds that are only as ready as what they depend on."""


@dataclass(frozen=True, slots=True)
class Readiness:
    """The Ready condition's status, reason and message."""

    ready: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """A resource's readiness once what it stands on is counted, and status fields to set."""

    readiness: Readiness
    status: Mapping[str, Any] = field(default_factory=dict)


def own_readiness(record: ResourceRecord) -> Readiness:
    """What the record's stored Ready condition says (not reconciled yet: not ready)."""
    found = condition(record.status.get("conditions", []), READY)
    if found is None:
        return Readiness(False, "Pending", "not reconciled yet")
    return Readiness(
        found.get("status") == "True", str(found.get("reason", "")), str(found.get("message", ""))
    )


def summarise(
    records: Iterable[ResourceRecord], own: Mapping[ResourceKey, Readiness]
) -> dict[ResourceKey, Summary]:
    """Every record's readiness and derived status fields, given each one's ``own`` readiness
    (a record missing from ``own`` is taken at its stored condition)."""
    ordered = sorted(records, key=lambda r: r.key.order)
    mine = {r.key: own.get(r.key) or own_readiness(r) for r in ordered}
    out: dict[ResourceKey, Summary] = {}
    for record in ordered:
        key = record.key
        readiness = mine[key]
        if key.kind == "Network":
            out[key] = _network(record, readiness, ordered, mine)
            continue
        if key.kind in _HELD_BACK and readiness.ready:
            readiness = _held_back(record, readiness, out)
        out[key] = Summary(readiness)
    return out


def _spec(record: ResourceRecord) -> Mapping[str, Any] | None:
    """What the world runs: the last-applied spec."""
    return record.applied


def _network(
    record: ResourceRecord,
    readiness: Readiness,
    records: list[ResourceRecord],
    own: Mapping[ResourceKey, Readiness],
) -> Summary:
    key = record.key
    if record.applied is None or is_tombstone(record.handle, record.applied):
        return Summary(readiness)  # not applied, or expired and torn down: as it stands
    nodes: list[tuple[ResourceKey, Readiness]] = []
    peers = 0
    for other in records:
        spec = _spec(other)
        if spec is None or other.key.namespace != key.namespace or spec.get("network") != key.name:
            continue
        if other.key.kind == "Node":
            nodes.append((other.key, own[other.key]))
        elif other.key.kind == "Peer":
            peers += 1
    ready = sum(1 for _, r in nodes if r.ready)
    status = {"nodes": len(nodes), "readyNodes": ready, "peers": peers}
    if not readiness.ready:
        return Summary(readiness, status)
    mode = (record.applied or {}).get("mode", "")
    counted = f"{ready} of {len(nodes)} node(s) ready" + (f", {peers} peer(s)" if peers else "")
    expires = record.status.get("expiresAt")
    if ready or peers:
        message = f"{mode} network: {counted}" + (f"; expires at {expires}" if expires else "")
        return Summary(Readiness(True, readiness.reason, message), status)
    if not nodes:
        message = f"no Node or Peer is in network {key.name}"
        return Summary(Readiness(False, NO_MEMBERS, message), status)
    down = ", ".join(f"{k.name}: {r.reason}" for k, r in nodes[:5])
    more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
    message = f"none of its {len(nodes)} node(s) is ready ({down}{more})"
    return Summary(Readiness(False, NO_NODE_READY, message), status)


def _held_back(
    record: ResourceRecord, readiness: Readiness, known: Mapping[ResourceKey, Summary]
) -> Readiness:
    spec = _spec(record) or (record.desired or {}).get("spec")
    if not isinstance(spec, Mapping):
        return readiness
    key = record.key
    try:
        needs = dependencies(Resource(key.kind, key.name, spec, key.namespace))
    except (KeyError, TypeError):  # a spec of another shape: nothing to say about it
        return readiness
    for dependency in sorted(needs, key=lambda k: KIND_ORDER.get(k.kind, len(KIND_ORDER))):
        found = known.get(dependency)
        if found is not None and not found.readiness.ready:
            why = found.readiness.reason
            if found.readiness.message:
                why += f": {found.readiness.message}"
            return Readiness(False, DEPENDENCY_NOT_READY, f"{dependency} is not ready ({why})")
    return readiness


def overlay(record: ResourceRecord, summary: Summary, at: str) -> dict[str, Any]:
    """``record``'s status as ``summary`` has it, for showing (``hmctl get``): the derived
    fields set, and the Ready condition replaced when the summary says otherwise."""
    status = dict(record.status) | dict(summary.status)
    now = summary.readiness
    if own_readiness(record) != now and "conditions" in status:
        found = condition(status["conditions"], READY)
        generation = int(found.get("observedGeneration", 0)) if found else 0
        ready = Condition(READY, str(now.ready), now.reason, now.message, generation)
        status["conditions"] = set_condition(status["conditions"], ready, at)
    return status
