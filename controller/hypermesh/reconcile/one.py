"""One resource, as a pass of the reconciler handles each.

A pass observes every resource, plans, and acts; a world that hands resources over one at a
time (the Kubernetes operator, whose handlers kopf calls per object) converges each with
:func:`converge_one`. Both observe through :func:`observe` (a failure to look is a resource not
Ready, never a crash) and judge what they saw with :func:`observed_of` (an applied resource
its driver no longer finds has drifted: :data:`MISSING`), so the two worlds decide alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypermesh.errors import ReconcileError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.plan import Drift, DriftKind, Observed, plan
from hypermesh.reconcile.driver import ApplyContext, Driver, Live

MISSING = Drift(DriftKind.MISSING, "missing from the world")
"""The drift of a resource that was applied and that its driver no longer finds."""


async def observe(
    driver: Driver, key: ResourceKey, handle: Mapping[str, Any], applied: Mapping[str, Any] | None
) -> Live:
    """What the driver sees of ``key``; a failure to look is a resource that is not Ready."""
    try:
        return await driver.observe(key, handle, applied)
    except ReconcileError as exc:
        return Live(exists=True, ready=False, reason=exc.reason, message=str(exc))


def observed_of(
    key: ResourceKey,
    applied: Mapping[str, Any] | None,
    generation: int,
    live: Live,
    *,
    managed: bool = True,
) -> Observed:
    """What the planner is told of ``key``: the spec last applied and the live drift (gone
    while it was applied is :data:`MISSING` when the driver named nothing else)."""
    drift = live.drift
    if not live.exists and applied is not None:
        drift = drift or (MISSING,)
    return Observed(key=key, spec=applied, generation=generation, managed=managed, drift=drift)


@dataclass(frozen=True, slots=True)
class Converged:
    """What converging one resource gives: the driver's handle, status fields, readiness."""

    handle: Mapping[str, Any]
    status: Mapping[str, Any]
    ready: bool
    reason: str
    message: str = ""


async def converge_one(
    driver: Driver,
    resource: Resource,
    handle: Mapping[str, Any],
    applied: Mapping[str, Any] | None,
    context: ApplyContext,
    *,
    settles: bool = False,
) -> Converged:
    """Prepare, observe against ``applied`` (the spec last converged; None: never), plan, and
    apply when the plan says so. With ``settles`` (a world that settles after ``apply``
    returns, as a pod starts once its objects exist) readiness is observed right after
    applying, as the next pass would. Raises the driver's ``TemporaryError``/``PermanentError``."""
    driver.prepare(context.desired)
    live = await observe(driver, resource.key, handle, applied) if applied is not None else None
    if live is not None:
        seen = observed_of(resource.key, applied, context.generation, live)
        if not plan(DesiredState.of([resource]), [seen]).items[0].changes:
            return Converged(handle, live.status, live.ready, _reason(live), live.message)
    outcome = await driver.apply(resource, handle or driver.handle_for(resource), context)
    if not settles:
        return Converged(outcome.handle, outcome.status, True, "Converged", outcome.message)
    live = await observe(driver, resource.key, outcome.handle, resource.spec)
    status = {**outcome.status, **live.status}
    return Converged(outcome.handle, status, live.ready, _reason(live), live.message)


def _reason(live: Live) -> str:
    return "Converged" if live.ready else live.reason


__all__ = ["MISSING", "Converged", "converge_one", "observe", "observed_of"]
