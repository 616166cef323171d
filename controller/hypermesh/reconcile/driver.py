"""The contract between the reconciler and the drivers, the only code that touches the world."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Drift


@dataclass(frozen=True, slots=True)
class Live:
    """What a driver observed of one resource in the world.

    ``exists`` false means it is gone; ``drift`` lists differences from the last-applied state
    that a pass must repair; ``status`` is merged into the resource's status (address, pid...);
    ``ready`` and ``message`` feed the Ready condition of a resource that needs no change.
    """

    exists: bool
    drift: tuple[Drift, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    ready: bool = True
    reason: str = "Running"
    message: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a driver did: the handle to find it again and the status to record."""

    handle: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What a driver may need beyond the resource itself."""

    desired: DesiredState
    generation: int


class Driver(Protocol):
    """Converges the resources of some kinds. Raise TemporaryError or PermanentError."""

    kinds: tuple[str, ...]
    manages_world: bool
    """True when applying creates something outside the store (so it enters the inventory
    before it is created, and ``--prune`` must delete it)."""

    def prepare(self, desired: DesiredState) -> None:
        """The desired state of a pass, handed over before anything is observed: a driver
        whose observed drift depends on other resources keeps it (a node's config carries its
        network's members and policies); the others ignore it."""
        ...

    def handle_for(self, resource: Resource) -> Mapping[str, Any]:
        """Where the resource will live, recorded before it is created."""
        ...

    async def observe(
        self, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
    ) -> Live: ...

    async def apply(
        self, resource: Resource, handle: Mapping[str, Any], context: ApplyContext
    ) -> Outcome: ...

    async def delete(self, key: ResourceKey, handle: Mapping[str, Any]) -> None: ...

    async def stop(self, key: ResourceKey, handle: Mapping[str, Any]) -> bool:
        """Stop what runs without forgetting it (``hmctl down``); True if something stopped."""
        ...
