"""A wave of creates enters the inventory in one transaction before any driver creates anything
(so a crash in between leaves every resource prunable), without what the wave holds back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypermesh.errors import TemporaryError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.reconcile import ApplyContext, Outcome, Reconciler, ReconcileSettings
from hypermesh.store import StateStore
from tests.reconcile.test_reconciler import MemoryDriver, World


class InventoryWatcher(MemoryDriver):
    """Notes, at each apply, which Nodes the store holds in its inventory at that moment."""

    def __init__(self, kind: str, world: World, store: StateStore) -> None:
        super().__init__(kind, world)
        self.store = store
        self.managed_at_apply: dict[str, set[str]] = {}

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        managed = {r.key.name for r in self.store.records("Node") if r.managed}
        self.managed_at_apply[resource.name] = managed
        return await super().apply(resource, handle, context)


def node(name: str, **spec: Any) -> Resource:
    return Resource("Node", name, {"network": "n", "listen": "127.0.0.1:0", **spec})


def test_a_wave_is_in_the_inventory_before_its_first_create(tmp_path: Path) -> None:
    world = World()
    store = StateStore.open(tmp_path)
    watcher = InventoryWatcher("Node", world, store)
    drivers: dict[str, Any] = {"Network": MemoryDriver("Network", world), "Node": watcher}
    reconciler = Reconciler(store, drivers, ReconcileSettings(parallelism=2))
    names = [f"n{i}" for i in range(6)]
    bad = node("bad", tags=["edge\n"])  # refused before any driver sees it
    state = DesiredState.of([Resource("Network", "n", {"mode": "private"}), bad] + [
        node(n) for n in names
    ])  # fmt: skip
    result = asyncio.run(reconciler.run_pass(state))
    assert set(result.done) >= {ResourceKey("Node", n) for n in names}
    first = watcher.managed_at_apply["n0"]
    assert all(watcher.managed_at_apply[n] >= set(names) for n in names), first
    assert "bad" not in first
    record = store.record(ResourceKey("Node", "bad"))
    assert record is not None and not record.managed
    handles = {r.key.name: r.handle for r in store.records("Node") if r.managed}
    assert handles == {n: {"name": n} for n in names}


def test_what_waits_for_a_failed_dependency_is_not_entered(tmp_path: Path) -> None:
    world = World()
    world.failures["n"] = [TemporaryError("network not there yet")]
    store = StateStore.open(tmp_path)
    drivers: dict[str, Any] = {k: MemoryDriver(k, world) for k in ("Network", "Node")}
    reconciler = Reconciler(store, drivers)
    state = DesiredState.of([Resource("Network", "n", {"mode": "private"}), node("a")])
    result = asyncio.run(reconciler.run_pass(state))
    assert ResourceKey("Node", "a") in result.waiting
    record = store.record(ResourceKey("Node", "a"))
    assert record is not None and not record.managed
    assert ("apply", "Node/a") not in world.calls
