"""The reconciler of one host: Nodes placed on other hosts, and the TLDs (and their Records)
those nodes own, are never planned, applied or pruned here; their status says where they are
converged; the drivers still see the whole desired state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypermesh.model.placement import Placement
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.reconcile import Reconciler, ReconcileSettings
from hypermesh.store import StateStore
from tests.reconcile.test_reconciler import MemoryDriver, World, ready


def declared(*, moved: bool = False) -> DesiredState:
    return DesiredState.of(
        [
            Resource("Network", "n", {"mode": "private"}),
            Resource("Node", "here", {"network": "n", "listen": "127.0.0.1:0", "host": "a"}),
            Resource(
                "Node",
                "there",
                {"network": "n", "listen": "127.0.0.1:0", "host": "a" if not moved else "b"},
            ),
            Resource("Node", "far", {"network": "n", "listen": "127.0.0.1:0", "host": "b"}),
            Resource("TLD", "bee", {"network": "n", "owner": {"node": "far"}}),
            Resource("Record", "www.bee", {"tld": "bee", "type": "A", "values": ["192.0.2.1"]}),
        ]
    )


def make(tmp_path: Path, world: World, host: str | None) -> tuple[Reconciler, dict[str, Any]]:
    drivers: dict[str, Any] = {
        k: MemoryDriver(k, world) for k in ("Network", "Node", "TLD", "Record")
    }
    reconciler = Reconciler(
        StateStore.open(tmp_path),
        drivers,
        ReconcileSettings(backoff_base=0.01, backoff_cap=0.05),
        placement=Placement(host),
    )
    return reconciler, drivers


def test_only_the_hosts_own_share_is_applied(tmp_path: Path) -> None:
    world = World()
    reconciler, drivers = make(tmp_path, world, "a")
    result = asyncio.run(reconciler.converge(declared(), timeout=10))
    assert result.converged
    applied = {name for verb, name in world.calls if verb == "apply"}
    assert applied == {"Network/n", "Node/here", "Node/there"}
    far = ready(reconciler, ResourceKey("Node", "far"))
    assert (far["status"], far["reason"]) == ("True", "Remote")
    assert "runs on host b" in far["message"]
    tld = ready(reconciler, ResourceKey("TLD", "bee"))
    assert tld["reason"] == "Remote"
    assert tld["message"] == "owned by node far on host b; converged by that host's controller"
    assert ready(reconciler, ResourceKey("Record", "www.bee"))["reason"] == "Remote"
    # The drivers saw every resource, remote ones included (members, registries).
    assert len(drivers["Node"].prepared[-1]) == 6


def test_a_node_moved_to_another_host_is_not_pruned_here(tmp_path: Path) -> None:
    world = World()
    reconciler, _ = make(tmp_path, world, "a")
    asyncio.run(reconciler.converge(declared(), timeout=10))
    world.calls.clear()
    result = asyncio.run(reconciler.converge(declared(moved=True), prune=True, timeout=10))
    assert result.converged
    assert not [c for c in world.calls if c[0] == "delete"]
    assert ready(reconciler, ResourceKey("Node", "there"))["reason"] == "Remote"


def test_without_hosts_everything_is_local(tmp_path: Path) -> None:
    world = World()
    reconciler, _ = make(tmp_path, world, None)
    plain = DesiredState.of(
        [
            Resource("Network", "n", {"mode": "private"}),
            Resource("Node", "one", {"network": "n", "listen": "127.0.0.1:0"}),
        ]
    )
    assert asyncio.run(reconciler.converge(plain, timeout=10)).converged
    assert {n for v, n in world.calls if v == "apply"} == {"Network/n", "Node/one"}
