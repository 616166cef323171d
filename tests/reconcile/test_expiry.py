"""Ephemeral networks expire: the decision (pure, with a fake clock), and the reconciler tearing
a network down, keeping it down in the loop, and creating it anew on apply. The Network driver
is the real one with a fake clock; the other kinds are the in-memory drivers of
test_reconciler.py. The store is a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hypermesh.drivers import NetworkDriver
from hypermesh.errors import TemporaryError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Action
from hypermesh.plan.expiry import fingerprint, is_expired, members
from hypermesh.reconcile import Reconciler, ReconcileSettings
from hypermesh.store import StateStore
from tests.reconcile.test_reconciler import MemoryDriver, World, ready

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
NET = ResourceKey("Network", "scratch")


class FakeClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def ephemeral(*nodes: str, ttl: str = "30s", other: bool = False) -> DesiredState:
    """An ephemeral network with ``nodes``, a TLD owned by the first and a record under it; with
    ``other``, a private network and its node beside it, which must never be touched."""
    resources = [
        Resource("Network", "scratch", {"mode": "ephemeral", "ttl": ttl}),
        *(Resource("Node", n, {"network": "scratch", "listen": "127.0.0.1:0"}) for n in nodes),
        Resource("TLD", "tmp", {"network": "scratch", "owner": {"node": nodes[0]}}),
        Resource("Record", "www.tmp", {"tld": "tmp", "type": "A", "values": ["192.0.2.1"]}),
    ]
    if other:
        resources += [
            Resource("Network", "keep", {"mode": "private"}),
            Resource("Node", "stay", {"network": "keep", "listen": "127.0.0.1:0"}),
        ]
    return DesiredState.of(resources)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def reconciler(tmp_path: Path, world: World, clock: FakeClock) -> Reconciler:
    drivers: dict[str, Any] = {k: MemoryDriver(k, world) for k in ("Node", "TLD", "Record")}
    drivers["Network"] = NetworkDriver(clock=clock)
    return Reconciler(
        StateStore.open(tmp_path),
        drivers,
        ReconcileSettings(backoff_base=0.01, backoff_cap=0.05),
        wall_clock=clock,
    )


def status(reconciler: Reconciler, key: ResourceKey = NET) -> dict[str, Any]:
    record = reconciler.store.record(key)
    assert record is not None
    return dict(record.status)


def stored(reconciler: Reconciler) -> set[str]:
    return {str(r.key) for r in reconciler.store.records()}


# -- the decision, pure -------------------------------------------------------------------


def test_expiry_decision_with_a_fake_clock() -> None:
    spec = {"mode": "ephemeral", "ttl": "30s"}
    deadline = {"expiresAt": "2027-01-15T08:00:30Z"}
    assert not is_expired(spec, deadline, at(T0))
    assert not is_expired(spec, deadline, at(T0 + 29))
    assert is_expired(spec, deadline, at(T0 + 30))  # expiresAt itself is past
    assert is_expired(spec, deadline, at(T0 + 3600))
    # Never applied, no expiry recorded, or no longer ephemeral: not expired.
    assert not is_expired(None, deadline, at(T0 + 3600))
    assert not is_expired(spec, {}, at(T0 + 3600))
    assert not is_expired(spec, {"expiresAt": "soon"}, at(T0 + 3600))
    assert not is_expired({"mode": "private"}, deadline, at(T0 + 3600))


def test_members_and_fingerprint() -> None:
    desired = ephemeral("a", "b", other=True)
    specs = {r.key: r.spec for r in desired}
    assert [str(k) for k in members(NET, specs)] == [
        "Record/www.tmp",
        "TLD/tmp",
        "Node/a",
        "Node/b",
    ]
    assert fingerprint(desired, NET) == fingerprint(ephemeral("a", "b", other=True), NET)
    assert fingerprint(desired, NET) != fingerprint(ephemeral("a", "b", "c"), NET)
    # The other network is no part of it.
    assert fingerprint(ephemeral("a", "b"), NET) == fingerprint(desired, NET)
    assert fingerprint(DesiredState.of([]), NET) is None


# -- the reconciler -------------------------------------------------------------------------


def test_created_at_and_expires_at_are_kept_across_passes(
    reconciler: Reconciler, clock: FakeClock
) -> None:
    assert asyncio.run(reconciler.converge(ephemeral("a"), timeout=10)).converged
    first = status(reconciler)
    assert first["createdAt"] == "2027-01-15T08:00:00Z"
    assert first["expiresAt"] == "2027-01-15T08:00:30Z"
    clock.now += 20
    asyncio.run(reconciler.converge(ephemeral("a"), timeout=10))
    again = status(reconciler)
    assert (again["createdAt"], again["expiresAt"]) == (first["createdAt"], first["expiresAt"])
    # A longer TTL moves expiresAt, not createdAt.
    asyncio.run(reconciler.converge(ephemeral("a", ttl="2m"), timeout=10))
    assert status(reconciler)["expiresAt"] == "2027-01-15T08:02:00Z"


def test_expired_network_is_torn_down_and_the_loop_keeps_it_down(
    reconciler: Reconciler, world: World, clock: FakeClock
) -> None:
    desired = ephemeral("a", "b", other=True)
    assert asyncio.run(reconciler.converge(desired, timeout=10)).converged
    clock.now += 29
    asyncio.run(reconciler.run_pass(desired))
    assert ResourceKey("Node", "a") in world.objects  # not yet

    clock.now += 1
    result = asyncio.run(reconciler.run_pass(desired))
    assert result.expired[NET] == (
        "network scratch expired at 2027-01-15T08:00:30Z: "
        "torn down 2 node(s), 1 TLD(s) and 1 record(s)"
    )
    assert set(world.objects) == {ResourceKey("Node", "stay")}  # the other network stays
    # Dependents went first, while their owners still existed.
    deletes = [c for c in world.calls if c[0] == "delete"]
    assert deletes == [
        ("delete", "Record/www.tmp"),
        ("delete", "TLD/tmp"),
        ("delete", "Node/a"),
        ("delete", "Node/b"),
    ]
    # Nothing of it is in the store but the Network's tombstone: no inventory, no last-applied.
    assert stored(reconciler) == {"Network/keep", "Node/stay", "Network/scratch"}
    record = reconciler.store.record(NET)
    assert record is not None and record.applied is None and not record.managed
    assert "createdAt" not in record.status and "expiresAt" not in record.status
    cond = ready(reconciler, NET)
    assert (cond["status"], cond["reason"]) == ("False", "Expired")
    assert "apply again" in cond["message"]

    # The loop's later passes, files unchanged, do not bring it back.
    world.calls.clear()
    for _ in range(3):
        clock.now += 60
        result = asyncio.run(reconciler.run_pass(desired))
        assert result.converged
    assert [c for c in world.calls if c[0] == "apply"] == []
    assert stored(reconciler) == {"Network/keep", "Node/stay", "Network/scratch"}


def test_reapply_creates_it_anew_with_a_fresh_ttl(
    reconciler: Reconciler, world: World, clock: FakeClock
) -> None:
    desired = ephemeral("a")
    asyncio.run(reconciler.converge(desired, timeout=10))
    clock.now += 31
    asyncio.run(reconciler.run_pass(desired))
    assert world.objects == {}

    clock.now = T0 + 1000
    result = asyncio.run(reconciler.converge(desired, timeout=10))  # hmctl apply
    assert result.converged
    assert ResourceKey("Node", "a") in world.objects
    fresh = status(reconciler)
    assert fresh["createdAt"] == "2027-01-15T08:16:40Z"
    assert fresh["expiresAt"] == "2027-01-15T08:17:10Z"
    assert ready(reconciler, NET)["status"] == "True"


def test_changed_manifests_create_it_anew_in_the_loop(
    reconciler: Reconciler, world: World, clock: FakeClock
) -> None:
    asyncio.run(reconciler.converge(ephemeral("a"), timeout=10))
    clock.now += 31
    asyncio.run(reconciler.run_pass(ephemeral("a")))
    assert world.objects == {}
    clock.now += 5
    asyncio.run(reconciler.run_pass(ephemeral("a", "b")))  # the files changed
    assert {ResourceKey("Node", "a"), ResourceKey("Node", "b")} <= set(world.objects)
    assert status(reconciler)["expiresAt"] == "2027-01-15T08:01:06Z"


def test_tombstone_goes_when_the_network_is_no_longer_declared(
    reconciler: Reconciler, clock: FakeClock
) -> None:
    asyncio.run(reconciler.converge(ephemeral("a"), timeout=10))
    clock.now += 31
    asyncio.run(reconciler.run_pass(ephemeral("a")))
    other = DesiredState.of([Resource("Network", "keep", {"mode": "private"})])
    asyncio.run(reconciler.run_pass(other))
    assert stored(reconciler) == {"Network/keep"}


def test_failed_teardown_leaves_a_consistent_store_and_the_next_pass_finishes(
    reconciler: Reconciler, world: World, clock: FakeClock
) -> None:
    desired = ephemeral("a", "b")
    asyncio.run(reconciler.converge(desired, timeout=10))
    world.failures["delete:b"] = [TemporaryError("process will not die", reason="StopFailed")]
    clock.now += 31
    result = asyncio.run(reconciler.run_pass(desired))
    assert NET in result.failed and "process will not die" in result.failed[NET]
    assert not result.converged
    # What went is forgotten; what did not is still in the inventory; nothing was recreated.
    assert set(world.objects) == {ResourceKey("Node", "b")}
    assert stored(reconciler) == {"Network/scratch", "Node/b"}
    record = reconciler.store.record(ResourceKey("Node", "b"))
    assert record is not None and record.managed
    cond = ready(reconciler, NET)
    assert (cond["status"], cond["reason"]) == ("False", "TearingDown")
    assert status(reconciler)["expiresAt"] == "2027-01-15T08:00:30Z"

    time.sleep(0.1)  # past the backoff
    result = asyncio.run(reconciler.run_pass(desired))
    assert NET in result.expired and not result.failed
    assert world.objects == {}
    assert stored(reconciler) == {"Network/scratch"}
    assert ready(reconciler, NET)["reason"] == "Expired"


def test_expiry_recorded_for_a_network_applied_without_one(
    reconciler: Reconciler, clock: FakeClock
) -> None:
    """A network applied by an hmctl that recorded no creation time gets one (as drift)."""
    asyncio.run(reconciler.converge(ephemeral("a"), timeout=10))
    record = reconciler.store.record(NET)
    assert record is not None
    reconciler.store.record_applied(
        NET, record.applied or {}, record.applied_generation, {}, {"mode": "ephemeral"}
    )
    clock.now += timedelta(minutes=5).total_seconds()
    asyncio.run(reconciler.run_pass(ephemeral("a")))
    assert status(reconciler)["expiresAt"] == "2027-01-15T08:05:30Z"


def test_diff_shows_the_teardown_of_an_expired_network(
    reconciler: Reconciler, clock: FakeClock
) -> None:
    desired = ephemeral("a", other=True)
    asyncio.run(reconciler.converge(desired, timeout=10))
    assert not asyncio.run(reconciler.plan(desired)).has_changes
    clock.now += 31
    preview = asyncio.run(reconciler.plan(desired))
    why = "network scratch expired at 2027-01-15T08:00:30Z"
    assert preview.has_changes
    assert preview.expired == {
        ResourceKey("Record", "www.tmp"): why,
        ResourceKey("TLD", "tmp"): why,
        ResourceKey("Node", "a"): why,
        NET: why,
    }
    assert [str(i.key) for i in preview.items] == ["Network/keep", "Node/stay"]  # no deletes
    assert preview.summary() == (
        "0 to create, 0 to update, 0 to delete, 2 unchanged; 4 to tear down "
        "(network scratch expired at 2027-01-15T08:00:30Z)"
    )
    # After the teardown, a diff shows what an apply would do: create it anew.
    asyncio.run(reconciler.run_pass(desired))
    again = asyncio.run(reconciler.plan(desired))
    assert again.count(Action.CREATE) == 4 and again.count(Action.DELETE) == 0
