"""The move guard: a plan that would move a resource to another network, declared in another
file than the one this state applied it from (the same names applied to one state from two sets
of manifests, such as two examples), is refused, naming each resource, where it is declared, the
two networks, where it came from and what to do; ``--force`` moves them. A move written in the
file it came from is an edit, and goes ahead."""

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
    elsewhere = {alpha.key: "/examples/quickstart/network.yaml:24:1"}
    with pytest.raises(MoveRefused) as refused:
        check_moves(plan(desired, applied), elsewhere)
    assert str(refused.value) == (
        "refusing to move Node/alpha (b.yaml:6:1) from demo, applied from "
        "/examples/quickstart/network.yaml, to acme: the same names from other manifests; give "
        "these manifests a state of their own (--state DIR, or $HM_STATE), or pass --force to "
        "move"
    )
    check_moves(plan(desired, applied), {alpha.key: "b.yaml:6:1"})  # an edit of its own file


def test_a_change_within_the_network_is_no_move() -> None:
    loaded = load_text(documents(network("acme"), node("alpha", network="acme")), "b.yaml")
    desired, _ = build(loaded)
    alpha = desired.get("Node", "alpha")
    assert alpha is not None
    applied = [Observed(alpha.key, {**alpha.spec, "listen": "127.0.0.1:9"})]
    check_moves(plan(desired, applied), {alpha.key: "other.yaml:1:1"})  # an update, not a move
