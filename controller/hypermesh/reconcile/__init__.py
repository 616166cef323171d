"""The reconciler: level-triggered passes that converge the world to the desired state."""

from hypermesh.reconcile.conditions import Condition, set_condition, set_standard
from hypermesh.reconcile.driver import ApplyContext, Driver, Live, Outcome
from hypermesh.reconcile.one import MISSING, Converged, converge_one
from hypermesh.reconcile.reconciler import (
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
    "Converged",
    "Driver",
    "ItemState",
    "Live",
    "Outcome",
    "PassResult",
    "Progress",
    "ReconcileSettings",
    "Reconciler",
    "converge_one",
    "set_condition",
    "set_standard",
]
