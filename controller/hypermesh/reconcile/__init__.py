"""The reconciler: level-triggered passes that converge the world to the desired state."""

from hypermesh.reconcile.conditions import Condition, set_condition, set_standard
from hypermesh.reconcile.driver import ApplyContext, Driver, Live, Outcome
from hypermesh.reconcile.reconciler import (
    MISSING,
    ItemState,
    PassResult,
    Progress,
    Reconciler,
    ReconcileSettings,
)

__all__ = [
    "MISSING",
    "ApplyContext",
    "Condition",
    "Driver",
    "ItemState",
    "Live",
    "Outcome",
    "PassResult",
    "Progress",
    "ReconcileSettings",
    "Reconciler",
    "set_condition",
    "set_standard",
]
