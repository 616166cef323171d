"""The reconciler's logic against in-memory drivers (the real node driver is tested end to end
with real processes in tests/e2e). The store is a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hypermesh.errors import AwaitingPerson, PermanentError, TemporaryError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Drift, DriftKind
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
        self.prepared: list[DesiredState] = []

    def prepare(self, desired: DesiredState) -> None:
        self.prepared.append(desired)

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        return {"name": resource.name}

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live:
        exists = key in self.world.objects
        return Live(
            exists=exists, drift=() if exists else (Drift(DriftKind.MISSING, "gone"),), ready=exists
        )

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


def test_a_resource_awaiting_a_person_is_told_once_and_not_retried_within_an_apply(
    reconciler: Reconciler, world: World
) -> None:
    waiting = "n awaits the administrator's approval: they run `approve n`"
    world.failures["n"] = [AwaitingPerson(waiting), AwaitingPerson(waiting)]
    said: list[tuple[str, str]] = []
    reconciler.on_progress = lambda progress, key, text: said.append((str(key), text))
    network, node = ResourceKey("Network", "n"), ResourceKey("Node", "a")

    first = asyncio.run(reconciler.converge(desired("a"), timeout=30))
    assert not first.converged and network in first.stalled and node in first.stalled
    assert world.calls == [("apply", "Network/n")]  # one try, the node behind it untouched
    cond = ready(reconciler, network)
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "AwaitingPerson", waiting)

    second = asyncio.run(reconciler.converge(desired("a"), timeout=30))  # the next apply
    assert network in second.stalled
    assert world.calls.count(("apply", "Network/n")) == 2  # asked again, said no more
    assert [text for key, text in said if key == "Network/n" and "awaits" in text] == [waiting]
    events = [e.reason for e in reconciler.store.events(network)]
    assert events.count("AwaitingPerson") == 1

    third = asyncio.run(reconciler.converge(desired("a"), timeout=30))  # approved since
    assert third.converged and node in world.objects


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


# -- status from what is live -------------------------------------------------------------------


def net(name: str) -> Resource:
    return Resource("Network", name, {"mode": "private"})


def member(name: str, network: str) -> Resource:
    return Resource("Node", name, {"network": network, "listen": "127.0.0.1:0"})


def tld(name: str, network: str, owner: str) -> Resource:
    return Resource("TLD", name, {"network": network, "owner": {"node": owner}})


@pytest.fixture
def live_reconciler(tmp_path: Path, world: World) -> Reconciler:
    """The real Network driver (declared), in-memory nodes and TLDs."""
    from hypermesh.drivers.declared import NetworkDriver, PeerDriver

    store = StateStore.open(tmp_path)
    drivers: dict[str, Any] = {
        "Network": NetworkDriver(),
        "Peer": PeerDriver(),
        "Node": MemoryDriver("Node", world),
        "TLD": MemoryDriver("TLD", world),
    }
    return Reconciler(store, drivers, ReconcileSettings(backoff_base=0.01, backoff_cap=0.05))


def status_of(reconciler: Reconciler, kind: str, name: str) -> Mapping[str, Any]:
    record = reconciler.store.record(ResourceKey(kind, name))
    assert record is not None
    return record.status


def test_a_network_counts_the_nodes_that_are_in_it_now(live_reconciler: Reconciler) -> None:
    first = DesiredState.of([net("a"), *(member(n, "a") for n in ("n1", "n2", "n3"))])
    assert asyncio.run(live_reconciler.converge(first, timeout=10)).converged
    a = status_of(live_reconciler, "Network", "a")
    assert (a["nodes"], a["readyNodes"]) == (3, 3)
    assert ready(live_reconciler, ResourceKey("Network", "a"))["status"] == "True"
    assert "3 of 3 node(s) ready" in ready(live_reconciler, ResourceKey("Network", "a"))["message"]

    # A later apply moves n3 to network b: both count what runs now.
    moved = DesiredState.of(
        [net("a"), net("b"), member("n1", "a"), member("n2", "a"), member("n3", "b")]
    )
    assert asyncio.run(live_reconciler.converge(moved, timeout=10)).converged
    assert status_of(live_reconciler, "Network", "a")["nodes"] == 2
    assert status_of(live_reconciler, "Network", "b")["nodes"] == 1
    assert ready(live_reconciler, ResourceKey("Network", "b"))["status"] == "True"


def test_a_network_whose_nodes_all_left_is_not_ready_nor_what_stands_on_it(
    live_reconciler: Reconciler,
) -> None:
    before = DesiredState.of([net("a"), member("n1", "a"), member("n2", "a"), tld("t", "a", "n1")])
    assert asyncio.run(live_reconciler.converge(before, timeout=10)).converged
    assert ready(live_reconciler, ResourceKey("TLD", "t"))["status"] == "True"
    after = DesiredState.of(
        [net("a"), net("b"), member("n1", "b"), member("n2", "b"), tld("t", "a", "n1")]
    )
    asyncio.run(live_reconciler.converge(after, timeout=10))
    network = ready(live_reconciler, ResourceKey("Network", "a"))
    assert (network["status"], network["reason"]) == ("False", "NoMembers")
    assert "no Node or Peer is in network a" in network["message"]
    assert status_of(live_reconciler, "Network", "a")["nodes"] == 0
    held = ready(live_reconciler, ResourceKey("TLD", "t"))
    assert (held["status"], held["reason"]) == ("False", "DependencyNotReady")
    assert "Network/a is not ready (NoMembers" in held["message"]
    # Nodes come back: both are Ready again, from what is live.
    asyncio.run(live_reconciler.converge(before, timeout=10))
    assert ready(live_reconciler, ResourceKey("Network", "a"))["status"] == "True"
    assert ready(live_reconciler, ResourceKey("TLD", "t"))["status"] == "True"


def test_a_network_whose_nodes_are_down_says_so(live_reconciler: Reconciler, world: World) -> None:
    desired = DesiredState.of([net("a"), member("n1", "a"), member("n2", "a")])
    asyncio.run(live_reconciler.converge(desired, timeout=10))
    asyncio.run(live_reconciler.stop_all())
    network = ready(live_reconciler, ResourceKey("Network", "a"))
    assert (network["status"], network["reason"]) == ("False", "NoNodeReady")
    assert "none of its 2 node(s) is ready" in network["message"]
    assert status_of(live_reconciler, "Network", "a")["readyNodes"] == 0
    # One node cannot start again: the network counts the one that runs.
    world.failures["n2"] = [PermanentError("port taken for good")]
    asyncio.run(live_reconciler.converge(desired, timeout=10))
    a = status_of(live_reconciler, "Network", "a")
    assert (a["nodes"], a["readyNodes"]) == (2, 1)
    assert ready(live_reconciler, ResourceKey("Network", "a"))["status"] == "True"


def test_a_network_of_peers_is_ready(live_reconciler: Reconciler) -> None:
    peer = Resource(
        "Peer",
        "far",
        {"network": "a", "identity": "hm1" + "a" * 52, "address": "192.0.2.1:443"},
    )
    asyncio.run(live_reconciler.converge(DesiredState.of([net("a"), peer]), timeout=10))
    assert ready(live_reconciler, ResourceKey("Network", "a"))["status"] == "True"
    assert status_of(live_reconciler, "Network", "a")["peers"] == 1


def test_quiet_passes_leave_conditions_alone(live_reconciler: Reconciler) -> None:
    desired = DesiredState.of([net("a"), member("n1", "a"), tld("t", "a", "n1")])
    asyncio.run(live_reconciler.converge(desired, timeout=10))
    before = {r.key: r.status for r in live_reconciler.store.records()}
    for _ in range(3):
        asyncio.run(live_reconciler.run_pass(desired))
    assert {r.key: r.status for r in live_reconciler.store.records()} == before


# -- a resource no schema would accept never reaches a driver -----------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "why"),
    [
        ({"listen": "127.0.0.1:70000"}, "spec.listen", "port 70000 is out of range (0-65535)"),
        ({"web": {"listen": "[::1]:99999"}}, "spec.web.listen", "port 99999 is out of range"),
        ({"listen": "127.0.0.1:0\n"}, "spec.listen", "is not a number"),
        ({"tags": ["edge\n"]}, "spec.tags[0]", "is not valid"),
    ],
)
def test_an_invalid_spec_stalls_before_any_driver_acts(
    reconciler: Reconciler, world: World, spec: dict[str, Any], field: str, why: str
) -> None:
    bad = Resource("Node", "bad", {"network": "n", "listen": "127.0.0.1:0", **spec})
    result = asyncio.run(
        reconciler.converge(DesiredState.of([Resource("Network", "n", {"mode": "private"}), bad]))
    )
    assert ResourceKey("Node", "bad") in result.stalled
    assert ("apply", "Node/bad") not in world.calls
    cond = ready(reconciler, ResourceKey("Node", "bad"))
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"].startswith(f"{field}: ") and why in cond["message"]


def test_the_node_driver_refuses_a_bad_address_without_a_traceback(tmp_path: Path) -> None:
    from hypermesh.drivers.processes import NodeProcessDriver
    from hypermesh.reconcile import ApplyContext

    driver = NodeProcessDriver(tmp_path)
    node = Resource(
        "Node", "a", {"network": "n", "listen": "127.0.0.1:0", "web": {"listen": "1.2.3.4:70000"}}
    )
    desired = DesiredState.of([Resource("Network", "n", {"mode": "private"}), node])
    with pytest.raises(PermanentError) as caught:
        asyncio.run(driver.apply(node, driver.handle_for(node), ApplyContext(desired, 1)))
    assert caught.value.reason == "InvalidConfig"
    assert "Node/a" in str(caught.value) and "70000" in str(caught.value)
    assert not (tmp_path / "nodes" / "a" / "node.log").exists()  # nothing was started
