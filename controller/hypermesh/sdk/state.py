"""What ``Mesh.from_state`` reads of ``hmctl``'s state directory: the running nodes and, for
each node, its network's registry."""

from __future__ import annotations

from pathlib import Path

from hypermesh.errors import HyperMeshError
from hypermesh.sdk.mesh import Endpoint
from hypermesh.store import StateStore
from hypermesh.store.store import DB_FILE


def read_state(directory: Path) -> tuple[dict[str, Endpoint], dict[str, Endpoint]]:
    """(running nodes by name, each node's registry by the node's name)."""
    if not (directory / DB_FILE).exists():
        raise HyperMeshError(f"no state in {directory}: start nodes with hmctl apply")
    store = StateStore.open(directory)
    try:
        nodes = store.records("Node")
        networks = {r.key.name: (r.desired or {}).get("spec", {}) for r in store.records("Network")}
    finally:
        store.close()
    directory_: dict[str, Endpoint] = {}
    network_of: dict[str, str] = {}
    for record in nodes:
        status = record.status
        if status.get("address") and status.get("identity"):
            directory_[record.key.name] = Endpoint(
                str(status["address"]),
                str(status["identity"]),
                record.key.name,
                str(status["ephemeralAddress"]) if status.get("ephemeralAddress") else None,
            )
            network_of[record.key.name] = str((record.desired or {}).get("spec", {}).get("network"))
    registries: dict[str, Endpoint] = {}
    for name, network in network_of.items():
        registry = networks.get(network, {}).get("registry", {})
        if registry.get("node") in directory_:
            registries[name] = directory_[registry["node"]]
        elif registry.get("endpoint") and registry.get("identity"):
            registries[name] = Endpoint(str(registry["endpoint"]), str(registry["identity"]))
    return directory_, registries
