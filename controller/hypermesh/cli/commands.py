"""The hmctl commands that touch the state and the world: diff, apply, up, controller, down,
get, describe, delete. ``main.py`` imports this module only when one of them runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.status import Status
from watchfiles import Change, awatch

from hypermesh import API_VERSION
from hypermesh.cli.common import nothing_declared, state_dir
from hypermesh.cli.logs import setup_logging
from hypermesh.cli.render import (
    Palette,
    age,
    error,
    mask_secrets,
    plan_json,
    render_plan,
    table,
    to_json,
    to_yaml,
    use_colour,
)
from hypermesh.cli.source import GitSource, open_source
from hypermesh.drivers import standalone_drivers
from hypermesh.errors import (
    LockHeldError,
    ManifestError,
    PruneRefused,
    StateError,
    UsageError,
)
from hypermesh.model.resources import DesiredState, ResourceKey, canonical_json
from hypermesh.model.schemas import KINDS, kind_from_alias
from hypermesh.model.validate import ManifestSet, load_desired
from hypermesh.plan import Action, Plan, PlanItem
from hypermesh.plan import plan as make_plan
from hypermesh.plan.expiry import rfc3339
from hypermesh.reconcile import PassResult, Reconciler, ReconcileSettings, gitops
from hypermesh.reconcile.conditions import READY, Condition, condition, set_condition
from hypermesh.reconcile.summary import Readiness, overlay, summarise
from hypermesh.store import ControllerState, ResourceRecord, StateLock, StateStore
from hypermesh.store.store import DB_FILE

log = logging.getLogger("hypermesh.cli")

# -- the workspace: where state lives ----------------------------------------------------------


def open_store(args: argparse.Namespace, *, create: bool = True) -> StateStore | None:
    directory = state_dir(args)
    if not create and not (directory / DB_FILE).exists():
        return None
    return StateStore.open(directory)


def make_reconciler(
    args: argparse.Namespace, store: StateStore, printer: _ProgressPrinter | None = None
) -> Reconciler:
    settings = ReconcileSettings(parallelism=max(1, getattr(args, "parallelism", 8)))
    return Reconciler(
        store,
        standalone_drivers(state_dir(args)),
        settings,
        on_progress=printer.show if printer else None,
    )


class _ProgressPrinter:
    """One line per thing done; on a terminal also a spinner that counts what is in flight.
    Piped output stays plain lines."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.palette = Palette(use_colour(stream))
        self.console = Console(file=stream, highlight=False) if stream.isatty() else None
        self.status: Status | None = None
        self.started = 0
        self.finished = 0

    def show(self, what: str, key: ResourceKey, message: str) -> None:
        p = self.palette
        label = key.lowercase()
        if what == "start":
            self.started += 1
            self._spin(f"{label}: {message}")
            return
        self.finished += 1
        if what == "done":
            line = f"{p.green('✓')} {label} {message}"
        elif what == "stalled":
            line = f"{p.yellow('!')} {label} {message}"
        else:
            line = f"{p.red('✗')} {label} {message}"
        if self.console is not None:
            self.console.out(line)
            self._spin(f"{self.finished} of {self.started} done")
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _spin(self, text: str) -> None:
        if self.console is None:
            return
        if self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _desired(args: argparse.Namespace, *, allow_empty: bool = False) -> DesiredState:
    """The validated manifests of ``-f``; declaring nothing is an error unless allowed (a
    ``--prune`` of everything, which the prune guard then questions)."""
    desired = load_desired(args.files, sys.stdin.buffer)
    if not len(desired) and not allow_empty:
        raise ManifestError(nothing_declared(list(desired.files)))
    return desired


# -- validate / diff ---------------------------------------------------------------------------


def diff(args: argparse.Namespace) -> int:
    desired = _desired(args, allow_empty=args.prune)
    store = open_store(args, create=False)
    if store is None:
        the_plan = make_plan(desired, [], prune=args.prune)
    else:
        reconciler = make_reconciler(args, store)
        the_plan = asyncio.run(reconciler.plan(desired, prune=args.prune))
        store.close()
    if args.output == "json":
        sys.stdout.write(plan_json(the_plan) + "\n")
    else:
        sys.stdout.write(render_plan(the_plan, Palette(use_colour(sys.stdout)), verbose=args.all))
    return 1 if the_plan.has_changes else 0


# -- apply / up / controller / down --------------------------------------------------------


def _prune_guard(the_plan: Plan, desired: DesiredState, store: StateStore, force: bool) -> None:
    deletes = [i.key for i in the_plan.items if i.action is Action.DELETE]
    _check_prune(deletes, desired, store, force)


