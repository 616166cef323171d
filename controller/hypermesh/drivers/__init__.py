"""Drivers: the only code that touches the world (node processes, the registry, and the live
probe of interface policies)."""

from pathlib import Path

from hypermesh.drivers.declared import NetworkDriver, PeerDriver
from hypermesh.drivers.policies import PolicyDriver
from hypermesh.drivers.processes import NodeProcessDriver
from hypermesh.drivers.registry import RecordDriver, TLDDriver
from hypermesh.reconcile import Driver


def standalone_drivers(state_dir: Path) -> dict[str, Driver]:
    """The drivers of standalone mode: nodes as local processes under ``state_dir``."""
    nodes = NodeProcessDriver(state_dir)
    drivers: dict[str, Driver] = {"Network": NetworkDriver(), "Node": nodes, "Peer": PeerDriver()}
    drivers["TLD"] = TLDDriver(state_dir)
    drivers["Record"] = RecordDriver(state_dir)
    drivers["InterfacePolicy"] = PolicyDriver(state_dir)
    return drivers


__all__ = [
    "NetworkDriver",
    "NodeProcessDriver",
    "PeerDriver",
    "PolicyDriver",
    "RecordDriver",
    "TLDDriver",
    "standalone_drivers",
]
