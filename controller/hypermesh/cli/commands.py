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
from datetime import UTC
from typing import Any

from rich.console import Console
from rich.status import Status
from watchfiles import awatch

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
from hypermesh.drivers import standalone_drivers
from hypermesh.errors import (
    LockHeldError,
    ManifestError,
    PruneRefused,
    StateError,
    UsageError,
)
from hypermesh.model.resources import DesiredState, ResourceKey
from hypermesh.model.schemas import KINDS, kind_from_alias
from hypermesh.model.validate import ManifestSet, load_desired
from hypermesh.plan import Action, Plan
from hypermesh.plan import plan as make_plan
from hypermesh.reconcile import Reconciler, ReconcileSettings
from hypermesh.reconcile.conditions import READY, Condition, condition, set_condition
from hypermesh.store import ResourceRecord, StateLock, StateStore
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
        label = f"{key.kind.lower()}/{key.name}"
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


async def _control_loop(
    args: argparse.Namespace,
    reconciler: Reconciler,
    desired: DesiredState,
    stop: asyncio.Event,
    printer: _ProgressPrinter,
) -> None:
    """Passes forever: every ``--interval``, and at once when a manifest file changes.
    Manifests read from standard input cannot be re-read, so then nothing is watched."""
    changed = asyncio.Event()
    watched = [] if "-" in args.files else list(args.files)

    async def watch() -> None:
        if not watched:
            return
        async for _ in awatch(*watched, stop_event=stop, debounce=200, step=50):
            changed.set()

    watcher = asyncio.create_task(watch())
    manifests = ManifestSet(watched)
    if watched:
        with contextlib.suppress(ManifestError):
            manifests.load()  # prime the cache: an edit re-reads only the files it touched
    try:
        while not stop.is_set():
            if changed.is_set():
                changed.clear()
                try:
                    desired = manifests.load()
                    print(f"manifests changed: {len(desired)} resources declared")
                except ManifestError as exc:
                    for problem in exc.problems:
                        sys.stderr.write(f"{problem}\n")
                    error("manifests are invalid; keeping the last good version")
            try:
                await reconciler.run_pass(desired, prune=args.prune)
            except StateError as exc:
                error(str(exc))
            printer.close()
            waiter = asyncio.create_task(changed.wait())
            stopper = asyncio.create_task(stop.wait())
            due = reconciler.backoff.next_due()
            pause = args.interval
            if due is not None:
                pause = max(0.1, min(pause, due - time.monotonic()))
            await asyncio.wait({waiter, stopper}, timeout=pause, return_when="FIRST_COMPLETED")
            waiter.cancel()
            stopper.cancel()
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _run_loop(args: argparse.Namespace, purpose: str, *, stop_nodes: bool) -> int:
    desired = _desired(args, allow_empty=args.prune)
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
            the_plan = await reconciler.plan(desired, prune=args.prune)
            _prune_guard(the_plan, desired, store, args.force)
            print(f"Plan: {the_plan.summary()}.")
            await reconciler.converge(desired, prune=args.prune, timeout=args.timeout)
            printer.close()
            _report(store)
            print(f"{purpose}: reconciling every {args.interval:g}s; Ctrl-C to stop")
            sys.stdout.flush()
            await _control_loop(args, reconciler, desired, stop, printer)
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
            print(f"{key.kind.lower()}/{key.name} stopped")
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
        out = []
        for record in records:
            live = lives.get(record.key)
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
            print(f"{r.key.kind.lower()}/{r.key.name}")
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
            row += [spec.get("mode"), status.get("nodes")]
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
        _indent(
            table(
                ["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
                [
                    [
                        c.get("type"),
                        c.get("status"),
                        c.get("reason"),
                        age(c.get("lastTransitionTime")),
                        c.get("message"),
                    ]
                    for c in conditions
                ],
            )
            if conditions
            else "<none>\n"
        ),
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
                print(f"{key.kind.lower()}/{key.name} deleted")

        asyncio.run(run())
        store.close()
    return 0
