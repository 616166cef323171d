"""``hmctl apply`` while ``hmctl up`` or ``hmctl controller run`` holds the state: the running
loop applies the very files it watches, so an apply of those files is handed to it (the loop sees
the change on disk at once) and waits, bounded by ``--timeout``, for the loop to apply that
revision, then reports as an apply does. Anything else (other files, standard input, a suspended
loop) cannot be handed over: a clear error that says what the loop applies and what to do.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hypermesh.errors import LockHeldError
from hypermesh.node.lockfile import pid_alive
from hypermesh.reconcile.gitops import LoopStatus, short
from hypermesh.reconcile.source import open_source
from hypermesh.store import StateStore

LOOPS = ("hmctl up", "hmctl controller run")
POLL = 0.2
"""Seconds between looks at the loop's status while waiting for it (bounded by --timeout)."""


def hand_to_loop(
    args: argparse.Namespace,
    store: StateStore,
    holder: Mapping[str, object] | None,
    report: Callable[[StateStore], int],
) -> int:
    """Hand ``args``' apply to the loop holding the state (see the module's docstring); the
    exit code. ``LockHeldError`` saying what to do when it cannot be handed over."""
    command, pid = str((holder or {}).get("command", "")), (holder or {}).get("pid")
    if command not in LOOPS or not pid_alive(pid):
        raise LockHeldError("")  # not a loop: the caller says who holds the lock
    state = store.controller()
    status = LoopStatus.from_json(state.status)
    watched = sorted(str(p) for p in status.source.get("paths", []))
    mine = sorted(str(Path(p).resolve()) for p in args.files)
    who = f"{command} (pid {pid})"
    if "-" in args.files or mine != watched:
        raise LockHeldError(
            f"{who} holds this state and applies {', '.join(watched) or 'nothing'}: edit those "
            f"files (it applies a change within {status.interval:g}s), or stop it (hmctl down) "
            "and apply again"
        )
    if state.suspended:
        raise LockHeldError(
            f"{who} applies these files but is suspended: hmctl controller resume, and it "
            "applies them"
        )
    revision = open_source(args.files).snapshot().revision
    if status.last_applied_revision == revision:
        print(f"{who} already applied these manifests (revision {short(revision)})")
        return report(store)
    print(f"handed to {who}, which applies these files: waiting for revision {short(revision)}")
    return _wait(store, revision, args.timeout, report)


def _wait(
    store: StateStore, revision: str, timeout: float, report: Callable[[StateStore], int]
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = LoopStatus.from_json(store.controller().status)
        if status.last_applied_revision == revision:
            print(f"applied revision {short(revision)}")
            return report(store)
        if status.last_attempted_revision == revision and status.problems:
            for problem in status.problems:
                print(problem)
            return 2
        time.sleep(POLL)
    print(f"the loop did not apply revision {short(revision)} within {timeout:g}s")
    return report(store)
