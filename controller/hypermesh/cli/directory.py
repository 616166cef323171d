"""What ``hmctl get nodes`` shows of the Nodes placed on other hosts: their records in the
network's node directory (``GET /registry/v1/nodes`` at the registry), matched by the pinned
identity or the member name, each verified before its addresses are shown.

A remote Node is not probed (this host does not run it): its status here is what its own
record says — the host it runs on, the addresses it publishes, how old the record is. A remote
Node whose record is not in the directory (not started, expired, never joined) says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hypermesh.drivers.standalone import StandaloneDirectory
from hypermesh.errors import HyperMeshError
from hypermesh.model.placement import Placement, node_host
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.registry.client import API, RegistryClient
from hypermesh.store import ResourceRecord
from hypermesh.transport.address import PeerRef
from hypermesh.transport.noderecord import BadNodeRecord, NodeRecord

MAX_PAGES = 100
"""At most this many pages of 1,000 records are read (100,000 records)."""

__all__ = ["remote_statuses"]


def _declared(records: Iterable[ResourceRecord]) -> DesiredState:
    """The declared resources of the state, as the last apply saved them."""
    out = []
    for record in records:
        if not record.desired:
            continue
        out.append(
            Resource(
                record.key.kind,
                record.key.name,
                dict(record.desired.get("spec") or {}),
                record.key.namespace,
            )
        )
    return DesiredState.of(out)


async def _directory_of(where: PeerRef, network: str) -> dict[str, NodeRecord]:
    """Every live, valid record of ``network`` at the registry, by node ID."""
    client = RegistryClient(where.address, where.node_id, identity=None)
    found: dict[str, NodeRecord] = {}
    after: str | None = None
    now = time.time()
    for _ in range(MAX_PAGES):
        path = f"{API}/nodes?limit=1000" + (f"&after={after}" if after else "")
        status, data = await client.call("GET", path)
        if status != 200:
            raise HyperMeshError(f"the registry's directory answered {status}: {data}")
        for item in data.get("items") or []:
            try:
                record = NodeRecord.verify(item, now=now)
            except BadNodeRecord:
                continue  # a record that does not verify is not shown
            if record.network == network:
                found[record.node_id] = record
        after = data.get("next") if isinstance(data.get("next"), str) else None
        if after is None:
            break
    return found


async def remote_statuses(
    records: list[ResourceRecord], host: str | None, state_dir: Path
) -> dict[ResourceKey, dict[str, Any]]:
    """Status fields of each remote Node of ``records`` from its network's directory:
    ``host``, ``address`` (the published public addresses), ``identity``, ``recordAge``
    (seconds) and ``phase`` (``Remote``, or why there is no record to show)."""
    desired = _declared(records)
    placement = Placement(host)
    remote = [n for n in desired.of_kind("Node") if not placement.is_local(n)]
    if not remote:
        return {}
    directory = StandaloneDirectory(state_dir, placement)
    directory.prepare(desired)
    listings: dict[tuple[str, str], dict[str, NodeRecord] | str] = {}
    out: dict[ResourceKey, dict[str, Any]] = {}
    for node in remote:
        where_key = (str(node.spec.get("network")), node.namespace)
        if where_key not in listings:
            listings[where_key] = await _listing(directory, *where_key)
        out[node.key] = _status(node, listings[where_key])
    return out


async def _listing(
    directory: StandaloneDirectory, network: str, namespace: str
) -> dict[str, NodeRecord] | str:
    """The network's directory, or why it could not be read."""
    try:
        where = await directory.registry_of(network, namespace)
        if where is None:
            return "no registry reachable from this host"
        return await _directory_of(where, network)
    except HyperMeshError as exc:
        return f"directory unavailable: {exc}"


def _status(node: Resource, listing: Mapping[str, NodeRecord] | str) -> dict[str, Any]:
    status: dict[str, Any] = {"host": node_host(node), "phase": "Remote"}
    pinned = node.spec.get("identity")
    if pinned:
        status["identity"] = str(pinned)
    if isinstance(listing, str):
        status["phase"] = "NoDirectory"
        status["directory"] = listing
        return status
    record = listing.get(str(pinned)) if pinned else None
    if record is None and not pinned:
        record = next((r for r in listing.values() if r.name == node.name), None)
    if record is None:
        status["phase"] = "NoRecord"
        return status
    status["identity"] = record.node_id
    status["address"] = ",".join(record.addresses)
    status["recordAge"] = max(0, round(time.time() - record.issued_at))
    if record.host:
        status["host"] = record.host
    return status
