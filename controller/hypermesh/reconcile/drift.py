"""Drift policies: whether a pass puts drift back (``correct``) or only reports it (``detect``).

A controller has a policy (``hmctl controller run --drift detect|correct``, and ``hmctl up``;
``correct`` by default) and a resource may override it with the annotation
``hypermesh.online/drift: detect|correct``. Under ``detect`` an UPDATE that exists only because
the world drifted (no change of spec) is not carried out: the resource gets the condition
``Drifted=True`` with the drift's words and a ``Drifted`` event, and the live object is left as
it is. A change of spec is applied under either policy (and puts the drift back with it), and
so is drift that the desired state itself explains (a node whose network's members changed).
"""

from __future__ import annotations

from enum import StrEnum

from hypermesh.errors import PermanentError
from hypermesh.model.resources import Resource
from hypermesh.model.validate import DRIFT_ANNOTATION
from hypermesh.plan import Action, Drift, DriftKind, PlanItem

ANNOTATION = DRIFT_ANNOTATION
"""The annotation that sets one resource's drift policy (``hmctl validate`` checks its value)."""

DRIFTED = "Drifted"
"""The condition (and the event reason) of drift left alone under ``detect``."""

IN_SYNC = "InSync"
"""The reason of ``Drifted=False`` once a drifted resource matches its spec again."""

_DERIVED = "the network's members or policies changed"
"""How the process driver words a node whose config follows from what its network now says:
a change of the desired state, not of the world (until it says so with DriftKind.DERIVED)."""


class DriftPolicy(StrEnum):
    DETECT = "detect"
    """Report drift (condition, event, count) and leave the live object alone."""
    CORRECT = "correct"
    """Put drift back (what every pass did before there were policies)."""


def policy_of(resource: Resource | None, default: DriftPolicy) -> DriftPolicy:
    """The policy for ``resource``: its annotation, else ``default``. Raises PermanentError
    (``InvalidSpec``, naming the field) for a value other than detect or correct."""
    if resource is None:
        return default
    value = resource.annotations.get(ANNOTATION)
    if value is None:
        return default
    try:
        return DriftPolicy(value)
    except ValueError:
        raise PermanentError(
            f"metadata.annotations.{ANNOTATION}: must be detect or correct, not {value!r}",
            reason="InvalidSpec",
        ) from None


def of_world(drift: Drift) -> bool:
    """Drift of the world (a process gone, a record changed at the registry), as opposed to
    bookkeeping (INCOMPLETE) or a change that the desired state explains (DERIVED)."""
    if drift.kind is DriftKind.MISSING:
        return True
    return drift.kind is DriftKind.OUTDATED and not drift.detail.startswith(_DERIVED)


def held(item: PlanItem, default: DriftPolicy) -> bool:
    """Whether ``detect`` holds ``item`` back: an update for drift of the world alone, under a
    policy (the resource's, else ``default``) of ``detect``. Raises PermanentError for an
    annotation with a bad value."""
    if item.action is not Action.UPDATE or item.diffs or not item.drift:
        return False
    if not all(of_world(d) for d in item.drift):
        return False
    return policy_of(item.desired, default) is DriftPolicy.DETECT


def words(item: PlanItem) -> str:
    """The drift of ``item`` as one line: ``process not running; ...``."""
    return "; ".join(map(str, item.drift))
