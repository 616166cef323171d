"""What the working commands (``dns``, ``chain``, ``message``) read of the state: its Node and
Network records, and where a named node runs. Kept apart from ``cli.common`` so that light
commands (``validate``, ``version``) do not import the store."""

from __future__ import annotations

from pathlib import Path

from hypermesh.errors import UsageError
from hypermesh.store import ResourceRecord, StateStore
from hypermesh.store.store import DB_FILE


def nodes_and_networks(
    directory: Path, hint: str = "start nodes with hmctl apply"
) -> tuple[dict[str, ResourceRecord], list[ResourceRecord]]:
    """The Node records by name and the Network records of the state in ``directory``."""
    if not (directory / DB_FILE).exists():
        raise UsageError(f"no state in {directory}: {hint}")
    store = StateStore.open(directory)
    try:
        return {r.key.name: r for r in store.records("Node")}, store.records("Network")
    finally:
        store.close()


ADDRESS_FIELDS = {"public": "address", "private": "privateAddress", "ephemeral": "ephemeralAddress"}


def running_node(
    nodes: dict[str, ResourceRecord], name: str, interface: str = "public"
) -> tuple[str, str]:
    """The address of ``interface`` and the node ID of the running node ``name``;
    ``UsageError`` otherwise."""
    record = nodes.get(name)
    if record is None:
        known = ", ".join(sorted(nodes)) or "none"
        raise UsageError(f"no node {name!r} in this state (nodes: {known})")
    address = record.status.get(ADDRESS_FIELDS[interface])
    identity = record.status.get("identity")
    if address and identity:
        return str(address), str(identity)
    if interface == "public" or not record.status.get("address"):
        raise UsageError(f"node {name!r} is not running (no address); hmctl apply")
    raise UsageError(
        f"node {name!r} has no {interface} interface running"
        + (" (give it interface ephemeral or role relay)" if interface == "ephemeral" else "")
    )
