"""The reconciler's logic against in-memory drivers (the real node driver is tested end to end
with real processes in tests/e2e). The store is a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hypermesh.errors import PermanentError, TemporaryError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.reconcile import ApplyContext, Live, Outcome, Reconciler, ReconcileSettings
from hypermesh.reconcile.backoff import Backoff
from hypermesh.reconcile.conditions import condition
from hypermesh.store import StateStore


class World:
    """What exists, as an in-memory driver sees it; failures are scripted per name (of an
    apply) or ``delete:NAME`` (of a delete)."""

    def __init__(self) -> None:
        self.objects: dict[ResourceKey, Mapping[str, Any]] = {}
        self.failures: dict[str, list[Exception]] = {}
        self.calls: list[tuple[str, str]] = []


class MemoryDriver:
    manages_world = True

    def __init__(self, kind: str, world: World) -> None:
        self.kinds = (kind,)
        self.world = world

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {"name": resource.name}

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        exists = key in self.world.objects
        return Live(exists=exists, drift=() if exists else ("gone",), ready=exists)

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome:
        self.world.calls.append(("apply", str(resource.key)))
        pending = self.world.failures.get(resource.name)
        if pending:
            raise pending.pop(0)
        self.world.objects[resource.key] = resource.spec
        return Outcome(handle={"name": resource.name}, status={"address": "x"})

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        self.world.calls.append(("delete", str(key)))
        pending = self.world.failures.get(f"delete:{key.name}")
        if pending:
            raise pending.pop(0)
        self.world.objects.pop(key, None)

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        return self.world.objects.pop(key, None) is not None


def desired(*nodes: str, network: str = "n") -> DesiredState:
    return DesiredState.of(
        [Resource("Network", network, {"mode": "private"})]
        + [Resource("Node", n, {"network": network, "listen": "127.0.0.1:0"}) for n in nodes]
    )


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def reconciler(tmp_path: Path, world: World) -> Reconciler:
    store = StateStore.open(tmp_path)
    drivers: dict[str, Any] = {k: MemoryDriver(k, world) for k in ("Network", "Node")}
    return Reconciler(store, drivers, ReconcileSettings(backoff_base=0.01, backoff_cap=0.05))


def ready(reconciler: Reconciler, key: ResourceKey) -> Mapping[str, Any]:
    record = reconciler.store.record(key)
    assert record is not None
    found = condition(record.status.get("conditions", []), "Ready")
    assert found is not None
    return found


def test_converges_and_records_status(reconciler: Reconciler, world: World) -> None:
    result = asyncio.run(reconciler.converge(desired("a", "b"), timeout=10))
    assert result.converged
    assert set(world.objects) == {
        ResourceKey("Network", "n"),
        ResourceKey("Node", "a"),
        ResourceKey("Node", "b"),
    }
    cond = ready(reconciler, ResourceKey("Node", "a"))
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", "Converged", 1)
    # A second converge has nothing to do.
    world.calls.clear()
    assert asyncio.run(reconciler.converge(desired("a", "b"), timeout=10)).converged
    assert world.calls == []


def test_temporary_failures_are_retried_with_backoff(reconciler: Reconciler, world: World) -> None:
    world.failures["a"] = [TemporaryError("port busy"), TemporaryError("port busy")]
    result = asyncio.run(reconciler.converge(desired("a"), timeout=10))
    assert result.converged
    assert world.calls.count(("apply", "Node/a")) == 3
    events = [e.reason for e in reconciler.store.events(ResourceKey("Node", "a"))]
    assert events == ["Retrying", "Retrying", "Created"]


def test_permanent_failure_stalls_until_the_spec_changes(
    reconciler: Reconciler, world: World
) -> None:
    world.failures["a"] = [PermanentError("cannot ever work")]
    result = asyncio.run(reconciler.converge(desired("a"), timeout=10))
    assert not result.converged and ResourceKey("Node", "a") in result.stalled
    assert world.calls.count(("apply", "Node/a")) == 1
    cond = ready(reconciler, ResourceKey("Node", "a"))
    assert (cond["status"], cond["reason"]) == ("False", "Stalled")
    changed = DesiredState.of(
        [
            Resource("Network", "n", {"mode": "private"}),
            Resource("Node", "a", {"network": "n", "listen": "127.0.0.1:7001"}),
        ]
    )
    assert asyncio.run(reconciler.converge(changed, timeout=10)).converged


def test_dependents_wait_for_a_failed_dependency(reconciler: Reconciler, world: World) -> None:
    world.failures["n"] = [PermanentError("network broken")]
    result = asyncio.run(reconciler.converge(desired("a"), timeout=10))
    assert ResourceKey("Node", "a") in result.stalled  # behind a stalled dependency
    assert ("apply", "Node/a") not in world.calls
    cond = ready(reconciler, ResourceKey("Node", "a"))
    assert cond["reason"] == "WaitingForDependency"
    assert "Network/n" in cond["message"]


def test_drift_is_repaired_level_triggered(reconciler: Reconciler, world: World) -> None:
    asyncio.run(reconciler.converge(desired("a"), timeout=10))
    del world.objects[ResourceKey("Node", "a")]  # the node died
    result = asyncio.run(reconciler.run_pass(desired("a")))
    assert ResourceKey("Node", "a") in result.done
    assert ResourceKey("Node", "a") in world.objects
    assert reconciler.store.events(ResourceKey("Node", "a"))[-1].reason == "Repaired"


def test_prune_deletes_what_is_no_longer_declared(reconciler: Reconciler, world: World) -> None:
    asyncio.run(reconciler.converge(desired("a", "b"), timeout=10))
    asyncio.run(reconciler.converge(desired("a"), timeout=10))
    assert ResourceKey("Node", "b") in world.objects  # not without --prune
    asyncio.run(reconciler.converge(desired("a"), prune=True, timeout=10))
    assert ResourceKey("Node", "b") not in world.objects
    assert reconciler.store.record(ResourceKey("Node", "b")) is None


def test_stop_all_keeps_the_inventory(reconciler: Reconciler, world: World) -> None:
    asyncio.run(reconciler.converge(desired("a"), timeout=10))
    stopped = asyncio.run(reconciler.stop_all())
    assert ResourceKey("Node", "a") in stopped
    record = reconciler.store.record(ResourceKey("Node", "a"))
    assert record is not None and record.managed
    assert ready(reconciler, ResourceKey("Node", "a"))["reason"] == "Stopped"


def test_backoff_grows_and_caps() -> None:
    backoff: Backoff[str] = Backoff(base=1, factor=2, cap=5)
    delays = [backoff.failed("k", now=0) for _ in range(5)]
    assert [round(d) for d in delays] == [1, 2, 4, 5, 5]
    assert not backoff.ready("k", now=1)
    assert backoff.ready("k", now=6)
    backoff.succeeded("k")
    assert backoff.failures("k") == 0
