"""The move guard: a plan that would move a resource to another network (the same names applied
to one state from two sets of manifests, such as two examples) is refused, naming each resource,
where it is declared, the two networks and what to do; ``--force`` moves them."""

from __future__ import annotations

import pytest

from hypermesh.errors import MoveRefused
from hypermesh.model.loader import load_text
from hypermesh.model.validate import build
from hypermesh.plan import Observed, plan
from hypermesh.reconcile.controller import check_moves
from tests.conftest import documents, network, node


def test_a_node_applied_to_another_network_is_not_moved_without_a_word() -> None:
    text = documents(network("acme"), node("alpha", network="acme"), node("new", network="acme"))
    desired, problems = build(load_text(text, "b.yaml"))
    assert problems == []
    acme, alpha = desired.get("Network", "acme"), desired.get("Node", "alpha")
    assert acme is not None and alpha is not None
    applied = [
        Observed(alpha.key, {**alpha.spec, "network": "demo"}),
        Observed(acme.key, acme.spec),
    ]
    with pytest.raises(MoveRefused) as refused:
        check_moves(plan(desired, applied))
    assert str(refused.value) == (
        "refusing to move Node/alpha (b.yaml:6:1) from demo to acme: this state applied it to "
        "another network, from other manifests perhaps; give these manifests a state of their "
        "own (--state DIR, or $HM_STATE), or pass --force to move"
    )


def test_a_change_within_the_network_is_no_move() -> None:
    loaded = load_text(documents(network("acme"), node("alpha", network="acme")), "b.yaml")
    desired, _ = build(loaded)
    alpha = desired.get("Node", "alpha")
    assert alpha is not None
    applied = [Observed(alpha.key, {**alpha.spec, "listen": "127.0.0.1:9"})]
    check_moves(plan(desired, applied))  # an update, not a move: nothing raised
