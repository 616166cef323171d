"""GitOps status: which revision of the manifests the loop applied, and Flux-style conditions.

Pure: no I/O, no clock (``now`` comes in). The controller loop
(``hypermesh.reconcile.controller``) reads its source (a folder, or a git checkout:
``hypermesh.reconcile.source``), runs passes, and moves a :class:`LoopStatus` through the
transitions below; the state store keeps it as JSON for ``hmctl controller status``.

- ``Ready`` is True when the last pass converged the revision last applied; Unknown while a
  new revision is being applied; False when it fails, is invalid or is refused.
- ``Reconciling`` is True while a pass is applying a revision that has not converged yet and
  will be retried.
- ``Stalled`` is True when retrying will not help until the files change: the manifests are
  invalid, a resource failed permanently, ``--prune`` was refused, or the same revision has
  kept failing for longer than ``stall_after`` seconds. Its message names the failing
  resources and where they are declared (``file:line:column``).
- ``SourceReady`` (git sources with ``--git-pull`` only) is False when the last pull failed;
  the files of the last good pull stay in force.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from hypermesh.plan.expiry import is_expired, is_tombstone
from hypermesh.reconcile.conditions import READY, RECONCILING, STALLED, Condition, set_condition
from hypermesh.store import ResourceRecord
from hypermesh.timefmt import parse_rfc3339, rfc3339

SOURCE_READY = "SourceReady"

SUCCEEDED = "ReconciliationSucceeded"
PROGRESSING = "Progressing"
FAILED = "ReconciliationFailed"
INVALID = "ValidationFailed"
PRUNE_REFUSED = "PruneRefused"
SUSPENDED = "Suspended"
PULL_FAILED = "PullFailed"
PULLED = "Pulled"

MAX_NAMED = 5
"""Failing resources (or manifest problems) named in a message; the rest are counted."""


def content_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """``sha256:<hex>`` of files given as (name, bytes): the same names and bytes give the same
    digest in any order; a rename, an edit, a new or a removed file gives another."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        encoded = name.encode()
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(data).to_bytes(8, "big") + data)
    return f"sha256:{digest.hexdigest()}"


def git_revision(branch: str, commit: str, dirty: bool = False) -> str:
    """``git:main@<sha>``, with ``+dirty`` when the checkout differs from the commit."""
    return f"git:{branch or 'HEAD'}@{commit}{'+dirty' if dirty else ''}"


def short(revision: str) -> str:
    """A revision for one line of text: digests and commits cut to 12 hex digits."""
    if revision.startswith("sha256:"):
        return revision[:19]
    if revision.startswith("git:") and "@" in revision:
        head, _, tail = revision.partition("@")
        commit, plus, rest = tail.partition("+")
        return f"{head}@{commit[:12]}{plus}{rest}"
    return revision


@dataclass(frozen=True, slots=True)
class PassOutcome:
    """What one pass of the loop did with one revision."""

    revision: str
    converged: bool
    seconds: float = 0.0
    changes: tuple[str, ...] = ()
    """What the pass changed, as ``created Node/alpha``."""
    failing: Mapping[str, str] = field(default_factory=dict)
    """``Kind/name (file:line:col)`` → why, for resources that failed or are not ready."""
    permanent: bool = False
    """A resource failed in a way retries will not fix (it waits for a change of spec)."""
    refused: str = ""
    """Why the revision was not applied at all (the prune guard), or empty."""
    drifted: Mapping[str, str] = field(default_factory=dict)
    """``Kind/name (file:line:col)`` → the drift left alone (drift policy ``detect``)."""


