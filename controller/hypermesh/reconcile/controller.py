"""The controller loop (GitOps): ``hmctl controller run``, and ``hmctl up`` after its first apply.

It reads a manifest source (pulling it when asked), reloads the manifests when their content
changed, runs a pass every interval (sooner when a manifest changes, a retry is due or an
ephemeral network expires) or, while suspended, only observes and plans, and records the
revision and conditions in the state store (``reconcile.gitops``). What happens is told to a
:class:`LoopEvents`; the loop itself writes nothing to a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from hypermesh.errors import ManifestError, MoveRefused, PruneRefused, StateError
from hypermesh.model.resources import DesiredState, ResourceKey
from hypermesh.plan import Action, Plan, PlanItem
from hypermesh.reconcile import gitops, metrics
from hypermesh.reconcile.notify import Notifier, NotifySettings, Tracker
from hypermesh.reconcile.reconciler import PassResult, Reconciler
from hypermesh.reconcile.source import ManifestSource, Snapshot
from hypermesh.store import StateStore

log = logging.getLogger("hypermesh.reconcile")

PULL_TIMEOUT = 60.0
"""Seconds a ``git pull`` may take before it is killed and reported as failed."""

SUSPEND_POLL = 1.0
"""While waiting between passes, how often the loop looks whether it was suspended or resumed."""

_VERBS = {Action.CREATE: "created", Action.UPDATE: "updated", Action.DELETE: "deleted"}


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """How the loop runs (``hmctl controller run`` flags)."""

    interval: float
    """Seconds between passes."""
    prune: bool = False
    """Delete what the state created that the manifests no longer declare."""
    force: bool = False
    """Let ``prune`` delete more than half of the inventory, or all of it."""
    timeout: float = 120.0
    """Seconds the first apply may take to converge; a revision that keeps failing for longer
    is ``Stalled``."""
    git_pull: bool = False
    """Pull the source before a pass, every ``pull_interval``."""
    pull_interval: float | None = None
    """Seconds between pulls; the pass interval when not given."""
    pull_timeout: float = PULL_TIMEOUT
    suspend_poll: float = SUSPEND_POLL
    notify: NotifySettings | None = None
    """Where to POST the resources' Ready, Stalled and Drifted transitions
    (``hypermesh.reconcile.notify``), if anywhere."""
    metrics_file: Path | None = None
    """Where to write the loop's figures after each pass, as a Prometheus textfile."""

    @property
    def pull_every(self) -> float:
        return float(self.pull_interval or self.interval)


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did, as the loop tells it."""

    outcome: gitops.PassOutcome
    invalid: bool
    """The attempted revision's manifests are invalid: the pass ran the last good ones."""


class LoopEvents(Protocol):
    """What the loop tells whoever runs it (``hmctl`` prints and logs it)."""

    def pulled(self, problem: str | None) -> None:
        """A pull worked (None) or failed (why), when that differs from the last pull."""

    def revision_loaded(self, revision: str, declared: int) -> None:
        """New manifests are in force (not told for the first ones)."""

    def revision_invalid(self, revision: str, kept: str, problems: Sequence[str]) -> None:
        """The manifests of ``revision`` do not validate; ``kept`` stays in force."""

    def suspension_changed(self, suspended: bool, reason: str) -> None:
        """The loop was suspended or resumed (``hmctl controller suspend``/``resume``)."""

    def planned(self, plan: Plan) -> None:
        """The plan of the first apply, before it runs."""

    def pass_done(self, report: PassReport) -> None:
        """A pass is over (every pass, also one that changed nothing)."""

    def observed(self, revision: str, pending: tuple[str, ...]) -> None:
        """A pass while suspended is over; ``pending`` is what a pass would change."""

    def store_failed(self, problem: StateError) -> None:
        """The state store refused a read or write; the loop goes on."""


Loader = Callable[[], DesiredState]
"""Loads the source's manifests now; raises ManifestError when they do not validate."""


@dataclass(slots=True)
class _Manifests:
    """The manifests the loop holds: the last good ones, and the last bad ones seen."""

    desired: DesiredState
    revision: str = ""
    loaded: str = ""
    """The content digest of ``desired``."""
    bad: str = ""
    """The content digest of manifests that did not validate (reported once)."""
    bad_revision: str = ""
    invalid_error: ManifestError | None = None


