"""Drivers: the only code that touches the world (node processes, and later the registry)."""

from pathlib import Path

from hypermesh.drivers.declared import NetworkDriver, NotImplementedDriver, PeerDriver
from hypermesh.drivers.processes import NodeProcessDriver
from hypermesh.reconcile import Driver


def standalone_drivers(state_dir: Path) -> dict[str, Driver]:
    """The drivers of standalone mode: nodes as local processes under ``state_dir``."""
    nodes = NodeProcessDriver(state_dir)
    drivers: dict[str, Driver] = {"Network": NetworkDriver(), "Node": nodes, "Peer": PeerDriver()}
    for kind in ("TLD", "Record", "InterfacePolicy"):
        drivers[kind] = NotImplementedDriver(kind)
    return drivers


__all__ = [
    "NetworkDriver",
    "NodeProcessDriver",
    "NotImplementedDriver",
    "PeerDriver",
    "standalone_drivers",
]
