"""What ``Mesh.from_state`` reads of ``hmctl``'s state directory: the running nodes and, for
each node, its network's registry."""

from __future__ import annotations

from pathlib import Path

from hypermesh.errors import HyperMeshError
from hypermesh.sdk.results import MeshNode
from hypermesh.store import StateStore
from hypermesh.store.store import DB_FILE
from hypermesh.transport.address import PeerRef


def read_state(directory: Path) -> tuple[dict[str, MeshNode], dict[str, PeerRef]]:
    """(running nodes by name, each node's registry by the node's name)."""
    if not (directory / DB_FILE).exists():
        raise HyperMeshError(f"no state in {directory}: start nodes with hmctl apply")
    store = StateStore.open(directory)
    try:
        nodes = store.records("Node")
        networks = {r.key.name: (r.desired or {}).get("spec", {}) for r in store.records("Network")}
    finally:
        store.close()
    directory_: dict[str, MeshNode] = {}
    network_of: dict[str, str] = {}
    for record in nodes:
        status = record.status
        if status.get("address") and status.get("identity"):
            directory_[record.key.name] = MeshNode(
                str(status["address"]),
                str(status["identity"]),
                name=record.key.name,
                ephemeral=str(status["ephemeralAddress"])
                if status.get("ephemeralAddress")
                else None,
            )
            network_of[record.key.name] = str((record.desired or {}).get("spec", {}).get("network"))
    registries: dict[str, PeerRef] = {}
    for name, network in network_of.items():
        registry = networks.get(network, {}).get("registry", {})
        if registry.get("node") in directory_:
            registries[name] = directory_[registry["node"]]
        elif registry.get("endpoint") and registry.get("identity"):
            registries[name] = PeerRef(str(registry["endpoint"]), str(registry["identity"]))
    return directory_, registries
