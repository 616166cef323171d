"""Kubernetes-style status conditions (``Ready``, ``Reconciling``, ``Stalled``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition; ``status`` is "True", "False" or "Unknown" as in Kubernetes."""

    type: str
    status: str
    reason: str
    message: str = ""
    observed_generation: int = 0

    def to_dict(self, at: str) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": at,
        }


def set_condition(
    conditions: Iterable[Mapping[str, Any]], new: Condition, at: str
) -> list[dict[str, Any]]:
    """``conditions`` with ``new`` set; ``lastTransitionTime`` moves only when status flips."""
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") == new.type:
            found = True
            keep = cond.get("status") == new.status and "lastTransitionTime" in cond
            out.append(new.to_dict(str(cond["lastTransitionTime"]) if keep else at))
        else:
            out.append(dict(cond))
    if not found:
        out.append(new.to_dict(at))
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    return sorted(out, key=lambda c: order.get(str(c.get("type")), 9))


def set_standard(
    conditions: Iterable[Mapping[str, Any]],
    generation: int,
    at: str,
    *,
    ready: bool,
    reason: str,
    message: str = "",
    reconciling: bool = False,
    stalled: bool = False,
) -> list[dict[str, Any]]:
    """``Ready``, ``Reconciling`` and ``Stalled`` set together, as every resource reports them
    (the reason and message go to Ready, and to Reconciling or Stalled when those hold)."""
    out = set_condition(conditions, Condition(READY, str(ready), reason, message, generation), at)
    out = set_condition(
        out,
        Condition(
            RECONCILING,
            str(reconciling),
            reason if reconciling else "Idle",
            message if reconciling else "",
            generation,
        ),
        at,
    )
    return set_condition(
        out,
        Condition(
            STALLED,
            str(stalled),
            reason if stalled else "NotStalled",
            message if stalled else "",
            generation,
        ),
        at,
    )


def condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for cond in conditions:
        if cond.get("type") == type_:
            return cond
    return None
