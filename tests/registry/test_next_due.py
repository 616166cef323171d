"""The registry's sweep is armed for when it has work (issue 19: no 60 s sweep at rest):
``Registry.next_due`` is the earliest term running out or full signing coming due."""

from __future__ import annotations

from hypermesh.registry.service import Registry
from hypermesh.registry.zones import RESIGN_AFTER
from tests.registry.conftest import ADMIN, NOW, OWNER

DAY = 86400.0


def test_the_sweep_is_due_at_the_first_term_end_or_full_signing(where: str) -> None:
    clock = [NOW]
    registry = Registry.open(where, admin=ADMIN.node_id, clock=lambda: clock[0])
    try:
        assert registry.next_due() is None  # nothing registered: nothing will come due
        registry.set_policy({"termDays": 3}, signer=ADMIN.node_id)
        registry.register("acme", OWNER.node_id, "demo")
        registry.zone("acme")
        assert registry.next_due() == NOW + 3 * DAY  # the term ends before a re-signing
        clock[0] = NOW + 3 * DAY - 1
        assert registry.expire_due() == []  # not yet
        clock[0] = NOW + 3 * DAY
        assert registry.expire_due() == ["acme"]  # due then, and swept

        registry.set_policy({"termDays": 365}, signer=ADMIN.node_id)
        registry.register("beta", OWNER.node_id, "demo")
        registry.zone("beta")
        signed_beta = clock[0]
        assert registry.next_due() == NOW + RESIGN_AFTER  # acme's signing, held until swept
        clock[0] = NOW + RESIGN_AFTER
        assert registry.resign_due() == []  # acme expired: dropped, not signed again
        assert registry.next_due() == signed_beta + RESIGN_AFTER
        clock[0] = signed_beta + RESIGN_AFTER
        assert registry.resign_due() == ["beta"]
        assert registry.next_due() == clock[0] + RESIGN_AFTER  # signed again: due anew
    finally:
        registry.close()
