"""Level-triggered reconciliation.

A pass re-observes the world, plans against it and carries the plan out: creates and updates in
dependency order (a kind at a time, up to ``parallelism`` resources at once), deletes in reverse
order. A failure is retried with per-resource exponential backoff (``TemporaryError``) or left
``Stalled`` until the spec changes (``PermanentError``); whatever depends on a failed resource
waits. ``converge`` runs passes until nothing is left to do, or the time is up.

Before planning, a pass tears down every ephemeral network whose ``expiresAt`` has passed and
leaves its Network as a tombstone that the loop's passes honour and an apply (``converge``)
lifts; the planner never sees the network's resources meanwhile (``hypermesh.plan.expiry``).

A reconciler runs for one host (``placement``, ``hypermesh.model.placement``): the resources
another host's controller converges (Nodes placed there, TLDs their nodes own, and those TLDs'
Records) are neither planned nor observed, so never started, stopped or pruned here; their
status says where they are converged. The drivers still see the whole desired state: a remote
Node is a member of its network, a remote registry is where a local node's registry is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from hypermesh.errors import (
    AwaitingPerson,
    PermanentError,
    ReconcileError,
    StateError,
    TemporaryError,
)
from hypermesh.model.placement import REMOTE, Placement
from hypermesh.model.references import dependencies
from hypermesh.model.resources import KIND_ORDER, DesiredState, Resource, ResourceKey
from hypermesh.model.validate import resource_problems
from hypermesh.plan import Action, Observed, Plan, PlanItem, plan
from hypermesh.plan.expiry import (
    EXPIRED,
    TOMBSTONE,
    fingerprint,
    is_expired,
    is_tombstone,
    members,
    specs_of,
)
from hypermesh.reconcile.backoff import Backoff
from hypermesh.reconcile.conditions import Condition, condition, set_condition, set_standard
from hypermesh.reconcile.drift import DRIFTED, IN_SYNC, DriftPolicy, held, policy_of, words
from hypermesh.reconcile.driver import ApplyContext, Driver, Live, Outcome
from hypermesh.reconcile.one import observe, observed_of
from hypermesh.reconcile.summary import Readiness, own_readiness, summarise
from hypermesh.store import ResourceRecord, StateStore
from hypermesh.timefmt import rfc3339

log = logging.getLogger("hypermesh.reconcile")


class Progress(Enum):
    """What ``on_progress`` is told about one resource."""

    START = "start"
    """A driver starts acting on it."""
    DONE = "done"
    FAILED = "failed"
    """It failed and will be retried."""
    STALLED = "stalled"
    """It failed in a way retries will not fix until its spec changes."""


class ItemState(Enum):
    """Where one resource of a pass's plan stands once the pass is through with it."""

    DONE = "done"
    FAILED = "failed"
    """Failed; retried with backoff."""
    STALLED = "stalled"
    """Cannot converge until its spec (or a dependency's) changes."""
    WAITING = "waiting"
    """Skipped this pass: backing off, or waiting for a dependency."""
    UNREADY = "unready"
    """Needs no change, but is not Ready (what depends on it waits)."""


