"""Drift policies (``hypermesh.reconcile.drift``) against in-memory drivers and a real SQLite
store: under ``detect`` a drifted object is left as it is and reported (the condition
``Drifted``, an event, the loop's count); under ``correct`` it is put back; the annotation
``hypermesh.online/drift`` overrides the controller's policy per resource, both ways; a change of
spec is applied under either."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.reconcile import Reconciler, ReconcileSettings
from hypermesh.reconcile.conditions import condition
from hypermesh.reconcile.controller import ControllerLoop, LoopSettings
from hypermesh.reconcile.drift import ANNOTATION, DriftPolicy
from hypermesh.reconcile.gitops import LoopStatus
from hypermesh.store import StateStore
from tests.reconcile.test_controller import Recorder, ScriptedSource
from tests.reconcile.test_reconciler import MemoryDriver, World

A = ResourceKey("Node", "a")
B = ResourceKey("Node", "b")


def manifests(listen: str = "127.0.0.1:0", **policies: str) -> DesiredState:
    """A network with nodes a and b; ``policies`` annotates a node with its drift policy."""
    nodes = [
        Resource(
            "Node",
            name,
            {"network": "n", "listen": listen},
            annotations={ANNOTATION: policies[name]} if name in policies else {},
        )
        for name in ("a", "b")
    ]
    return DesiredState.of([Resource("Network", "n", {"mode": "private"}), *nodes])


def make(tmp_path: Path, world: World, policy: DriftPolicy) -> Reconciler:
    store = StateStore.open(tmp_path)
    drivers: dict[str, Any] = {k: MemoryDriver(k, world) for k in ("Network", "Node")}
    settings = ReconcileSettings(backoff_base=0.01, backoff_cap=0.05, drift=policy)
    return Reconciler(store, drivers, settings)


def cond(reconciler: Reconciler, key: ResourceKey, type_: str) -> Mapping[str, Any] | None:
    record = reconciler.store.record(key)
    assert record is not None
    return condition(record.status.get("conditions", []), type_)


def reasons(reconciler: Reconciler, key: ResourceKey) -> list[str]:
    return [e.reason for e in reconciler.store.events(key)]


def test_detect_leaves_a_drifted_object_alone_and_reports_it(tmp_path: Path) -> None:
    world = World()
    rec = make(tmp_path, world, DriftPolicy.DETECT)
    assert asyncio.run(rec.converge(manifests(), timeout=10)).converged
    del world.objects[A]  # the process died, say
    world.calls.clear()
    result = asyncio.run(rec.run_pass(manifests()))
    assert A not in world.objects and world.calls == []
    assert result.drifted == {A: "gone"} and result.converged
    drifted = cond(rec, A, "Drifted")
    assert drifted is not None
    assert (drifted["status"], drifted["reason"], drifted["message"]) == ("True", "Drifted", "gone")
    ready = cond(rec, A, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert reasons(rec, A)[-1] == "Drifted"
    # Passes that find the same drift say it once.
    asyncio.run(rec.run_pass(manifests()))
    asyncio.run(rec.run_pass(manifests()))
    assert reasons(rec, A).count("Drifted") == 1
    assert world.calls == [] and cond(rec, B, "Drifted") is None


def test_detect_still_applies_a_change_of_spec(tmp_path: Path) -> None:
    world = World()
    rec = make(tmp_path, world, DriftPolicy.DETECT)
    asyncio.run(rec.converge(manifests(), timeout=10))
    del world.objects[A]
    asyncio.run(rec.run_pass(manifests()))
    result = asyncio.run(rec.run_pass(manifests(listen="127.0.0.1:7001")))
    assert world.objects[A]["listen"] == "127.0.0.1:7001"
    assert A in result.done and not result.drifted
    drifted = cond(rec, A, "Drifted")
    assert drifted is not None and (drifted["status"], drifted["reason"]) == ("False", "InSync")
    assert reasons(rec, A)[-2:] == ["Updated", "InSync"]


def test_correct_repairs_and_says_nothing_of_drift(tmp_path: Path) -> None:
    world = World()
    rec = make(tmp_path, world, DriftPolicy.CORRECT)
    asyncio.run(rec.converge(manifests(), timeout=10))
    del world.objects[A]
    result = asyncio.run(rec.run_pass(manifests()))
    assert A in world.objects and A in result.done and not result.drifted
    assert reasons(rec, A)[-1] == "Repaired"
    assert cond(rec, A, "Drifted") is None


@pytest.mark.parametrize(
    ("controller", "annotated", "repaired"),
    [(DriftPolicy.CORRECT, "detect", False), (DriftPolicy.DETECT, "correct", True)],
)
def test_the_annotation_overrides_the_controller(
    tmp_path: Path, controller: DriftPolicy, annotated: str, repaired: bool
) -> None:
    world = World()
    rec = make(tmp_path, world, controller)
    wanted = manifests(a=annotated)
    asyncio.run(rec.converge(wanted, timeout=10))
    del world.objects[A]
    del world.objects[B]
    result = asyncio.run(rec.run_pass(wanted))
    assert (A in world.objects) is repaired  # a follows its annotation
    assert (B in world.objects) is not repaired  # b follows the controller
    assert set(result.drifted) == ({B} if repaired else {A})


def test_a_bad_annotation_stalls_naming_the_field(tmp_path: Path) -> None:
    world = World()
    rec = make(tmp_path, world, DriftPolicy.CORRECT)
    result = asyncio.run(rec.converge(manifests(a="ignore"), timeout=10))
    assert A in result.stalled and A not in world.objects
    assert "metadata.annotations.hypermesh.online/drift" in result.stalled[A]
    assert "detect or correct" in result.stalled[A]


def test_the_loop_counts_drift_in_its_status(tmp_path: Path) -> None:
    world = World()
    rec = make(tmp_path, world, DriftPolicy.DETECT)
    source = ScriptedSource(manifests())
    settings = LoopSettings(interval=3600.0, timeout=10.0)
    loop = ControllerLoop(
        settings, source, source.load, rec.store, rec, Recorder(), asyncio.Event()
    )

    async def go() -> None:
        await loop.first()
        del world.objects[A]
        await loop.tick()

    asyncio.run(go())
    status = LoopStatus.from_json(rec.store.controller().status)
    assert status.drift == "detect"
    assert status.drifted == ("Node/a (<unknown>:1:1): gone",)
    ready = status.condition("Ready")
    assert ready is not None and ready["status"] == "True"  # drift left by policy is no failure


def test_the_metrics_file_counts_drift(tmp_path: Path) -> None:
    world = World()
    rec = make(tmp_path, world, DriftPolicy.DETECT)
    source = ScriptedSource(manifests())
    path = tmp_path / "metrics" / "controller.prom"
    settings = LoopSettings(interval=3600.0, timeout=10.0, metrics_file=path)
    loop = ControllerLoop(
        settings, source, source.load, rec.store, rec, Recorder(), asyncio.Event()
    )

    async def go() -> None:
        await loop.first()
        del world.objects[A]
        del world.objects[B]
        await loop.tick()

    asyncio.run(go())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert samples[("hypermesh_controller_drifted_resources", (("policy", "detect"),))] == 2
    assert samples[("hypermesh_controller_converged", ())] == 1
