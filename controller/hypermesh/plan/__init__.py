"""The planner: ``plan(desired, observed) -> Plan``, a pure function returning a value."""

from hypermesh.plan.diff import DiffItem, DiffOp, diff
from hypermesh.plan.expiry import members
from hypermesh.plan.planner import Action, Drift, DriftKind, Observed, Plan, PlanItem, plan

__all__ = [
    "Action",
    "DiffItem",
    "DiffOp",
    "Drift",
    "DriftKind",
    "Observed",
    "Plan",
    "PlanItem",
    "diff",
    "members",
    "plan",
]