def _undeclared(desired: DesiredState, store: StateStore) -> list[ResourceKey]:
    """What a pass with ``--prune`` would delete: the inventory minus what is declared."""
    declared = desired.by_key()
    return [r.key for r in store.records() if r.managed and r.key not in declared]


def _check_prune(
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


def apply(args: argparse.Namespace) -> int:
    desired = _desired(args, allow_empty=args.prune)
    directory = state_dir(args)
    with StateLock(directory, "hmctl apply"):
        setup_logging(directory, verbose=args.verbose)
        store = StateStore.open(directory)
        printer = _ProgressPrinter(sys.stdout)
        reconciler = make_reconciler(args, store, printer)
        if store.controller().suspended:
            print("note: the controller is suspended (hmctl controller resume); applying anyway")

        async def run() -> int:
            the_plan = await reconciler.plan(desired, prune=args.prune)
            _prune_guard(the_plan, desired, store, args.force)
            if args.dry_run:
                sys.stdout.write(render_plan(the_plan, Palette(use_colour(sys.stdout))))
                print("(dry run: nothing was changed)")
                return 0
            if the_plan.has_changes:
                print(f"Plan: {the_plan.summary()}.")
            else:
                print("no changes: the world matches the manifests")
            await reconciler.converge(desired, prune=args.prune, timeout=args.timeout)
            printer.close()
            return _report(store)

        try:
            return asyncio.run(run())
        finally:
            printer.close()
            store.close()


def _report(store: StateStore) -> int:
    records = store.records()
    not_ready = []
    for record in records:
        if record.desired is None:
            continue
        ready = condition(record.status.get("conditions", []), READY)
        if ready is None or ready.get("status") != "True":
            reason = ready.get("reason", "Pending") if ready else "Pending"
            message = ready.get("message", "") if ready else "not reconciled yet"
            not_ready.append((str(record.key), reason, message))
    declared = sum(1 for r in records if r.desired is not None)
    if not not_ready:
        print(f"converged: {declared} resources ready")
        return 0
    print(f"not converged: {len(not_ready)} of {declared} resources are not ready")
    sys.stdout.write(table(["RESOURCE", "REASON", "MESSAGE"], not_ready))
    return 1


PULL_TIMEOUT = 60.0
"""Seconds a ``git pull`` may take before it is killed and reported as failed."""

SUSPEND_POLL = 1.0
"""While waiting between passes, how often the loop looks whether it was suspended or resumed."""

_VERBS = {Action.CREATE: "created", Action.UPDATE: "updated", Action.DELETE: "deleted"}


class _GitOpsLoop:
    """The passes of ``hmctl controller run`` and ``hmctl up`` after the first apply: reads the
    source (pulling it with ``--git-pull``), reloads the manifests when their content changed,
    runs a pass (or, while suspended, only observes and plans) and records the revision and
    conditions in the state store (``hmctl controller status``)."""

    def __init__(
        self,
        args: argparse.Namespace,
        store: StateStore,
        reconciler: Reconciler,
        printer: _ProgressPrinter,
        stop: asyncio.Event,
    ) -> None:
        self.args = args
        self.store = store
        self.reconciler = reconciler
        self.printer = printer
        self.stop = stop
        self.stdin = "-" in args.files
        self.watched = [] if self.stdin else list(args.files)
        self.source = open_source(self.watched)
        self.pulling = bool(getattr(args, "git_pull", False))
        if self.pulling and not isinstance(self.source, GitSource):
            raise UsageError("--git-pull needs -f paths inside one git work tree")
        self.pull_every = float(getattr(args, "pull_interval", None) or args.interval)
        self.next_pull = 0.0
        self.pull_error: str | None = None
        self.manifests = ManifestSet(self.watched)
        self.desired = DesiredState.of(())
        self.revision = ""
        self.loaded = ""
        """The content digest of ``desired``."""
        self.bad = self.bad_revision = ""
        """The content digest (and revision) of manifests that did not validate (reported once)."""
        self.invalid_error: ManifestError | None = None
        self.suspended = False
        self.pending: tuple[str, ...] = ()
        self.last_key: tuple[str, str, bool, str] | None = None
        """What the last line printed after a pass said: a pass that says the same is quiet."""
        self.status = gitops.started(
            gitops.LoopStatus.from_json(store.controller().status),
            self.source.describe(),
            args.interval,
            args.prune,
        )
        self.changed = asyncio.Event()

    # -- the source ---------------------------------------------------------------------

    async def pull(self) -> None:
        if not self.pulling or time.monotonic() < self.next_pull:
            return
        self.next_pull = time.monotonic() + self.pull_every
        problem = await asyncio.to_thread(self.source.pull, PULL_TIMEOUT)
        self.status = gitops.source_result(self.status, problem, _utcnow())
        if problem != self.pull_error:
            if problem is None:
                print("git pull: ok")
            else:
                error(f"git pull failed, keeping the last good files: {problem}")
            log.log(
                logging.INFO if problem is None else logging.WARNING,
                "git pull: %s",
                problem or "ok",
            )
        self.pull_error = problem

    async def read(self) -> bool:
        """Take the source's snapshot and reload the manifests if their content changed.
        False when the files do not validate (the last good desired state stays)."""
        if self.stdin:
            if not self.revision:
                self.desired = _desired(self.args, allow_empty=self.args.prune)
                self.revision = self.loaded = _stdin_digest(self.desired)
            return True
        snap = await asyncio.to_thread(self.source.snapshot)
        if snap.revision != self.revision and self.revision:  # a new commit, or new files
            described = await asyncio.to_thread(self.source.describe)
            self.status = replace(self.status, source=described)
        if snap.digest == self.loaded:
            self.bad = ""
            self.revision = snap.revision
            return True
        if snap.digest == self.bad:
            if snap.revision != self.bad_revision:  # the same bad files, committed (or amended)
                self.bad_revision = snap.revision
                assert self.invalid_error is not None
                problems = [str(p) for p in self.invalid_error.problems]
                self.status = gitops.invalid(self.status, snap.revision, problems, _utcnow())
            return False
        try:
            desired = self.manifests.load()
            if not len(desired) and not self.args.prune:
                raise ManifestError(nothing_declared(list(desired.files)))
        except ManifestError as exc:
            self.bad, self.bad_revision, self.invalid_error = snap.digest, snap.revision, exc
            problems = [str(p) for p in exc.problems]
            for problem in problems:
                sys.stderr.write(f"{problem}\n")
            error(
                f"revision {gitops.short(snap.revision)} is invalid; keeping "
                f"{gitops.short(self.revision) or 'nothing'}"
            )
            log.info("revision %s is invalid: %s", snap.revision, "; ".join(problems))
            self.status = gitops.invalid(self.status, snap.revision, problems, _utcnow())
            return False
        first = not self.loaded
        self.desired, self.loaded, self.revision, self.bad = desired, snap.digest, snap.revision, ""
        if not first:
            print(f"revision {gitops.short(snap.revision)}: {len(desired)} resources declared")
            log.info("revision %s: %d resources declared", snap.revision, len(desired))
        return True

    # -- passes ---------------------------------------------------------------------------

    def _save(self) -> None:
        try:
            self.store.set_controller_status(self.status.to_json())
        except StateError as exc:
            error(str(exc))

    async def first(self) -> PassResult | None:
        """The apply that starts the loop: converge (within ``--timeout``) unless suspended."""
        await self.pull()
        valid = await self.read()
        if not valid and not self.loaded:
            assert self.invalid_error is not None
            raise self.invalid_error  # nothing good to fall back on: refuse to start
        self.suspended = self.store.controller().suspended
        if self.suspended:
            await self.observe_only()
            return None
        the_plan = await self.reconciler.plan(self.desired, prune=self.args.prune)
        _prune_guard(the_plan, self.desired, self.store, self.args.force)
        print(f"Plan: {the_plan.summary()}.")
        self.status = gitops.applying(self.status, self.revision, _utcnow())
        self._save()
        started = time.monotonic()
        result = await self.reconciler.converge(
            self.desired, prune=self.args.prune, timeout=self.args.timeout
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
            if state.suspended:
                print(f"suspended{': ' + state.reason if state.reason else ''}: observing only")
            else:
                print("resumed")
            log.info("%s %s", "suspended" if state.suspended else "resumed", state.reason)
        if self.suspended:
            await self.observe_only(state.reason)
            return
        prune, refused = self.args.prune, ""
        if prune:
            try:
                _check_prune(
                    _undeclared(self.desired, self.store), self.desired, self.store, self.args.force
                )
            except PruneRefused as exc:
                prune, refused = False, str(exc)
        if valid:
            self.status = gitops.applying(self.status, self.revision, _utcnow())
            self._save()
        started = time.monotonic()
        try:
            result = await self.reconciler.run_pass(self.desired, prune=prune)
        except StateError as exc:
            error(str(exc))
            return
        finally:
            self.printer.close()
        self.finish(result, time.monotonic() - started, refused)

    def finish(self, result: PassResult, seconds: float, refused: str) -> None:
        outcome = _outcome(result, self.revision, seconds, refused, self.store)
        self.status = gitops.finished(
            self.status, outcome, _utcnow(), stall_after=self.args.timeout
        )
        self._save()
        line = f"pass {gitops.short(self.revision)} ({seconds:.2f}s): "
        if outcome.changes:
            line += ", ".join(outcome.changes)
        else:
            line += "no changes"
        if refused:
            line += f"; prune refused: {refused}"
        elif not outcome.converged:
            line += f"; not converged: {gitops.describe_failing(outcome.failing)}"
        log.info("%s", line)
        key = (
            self.revision,
            refused,
            bool(self.status.problems),
            "" if outcome.converged else gitops.describe_failing(outcome.failing),
        )
        if outcome.changes or key != self.last_key or self.args.verbose:
            print(line)
            sys.stdout.flush()
        self.last_key = key

    async def observe_only(self, reason: str = "") -> None:
        """A pass while suspended: observe and plan, report drift, change nothing."""
        started = time.monotonic()
        try:
            the_plan = await self.reconciler.plan(self.desired, prune=self.args.prune)
        except StateError as exc:
            error(str(exc))
            return
        pending = tuple(_pending(item) for item in the_plan.changes)
        self.status = gitops.suspended(self.status, pending, reason, _utcnow())
        self.status = replace(self.status, last_pass_seconds=round(time.monotonic() - started, 3))
        self._save()
        line = f"suspended, {gitops.short(self.revision)}: " + (
            f"{len(pending)} change(s) waiting: {', '.join(pending)}" if pending else "no drift"
        )
        log.info("%s", line)
        if pending != self.pending:
            print(line)
            sys.stdout.flush()
        self.pending = pending

    # -- waiting --------------------------------------------------------------------------

    def pause(self) -> float:
        """Seconds until the next pass: the interval, or sooner for a retry that is due, an
        ephemeral network that expires, or a pull."""
        now = time.monotonic()
        pause = float(self.args.interval)
        due = self.reconciler.backoff.next_due()
        if due is not None:
            pause = min(pause, due - now)
        expiry = gitops.next_expiry(self.store.records("Network"), _utcnow())
        if expiry is not None:
            pause = min(pause, (expiry - _utcnow()).total_seconds() + 0.2)
        if self.pulling:
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
                {waiter, stopper}, timeout=min(left, SUSPEND_POLL), return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
            stopper.cancel()
            with contextlib.suppress(StateError):
                if self.store.controller().suspended != self.suspended:
                    return
        self.changed.clear()

    async def watch(self) -> None:
        if not self.watched:
            return
        async for _ in awatch(
            *self.watched,
            stop_event=self.stop,
            debounce=200,
            step=50,
            watch_filter=_manifest_change,
        ):
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


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _manifest_change(change: Change, path: str) -> bool:
    """What wakes the loop: a manifest file, not git's own files or an editor's."""
    return path.endswith((".yaml", ".yml")) and "/.git/" not in path


def _stdin_digest(desired: DesiredState) -> str:
    text = canonical_json([r.to_manifest() for r in desired])
    return gitops.content_digest([("<stdin>", text.encode())])


def _pending(item: PlanItem) -> str:
    what = f"{item.action.value} {item.key}"
    if item.diffs:
        return f"{what} ({', '.join(d.field for d in item.diffs)})"
    if item.drift:
        return f"{what} ({'; '.join(item.drift)})"
    return what


def _outcome(
    result: PassResult, revision: str, seconds: float, refused: str, store: StateStore
) -> gitops.PassOutcome:
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

    failing: dict[str, str] = {}
    for group in (result.waiting, result.unready, result.failed, result.stalled):
        failing.update({name(k): v for k, v in group.items()})
    if result.converged:
        failing = {}
    return gitops.PassOutcome(
        revision=revision,
        converged=result.converged,
        seconds=seconds,
        changes=tuple(changes),
        failing=failing,
        permanent=bool(result.stalled),
        refused=refused,
    )


def _run_loop(args: argparse.Namespace, purpose: str, *, stop_nodes: bool) -> int:
    directory = state_dir(args)
    with StateLock(directory, purpose):
        setup_logging(directory, verbose=args.verbose)
        store = StateStore.open(directory)
        printer = _ProgressPrinter(sys.stdout)
        reconciler = make_reconciler(args, store, printer)

        async def run() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            control = _GitOpsLoop(args, store, reconciler, printer, stop)
            result = await control.first()
            printer.close()
            if result is not None:
                _report(store)
            print(
                f"{purpose}: reconciling every {args.interval:g}s "
                f"({control.source.kind} source, revision {gitops.short(control.revision)}); "
                "Ctrl-C to stop"
            )
            sys.stdout.flush()
            await control.run()
            if stop_nodes:
                stopped = await reconciler.stop_all()
                print(f"stopped {len(stopped)} node(s)")
            return 0

        try:
            return asyncio.run(run())
        finally:
            printer.close()
            store.close()


def up(args: argparse.Namespace) -> int:
    return _run_loop(args, "hmctl up", stop_nodes=True)


def controller(args: argparse.Namespace) -> int:
    return _run_loop(args, "hmctl controller run", stop_nodes=False)


def controller_suspend(args: argparse.Namespace) -> int:
    store = StateStore.open(state_dir(args))
    try:
        changed = store.set_suspended(True, args.reason)
    finally:
        store.close()
    reason = f" ({args.reason})" if args.reason else ""
    print(f"controller suspended{reason}" if changed else "controller was already suspended")
    return 0


def controller_resume(args: argparse.Namespace) -> int:
    store = open_store(args, create=False)
    if store is None:
        print(f"nothing to resume: no state in {state_dir(args)}")
        return 0
    try:
        changed = store.set_suspended(False)
    finally:
        store.close()
    print("controller resumed" if changed else "controller was not suspended")
    return 0


def _controller_object(args: argparse.Namespace, state: ControllerState) -> dict[str, Any]:
    """The loop as a Kubernetes-style object, as Flux shows a Kustomization."""
    status = gitops.LoopStatus.from_json(state.status)
    holder = StateLock(state_dir(args), "hmctl controller status").holder() or {}
    running = None
    if str(holder.get("command", "")) in ("hmctl up", "hmctl controller run") and _alive(
        holder.get("pid")
    ):
        running = {k: holder.get(k) for k in ("command", "pid", "host", "since")}
    body = status.to_json()
    spec = {
        "source": body.pop("source"),
        "interval": body.pop("interval"),
        "prune": body.pop("prune"),
        "suspend": state.suspended,
    }
    body.update(
        {
            "suspended": state.suspended,
            "suspendReason": state.reason,
            "suspendedAt": _stamp(state.suspended_at),
            "running": running,
            "updatedAt": _stamp(state.updated_at),
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "Controller",
        "metadata": {"name": "default"},
        "spec": spec,
        "status": body,
    }


def _stamp(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def controller_status(args: argparse.Namespace) -> int:
    store = open_store(args, create=False)
    if store is None:
        raise UsageError(f"no state in {state_dir(args)}")
    try:
        state = store.controller()
    finally:
        store.close()
    obj = _controller_object(args, state)
    if args.output == "json":
        sys.stdout.write(to_json(obj) + "\n")
        return 0
    if args.output == "yaml":
        sys.stdout.write(to_yaml(obj))
        return 0
    spec, status = obj["spec"], obj["status"]
    source = spec["source"]
    if not source:
        where = "<no loop has run against this state>"
    elif source.get("type") == "git":
        where = f"git {source.get('remote') or '<no remote>'} branch {source.get('branch')} "
        where += f"in {source.get('path')}"
    else:
        where = "folder " + ", ".join(source.get("paths", []))
    running = status["running"]
    suspended = "no"
    if state.suspended:
        suspended = f"yes, for {age(status['suspendedAt'])}"
        suspended += f": {state.reason}" if state.reason else ""
    lines = [
        f"Source:          {where}",
        f"Interval:        {spec['interval']:g}s, prune {'on' if spec['prune'] else 'off'}"
        if source
        else "Interval:        -",
        "Running:         "
        + (f"yes, {running['command']} (pid {running['pid']})" if running else "no"),
        f"Suspended:       {suspended}",
        f"Last applied:    {status['lastAppliedRevision'] or '-'}"
        + (f" ({age(status['lastAppliedAt'])} ago)" if status["lastAppliedAt"] else ""),
        f"Last attempted:  {status['lastAttemptedRevision'] or '-'}",
        "Last pass:       "
        + (
            f"{age(status['lastPassAt'])} ago, took {status['lastPassSeconds']:g}s"
            + (f": {', '.join(status['lastPassChanges'])}" if status["lastPassChanges"] else "")
            if status["lastPassAt"]
            else "-"
        ),
    ]
    if status["pending"]:
        lines.append("Waiting changes: " + "; ".join(status["pending"]))
    conditions = status["conditions"]
    lines.append("Conditions:")
    lines.append(_indent(_conditions_table(conditions)))
    sys.stdout.write("\n".join(line.rstrip("\n") for line in lines) + "\n")
    return 0


def down(args: argparse.Namespace) -> int:
    directory = state_dir(args)
    if not (directory / DB_FILE).exists():
        print(f"nothing to stop: no state in {directory}")
        return 0
    lock = StateLock(directory, "hmctl down")
    try:
        lock.acquire()
    except LockHeldError:
        holder = lock.holder() or {}
        pid = holder.get("pid")
        command = str(holder.get("command", ""))
        if not isinstance(pid, int) or command not in ("hmctl up", "hmctl controller run"):
            raise
        print(f"stopping {command} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while True:
            try:
                lock.acquire()
                break
            except LockHeldError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    try:
        store = StateStore.open(directory)
        printer = _ProgressPrinter(sys.stdout)
        reconciler = make_reconciler(args, store, printer)
        stopped = asyncio.run(reconciler.stop_all())
        for key in stopped:
            print(f"{key.lowercase()} stopped")
        print(f"stopped {len(stopped)} node(s)")
        store.close()
    finally:
        lock.release()
    return 0


# -- get / describe / delete ---------------------------------------------------------------


def _kinds(text: str) -> list[str]:
    if text == "all":
        return list(KINDS)
    kind = kind_from_alias(text)
    if kind is None:
        raise UsageError(
            f"unknown resource kind {text!r}; try one of: "
            "networks, nodes, peers, tlds, records, interfacepolicies, all"
        )
    return [kind]


def _live_records(
    args: argparse.Namespace, store: StateStore, kinds: Sequence[str]
) -> list[ResourceRecord]:
    """Records with their live status refreshed from the world (nodes are probed)."""
    records = [r for r in store.records() if r.key.kind in kinds]
    reconciler = make_reconciler(args, store)

    async def refresh() -> list[ResourceRecord]:
        _, lives = await reconciler.observe()
        # Networks count their nodes as they are now; what stands on them follows.
        nodes = {k: v for k, v in lives.items() if k.kind == "Node"}
        summaries = summarise(
            store.records(),
            {
                k: Readiness(v.ready, "Converged" if v.ready else v.reason, v.message)
                for k, v in nodes.items()
            },
        )
        now = rfc3339(_utcnow())
        out = []
        for record in records:
            live = lives.get(record.key)
            summary = summaries.get(record.key)
            if summary is not None and record.key.kind != "Node":
                record = _with_status(record, overlay(record, summary, now))
            if live is not None and record.key.kind == "InterfacePolicy":
                out.append(_with_status(record, _probed(record.status, live.status, live.reason)))
                continue
            if live is None or record.key.kind != "Node":
                out.append(record)
                continue
            status = dict(record.status)
            for name in ("pid", "address"):
                status.pop(name, None)
            status.update(live.status)
            status["phase"] = live.reason
            out.append(_with_status(record, status))
        return out

    return asyncio.run(refresh())


def _probed(status: Mapping[str, Any], probed: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """A policy's status with the probe just made: its fields, and its ``Enforced`` condition
    set among the stored ones."""
    out = dict(status) | {k: v for k, v in probed.items() if k != "conditions"}
    conditions: list[dict[str, Any]] = list(status.get("conditions", []))
    for cond in probed.get("conditions", []):
        new = Condition(
            str(cond["type"]),
            str(cond["status"]),
            str(cond["reason"]),
            str(cond.get("message", "")),
            int(cond.get("observedGeneration", 0)),
        )
        conditions = set_condition(conditions, new, str(cond["lastTransitionTime"]))
    out["conditions"] = conditions
    out["phase"] = reason
    return out


def _with_status(record: ResourceRecord, status: Mapping[str, Any]) -> ResourceRecord:
    return replace(record, status=status)


def _object(record: ResourceRecord) -> dict[str, Any]:
    manifest = dict(record.desired) if record.desired else None
    metadata: dict[str, Any] = dict(manifest["metadata"]) if manifest else {"name": record.key.name}
    if record.key.namespace:
        metadata["namespace"] = record.key.namespace
    status = dict(record.status)
    status.pop("stalledMessage", None)
    # Kept out of metadata so that `get -o yaml` output applies back unchanged.
    status["generation"] = record.generation
    status["declared"] = record.declared
    status["managed"] = record.managed
    spec = manifest["spec"] if manifest else (record.applied or {})
    return {
        "apiVersion": API_VERSION,
        "kind": record.key.kind,
        "metadata": metadata,
        "spec": mask_secrets(spec),
        "status": status,
    }


def _ready(record: ResourceRecord) -> tuple[str, str]:
    cond = condition(record.status.get("conditions", []), READY)
    if cond is None:
        return "Unknown", "Pending"
    return str(cond.get("status")), str(cond.get("reason"))


def get(args: argparse.Namespace) -> int:
    kinds = _kinds(args.kind)
    store = open_store(args, create=False)
    records: list[ResourceRecord] = []
    if store is not None:
        records = _live_records(args, store, kinds)
        store.close()
    if args.name:
        records = [r for r in records if r.key.name == args.name]
        if not records:
            raise UsageError(f"{kinds[0]} {args.name!r} not found in {state_dir(args)}")
    if args.output == "json":
        sys.stdout.write(
            to_json({"apiVersion": "v1", "kind": "List", "items": [_object(r) for r in records]})
            + "\n"
        )
        return 0
    if args.output == "yaml":
        sys.stdout.write(
            to_yaml({"apiVersion": "v1", "kind": "List", "items": [_object(r) for r in records]})
        )
        return 0
    if args.output == "name":
        for r in records:
            print(r.key.lowercase())
        return 0
    if not records:
        sys.stderr.write(f"no resources found in {state_dir(args)}\n")
        return 0
    wide = args.output == "wide"
    for kind in kinds:
        rows = [r for r in records if r.key.kind == kind]
        if not rows:
            continue
        if len(kinds) > 1:
            print(f"# {kind}")
        headers, cells = _columns(kind, rows, wide)
        sys.stdout.write(table(headers, cells))
    return 0


def _columns(
    kind: str, records: list[ResourceRecord], wide: bool
) -> tuple[list[str], list[list[Any]]]:
    headers = ["NAME", "READY", "REASON"]
    extra: list[str] = []
    wide_extra: list[str] = []
    if kind == "Node":
        extra = ["NETWORK", "ADDRESS", "IDENTITY"]
        wide_extra = ["PID", "ROLES", "INTERFACES", "GENERATION", "SERIAL", "LAG"]
    elif kind == "Network":
        extra = ["MODE", "NODES"]
        wide_extra = ["TTL", "EXPIRES"]
    elif kind == "Peer":
        extra = ["NETWORK", "ADDRESS"]
    elif kind == "TLD":
        extra = ["NETWORK", "OWNER"]
    elif kind == "Record":
        extra = ["TLD", "TYPE"]
    elif kind == "InterfacePolicy":
        extra = ["NETWORK", "INTERFACE"]
        wide_extra = ["ENFORCED", "PROBES", "MISMATCHES"]
    headers = headers + extra + (wide_extra if wide else []) + ["AGE"]
    rows: list[list[Any]] = []
    authority = _registry_serials(records) if kind == "Node" else {}
    for record in records:
        spec: Mapping[str, Any] = (
            record.desired["spec"] if record.desired else (record.applied or {})
        )
        status = record.status
        ready, reason = _ready(record)
        row: list[Any] = [record.key.name, ready, status.get("phase") or reason]
        if kind == "Node":
            identity = str(status.get("identity") or "")
            row += [spec.get("network"), status.get("address"), identity if wide else identity[:12]]
            if wide:
                row += [
                    status.get("pid"),
                    spec.get("roles"),
                    spec.get("interfaces"),
                    record.generation,
                    *_serial_and_lag(spec, status, authority.get(str(spec.get("network")))),
                ]
        elif kind == "Network":
            counted = status.get("nodes")
            if counted is not None and status.get("readyNodes") is not None:
                counted = f"{status['readyNodes']}/{counted}"  # ready of those in it
            row += [spec.get("mode"), counted]
            if wide:  # a torn-down ephemeral network keeps only when it expired
                row += [spec.get("ttl"), status.get("expiresAt") or status.get("expiredAt")]
        elif kind == "Peer":
            row += [spec.get("network"), spec.get("address")]
        elif kind == "TLD":
            owner = spec.get("owner", {})
            row += [spec.get("network"), "/".join(f"{k}/{v}" for k, v in owner.items())]
        elif kind == "Record":
            row += [spec.get("tld"), spec.get("type", "HTTPS")]
        elif kind == "InterfacePolicy":
            row += [spec.get("network"), spec.get("interface")]
            if wide:
                enforced = condition(status.get("conditions", []), "Enforced") or {}
                mismatches = status.get("mismatches")
                row += [
                    enforced.get("status", "Unknown"),
                    status.get("probes", "-"),
                    len(mismatches) if isinstance(mismatches, list) else "-",
                ]
        row.append(age(status.get("startedAt") or record.updated_at))
        rows.append(row)
    return headers, rows


def _registry_serials(records: list[ResourceRecord]) -> dict[str, dict[str, int]]:
    """Each network's zone serials as its registry node reports them."""
    out: dict[str, dict[str, int]] = {}
    for record in records:
        spec = record.desired["spec"] if record.desired else (record.applied or {})
        zones = record.status.get("zones")
        if "registry" in spec.get("roles", ()) and isinstance(zones, dict):
            out[str(spec.get("network"))] = {str(k): int(v) for k, v in zones.items()}
    return out


def _serial_and_lag(
    spec: Mapping[str, Any], status: Mapping[str, Any], authority: dict[str, int] | None
) -> tuple[str, str]:
    """SERIAL: ``zone=serial`` for each zone served; LAG: how many serials the node is behind
    its registry, summed over the registry's zones (``-`` for the registry itself, or when
    either side is not known)."""
    zones = status.get("zones")
    if not isinstance(zones, dict):
        return "-", "-"
    serial = ",".join(f"{name.rstrip('.')}={value}" for name, value in sorted(zones.items()))
    if "registry" in spec.get("roles", ()) or authority is None:
        return serial or "-", "-"
    lag = sum(max(0, value - int(zones.get(name, 0))) for name, value in authority.items())
    return serial or "-", str(lag)


def describe(args: argparse.Namespace) -> int:
    kind = _kinds(args.kind)[0]
    store = open_store(args, create=False)
    if store is None:
        raise UsageError(f"no state in {state_dir(args)}")
    records = [r for r in _live_records(args, store, [kind]) if r.key.name == args.name]
    if not records:
        store.close()
        raise UsageError(f"{kind} {args.name!r} not found in {state_dir(args)}")
    record = records[0]
    events = store.events(record.key, limit=20)
    store.close()
    obj = _object(record)
    status = dict(obj["status"])
    conditions = status.pop("conditions", [])
    out = [
        f"Name:         {record.key.name}",
        f"Kind:         {record.key.kind}",
        f"Generation:   {record.generation} (applied: {record.applied_generation})",
        f"Declared at:  {record.source or '<not declared>'}",
        f"Managed:      {'yes' if record.managed else 'no'}",
        "Spec:",
        _indent(to_yaml(obj["spec"])),
        "Status:",
        _indent(to_yaml(status)),
        "Conditions:",
        _indent(_conditions_table(conditions)),
        "Events:",
        _indent(
            table(
                ["AGE", "TYPE", "REASON", "MESSAGE"],
                [[age(e.at.replace(tzinfo=UTC)), e.type, e.reason, e.message] for e in events],
            )
            if events
            else "<none>\n"
        ),
    ]
    sys.stdout.write("\n".join(line.rstrip("\n") for line in out) + "\n")
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines())


def delete(args: argparse.Namespace) -> int:
    directory = state_dir(args)
    if args.files:
        keys = [r.key for r in _desired(args)]
    elif args.kind and args.name:
        kind = _kinds(args.kind)[0]
        keys = [ResourceKey(kind, name) for name in args.name]
    else:
        raise UsageError("name what to delete: hmctl delete KIND NAME..., or -f PATH")
    if not (directory / DB_FILE).exists():
        raise UsageError(f"no state in {directory}")
    with StateLock(directory, "hmctl delete"):
        store = StateStore.open(directory)
        drivers = standalone_drivers(directory)
        missing = [k for k in keys if store.record(k) is None]
        if missing and not args.files:
            store.close()
            raise UsageError(f"not found: {', '.join(map(str, missing))}")

        async def run() -> None:
            for key in sorted(keys, key=lambda k: k.order, reverse=True):
                record = store.record(key)
                if record is None:
                    continue
                if record.managed:
                    await drivers[key.kind].delete(key, record.handle)
                store.forget(key)
                store.add_event(key, "Normal", "Deleted", "deleted by hmctl delete")
                print(f"{key.lowercase()} deleted")

        asyncio.run(run())
        store.close()
    return 0


def _conditions_table(conditions: list[dict[str, Any]]) -> str:
    """Conditions as ``describe`` shows them (``<none>`` when there are none)."""
    if not conditions:
        return "<none>\n"
    rows = [
        [
            c.get("type"),
            c.get("status"),
            c.get("reason"),
            age(c.get("lastTransitionTime")),
            c.get("message"),
        ]
        for c in conditions
    ]
    return table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], rows)
