"""Drivers: the only code that touches the world (node processes, the registry, and the live
probe of interface policies). What they need of other nodes and of time comes through the
ports of ``drivers.ports``, so that the same drivers run standalone and on Kubernetes."""

from pathlib import Path

from hypermesh.drivers.declared import NetworkDriver, PeerDriver
from hypermesh.drivers.nodeconfig import interfaces_of
from hypermesh.drivers.policies import PolicyDriver
from hypermesh.drivers.ports import Clock, NodeDirectory, SystemClock
from hypermesh.drivers.processes import NodeProcessDriver
from hypermesh.drivers.registry import RecordDriver, TLDDriver
from hypermesh.drivers.standalone import StandaloneDirectory
from hypermesh.model.placement import Placement
from hypermesh.reconcile import Driver


def standalone_drivers(
    state_dir: Path, *, host: str | None = None, join_token: str | None = None
) -> dict[str, Driver]:
    """The drivers of standalone mode: nodes as local processes under ``state_dir``, and the
    drivers of TLDs, Records and policies finding them through the same node folders."""
    nodes = NodeProcessDriver(state_dir, placement=Placement(host), join_token=join_token)
    directory = nodes.directory
    clock = SystemClock()
    drivers: dict[str, Driver] = {"Network": NetworkDriver(), "Node": nodes, "Peer": PeerDriver()}
    drivers["TLD"] = TLDDriver(directory, clock)
    drivers["Record"] = RecordDriver(directory, clock)
    drivers["InterfacePolicy"] = PolicyDriver(directory)
    return drivers


__all__ = [
    "Clock",
    "NetworkDriver",
    "NodeDirectory",
    "NodeProcessDriver",
    "PeerDriver",
    "PolicyDriver",
    "RecordDriver",
    "StandaloneDirectory",
    "SystemClock",
    "TLDDriver",
    "interfaces_of",
    "standalone_drivers",
]
