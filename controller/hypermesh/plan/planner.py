"""``plan(desired, observed)``: what must change to make the world match the manifests.

Pure: no I/O, no clock. The observed side is what the reconciler saw (last-applied specs from the
state store plus what the drivers observed live); drift is whatever the drivers reported as
differing from the last-applied state (a dead process, a record changed by hand).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan.diff import DiffItem, diff


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


class DriftKind(StrEnum):
    """How the world differs from what was applied."""

    MISSING = "missing"
    """What was applied is gone (a process not running, a TLD no longer registered)."""
    OUTDATED = "outdated"
    """It is there, but not as it should now be (a node's config behind its network's, a TLD
    held by another key)."""
    INCOMPLETE = "incomplete"
    """The state lacks something a pass records (an ephemeral network's creation time)."""
    DERIVED = "derived"
    """What it must be follows from other resources' desired state, which changed (a node
    whose network's members or policies changed): applied under every drift policy."""


@dataclass(frozen=True, slots=True)
class Drift:
    """One way the live world differs from the last-applied spec: its kind, and the words a
    driver says it in (shown to people and written to JSON as the words alone)."""

    kind: DriftKind
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True)
class Observed:
    """What is known of one resource in the world.

    ``spec`` is the last-applied spec (None when it was never applied); ``managed`` says the
    resource is in this state's inventory (so ``--prune`` may delete it); ``drift`` lists the
    ways the live world differs from the last-applied spec.
    """

    key: ResourceKey
    spec: Mapping[str, Any] | None = None
    generation: int = 0
    managed: bool = True
    drift: tuple[Drift, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One step of a plan."""

    action: Action
    key: ResourceKey
    diffs: tuple[DiffItem, ...] = ()
    drift: tuple[Drift, ...] = ()
    desired: Resource | None = field(default=None, compare=False)
    observed: Observed | None = field(default=None, compare=False)

    @property
    def changes(self) -> bool:
        return self.action is not Action.NOOP

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"action": self.action.value, "resource": str(self.key)}
        data["kind"] = self.key.kind
        data["name"] = self.key.name
        if self.key.namespace:
            data["namespace"] = self.key.namespace
        if self.diffs:
            data["diff"] = [d.to_dict() for d in self.diffs]
        if self.drift:
            data["drift"] = [str(d) for d in self.drift]
        return data


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan is a value: its items in the order they must be carried out."""

    items: tuple[PlanItem, ...]
    prune: bool = False
    orphans: tuple[ResourceKey, ...] = ()
    """Resources in the inventory that the manifests no longer declare, left alone without
    ``--prune``."""
    expired: Mapping[ResourceKey, str] = field(default_factory=dict)
    """Resources of ephemeral networks past their expiry, with why: the next pass tears them
    down (they have no item: no create, update or prune applies to them)."""

    @property
    def changes(self) -> tuple[PlanItem, ...]:
        return tuple(item for item in self.items if item.changes)

    @property
    def has_changes(self) -> bool:
        return bool(self.expired) or any(item.changes for item in self.items)

    def count(self, action: Action) -> int:
        return sum(1 for item in self.items if item.action is action)

    def summary(self) -> str:
        text = (
            f"{self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to update, "
            f"{self.count(Action.DELETE)} to delete, {self.count(Action.NOOP)} unchanged"
        )
        if self.orphans:
            text += f"; {len(self.orphans)} no longer declared (use --prune to delete)"
        for why in sorted(set(self.expired.values())):
            count = sum(1 for w in self.expired.values() if w == why)
            text += f"; {count} to tear down ({why})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": self.has_changes,
            "summary": {a.value: self.count(a) for a in Action},
            "prune": self.prune,
            "items": [item.to_dict() for item in self.items],
            "orphans": [str(k) for k in self.orphans],
            "expired": {str(k): why for k, why in sorted(self.expired.items())},
        }


def plan(
    desired: DesiredState,
    observed: Iterable[Observed],
    *,
    prune: bool = False,
    expired: Mapping[ResourceKey, str] | None = None,
) -> Plan:
    """Compare what the manifests declare with what was observed and say what to do.

    ``expired`` names resources of ephemeral networks whose TTL ran out, with why: they get no
    item, and the plan lists those that exist among its ``expired`` (see
    ``hypermesh.plan.expiry``)."""
    expired = expired or {}
    seen = {o.key: o for o in observed}
    items: list[PlanItem] = []
    for resource in desired:
        if resource.key in expired:
            continue
        current = seen.get(resource.key)
        if current is None or current.spec is None:
            added = diff({}, resource.spec)
            items.append(PlanItem(Action.CREATE, resource.key, added, (), resource, current))
            continue
        changes = () if current.spec == resource.spec else diff(current.spec, resource.spec)
        action = Action.UPDATE if changes or current.drift else Action.NOOP
        items.append(PlanItem(action, resource.key, changes, current.drift, resource, current))
    declared = {r.key for r in desired}
    leftovers = sorted(
        (o for key, o in seen.items() if key not in declared and o.managed and key not in expired),
        key=lambda o: o.key.order,
        reverse=True,
    )
    doomed = {key: why for key, why in expired.items() if key in seen}
    orphans: tuple[ResourceKey, ...] = ()
    if prune:
        items.extend(PlanItem(Action.DELETE, o.key, observed=o) for o in leftovers)
    else:
        orphans = tuple(o.key for o in leftovers)
    return Plan(tuple(items), prune=prune, orphans=orphans, expired=doomed)