@dataclass(frozen=True, slots=True)
class LoopStatus:
    """What ``hmctl controller status`` shows, as the loop last wrote it."""

    source: Mapping[str, Any] = field(default_factory=dict)
    """``{"type": "folder", "paths": [...]}`` or ``{"type": "git", "path", "remote", "branch",
    "commit"}``."""
    interval: float = 0.0
    prune: bool = False
    last_applied_revision: str = ""
    last_attempted_revision: str = ""
    last_applied_at: str = ""
    last_pass_at: str = ""
    last_pass_seconds: float = 0.0
    last_pass_changes: tuple[str, ...] = ()
    failing_since: str = ""
    """When the attempted revision first failed to converge (empty while it converges)."""
    failures: int = 0
    """Passes in a row that did not converge."""
    problems: tuple[str, ...] = ()
    """The attempted revision's manifest problems, ``FILE:LINE:COL: …``; empty when valid."""
    pending: tuple[str, ...] = ()
    """While suspended: what a pass would change."""
    conditions: tuple[Mapping[str, Any], ...] = ()
    drift: str = "correct"
    """The loop's drift policy (``hypermesh.reconcile.drift``)."""
    drifted: tuple[str, ...] = ()
    """What the last pass left drifted, ``Kind/name (file:line:col): drift``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "source": dict(self.source),
            "interval": self.interval,
            "prune": self.prune,
            "lastAppliedRevision": self.last_applied_revision,
            "lastAttemptedRevision": self.last_attempted_revision,
            "lastAppliedAt": self.last_applied_at,
            "lastPassAt": self.last_pass_at,
            "lastPassSeconds": self.last_pass_seconds,
            "lastPassChanges": list(self.last_pass_changes),
            "failingSince": self.failing_since,
            "failures": self.failures,
            "problems": list(self.problems),
            "pending": list(self.pending),
            "conditions": [dict(c) for c in self.conditions],
            "drift": self.drift,
            "drifted": list(self.drifted),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopStatus:
        def texts(name: str) -> tuple[str, ...]:
            value = data.get(name)
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        conditions = data.get("conditions")
        return cls(
            source=dict(data.get("source") or {}),
            interval=float(data.get("interval") or 0.0),
            prune=bool(data.get("prune")),
            last_applied_revision=str(data.get("lastAppliedRevision") or ""),
            last_attempted_revision=str(data.get("lastAttemptedRevision") or ""),
            last_applied_at=str(data.get("lastAppliedAt") or ""),
            last_pass_at=str(data.get("lastPassAt") or ""),
            last_pass_seconds=float(data.get("lastPassSeconds") or 0.0),
            last_pass_changes=texts("lastPassChanges"),
            failing_since=str(data.get("failingSince") or ""),
            failures=int(data.get("failures") or 0),
            problems=texts("problems"),
            pending=texts("pending"),
            conditions=tuple(dict(c) for c in conditions) if isinstance(conditions, list) else (),
            drift=str(data.get("drift") or "correct"),
            drifted=texts("drifted"),
        )

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        for cond in self.conditions:
            if cond.get("type") == type_:
                return cond
        return None


def _set(status: LoopStatus, now: datetime, *conditions: Condition) -> LoopStatus:
    out: list[dict[str, Any]] = [dict(c) for c in status.conditions]
    for new in conditions:
        out = set_condition(out, new, rfc3339(now))
    return replace(status, conditions=tuple(out))


def _flags(
    status: LoopStatus,
    now: datetime,
    *,
    ready: bool,
    reason: str,
    message: str,
    reconciling: bool = False,
    stalled: bool = False,
) -> LoopStatus:
    return _set(
        status,
        now,
        Condition(READY, str(ready), reason, message),
        Condition(
            RECONCILING,
            str(reconciling),
            reason if reconciling else ("Idle" if reason != SUSPENDED else SUSPENDED),
            message if reconciling else "",
        ),
        Condition(
            STALLED, str(stalled), reason if stalled else "NotStalled", message if stalled else ""
        ),
    )


def started(
    status: LoopStatus,
    source: Mapping[str, Any],
    interval: float,
    prune: bool,
    drift: str = "correct",
) -> LoopStatus:
    """The loop (re)starts: what it watches and how; the rest is kept from the last run."""
    return replace(status, source=dict(source), interval=interval, prune=prune, drift=drift)


def applying(status: LoopStatus, revision: str, now: datetime) -> LoopStatus:
    """A pass is about to apply ``revision``. ``Reconciling`` turns True only for a revision
    not applied yet; a pass that re-checks the applied revision (drift) leaves it alone."""
    status = replace(status, last_attempted_revision=revision, problems=(), pending=())
    if revision == status.last_applied_revision and not status.failures:
        return status
    message = f"applying revision {revision}"
    return _set(
        status,
        now,
        Condition(READY, "Unknown", PROGRESSING, message),
        Condition(RECONCILING, "True", PROGRESSING, message),
    )


def finished(
    status: LoopStatus, outcome: PassOutcome, now: datetime, *, stall_after: float
) -> LoopStatus:
    """A pass is over. Converged: the revision is the applied one and ``Ready``. Not: count the
    failure, and call it ``Stalled`` when retrying will not help or has not for ``stall_after``
    seconds. While the attempted revision's manifests are invalid, the passes run the last good
    ones and the conditions keep saying why the attempted one is not applied."""
    status = replace(
        status,
        last_pass_at=rfc3339(now),
        last_pass_seconds=round(outcome.seconds, 3),
        last_pass_changes=outcome.changes,
        drifted=tuple(f"{name}: {why}" for name, why in sorted(outcome.drifted.items())),
    )
    if status.problems:
        return status
    if outcome.converged and not outcome.refused:
        return _converged(status, outcome, now)
    return _failing(status, outcome, now, stall_after)


def _converged(status: LoopStatus, outcome: PassOutcome, now: datetime) -> LoopStatus:
    """The revision converged: it is the applied one (since now, if it is new) and Ready."""
    stamp = rfc3339(now)
    new = outcome.revision != status.last_applied_revision or not status.last_applied_at
    return _flags(
        replace(
            status,
            last_applied_revision=outcome.revision,
            last_attempted_revision=outcome.revision,
            last_applied_at=stamp if new else status.last_applied_at,
            failing_since="",
            failures=0,
        ),
        now,
        ready=True,
        reason=SUCCEEDED,
        message=f"applied revision {outcome.revision}",
    )


def _failing(
    status: LoopStatus, outcome: PassOutcome, now: datetime, stall_after: float
) -> LoopStatus:
    """The revision did not converge, or was refused: count the failure; Stalled when retrying
    will not help (refused, a permanent failure) or has not for ``stall_after`` seconds."""
    since = status.failing_since or rfc3339(now)
    status = replace(
        status,
        last_attempted_revision=outcome.revision,
        failing_since=since,
        failures=status.failures + 1,
    )
    if outcome.refused:
        return _flags(
            status, now, ready=False, reason=PRUNE_REFUSED, message=outcome.refused, stalled=True
        )
    began = parse_rfc3339(since)
    too_long = began is not None and (now - began).total_seconds() >= stall_after
    stalled = outcome.permanent or too_long
    message = f"revision {outcome.revision}: {describe_failing(outcome.failing)}"
    if too_long and not outcome.permanent:
        message += f" (failing since {since})"
    return _flags(
        status,
        now,
        ready=False,
        reason=FAILED if stalled or status.failures > 1 else PROGRESSING,
        message=message,
        reconciling=not stalled,
        stalled=stalled,
    )


def invalid(
    status: LoopStatus, revision: str, problems: Sequence[str], now: datetime
) -> LoopStatus:
    """The manifests of ``revision`` do not validate: nothing of it is applied, the last good
    revision stays in force, and ``Stalled`` names the problems until the files change."""
    named = list(problems[:MAX_NAMED])
    more = len(problems) - len(named)
    message = (
        f"revision {revision} is invalid, keeping {status.last_applied_revision or 'nothing'}: "
    )
    message += "; ".join(named) + (f"; and {more} more" if more > 0 else "")
    status = replace(status, last_attempted_revision=revision, problems=tuple(problems))
    return _flags(status, now, ready=False, reason=INVALID, message=message, stalled=True)


def suspended(status: LoopStatus, pending: Sequence[str], reason: str, now: datetime) -> LoopStatus:
    """A pass while suspended: it observed and planned, and changed nothing. ``Ready`` keeps
    what the last applied pass said; ``Reconciling`` says why nothing moves."""
    status = replace(
        status, pending=tuple(pending), last_pass_at=rfc3339(now), last_pass_changes=()
    )
    message = "suspended" + (f": {reason}" if reason else "")
    if pending:
        message += f"; {len(pending)} change(s) waiting: {', '.join(pending[:MAX_NAMED])}"
    return _set(status, now, Condition(RECONCILING, "False", SUSPENDED, message))


def source_result(status: LoopStatus, error: str | None, now: datetime) -> LoopStatus:
    """After a ``git pull``: ``SourceReady`` True, or False with git's complaint."""
    if error is None:
        return _set(status, now, Condition(SOURCE_READY, "True", PULLED, "pulled"))
    message = f"git pull failed, keeping the files of the last good pull: {error}"
    return _set(status, now, Condition(SOURCE_READY, "False", PULL_FAILED, message))


def describe_failing(failing: Mapping[str, str]) -> str:
    """``Node/a (net.yaml:3:1): why; Node/b (…): why; and 2 more``."""
    if not failing:
        return "not converged"
    items = sorted(failing.items())
    named = [f"{what}: {why}" for what, why in items[:MAX_NAMED]]
    more = len(items) - len(named)
    return "; ".join(named) + (f"; and {more} more" if more > 0 else "")


def next_expiry(records: Iterable[ResourceRecord], now: datetime) -> datetime | None:
    """The earliest ``expiresAt`` still ahead among the ephemeral networks of the store: the
    loop wakes then, so that a teardown is not a whole interval late."""
    ahead: list[datetime] = []
    for record in records:
        if record.key.kind != "Network" or is_tombstone(record.handle, record.applied):
            continue
        if record.applied is None or record.applied.get("mode") != "ephemeral":
            continue
        moment = parse_rfc3339(record.status.get("expiresAt"))
        if moment is not None and not is_expired(record.applied, record.status, now):
            ahead.append(moment)
    return min(ahead) if ahead else None
