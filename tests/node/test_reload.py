"""Which config changes a running node takes on SIGHUP (``node.reload``), and a gate's swap of
members and policy: all or nothing."""

from __future__ import annotations

from typing import Any

import pytest

from hypermesh.node.interfaces import PrivateGate
from hypermesh.node.reload import config_digest, reloadable, restart_needs

BASE: dict[str, Any] = {
    "name": "n1",
    "listen": "127.0.0.1:0",
    "generation": 1,
    "directory": {"n1": {"identity": "hm1a"}},
    "private_policy": None,
    "public_policy": None,
    "ephemeral_policy": None,
    "federation": [],
    "peers": [],
    "prefer_port": None,
}
POLICY = {"default": "allow", "rules": []}


@pytest.mark.parametrize(
    ("change", "needs"),
    [
        ({"directory": {"n1": {"identity": "hm1a"}, "n2": {"identity": "hm1b"}}}, []),
        ({"peers": [{"node_dir": "/x"}], "prefer_port": 4433}, []),
        ({"private_policy": POLICY}, []),
        ({"listen": "127.0.0.1:4433"}, ["listen"]),
        ({"generation": 2, "directory": {}}, ["generation"]),
        ({"public_policy": POLICY}, ["public_policy"]),
        ({"ephemeral_policy": POLICY}, ["ephemeral_policy"]),
        ({"federation": [{"name": "b", "registry": {"node_dir": "/r"}}]}, ["federation"]),
        ({"roles": ["relay"]}, ["roles"]),
    ],
)
def test_what_only_a_restart_applies(change: dict[str, Any], needs: list[str]) -> None:
    assert restart_needs(BASE, BASE | change) == needs
    assert reloadable(BASE, BASE | change) is (not needs)


def test_a_changed_policy_reloads_and_the_last_federation_may_go() -> None:
    with_policy = BASE | {"public_policy": POLICY, "federation": [{"name": "b"}]}
    changed = with_policy | {"public_policy": {"default": "deny"}, "federation": []}
    assert restart_needs(with_policy, changed) == []
    assert not reloadable(BASE, dict(BASE))  # nothing to reload
    assert config_digest("x") == config_digest(b"x") != config_digest("y")


def test_a_gate_swaps_members_and_policy_all_or_nothing() -> None:
    gate = PrivateGate.of("n1", {"n1": {"identity": "hm1a"}}, None)
    assert gate.check("hm1b", "127.0.0.1:1", "status.read")[0] == 403
    with pytest.raises(ValueError, match="default"):
        gate.swap({"n2": {"identity": "hm1b"}}, {"default": "sometimes"})
    assert gate.check("hm1b", "127.0.0.1:1", "status.read")[0] == 403  # nothing changed
    swap = gate.swap({"n1": {"identity": "hm1a"}, "n2": {"identity": "hm1b"}}, POLICY)
    assert gate.check("hm1b", "127.0.0.1:1", "status.read")[0] == 403  # not yet swapped
    swap()
    assert gate.check("hm1b", "127.0.0.1:1", "status.read")[0] == 0
    gate.swap({"n1": {"identity": "hm1a"}}, None)()
    assert gate.check("hm1b", "127.0.0.1:1", "status.read")[0] == 403  # removed
