"""The controller loop (``reconcile.controller``) against a scripted manifest source, in-memory
drivers and a real SQLite store: what it applies, what it keeps when a revision is invalid,
what it tells, and what ``hmctl controller status`` will read. The command around it (output,
signals, a git checkout) is tested end to end in tests/e2e/test_gitops.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hypermesh.errors import ManifestError, Position, Problem, StateError
from hypermesh.model.resources import DesiredState, ResourceKey
from hypermesh.plan import Plan
from hypermesh.reconcile import Reconciler, ReconcileSettings
from hypermesh.reconcile.controller import ControllerLoop, LoopSettings, PassReport
from hypermesh.reconcile.gitops import LoopStatus
from hypermesh.reconcile.source import Snapshot
from hypermesh.store import StateStore
from tests.reconcile.test_reconciler import MemoryDriver, World, desired


class ScriptedSource:
    """Manifests whose revision, content and validity a test sets; pulls answer as told."""

    kind = "folder"

    def __init__(self, manifests: DesiredState) -> None:
        self.revision = "r1"
        self.manifests = manifests
        self.problems: list[Problem] = []
        self.pull_answer: str | None = None
        self.pulls = 0
        self.loads = 0
        self.poked = asyncio.Event()

    def set(self, revision: str, manifests: DesiredState | None = None, bad: str = "") -> None:
        """A new revision: new manifests, or (``bad``) files that do not validate."""
        self.revision = revision
        if manifests is not None:
            self.manifests = manifests
        self.problems = [Problem(Position("bad.yaml", 3, 1), bad)] if bad else []

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "paths": ["scripted"], "revision": self.revision}

    def snapshot(self) -> Snapshot:
        content = "bad" if self.problems else str(sorted(str(r.key) for r in self.manifests))
        return Snapshot(self.revision, f"sha256:{content}")

    def pull(self, timeout: float) -> str | None:
        self.pulls += 1
        return self.pull_answer

    def load(self) -> DesiredState:
        self.loads += 1
        if self.problems:
            raise ManifestError(self.problems)
        return self.manifests

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[None]:
        while not stop.is_set():
            await self.poked.wait()
            self.poked.clear()
            yield None


class Recorder:
    """Every event the loop tells, in order, as (name, details)."""

    def __init__(self) -> None:
        self.told: list[tuple[str, Any]] = []
        self.told_pass = asyncio.Event()

    def names(self) -> list[str]:
        return [name for name, _ in self.told]

    def pulled(self, problem: str | None) -> None:
        self.told.append(("pulled", problem))

    def revision_loaded(self, revision: str, declared: int) -> None:
        self.told.append(("loaded", (revision, declared)))

    def revision_invalid(self, revision: str, kept: str, problems: Sequence[str]) -> None:
        self.told.append(("invalid", (revision, kept, list(problems))))

    def suspension_changed(self, suspended: bool, reason: str) -> None:
        self.told.append(("suspended" if suspended else "resumed", reason))

    def planned(self, plan: Plan) -> None:
        self.told.append(("planned", plan.summary()))

    def pass_done(self, report: PassReport) -> None:
        self.told.append(("pass", report))
        self.told_pass.set()

    def observed(self, revision: str, pending: tuple[str, ...]) -> None:
        self.told.append(("observed", (revision, pending)))

    def store_failed(self, problem: StateError) -> None:
        self.told.append(("store", str(problem)))


class Rig:
    """One loop over a fresh store; ``status`` is what ``hmctl controller status`` reads."""

    def __init__(self, tmp_path: Path, settings: LoopSettings, manifests: DesiredState) -> None:
        self.world = World()
        self.store = StateStore.open(tmp_path)
        drivers: dict[str, Any] = {k: MemoryDriver(k, self.world) for k in ("Network", "Node")}
        self.reconciler = Reconciler(
            self.store, drivers, ReconcileSettings(backoff_base=0.01, backoff_cap=0.05)
        )
        self.source = ScriptedSource(manifests)
        self.events = Recorder()
        self.stop = asyncio.Event()
        self.loop = ControllerLoop(
            settings,
            self.source,
            self.source.load,
            self.store,
            self.reconciler,
            self.events,
            self.stop,
        )

    @property
    def status(self) -> LoopStatus:
        return LoopStatus.from_json(self.store.controller().status)

    def condition(self, type_: str) -> tuple[str, str]:
        cond = self.status.condition(type_)
        assert cond is not None, type_
        return str(cond["status"]), str(cond["reason"])

    def passes(self) -> list[PassReport]:
        return [report for name, report in self.events.told if name == "pass"]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, LoopSettings(interval=3600.0, prune=True, timeout=10.0), desired("a"))


def test_the_first_apply_converges_and_records_the_revision(rig: Rig) -> None:
    result = asyncio.run(rig.loop.first())
    assert result is not None and result.converged
    assert set(rig.world.objects) == {ResourceKey("Network", "n"), ResourceKey("Node", "a")}
    assert rig.events.names() == ["planned", "pass"]
    (report,) = rig.passes()
    assert report.outcome.changes == ("created Network/n", "created Node/a")
    assert not report.invalid
    assert rig.status.last_applied_revision == "r1"
    assert rig.status.source == {"type": "folder", "paths": ["scripted"], "revision": "r1"}
    assert rig.condition("Ready") == ("True", "ReconciliationSucceeded")


def test_a_new_revision_is_loaded_applied_and_told(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.source.set("r2", desired("a", "b"))
        await rig.loop.tick()

    asyncio.run(run())
    assert ResourceKey("Node", "b") in rig.world.objects
    assert ("loaded", ("r2", 3)) in rig.events.told
    assert rig.passes()[-1].outcome.changes == ("created Node/b",)
    assert rig.status.last_applied_revision == "r2"
    assert rig.status.source["revision"] == "r2"  # described again for the new revision


def test_an_invalid_revision_is_told_once_and_the_last_good_one_stays(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.source.set("r2", desired("b"), bad="Node/b: spec.listen: no port")
        await rig.loop.tick()
        await rig.loop.tick()

    asyncio.run(run())
    invalid = [details for name, details in rig.events.told if name == "invalid"]
    assert invalid == [("r2", "r1", ["bad.yaml:3:1: Node/b: spec.listen: no port"])]
    assert rig.source.loads == 2  # the first apply and r2 once: the bad files are not reread
    # The passes ran the last good manifests: Node/a kept, Node/b never created (nor pruned).
    assert set(rig.world.objects) == {ResourceKey("Network", "n"), ResourceKey("Node", "a")}
    assert rig.loop.revision == "r1"
    assert all(report.invalid for report in rig.passes()[1:])
    status = rig.status
    assert (status.last_applied_revision, status.last_attempted_revision) == ("r1", "r2")
    assert rig.condition("Stalled") == ("True", "ValidationFailed")


def test_the_same_bad_files_committed_move_the_attempted_revision(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.source.set("r2+dirty", bad="broken")
        await rig.loop.tick()
        rig.source.set("r2", bad="broken")
        await rig.loop.tick()

    asyncio.run(run())
    assert [name for name in rig.events.names() if name == "invalid"] == ["invalid"]
    assert rig.status.last_attempted_revision == "r2"


def test_fixed_files_are_applied_after_an_invalid_revision(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.source.set("r2", bad="broken")
        await rig.loop.tick()
        rig.source.set("r3", desired("a", "c"))
        await rig.loop.tick()

    asyncio.run(run())
    assert ResourceKey("Node", "c") in rig.world.objects
    assert rig.status.last_applied_revision == "r3"
    assert rig.status.problems == ()
    assert rig.condition("Ready") == ("True", "ReconciliationSucceeded")


def test_the_loop_refuses_to_start_on_invalid_manifests(tmp_path: Path) -> None:
    rig = Rig(tmp_path, LoopSettings(interval=5.0), desired("a"))
    rig.source.set("r1", bad="broken")
    with pytest.raises(ManifestError, match=r"bad\.yaml:3:1"):
        asyncio.run(rig.loop.first())
    assert rig.world.calls == []


def test_a_failed_pull_is_told_once_and_marks_the_source_not_ready(tmp_path: Path) -> None:
    settings = LoopSettings(interval=5.0, git_pull=True, pull_interval=30.0, timeout=10.0)
    rig = Rig(tmp_path, settings, desired("a"))

    async def run() -> None:
        await rig.loop.first()
        rig.source.pull_answer = "fatal: unable to access origin"
        for _ in range(2):
            rig.loop.next_pull = 0.0  # the pull is due
            await rig.loop.tick()
        rig.source.pull_answer = None
        rig.loop.next_pull = 0.0
        await rig.loop.tick()

    asyncio.run(run())
    assert rig.source.pulls == 4
    pulled = [details for name, details in rig.events.told if name == "pulled"]
    assert pulled == ["fatal: unable to access origin", None]
    assert rig.condition("SourceReady") == ("True", "Pulled")


def test_pulls_wait_for_their_interval(tmp_path: Path) -> None:
    settings = LoopSettings(interval=5.0, git_pull=True, pull_interval=3600.0, timeout=10.0)
    rig = Rig(tmp_path, settings, desired("a"))

    async def run() -> None:
        await rig.loop.first()
        await rig.loop.tick()

    asyncio.run(run())
    assert rig.source.pulls == 1
    assert rig.loop.pause() <= 5.0


def test_a_suspended_loop_observes_and_changes_nothing(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.store.set_suspended(True, "maintenance")
        rig.source.set("r2", desired("a", "b"))
        rig.world.calls.clear()
        await rig.loop.tick()
        suspended_calls = list(rig.world.calls)
        rig.store.set_suspended(False)
        await rig.loop.tick()
        assert suspended_calls == []

    asyncio.run(run())
    told = rig.events.told
    assert ("suspended", "maintenance") in told
    assert ("observed", ("r2", ("create Node/b (listen, network)",))) in told
    assert told[-2][0] == "resumed" and told[-1][0] == "pass"
    assert ResourceKey("Node", "b") in rig.world.objects


def test_prune_is_refused_when_most_of_the_inventory_would_go(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.source.set("r2", DesiredState.of(()))
        await rig.loop.tick()

    asyncio.run(run())
    report = rig.passes()[-1]
    assert report.outcome.refused.startswith("refusing to prune: the given files declare nothing")
    assert set(rig.world.objects) == {ResourceKey("Network", "n"), ResourceKey("Node", "a")}
    assert rig.condition("Stalled") == ("True", "PruneRefused")


def test_a_change_of_the_source_wakes_the_loop_before_its_interval(rig: Rig) -> None:
    async def run() -> None:
        await rig.loop.first()
        rig.events.told_pass.clear()
        rig.source.set("r2", desired("a", "b"))
        running = asyncio.create_task(rig.loop.run())
        await asyncio.sleep(0)  # the watcher starts
        rig.source.poked.set()
        await asyncio.wait_for(rig.events.told_pass.wait(), timeout=30)
        rig.stop.set()
        await asyncio.wait_for(running, timeout=30)

    asyncio.run(run())  # the interval is an hour: only the change can have woken it
    assert ResourceKey("Node", "b") in rig.world.objects
    assert rig.stop.is_set()