ProgressCallback = Callable[[Progress, ResourceKey, str], None]


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """How hard the reconciler works."""

    parallelism: int = 8
    """Resources acted on at once within one kind."""
    backoff_base: float = 0.5
    """Seconds before the first retry of a failed resource; doubles with each failure."""
    backoff_cap: float = 60.0
    """The longest wait between retries."""
    drift: DriftPolicy = DriftPolicy.CORRECT
    """What a pass does with drift of the world: put it back, or only report it (a resource's
    ``hypermesh.online/drift`` annotation overrides it; ``hypermesh.reconcile.drift``)."""


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass saw and did."""

    plan: Plan
    done: tuple[ResourceKey, ...] = ()
    failed: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Resources that failed and will be retried, with the reason."""
    stalled: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Resources that cannot converge until their spec changes."""
    waiting: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Resources skipped this pass: backing off, or waiting for a dependency."""
    unready: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Resources that need no change but are not Ready (a node not answering)."""
    expired: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Ephemeral networks torn down in this pass, with what went."""
    drifted: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Resources whose drift was left alone (drift policy ``detect``), with the drift."""

    @property
    def converged(self) -> bool:
        """Nothing left to do and nothing failing (drift left alone by policy is not to do)."""
        open_items = [
            i for i in self.plan.changes if i.key not in self.done and i.key not in self.drifted
        ]
        return not open_items and not self.failed and not self.stalled and not self.unready

    @property
    def settled(self) -> bool:
        """Nothing more will happen without a change of spec: converged, or only stalled left."""
        open_items = [
            i
            for i in self.plan.changes
            if i.key not in self.done and i.key not in self.stalled and i.key not in self.drifted
        ]
        return not open_items and not self.failed and not self.waiting


def _now_text() -> str:
    return rfc3339(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class _Expiry:
    """What a pass found of ephemeral networks before planning."""

    hidden: frozenset[ResourceKey] = frozenset()
    """Resources of expired networks: neither planned nor saved as desired this pass."""
    expired: Mapping[ResourceKey, str] = field(default_factory=dict)
    failed: Mapping[ResourceKey, str] = field(default_factory=dict)
    waiting: Mapping[ResourceKey, str] = field(default_factory=dict)


class Reconciler:
    """Runs passes against one state store with one set of drivers."""

    def __init__(
        self,
        store: StateStore,
        drivers: Mapping[str, Driver],
        settings: ReconcileSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_progress: ProgressCallback | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.store = store
        self.placement = placement or Placement()
        """The host this reconciler converges; resources placed elsewhere are left alone."""
        self._remote: dict[ResourceKey, str] = {}
        self.drivers = drivers
        self.settings = settings or ReconcileSettings()
        self.clock = clock
        self.wall_clock = wall_clock
        """Seconds since the epoch, for the expiry of ephemeral networks (``clock`` is
        monotonic, for backoff)."""
        self.backoff: Backoff[ResourceKey] = Backoff(
            base=self.settings.backoff_base, cap=self.settings.backoff_cap
        )
        self.on_progress = on_progress
        self._stalled_at: dict[ResourceKey, int] = {}
        self._told: dict[ResourceKey, str] = {}
        """What each resource awaiting a person last said (said again only when it changes)."""
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._entered: dict[ResourceKey, Mapping[str, Any]] = {}
        """What ``_enter_inventory`` put in the inventory for the wave acting now."""

    @property
    def _semaphore(self) -> asyncio.Semaphore:
        """The bound on parallel driver calls, one per event loop (``hmctl`` may run several
        loops one after another in one process)."""
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            self._semaphores = {loop: asyncio.Semaphore(self.settings.parallelism)}
            semaphore = self._semaphores[loop]
        return semaphore

    # -- observing ----------------------------------------------------------------------

    async def observe(
        self, skip: frozenset[ResourceKey] = frozenset()
    ) -> tuple[list[Observed], dict[ResourceKey, Live]]:
        """Re-observe everything the store knows was applied or created (but ``skip``)."""
        records = [
            r
            for r in self.store.records()
            if (r.managed or r.applied is not None) and r.key not in skip
        ]
        lives = await asyncio.gather(*(self._observe_one(r) for r in records))
        observed: list[Observed] = []
        live_by_key: dict[ResourceKey, Live] = {}
        for record, live in zip(records, lives, strict=True):
            live_by_key[record.key] = live
            observed.append(
                observed_of(
                    record.key,
                    record.applied,
                    record.applied_generation,
                    live,
                    managed=record.managed,
                )
            )
        return observed, live_by_key

    async def _observe_one(self, record: ResourceRecord) -> Live:
        driver = self.drivers.get(record.key.kind)
        if driver is None:
            return Live(exists=record.applied is not None)
        async with self._semaphore:
            return await observe(driver, record.key, record.handle, record.applied)

    async def plan(self, desired: DesiredState, *, prune: bool = False) -> Plan:
        """Observe and plan, without acting (``hmctl diff``, and what ``apply`` announces).
        The resources of ephemeral networks past their expiry are shown as deletes."""
        self._show(desired)
        local, remote = self.placement.split(desired)
        observed, _ = await self.observe(skip=frozenset(remote))
        return plan(local, observed, prune=prune, expired=self._due(desired))

    def _show(self, desired: DesiredState) -> None:
        """Hand the desired state to every driver before observing (``Driver.prepare``):
        a node whose running config no longer matches what its network says drifts."""
        for driver in {id(d): d for d in self.drivers.values()}.values():
            driver.prepare(desired)

    def _due(self, desired: DesiredState) -> dict[ResourceKey, str]:
        """The resources a pass would tear down now, each with why."""
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        records = self.store.records()
        specs = _known_specs(records, desired)
        due: dict[ResourceKey, str] = {}
        for record in records:
            if record.key.kind == "Network" and is_expired(record.applied, record.status, now):
                why = f"network {record.key.name} expired at {record.status.get('expiresAt')}"
                due.update(dict.fromkeys((record.key, *members(record.key, specs)), why))
        return due

    # -- acting ---------------------------------------------------------------------------

    async def run_pass(self, desired: DesiredState, *, prune: bool = False) -> PassResult:
        """One level-triggered pass: tear down expired networks, observe, plan, act."""
        expiry = await self._expire(desired)
        if expiry.hidden:
            desired = DesiredState.of(
                (r for r in desired if r.key not in expiry.hidden), desired.files
            )
        generations = self.store.save_desired(desired, hold=expiry.hidden)
        self._show(desired)
        local, self._remote = self.placement.split(desired)
        observed, lives = await self.observe(skip=expiry.hidden | frozenset(self._remote))
        the_plan = plan(local, observed, prune=prune)
        records = {r.key: r for r in self.store.records()}
        contexts = {k: ApplyContext(desired, g) for k, g in generations.items()}
        drifted = self._detected(the_plan)
        unchanged = _unchanged(the_plan, lives, drifted)
        blocked = {k: ItemState.UNREADY for k, live in unchanged.items() if not live.ready}
        messages: dict[ItemState, dict[ResourceKey, str]] = {
            ItemState.FAILED: dict(expiry.failed),
            ItemState.STALLED: {},
            ItemState.WAITING: dict(expiry.waiting),
            ItemState.UNREADY: {
                k: unchanged[k].message or unchanged[k].reason for k in blocked if k not in drifted
            },
        }
        done: list[ResourceKey] = []
        for wave in _waves(the_plan, drifted):
            self._enter_inventory(wave, records, contexts, blocked)
            results = await asyncio.gather(
                *(self._act(item, records.get(item.key), contexts, blocked) for item in wave)
            )
            self._entered.clear()
            for item, (state, message) in zip(wave, results, strict=True):
                if state is ItemState.DONE:
                    done.append(item.key)
                else:
                    blocked[item.key] = state
                    messages[state][item.key] = message
        with self.store.batch(durable=False):  # status alone: the next observe rebuilds it
            self._summarise(unchanged, generations)
            self._mark_drift(drifted, generations)
            self._mark_remote(generations)
        return PassResult(
            the_plan,
            tuple(done),
            failed=messages[ItemState.FAILED],
            stalled=messages[ItemState.STALLED],
            waiting=messages[ItemState.WAITING],
            unready=messages[ItemState.UNREADY],
            expired=dict(expiry.expired),
            drifted=drifted,
        )

    def _detected(self, the_plan: Plan) -> dict[ResourceKey, str]:
        """The updates this pass leaves alone, drift of the world under ``detect``, each with
        its drift (an annotation with a bad value holds nothing back: applying it stalls)."""
        out: dict[ResourceKey, str] = {}
        for item in the_plan.changes:
            try:
                if held(item, self.settings.drift):
                    out[item.key] = words(item)
            except PermanentError:
                continue
        return out

    def _mark_drift(
        self, drifted: Mapping[ResourceKey, str], generations: Mapping[ResourceKey, int]
    ) -> None:
        """``Drifted=True`` with the drift's words on each resource left drifted (and a
        ``Drifted`` event when that is news); ``Drifted=False`` once one matches again."""
        for record in self.store.records():
            was = condition(record.status.get("conditions", []), DRIFTED)
            text = drifted.get(record.key)
            generation = generations.get(record.key, record.applied_generation)
            if text is not None:
                if was is not None and (was.get("status"), was.get("message")) == ("True", text):
                    continue
                new = Condition(DRIFTED, "True", DRIFTED, text, generation)
                self.store.add_event(record.key, "Warning", DRIFTED, f"left as it is: {text}")
                self._progress(Progress.DONE, record.key, f"drifted, left as it is: {text}")
            elif was is not None and was.get("status") == "True":
                new = Condition(DRIFTED, "False", IN_SYNC, "matches its spec", generation)
                self.store.add_event(record.key, "Normal", IN_SYNC, "matches its spec again")
            else:
                continue
            status = dict(record.status)
            status["conditions"] = set_condition(
                list(status.get("conditions", [])), new, _now_text()
            )
            self.store.set_status(record.key, status)

    def _mark_remote(self, generations: Mapping[ResourceKey, int]) -> None:
        """Say of each resource another host converges where it is converged: Ready (it is
        nothing this host waits for), reason ``Remote``; written only when it changes."""
        records = {r.key: r for r in self.store.records()}
        for key, message in self._remote.items():
            record = records.get(key)
            if record is None:
                continue
            was = own_readiness(record)
            if (was.ready, was.reason, was.message) == (True, REMOTE, message):
                continue
            status = {k: v for k, v in record.status.items() if k == "conditions"}
            generation = generations.get(key, record.generation)
            self._set_conditions(
                key,
                status,
                generation,
                ready=True,
                reason=REMOTE,
                message=message,
                reconciling=False,
            )

    # -- ephemeral networks ---------------------------------------------------------------

    async def _expire(self, desired: DesiredState) -> _Expiry:
        """Before planning: tear down every ephemeral network whose ``expiresAt`` has passed,
        leaving a tombstone; lift tombstones whose manifests changed. Returns what the rest of
        the pass must leave alone (the resources of networks torn down or being torn down)."""
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        records = {r.key: r for r in self.store.records()}
        specs = _known_specs(records.values(), desired)
        hidden: set[ResourceKey] = set()
        expired: dict[ResourceKey, str] = {}
        failed: dict[ResourceKey, str] = {}
        waiting: dict[ResourceKey, str] = {}
        for key, record in records.items():
            if key.kind != "Network":
                continue
            if is_tombstone(record.handle, record.applied):
                mark = record.handle[TOMBSTONE]
                current = fingerprint(desired, key)
                if current is None:
                    continue  # no longer declared: save_desired drops the row
                if current != mark.get("fingerprint"):
                    self.store.forget(key)
                    message = "the manifests changed since it expired: creating it anew"
                    self.store.add_event(key, "Normal", "Recreating", message)
                    self._progress(Progress.DONE, key, message)
                    log.info("network %s: %s", key.name, message)
                    continue
                hidden |= {key, *members(key, specs)}
                continue
            if not is_expired(record.applied, record.status, now):
                continue
            doomed = members(key, specs)
            hidden |= {key, *doomed}
            if not self.backoff.ready(key, self.clock()):
                waiting[key] = "tearing down: backing off after a failure"
                continue
            ok, message = await self._teardown(record, doomed, records, desired, now)
            (expired if ok else failed)[key] = message
        return _Expiry(frozenset(hidden), expired, failed, waiting)

    async def _teardown(
        self,
        network: ResourceRecord,
        doomed: tuple[ResourceKey, ...],
        records: Mapping[ResourceKey, ResourceRecord],
        desired: DesiredState,
        now: datetime,
    ) -> tuple[bool, str]:
        """Delete every resource of an expired network from the world and the store, a kind
        at a time (Records and TLDs while their owners' keys and the registry still exist,
        Nodes last), then leave the Network as a tombstone. Each resource is forgotten as soon
        as it is gone, so a failure leaves a consistent store and the next pass goes on."""
        key = network.key
        at = str(network.status.get("expiresAt"))
        why = f"network {key.name} expired at {at}"
        gone, problems = await self._tear_members(doomed, records, why)
        if problems:
            return False, self._teardown_failed(network, why, problems)
        self.backoff.succeeded(key)
        self._stalled_at.pop(key, None)
        summary = _summary(gone)
        message = f"{why}: torn down {summary}"
        mark = fingerprint(desired, key)
        if mark is None:
            self.store.forget(key)  # not declared any more: nothing to remember
        else:
            self._tombstone(network, message, mark, now)
        self.store.add_event(key, "Normal", EXPIRED, message)
        self._progress(Progress.DONE, key, f"expired at {at}: torn down {summary}")
        log.info("%s", message)
        return True, message

    async def _tear_members(
        self,
        doomed: tuple[ResourceKey, ...],
        records: Mapping[ResourceKey, ResourceRecord],
        why: str,
    ) -> tuple[Counter[str], list[str]]:
        """Delete the members of an expired network a kind at a time, dependents first; stop
        after a kind where something failed. How many of each kind went, and what failed."""
        local_nodes = {k.name for k in doomed if k.kind == "Node"}
        gone: Counter[str] = Counter()
        problems: list[str] = []
        for wave in _kind_waves([k for k in doomed if k in records]):
            results = await asyncio.gather(
                *(self._tear(records[k], local_nodes, why) for k in wave)
            )
            for member, problem in zip(wave, results, strict=True):
                if problem is None:
                    gone[member.kind] += 1
                else:
                    problems.append(f"{member}: {problem}")
            if problems:
                break  # what depends on the failed ones goes in a later pass
        return gone, problems

    def _teardown_failed(self, network: ResourceRecord, why: str, problems: list[str]) -> str:
        """A teardown left members behind: the network backs off and says so; the message."""
        key = network.key
        message = f"{why}; teardown incomplete, retrying: {'; '.join(problems)}"
        wait = self.backoff.failed(key, self.clock())
        self._set_conditions(
            key,
            dict(network.status),
            network.applied_generation,
            ready=False,
            reason="TearingDown",
            message=f"{message} (retry in {wait:.1f}s)",
            reconciling=True,
        )
        self.store.add_event(key, "Warning", "TeardownFailed", message)
        self._progress(Progress.FAILED, key, message)
        log.warning("%s", message)
        return message

    def _tombstone(self, network: ResourceRecord, message: str, mark: str, now: datetime) -> None:
        """Leave a torn-down network that is still declared as a tombstone: passes honour it
        until an apply (or a change of its manifests) lifts it."""
        at = str(network.status.get("expiresAt"))
        status: dict[str, Any] = {"mode": "ephemeral", "expiredAt": at}
        status = self._conditions(
            status,
            network.generation,
            ready=False,
            reason=EXPIRED,
            message=f"{message}; apply again (or change the manifests) to create it anew",
            reconciling=False,
        )
        stone = {"at": at, "tornDownAt": rfc3339(now), "fingerprint": mark}
        self.store.tombstone(network.key, {TOMBSTONE: stone}, status)

    async def _tear(self, record: ResourceRecord, local_nodes: set[str], why: str) -> str | None:
        """Delete one resource of an expired network; the problem, or None when it is gone.
        A TLD or Record registered at a registry that is itself a node of the network is not
        unregistered one by one: the registry's directory goes with its node."""
        key = record.key
        driver = self.drivers.get(key.kind)
        registry = record.handle.get("registry")
        with_registry = isinstance(registry, Mapping) and registry.get("node") in local_nodes
        # Every driver that touches the world is asked, managed or not: a node's key can exist
        # before the node was ever started (its peers learn it), and must go too.
        if driver is not None and driver.manages_world and not with_registry:
            async with self._semaphore:
                try:
                    await driver.delete(key, record.handle)
                except ReconcileError as exc:
                    self.store.add_event(key, "Warning", exc.reason, str(exc))
                    return str(exc)
                except Exception as exc:  # a driver bug must not kill the controller
                    log.exception("driver for %s crashed", key)
                    return repr(exc)
        self.store.forget(key)
        self.backoff.succeeded(key)
        self._stalled_at.pop(key, None)
        self.store.add_event(key, "Normal", "Deleted", why)
        self._progress(Progress.DONE, key, f"deleted: {why}")
        return None

    def revive_expired(self) -> list[ResourceKey]:
        """Lift every tombstone, so that the next pass creates the expired networks anew with a
        fresh TTL: what an apply does (the user asks again for what the files declare)."""
        revived = []
        for record in self.store.records("Network"):
            if is_tombstone(record.handle, record.applied):
                self.store.forget(record.key)
                revived.append(record.key)
        return revived

    async def _act(
        self,
        item: PlanItem,
        record: ResourceRecord | None,
        contexts: Mapping[ResourceKey, ApplyContext],
        blocked: Mapping[ResourceKey, ItemState],
    ) -> tuple[ItemState, str]:
        """Carry out one change of the plan, unless something holds it back; where it stands
        after, with why when it is not done."""
        key = item.key
        driver = self.drivers.get(key.kind)
        generation = _generation(contexts, key)
        status = dict(record.status) if record is not None else {}
        if driver is None:
            return ItemState.STALLED, f"no driver for kind {key.kind}"
        held = self._held_back(item, status, generation, blocked)
        if held is not None:
            return held
        self._progress(Progress.START, key, item.action.value)
        async with self._semaphore:
            try:
                if item.action is Action.DELETE:
                    await self._delete(driver, key, record)
                    return ItemState.DONE, ""
                outcome = await self._apply(driver, item, record, contexts[key])
            except ReconcileError as exc:
                return self._failed(key, status, generation, exc)
            except Exception as exc:  # a driver bug must not kill the controller
                log.exception("driver for %s crashed", key)
                return self._failed(key, status, generation, TemporaryError(repr(exc)))
        self._applied(item, driver, status, generation, outcome)
        self._told.pop(key, None)
        return ItemState.DONE, ""

    def _enter_inventory(
        self,
        wave: list[PlanItem],
        records: Mapping[ResourceKey, ResourceRecord],
        contexts: Mapping[ResourceKey, ApplyContext],
        blocked: Mapping[ResourceKey, ItemState],
    ) -> None:
        """Before a wave acts, put every resource of it that a driver will create in the
        world, and that the inventory does not hold yet, in the inventory with its handle, in
        one durable transaction (what ``_apply`` does for one, for the whole wave at once).
        Left to ``_apply``: what is held back (``_held_back``) or refused before any driver
        sees it (an invalid spec, a bad drift annotation)."""
        entries: dict[ResourceKey, Mapping[str, Any]] = {}
        for item in wave:
            driver = self.drivers.get(item.key.kind)
            record = records.get(item.key)
            if (
                item.desired is None
                or item.action is Action.DELETE
                or driver is None
                or not driver.manages_world
                or (record is not None and record.managed)
                or self._hold(item, _generation(contexts, item.key), blocked) is not None
            ):
                continue
            try:
                _require_valid(item.desired)
                policy_of(item.desired, self.settings.drift)
            except PermanentError:
                continue
            entries[item.key] = _handle(driver, item.desired, record)
        if not entries:
            return
        try:
            with self.store.batch():
                for key, handle in entries.items():
                    self.store.mark_managed(key, handle)
        except StateError:
            return  # none entered: each ``_apply`` tries its own, and fails as its resource
        self._entered.update(entries)

    def _held_back(
        self,
        item: PlanItem,
        status: dict[str, Any],
        generation: int,
        blocked: Mapping[ResourceKey, ItemState],
    ) -> tuple[ItemState, str] | None:
        """Why a change must not be tried in this pass (``_hold``), said in the status when
        it waits for dependencies. None when it may go."""
        hold = self._hold(item, generation, blocked)
        if hold is None:
            return None
        if hold == "stalled":
            return ItemState.STALLED, str(status.get("stalledMessage", "stalled"))
        if hold == "backoff":
            return ItemState.WAITING, "backing off after a failure"
        missing = [d for d in dependencies(item.desired) if d in blocked] if item.desired else []
        return self._waiting(item.key, status, generation, missing, blocked)

    def _hold(
        self, item: PlanItem, generation: int, blocked: Mapping[ResourceKey, ItemState]
    ) -> Hold | None:
        """Why a change must not be tried in this pass, and nothing more: ``"stalled"`` at
        this generation, ``"waiting"`` for a dependency not through yet, ``"backoff"`` after a
        failure; None when it may go."""
        key = item.key
        if item.action is not Action.DELETE and self._stalled_at.get(key) == generation:
            return "stalled"
        if item.desired is not None and any(d in blocked for d in dependencies(item.desired)):
            return "waiting"
        if not self.backoff.ready(key, self.clock()):
            return "backoff"
        return None

    def _waiting(
        self,
        key: ResourceKey,
        status: dict[str, Any],
        generation: int,
        missing: list[ResourceKey],
        blocked: Mapping[ResourceKey, ItemState],
    ) -> tuple[ItemState, str]:
        """A resource whose dependencies are not through: it waits, or (behind stalled
        dependencies only) stalls until a spec changes."""
        message = f"waiting for {', '.join(map(str, missing))}"
        stalled = all(blocked[d] is ItemState.STALLED for d in missing)
        self._set_conditions(
            key,
            status,
            generation,
            ready=False,
            reason="WaitingForDependency",
            message=message,
            reconciling=not stalled,
        )
        return (ItemState.STALLED if stalled else ItemState.WAITING), message

    async def _delete(
        self, driver: Driver, key: ResourceKey, record: ResourceRecord | None
    ) -> None:
        """Prune: delete from the world, then forget."""
        await driver.delete(key, record.handle if record else {})
        with self.store.batch():
            self.store.forget(key)
            self.store.add_event(key, "Normal", "Deleted", "pruned: no longer declared")
        self.backoff.succeeded(key)
        self._progress(Progress.DONE, key, "deleted")

    async def _apply(
        self,
        driver: Driver,
        item: PlanItem,
        record: ResourceRecord | None,
        context: ApplyContext,
    ) -> Outcome:
        """Create or update: a resource that touches the world enters the inventory (with its
        handle) before the driver creates it, so that a crash in between leaves it prunable."""
        assert item.desired is not None
        _require_valid(item.desired)
        policy_of(item.desired, self.settings.drift)  # a bad annotation stalls, named
        handle = _handle(driver, item.desired, record)
        entered = self._entered.pop(item.key, None) is not None
        if driver.manages_world and not (record and record.managed) and not entered:
            self.store.mark_managed(item.key, handle)
        return await driver.apply(item.desired, handle, context)

    def _applied(
        self,
        item: PlanItem,
        driver: Driver,
        status: dict[str, Any],
        generation: int,
        outcome: Outcome,
    ) -> None:
        """Record a create or update that worked: the spec applied, its status, an event."""
        key = item.key
        assert item.desired is not None
        self.backoff.succeeded(key)
        self._stalled_at.pop(key, None)
        status.update(outcome.status)
        status.pop("stalledMessage", None)
        status["observedGeneration"] = generation
        status = self._conditions(
            status,
            generation,
            ready=True,
            reason="Converged",
            message=outcome.message,
            reconciling=False,
        )
        reason, verb = _applied_words(item)
        with self.store.batch():
            self.store.record_applied(
                key, item.desired.spec, generation, outcome.handle, status,
                managed=driver.manages_world,
            )  # fmt: skip
            self.store.add_event(key, "Normal", reason, outcome.message or verb)
        self._progress(
            Progress.DONE, key, f"{verb}: {outcome.message}" if outcome.message else verb
        )

    def _failed(
        self,
        key: ResourceKey,
        status: dict[str, Any],
        generation: int,
        exc: ReconcileError,
    ) -> tuple[ItemState, str]:
        """A driver failed: stall until the spec changes (PermanentError), wait for a person
        (AwaitingPerson), or back off."""
        message = str(exc)
        if isinstance(exc, AwaitingPerson):
            return self._awaiting(key, status, generation, exc)
        if isinstance(exc, PermanentError):
            self._stalled_at[key] = generation
            status["stalledMessage"] = message
            self._set_conditions(
                key,
                status,
                generation,
                ready=False,
                reason=exc.reason,
                message=message,
                reconciling=False,
                stalled=True,
            )
            self.store.add_event(key, "Warning", exc.reason, message)
            self._progress(Progress.STALLED, key, message)
            return ItemState.STALLED, message
        delay = exc.delay if isinstance(exc, TemporaryError) else None
        wait = self.backoff.failed(key, self.clock(), delay)
        text = f"{message} (retry {self.backoff.failures(key)} in {wait:.1f}s)"
        self._set_conditions(
            key,
            status,
            generation,
            ready=False,
            reason=exc.reason,
            message=text,
            reconciling=True,
        )
        self.store.add_event(key, "Warning", exc.reason, message)
        self._progress(Progress.FAILED, key, text)
        return ItemState.FAILED, message

    def _awaiting(
        self, key: ResourceKey, status: dict[str, Any], generation: int, exc: AwaitingPerson
    ) -> tuple[ItemState, str]:
        """Held for a person: not Ready, not retried in this apply (it stands as stalled, and
        what depends on it with it), told once (the event and the progress line) until what
        it says changes."""
        message = str(exc)
        self._set_conditions(
            key, status, generation, ready=False, reason=exc.reason, message=message,
            reconciling=False,
        )  # fmt: skip
        if self._told.get(key) != message:
            self._told[key] = message
            self.store.add_event(key, "Warning", exc.reason, message)
            self._progress(Progress.STALLED, key, message)
        return ItemState.STALLED, message

    def _summarise(
        self, observed: Mapping[ResourceKey, Live], generations: Mapping[ResourceKey, int]
    ) -> None:
        """At the end of a pass (and of ``stop_all``), write every status from what is live
        now: the resources left unchanged as this pass ``observed`` them, the others as acting
        on them left them, each Network counted from its members and each TLD, Record and
        policy held back by what it stands on (``reconcile.summary``). Nothing is left over
        from an earlier pass; a status that did not change is not written again."""
        records = [r for r in self.store.records() if r.key not in self._remote]
        own = {
            key: Readiness(live.ready, "Converged" if live.ready else live.reason, live.message)
            for key, live in observed.items()
        }
        summaries = summarise(records, own)
        for record in records:
            summary = summaries.get(record.key)
            if summary is None:
                continue
            live = observed.get(record.key)
            status = dict(record.status)
            if live is not None:
                status.update(live.status)
            status.update(summary.status)
            was = own_readiness(record)
            now = summary.readiness
            if live is None and now == was:
                if status != record.status:  # counts changed, conditions stand
                    self.store.set_status(record.key, status)
                continue
            if live is None and "conditions" not in record.status:
                continue  # never reconciled: nothing to say yet
            generation = generations.get(record.key, record.applied_generation)
            status = self._conditions(
                status,
                generation,
                ready=now.ready,
                reason=now.reason,
                message=now.message,
                reconciling=False,
            )
            if status != record.status:
                self.store.set_status(record.key, status)

    def _conditions(
        self,
        status: dict[str, Any],
        generation: int,
        *,
        ready: bool,
        reason: str,
        message: str,
        reconciling: bool,
        stalled: bool = False,
    ) -> dict[str, Any]:
        status["conditions"] = set_standard(
            list(status.get("conditions", [])),
            generation,
            _now_text(),
            ready=ready,
            reason=reason,
            message=message,
            reconciling=reconciling,
            stalled=stalled,
        )
        return status

    def _set_conditions(
        self, key: ResourceKey, status: dict[str, Any], generation: int, **kwargs: Any
    ) -> None:
        self.store.set_status(key, self._conditions(status, generation, **kwargs))

    def _progress(self, what: Progress, key: ResourceKey, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(what, key, message)

    # -- loops ----------------------------------------------------------------------------

    async def converge(
        self,
        desired: DesiredState,
        *,
        prune: bool = False,
        timeout: float = 120.0,  # noqa: ASYNC109
        revive: bool = True,
    ) -> PassResult:
        """Run passes until converged, only stalled resources are left, or ``timeout``.

        This is an apply (``hmctl apply``, and the start of ``up`` and ``controller run``): with
        ``revive`` it first lifts the tombstones of expired networks, which are then created
        anew. A network that expires during these passes stays torn down until the next apply;
        the loop's own passes (``run_pass``) never lift a tombstone."""
        if revive:
            for key in self.revive_expired():
                log.info("network %s expired earlier: creating it anew", key.name)
        deadline = self.clock() + timeout
        async with self._connections_held():
            while True:
                result = await self.run_pass(desired, prune=prune)
                if result.converged or (result.settled and not result.unready):
                    return result
                now = self.clock()
                if now >= deadline:
                    return result
                due = self.backoff.next_due()
                pause = 0.2 if due is None else max(0.05, min(due - now, 2.0))
                await asyncio.sleep(min(pause, max(0.0, deadline - now)))

    @contextlib.asynccontextmanager
    async def _connections_held(self) -> AsyncIterator[None]:
        """While the passes of one converge run: drivers that keep connections to what they
        observe (``hold_connections``/``release_connections``, the node driver's ``/status``)
        keep them from pass to pass, and close them at the end."""
        releases: list[Callable[[], Awaitable[None]]] = []
        for driver in {id(d): d for d in self.drivers.values()}.values():
            hold = getattr(driver, "hold_connections", None)
            release = getattr(driver, "release_connections", None)
            if hold is not None and release is not None:
                hold()
                releases.append(release)
        try:
            yield
        finally:
            for release in releases:
                await release()

    async def stop_all(self) -> list[ResourceKey]:
        """Stop every running thing this state started, keeping the inventory (``down``)."""
        stopped: list[ResourceKey] = []
        records = [r for r in self.store.records() if r.managed]
        records.sort(key=lambda r: r.key.order, reverse=True)
        for record in records:
            driver = self.drivers.get(record.key.kind)
            if driver is None or not driver.manages_world:
                continue
            if await driver.stop(record.key, record.handle):
                stopped.append(record.key)
                status = dict(record.status)
                for name in ("pid", "address"):
                    status.pop(name, None)
                self._set_conditions(
                    record.key,
                    status,
                    record.generation,
                    ready=False,
                    reason="Stopped",
                    message="stopped by hmctl down",
                    reconciling=False,
                )
                self.store.add_event(record.key, "Normal", "Stopped", "stopped by hmctl down")
        self._summarise({}, {})  # networks without a running node, and what stands on them
        return stopped


def _unchanged(
    the_plan: Plan, lives: Mapping[ResourceKey, Live], drifted: Mapping[ResourceKey, str]
) -> dict[ResourceKey, Live]:
    """The resources the pass leaves alone (no change, or drift left by policy), as this pass
    observed them."""
    return {
        item.key: lives[item.key]
        for item in the_plan.items
        if (item.action is Action.NOOP or item.key in drifted) and item.key in lives
    }


def _applied_words(item: PlanItem) -> tuple[str, str]:
    """The event reason and the verb for a create or update that worked: ``Created``,
    ``Updated (spec.listen)``, or ``Repaired (process not running)`` for drift alone."""
    if item.action is Action.CREATE:
        return "Created", "created"
    if not item.diffs:
        return "Repaired", f"repaired ({'; '.join(map(str, item.drift))})"
    return "Updated", f"updated ({', '.join(d.field for d in item.diffs)})"


Hold = Literal["stalled", "waiting", "backoff"]
"""Why a change is held back in a pass (``Reconciler._hold``)."""


def _generation(contexts: Mapping[ResourceKey, ApplyContext], key: ResourceKey) -> int:
    return contexts[key].generation if key in contexts else 0


def _handle(driver: Driver, resource: Resource, record: ResourceRecord | None) -> Mapping[str, Any]:
    """Where the driver finds the resource: the handle the store has, else a new one."""
    return (record.handle if record and record.handle else None) or driver.handle_for(resource)


def _require_valid(resource: Resource) -> None:
    """Refuse, before any driver sees it, a resource its kind's schema refuses (an address
    with port 70000, a name with a newline): ``hmctl`` never hands one over, but other code
    may, and no driver has to guess what a bad value would do."""
    problems = resource_problems(resource)
    if problems:
        raise PermanentError(
            "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems),
            reason="InvalidSpec",
        )


def _known_specs(
    records: Iterable[ResourceRecord], desired: DesiredState
) -> dict[ResourceKey, Mapping[str, Any]]:
    """What belongs to which network: the store's specs (last applied, else declared), then the
    files' for what the store does not know."""
    return specs_of(((r.key, r.applied or (r.desired or {}).get("spec")) for r in records), desired)


def _kind_waves(keys: list[ResourceKey]) -> list[list[ResourceKey]]:
    """``keys`` grouped by kind, dependents first (the order of deletes)."""
    waves: dict[int, list[ResourceKey]] = {}
    for key in keys:
        waves.setdefault(KIND_ORDER.get(key.kind, len(KIND_ORDER)), []).append(key)
    return [waves[r] for r in sorted(waves, reverse=True)]


def _summary(gone: Counter[str]) -> str:
    """``2 node(s), 1 TLD(s) and 1 record(s)``, in creation order."""
    names = {"TLD": "TLD(s)", "InterfacePolicy": "interface policy(ies)"}
    parts = [
        f"{gone[kind]} {names.get(kind, kind.lower() + '(s)')}"
        for kind in sorted(gone, key=lambda k: KIND_ORDER.get(k, len(KIND_ORDER)))
    ]
    if not parts:
        return "nothing (no resource of it was left)"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _waves(the_plan: Plan, skip: Mapping[ResourceKey, str]) -> list[list[PlanItem]]:
    """Changes (but ``skip``) grouped so that each group may run in parallel: creates and
    updates a kind at a time in dependency order, then deletes a kind at a time in reverse
    order."""
    forward: dict[int, list[PlanItem]] = {}
    backward: dict[int, list[PlanItem]] = {}
    for item in the_plan.changes:
        if item.key in skip:
            continue
        rank = KIND_ORDER.get(item.key.kind, len(KIND_ORDER))
        target = backward if item.action is Action.DELETE else forward
        target.setdefault(rank, []).append(item)
    return [forward[r] for r in sorted(forward)] + [
        backward[r] for r in sorted(backward, reverse=True)
    ]
