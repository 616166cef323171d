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
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.status import Status

from hypermesh import API_VERSION
from hypermesh.cli.common import host_of, join_token_of, nothing_declared, state_dir
from hypermesh.cli.directory import remote_statuses
from hypermesh.cli.handover import hand_to_loop
from hypermesh.cli.logs import setup_logging
from hypermesh.cli.paths import get_paths
from hypermesh.cli.render import (
    Palette,
    age,
    error,
    mask_secrets,
    plan_json,
    render_markdown,
    render_plan,
    table,
    to_json,
    to_yaml,
    use_colour,
)
from hypermesh.drivers import standalone_drivers
from hypermesh.errors import (
    LockHeldError,
    ManifestError,
    StateError,
    UsageError,
)
from hypermesh.model.advice import warnings
from hypermesh.model.loader import missing_inputs
from hypermesh.model.placement import Placement
from hypermesh.model.resources import DesiredState, ResourceKey, canonical_json
from hypermesh.model.schemas import KINDS, kind_from_alias
from hypermesh.model.validate import ManifestSet, load_desired
from hypermesh.node.lockfile import pid_alive
from hypermesh.plan import Plan
from hypermesh.plan import plan as make_plan
from hypermesh.reconcile import Progress, Reconciler, ReconcileSettings, gitops
from hypermesh.reconcile.conditions import READY, Condition, condition, set_condition
from hypermesh.reconcile.controller import (
    ControllerLoop,
    Loader,
    LoopSettings,
    PassReport,
    prune_guard,
)
from hypermesh.reconcile.drift import DriftPolicy
from hypermesh.reconcile.notify import NotifySettings, check_url
from hypermesh.reconcile.source import FixedSource, GitSource, ManifestSource, open_source
from hypermesh.reconcile.summary import Readiness, overlay, summarise
from hypermesh.store import ControllerState, ResourceRecord, StateLock, StateStore
from hypermesh.store.store import DB_FILE
from hypermesh.timefmt import rfc3339

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
    settings = ReconcileSettings(
        parallelism=max(1, getattr(args, "parallelism", 8)),
        drift=DriftPolicy(getattr(args, "drift", None) or "correct"),
    )
    host = host_of(args)
    drivers = standalone_drivers(state_dir(args), host=host, join_token=join_token_of(args))
    return Reconciler(
        store,
        drivers,
        settings,
        on_progress=printer.show if printer else None,
        placement=Placement(host),
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

    def show(self, what: Progress, key: ResourceKey, message: str) -> None:
        p = self.palette
        label = key.lowercase()
        if what is Progress.START:
            self.started += 1
            self._spin(f"{label}: {message}")
            return
        self.finished += 1
        if what is Progress.DONE:
            line = f"{p.green('✓')} {label} {message}"
        elif what is Progress.STALLED:
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
    for warning in warnings(desired):
        sys.stderr.write(f"{warning}\n")
    return desired


# -- validate / diff ---------------------------------------------------------------------------


def diff(args: argparse.Namespace) -> int:
    desired = _desired(args, allow_empty=args.prune)
    store = open_store(args, create=False)
    if store is None:
        the_plan = make_plan(Placement(host_of(args)).split(desired)[0], [], prune=args.prune)
    else:
        reconciler = make_reconciler(args, store)
        the_plan = asyncio.run(reconciler.plan(desired, prune=args.prune))
        store.close()
    if args.output == "json":
        sys.stdout.write(plan_json(the_plan) + "\n")
    elif args.output == "markdown":
        sys.stdout.write(render_markdown(the_plan))
    else:
        sys.stdout.write(render_plan(the_plan, Palette(use_colour(sys.stdout)), verbose=args.all))
    return 1 if the_plan.has_changes else 0


# -- apply / up / controller / down --------------------------------------------------------


def apply(args: argparse.Namespace) -> int:
    desired = _desired(args, allow_empty=args.prune)
    directory = state_dir(args)
    lock = StateLock(directory, "hmctl apply")
    try:
        lock.acquire()
    except LockHeldError as held:
        if args.dry_run:
            raise
        return _handed(args, directory, lock, held)
    with lock:  # held already: released at the end
        setup_logging(directory, verbose=args.verbose)
        store = StateStore.open(directory)
        printer = _ProgressPrinter(sys.stdout)
        reconciler = make_reconciler(args, store, printer)
        if store.controller().suspended:
            print("note: the controller is suspended (hmctl controller resume); applying anyway")

        async def run() -> int:
            the_plan = await reconciler.plan(desired, prune=args.prune)
            prune_guard(the_plan, desired, store, args.force)
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


def _handed(args: argparse.Namespace, directory: Path, lock: StateLock, held: LockHeldError) -> int:
    """An apply while ``hmctl up`` or ``controller run`` holds the state: handed to that loop
    when it applies these very files (``cli.handover``), else ``held`` or what to do."""
    store = StateStore.open(directory)
    try:
        return hand_to_loop(args, store, lock.holder(), _report)
    except LockHeldError as refused:
        raise (refused if str(refused) else held) from None
    finally:
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


class _LoopPrinter:
    """What the controller loop tells, printed as ``hmctl controller run`` shows it and logged.
    A pass that says the same as the last one is quiet (unless ``--verbose``)."""

    def __init__(self, progress: _ProgressPrinter, *, verbose: bool) -> None:
        self.progress = progress
        self.verbose = verbose
        self.last_pass: tuple[str, str, bool, str] | None = None
        self.pending: tuple[str, ...] = ()

    def pulled(self, problem: str | None) -> None:
        if problem is None:
            print("git pull: ok")
        else:
            error(f"git pull failed, keeping the last good files: {problem}")
        log.log(
            logging.INFO if problem is None else logging.WARNING, "git pull: %s", problem or "ok"
        )

    def revision_loaded(self, revision: str, declared: int) -> None:
        print(f"revision {gitops.short(revision)}: {declared} resources declared")
        log.info("revision %s: %d resources declared", revision, declared)

    def revision_invalid(self, revision: str, kept: str, problems: Sequence[str]) -> None:
        for problem in problems:
            sys.stderr.write(f"{problem}\n")
        error(
            f"revision {gitops.short(revision)} is invalid; keeping "
            f"{gitops.short(kept) or 'nothing'}"
        )
        log.info("revision %s is invalid: %s", revision, "; ".join(problems))

    def suspension_changed(self, suspended: bool, reason: str) -> None:
        if suspended:
            print(f"suspended{': ' + reason if reason else ''}: observing only")
        else:
            print("resumed")
        log.info("%s %s", "suspended" if suspended else "resumed", reason)

    def planned(self, plan: Plan) -> None:
        print(f"Plan: {plan.summary()}.")

    def pass_done(self, report: PassReport) -> None:
        self.progress.close()
        outcome = report.outcome
        line = f"pass {gitops.short(outcome.revision)} ({outcome.seconds:.2f}s): "
        line += ", ".join(outcome.changes) if outcome.changes else "no changes"
        failing = "" if outcome.converged else gitops.describe_failing(outcome.failing)
        if outcome.refused:
            line += f"; prune refused: {outcome.refused}"
        elif failing:
            line += f"; not converged: {failing}"
        log.info("%s", line)
        said = (outcome.revision, outcome.refused, report.invalid, failing)
        if outcome.changes or said != self.last_pass or self.verbose:
            print(line)
            sys.stdout.flush()
        self.last_pass = said

    def observed(self, revision: str, pending: tuple[str, ...]) -> None:
        line = f"suspended, {gitops.short(revision)}: " + (
            f"{len(pending)} change(s) waiting: {', '.join(pending)}" if pending else "no drift"
        )
        log.info("%s", line)
        if pending != self.pending:
            print(line)
            sys.stdout.flush()
        self.pending = pending

    def store_failed(self, problem: StateError) -> None:
        self.progress.close()
        error(str(problem))


def _loop_settings(args: argparse.Namespace) -> LoopSettings:
    return LoopSettings(
        interval=float(args.interval),
        prune=bool(args.prune),
        force=bool(args.force),
        timeout=float(args.timeout),
        git_pull=bool(getattr(args, "git_pull", False)),
        pull_interval=getattr(args, "pull_interval", None),
        notify=_notify_settings(args),
        metrics_file=getattr(args, "metrics_file", None),
    )


def _notify_settings(args: argparse.Namespace) -> NotifySettings | None:
    url = getattr(args, "notify", None)
    if not url:
        return None
    try:
        return NotifySettings(check_url(url))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _loop_source(args: argparse.Namespace, settings: LoopSettings) -> tuple[ManifestSource, Loader]:
    """The manifests of ``-f``: standard input read once, or the files as they change."""
    if "-" in args.files:
        if settings.git_pull:
            raise UsageError("--git-pull needs -f paths inside one git work tree")
        desired = _desired(args, allow_empty=settings.prune)
        return FixedSource(_stdin_digest(desired)), lambda: desired
    source = open_source(args.files)
    if settings.git_pull and not isinstance(source, GitSource):
        raise UsageError("--git-pull needs -f paths inside one git work tree")
    manifests = ManifestSet(args.files)

    def load() -> DesiredState:
        desired = manifests.load()
        if not len(desired) and not settings.prune:
            raise ManifestError(nothing_declared(list(desired.files)))
        return desired

    return source, load


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _stdin_digest(desired: DesiredState) -> str:
    text = canonical_json([r.to_manifest() for r in desired])
    return gitops.content_digest([("<stdin>", text.encode())])


def _run_loop(args: argparse.Namespace, purpose: str, *, stop_nodes: bool) -> int:
    problems = missing_inputs(args.files)
    if problems:  # said before the state directory is made
        raise ManifestError(problems)
    directory = state_dir(args)
    with StateLock(directory, purpose):
        setup_logging(directory, verbose=args.verbose)
        store = StateStore.open(directory)
        printer = _ProgressPrinter(sys.stdout)
        reconciler = make_reconciler(args, store, printer)
        settings = _loop_settings(args)

        async def run() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            source, load = _loop_source(args, settings)
            events = _LoopPrinter(printer, verbose=args.verbose)
            control = ControllerLoop(settings, source, load, store, reconciler, events, stop)
            result = await control.first()
            printer.close()
            if result is not None:
                _report(store)
            print(
                f"{purpose}: reconciling every {settings.interval:g}s "
                f"({source.kind} source, revision {gitops.short(control.revision)}); "
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
    looping = str(holder.get("command", "")) in ("hmctl up", "hmctl controller run")
    if looping and pid_alive(holder.get("pid")):
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
    return "" if moment is None else rfc3339(moment)


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
    drifted = status["drifted"]
    lines.append(
        f"Drift:           {status['drift']}, "
        + (f"{len(drifted)} drifted: {'; '.join(drifted)}" if drifted else "none left drifted")
    )
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
        remote = (
            await remote_statuses(store.records(), host_of(args), state_dir(args))
            if "Node" in kinds
            else {}
        )
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
            if record.key in remote:
                out.append(_with_status(record, dict(record.status) | remote[record.key]))
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
    if args.kind in ("paths", "path"):
        return get_paths(args)  # not a resource: each local node's view (cli/paths.py)
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


_KIND_COLUMNS: dict[str, tuple[list[str], list[str]]] = {
    "Node": (
        ["NETWORK", "ADDRESS", "IDENTITY"],
        ["PID", "ROLES", "INTERFACES", "GENERATION", "SERIAL", "LAG"],
    ),
    "Network": (["MODE", "NODES"], ["TTL", "EXPIRES"]),
    "Peer": (["NETWORK", "ADDRESS"], []),
    "TLD": (["NETWORK", "OWNER"], []),
    "Record": (["TLD", "TYPE"], []),
    "InterfacePolicy": (["NETWORK", "INTERFACE"], ["ENFORCED", "PROBES", "MISMATCHES"]),
}
"""The columns of ``hmctl get`` that a kind adds, and those it adds with ``-o wide``."""


def _columns(
    kind: str, records: list[ResourceRecord], wide: bool
) -> tuple[list[str], list[list[Any]]]:
    """The table of ``hmctl get KIND``: name, readiness, the kind's own cells, age."""
    extra, wide_extra = _KIND_COLUMNS.get(kind, ([], []))
    placed = kind == "Node" and any(_spec_of(r).get("host") for r in records)
    hosts = ["HOST", "RECORD AGE"] if placed else []
    headers = ["NAME", "READY", "REASON", *extra, *(wide_extra if wide else []), *hosts, "AGE"]
    authority = _registry_serials(records) if kind == "Node" else {}
    rows: list[list[Any]] = []
    for record in records:
        spec: Mapping[str, Any] = (
            record.desired["spec"] if record.desired else (record.applied or {})
        )
        ready, reason = _ready(record)
        row: list[Any] = [record.key.name, ready, record.status.get("phase") or reason]
        if kind == "Node":
            network = authority.get(str(spec.get("network")))
            row += _node_cells(record, spec, wide, network)
        else:
            row += _kind_cells(kind, spec, record.status, wide)
        if placed:
            record_age = record.status.get("recordAge")
            row += [
                spec.get("host") or "-",
                f"{record_age}s" if isinstance(record_age, int) else "-",
            ]
        row.append(age(record.status.get("startedAt") or record.updated_at))
        rows.append(row)
    return headers, rows


def _spec_of(record: ResourceRecord) -> Mapping[str, Any]:
    return record.desired["spec"] if record.desired else (record.applied or {})


def _node_cells(
    record: ResourceRecord, spec: Mapping[str, Any], wide: bool, authority: dict[str, int] | None
) -> list[Any]:
    """A node's cells; ``authority`` is its network's registry's zone serials, for the lag."""
    status = record.status
    identity = str(status.get("identity") or "")
    cells = [spec.get("network"), status.get("address"), identity if wide else identity[:12]]
    if wide:
        cells += [
            status.get("pid"),
            spec.get("roles"),
            spec.get("interfaces"),
            record.generation,
            *_serial_and_lag(spec, status, authority),
        ]
    return cells


def _kind_cells(
    kind: str, spec: Mapping[str, Any], status: Mapping[str, Any], wide: bool
) -> list[Any]:
    """The cells of a kind other than Node, as ``_KIND_COLUMNS`` names them."""
    if kind == "Network":
        counted = status.get("nodes")
        if counted is not None and status.get("readyNodes") is not None:
            counted = f"{status['readyNodes']}/{counted}"  # ready of those in it
        cells = [spec.get("mode"), counted]
        if wide:  # a torn-down ephemeral network keeps only when it expired
            cells += [spec.get("ttl"), status.get("expiresAt") or status.get("expiredAt")]
        return cells
    if kind == "Peer":
        return [spec.get("network"), spec.get("address")]
    if kind == "TLD":
        owner = spec.get("owner", {})
        return [spec.get("network"), "/".join(f"{k}/{v}" for k, v in owner.items())]
    if kind == "Record":
        return [spec.get("tld"), spec.get("type", "HTTPS")]
    if kind == "InterfacePolicy":
        cells = [spec.get("network"), spec.get("interface")]
        if wide:
            enforced = condition(status.get("conditions", []), "Enforced") or {}
            mismatches = status.get("mismatches")
            cells += [
                enforced.get("status", "Unknown"),
                status.get("probes", "-"),
                len(mismatches) if isinstance(mismatches, list) else "-",
            ]
        return cells
    return []


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