class ControllerLoop:
    """Passes against one state store with one reconciler, from one manifest source."""

    def __init__(
        self,
        settings: LoopSettings,
        source: ManifestSource,
        load: Loader,
        store: StateStore,
        reconciler: Reconciler,
        events: LoopEvents,
        stop: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.source = source
        self.load = load
        self.store = store
        self.reconciler = reconciler
        self.events = events
        self.stop = stop
        self.manifests = _Manifests(DesiredState.of(()))
        self.next_pull = 0.0
        self.pull_error: str | None = None
        self.suspended = False
        self.status = gitops.started(
            gitops.LoopStatus.from_json(store.controller().status),
            source.describe(),
            settings.interval,
            settings.prune,
            reconciler.settings.drift.value,
        )
        self.changed = asyncio.Event()
        self.notifier = Notifier(settings.notify) if settings.notify else None
        self.tracker = Tracker()
        if self.notifier is not None:  # what holds at start is no transition
            with contextlib.suppress(StateError):
                self.tracker.changes(store.records(), "", _utcnow())

    @property
    def revision(self) -> str:
        """The revision of the manifests in force."""
        return self.manifests.revision

    @property
    def desired(self) -> DesiredState:
        return self.manifests.desired

    # -- the source ---------------------------------------------------------------------

    async def pull(self) -> None:
        """Pull the source when it is time to; tell a result that differs from the last."""
        if not self.settings.git_pull or time.monotonic() < self.next_pull:
            return
        self.next_pull = time.monotonic() + self.settings.pull_every
        problem = await asyncio.to_thread(self.source.pull, self.settings.pull_timeout)
        self.status = gitops.source_result(self.status, problem, _utcnow())
        if problem != self.pull_error:
            self.events.pulled(problem)
        self.pull_error = problem

    async def read(self) -> bool:
        """Take the source's snapshot and reload the manifests if their content changed.
        False when the files do not validate (the last good desired state stays)."""
        held = self.manifests
        snap = await asyncio.to_thread(self.source.snapshot)
        if snap.revision != held.revision and held.revision:  # a new commit, or new files
            described = await asyncio.to_thread(self.source.describe)
            self.status = replace(self.status, source=described)
        if snap.digest == held.loaded:
            held.bad, held.revision = "", snap.revision
            return True
        if snap.digest == held.bad:
            if snap.revision != held.bad_revision:  # the same bad files, committed (or amended)
                held.bad_revision = snap.revision
                assert held.invalid_error is not None
                problems = [str(p) for p in held.invalid_error.problems]
                self.status = gitops.invalid(self.status, snap.revision, problems, _utcnow())
            return False
        try:
            desired = self.load()
        except ManifestError as exc:
            self._refuse(snap, exc)
            return False
        first = not held.loaded
        held.desired, held.loaded, held.revision, held.bad = desired, snap.digest, snap.revision, ""
        if not first:
            self.events.revision_loaded(snap.revision, len(desired))
        return True

    def _refuse(self, snap: Snapshot, exc: ManifestError) -> None:
        """Hold on to the last good manifests; remember the bad ones so that they are told
        once."""
        held = self.manifests
        held.bad, held.bad_revision, held.invalid_error = snap.digest, snap.revision, exc
        problems = [str(p) for p in exc.problems]
        if held.loaded:  # else nothing runs yet: ``first`` raises the problems to its caller
            self.events.revision_invalid(snap.revision, held.revision, problems)
        self.status = gitops.invalid(self.status, snap.revision, problems, _utcnow())

    # -- passes ---------------------------------------------------------------------------

    def _save(self) -> None:
        try:
            self.store.set_controller_status(self.status.to_json())
        except StateError as exc:
            self.events.store_failed(exc)

    async def first(self) -> PassResult | None:
        """The apply that starts the loop: converge (within the timeout) unless suspended.
        Raises ManifestError when the manifests do not validate (nothing to fall back on),
        PruneRefused when the prune guard refuses the plan."""
        await self.pull()
        valid = await self.read()
        if not valid and not self.manifests.loaded:
            assert self.manifests.invalid_error is not None
            raise self.manifests.invalid_error
        self.suspended = self.store.controller().suspended
        if self.suspended:
            await self.observe_only()
            return None
        settings = self.settings
        the_plan = await self.reconciler.plan(self.desired, prune=settings.prune)
        prune_guard(the_plan, self.desired, self.store, settings.force)
        self.events.planned(the_plan)
        self.status = gitops.applying(self.status, self.revision, _utcnow())
        self._save()
        started = time.monotonic()
        result = await self.reconciler.converge(
            self.desired, prune=settings.prune, timeout=settings.timeout
        )
        self.finish(result, time.monotonic() - started, "")
        return result

    async def tick(self) -> None:
        """One pass of the loop."""
        await self.pull()
        valid = await self.read()
        state = self.store.controller()
        if state.suspended != self.suspended:
            self.suspended = state.suspended
            self.events.suspension_changed(state.suspended, state.reason)
        if self.suspended:
            await self.observe_only(state.reason)
            return
        prune, refused = self._prune_now()
        if valid:
            self.status = gitops.applying(self.status, self.revision, _utcnow())
            self._save()
        started = time.monotonic()
        try:
            result = await self.reconciler.run_pass(self.desired, prune=prune)
        except StateError as exc:
            self.events.store_failed(exc)
            return
        self.finish(result, time.monotonic() - started, refused)

    def _prune_now(self) -> tuple[bool, str]:
        """Whether this pass prunes, and why not when the guard refuses it."""
        if not self.settings.prune:
            return False, ""
        try:
            check_prune(
                undeclared(self.desired, self.store), self.desired, self.store, self.settings.force
            )
        except PruneRefused as exc:
            return False, str(exc)
        return True, ""

    def finish(self, result: PassResult, seconds: float, refused: str) -> None:
        """Record what a pass did and tell it."""
        outcome = pass_outcome(result, self.revision, seconds, refused, self.store)
        self.status = gitops.finished(
            self.status, outcome, _utcnow(), stall_after=self.settings.timeout
        )
        self._save()
        self._notify()
        self._write_metrics(outcome)
        self.events.pass_done(PassReport(outcome, invalid=bool(self.status.problems)))

    def _write_metrics(self, outcome: gitops.PassOutcome) -> None:
        path = self.settings.metrics_file
        if path is None:
            return
        try:
            metrics.write(
                path,
                drift=self.status.drift,
                drifted=len(outcome.drifted),
                converged=outcome.converged,
                at=time.time(),
                notifier=self.notifier,
            )
        except OSError as exc:
            log.warning("cannot write the metrics file %s: %s", path, exc)

    def _notify(self) -> None:
        """Queue the transitions since the last pass for the webhook (never waits for it)."""
        if self.notifier is None:
            return
        try:
            records = self.store.records()
        except StateError as exc:
            self.events.store_failed(exc)
            return
        self.notifier.post(self.tracker.changes(records, self.revision, _utcnow()))

    async def observe_only(self, reason: str = "") -> None:
        """A pass while suspended: observe and plan, report drift, change nothing."""
        started = time.monotonic()
        try:
            the_plan = await self.reconciler.plan(self.desired, prune=self.settings.prune)
        except StateError as exc:
            self.events.store_failed(exc)
            return
        pending = tuple(pending_change(item) for item in the_plan.changes)
        self.status = gitops.suspended(self.status, pending, reason, _utcnow())
        self.status = replace(self.status, last_pass_seconds=round(time.monotonic() - started, 3))
        self._save()
        self.events.observed(self.revision, pending)

    # -- waiting --------------------------------------------------------------------------

    def pause(self) -> float:
        """Seconds until the next pass: the interval, or sooner for a retry that is due, an
        ephemeral network that expires, or a pull."""
        now = time.monotonic()
        pause = float(self.settings.interval)
        due = self.reconciler.backoff.next_due()
        if due is not None:
            pause = min(pause, due - now)
        expiry = gitops.next_expiry(self.store.records("Network"), _utcnow())
        if expiry is not None:
            pause = min(pause, (expiry - _utcnow()).total_seconds() + 0.2)
        if self.settings.git_pull:
            pause = min(pause, self.next_pull - now)
        return max(0.1, pause)

    async def wait(self) -> None:
        """Until the pause is over, a manifest changes, the loop is suspended or resumed, or
        it is told to stop."""
        deadline = time.monotonic() + self.pause()
        while not self.stop.is_set() and not self.changed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            waiter = asyncio.create_task(self.changed.wait())
            stopper = asyncio.create_task(self.stop.wait())
            await asyncio.wait(
                {waiter, stopper},
                timeout=min(left, self.settings.suspend_poll),
                return_when="FIRST_COMPLETED",
            )
            waiter.cancel()
            stopper.cancel()
            with contextlib.suppress(StateError):
                if self.store.controller().suspended != self.suspended:
                    return
        self.changed.clear()

    async def watch(self) -> None:
        """Wake the loop whenever the source says its manifests may have changed."""
        async for _ in self.source.changes(self.stop):
            self.changed.set()

    async def run(self) -> None:
        """Passes until told to stop."""
        watcher = asyncio.create_task(self.watch())
        try:
            while not self.stop.is_set():
                await self.wait()
                if self.stop.is_set():
                    break
                await self.tick()
        finally:
            self.stop.set()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if self.notifier is not None:
                await self.notifier.close()


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the prune guard ---------------------------------------------------------------------------


def prune_guard(the_plan: Plan, desired: DesiredState, store: StateStore, force: bool) -> None:
    """Raise PruneRefused when the deletes of ``the_plan`` would empty the inventory, or
    delete more than half of it, and MoveRefused when it would move resources to another
    network (unless ``force``)."""
    deletes = [i.key for i in the_plan.items if i.action is Action.DELETE]
    check_prune(deletes, desired, store, force)
    if not force:
        check_moves(the_plan, {r.key: r.source for r in store.records()})


def check_moves(the_plan: Plan, sources: Mapping[ResourceKey, str]) -> None:
    """Raise MoveRefused naming every resource the plan would move to another network that
    this state applied from another file (``sources``: where each was declared, as the store
    keeps it): the same names applied to one state from two sets of manifests (two examples)
    would otherwise take each other's nodes without a word. A move written in the same file
    is an edit, and goes ahead."""
    moves = []
    for item in the_plan.items:
        if item.action is not Action.UPDATE or item.desired is None or item.observed is None:
            continue
        old, new = (item.observed.spec or {}).get("network"), item.desired.spec.get("network")
        applied_from = _file_of(sources.get(item.key, ""))
        here = item.desired.position()
        if old and new and old != new and applied_from and applied_from != _file_of(str(here)):
            moves.append(f"{item.key} ({here}) from {old}, applied from {applied_from}, to {new}")
    if moves:
        raise MoveRefused(
            f"refusing to move {'; '.join(moves)}: the same names from other manifests; give "
            "these manifests a state of their own (--state DIR, or $HM_STATE), or pass --force "
            "to move"
        )


def _file_of(source: str) -> str:
    """The file of a ``FILE:LINE:COL`` position, resolved (empty for none or standard input)."""
    file = source.rsplit(":", 2)[0] if source.count(":") >= 2 else source
    if not file or file.startswith("<"):
        return ""
    return str(Path(file).resolve())


def undeclared(desired: DesiredState, store: StateStore) -> list[ResourceKey]:
    """What a pass with ``prune`` would delete: the inventory minus what is declared."""
    declared = desired.by_key()
    return [r.key for r in store.records() if r.managed and r.key not in declared]


def check_prune(
    deletes: Sequence[ResourceKey], desired: DesiredState, store: StateStore, force: bool
) -> None:
    """Raise PruneRefused when ``deletes`` would empty the inventory, or more than half of it."""
    if not deletes or force:
        return
    inventory = [r for r in store.records() if r.managed]
    if not len(desired):
        raise PruneRefused(
            f"refusing to prune: the given files declare nothing, so all {len(deletes)} "
            "resources in the inventory would be deleted; check -f, or pass --force"
        )
    if len(deletes) * 2 > len(inventory):
        raise PruneRefused(
            f"refusing to prune {len(deletes)} of {len(inventory)} resources in the inventory "
            f"(more than half): {', '.join(map(str, deletes[:5]))}"
            f"{', …' if len(deletes) > 5 else ''}; pass --force if that is what you want"
        )


# -- what a pass did, in words -----------------------------------------------------------------


def pending_change(item: PlanItem) -> str:
    """A change a suspended loop holds back: ``update Node/a (spec.listen)``."""
    what = f"{item.action.value} {item.key}"
    if item.diffs:
        return f"{what} ({', '.join(d.field for d in item.diffs)})"
    if item.drift:
        return f"{what} ({'; '.join(map(str, item.drift))})"
    return what


def pass_outcome(
    result: PassResult, revision: str, seconds: float, refused: str, store: StateStore
) -> gitops.PassOutcome:
    """A pass's result as the loop's status records it: what changed, and what fails where
    it is declared."""
    done = set(result.done)
    changes = [
        f"{_VERBS.get(item.action, item.action.value)} {item.key}"
        for item in result.plan.changes
        if item.key in done
    ]
    changes += [f"tore down {key} ({why})" for key, why in result.expired.items()]
    sources = {r.key: r.source for r in store.records()}

    def name(key: ResourceKey) -> str:
        where = sources.get(key)
        return f"{key} ({where})" if where else str(key)

    drifted = {name(k): v for k, v in result.drifted.items()}
    failing: dict[str, str] = {}
    if not result.converged:
        for group in (result.waiting, result.unready, result.failed, result.stalled):
            failing.update({name(k): v for k, v in group.items()})
    return gitops.PassOutcome(
        revision=revision,
        converged=result.converged,
        seconds=seconds,
        changes=tuple(changes),
        failing=failing,
        permanent=bool(result.stalled),
        refused=refused,
        drifted=drifted,
    )
