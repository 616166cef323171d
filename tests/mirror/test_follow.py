"""Mirrors on loopback: real node processes following a real registry over QUIC.

Pushed changes reach every mirror at once, a name queried before it exists is answered as
soon as it is pushed, copies are served stale (EDE 3) once the registry has been silent past
their expiry, a new node takes its first copy from another mirror while the registry is down,
and everyone follows by increments when it is back (it serves the zone it saved on closing).
"""

from __future__ import annotations

import time
from pathlib import Path

import dns.edns
import dns.rcode
import pytest

from hypermesh.errors import TransportError
from hypermesh.node.config import Upstream
from hypermesh.transport.address import PeerRef
from tests.harness.nodes import NodeProc, Owner, answer_values, start_node, wait_for


def ede_codes(message: object) -> set[int]:
    return {o.code for o in getattr(message, "options", ()) if isinstance(o, dns.edns.EDEOption)}


def test_mirrors_follow_the_registry_and_serve_stale_when_it_is_gone(
    network: dict[str, NodeProc], tmp_path: Path
) -> None:
    registry, m1, m2 = network["registry"], network["m1"], network["m2"]
    owner = Owner(registry)
    owner.register("acme")
    serial = owner.put("acme", "www", "192.0.2.1")
    for mirror in (m1, m2):
        wait_for(
            lambda m=mirror: answer_values(m.ask("www.acme.")) == {"192.0.2.1"},
            what=f"{mirror.name} to serve www.acme",
        )

    # Asked before it exists: NXDOMAIN with a negative TTL of minutes (the SOA minimum) ...
    before = m1.ask("late.acme.")
    assert before.rcode() == dns.rcode.NXDOMAIN
    assert before.authority[0].ttl >= 60
    # ... and answered as soon as the registration is pushed, not after that TTL.
    pushed_at = time.monotonic()
    serial = owner.put("acme", "late", "192.0.2.2")
    wait_for(
        lambda: answer_values(m1.ask("late.acme.")) == {"192.0.2.2"},
        timeout=10,
        what="the pushed record",
    )
    assert time.monotonic() - pushed_at < before.authority[0].ttl

    status = wait_for(
        lambda: (s := m2.status())["mirror"]["zones"]["acme."]["serial"] == serial and s,
        what="m2 to report the registry's serial",
    )
    mirror = status["mirror"]
    assert mirror["connected"] is True
    assert mirror["zones"]["acme."]["registrySerial"] == serial
    assert mirror["transfers"]["incremental"] >= 1
    assert mirror["transfers"]["refused"] == 0
    assert registry.status()["zones"]["acme."] == serial

    # The registry goes away: writes get a clear error; the mirrors keep answering, then
    # mark their answers stale.
    registry.stop()
    owner.client.timeout = 2.0
    with pytest.raises(TransportError, match=r"registry at .*: no answer within 2s \(is it"):
        owner.put("acme", "www", "192.0.2.5")
    owner.client.timeout = 10.0
    answer = m1.ask("www.acme.")
    assert answer_values(answer) == {"192.0.2.1"}
    stale = wait_for(
        lambda: (a := m1.ask("www.acme.")) and 3 in ede_codes(a) and a,
        timeout=15,
        what="a stale answer with EDE 3",
    )
    assert answer_values(stale) == {"192.0.2.1"}
    assert all(rrset.ttl <= 30 for rrset in stale.answer)

    # A node with no copy yet takes one from another mirror, checked against the registry's key.
    m3 = start_node(
        tmp_path,
        "m3",
        registry=Upstream(PeerRef(registry.address, registry.identity)),
        peers=[Upstream(PeerRef(m1.address, m1.identity))],
        expire=2.0,
    )
    network["m3"] = m3
    wait_for(
        lambda: answer_values(m3.ask("late.acme.")) == {"192.0.2.2"},
        timeout=20,
        what="m3 to copy the zone from m1",
    )
    # One whole copy per zone, each from m1: acme. and the node directory's _nodes.
    copied = m3.status()["mirror"]
    assert copied["transfers"]["fromMirrors"] == len(copied["zones"]) == 2

    # The registry comes back on its address, serving the very zone it saved on closing: a
    # change reaches every mirror by an increment, none needs the whole zone again.
    full = {
        n.name: n.status()["mirror"]["transfers"]["fullByZone"].get("acme.", 0)
        for n in (m1, m2, m3)
    }
    network["registry"] = registry = start_node(
        tmp_path, "registry", roles=("registry",), listen=registry.address
    )
    owner.client.address = registry.address
    owner.put("acme", "www", "192.0.2.9")
    for node in (m1, m2, m3):
        wait_for(
            lambda n=node: answer_values(n.ask("www.acme.")) == {"192.0.2.9"},
            timeout=20,
            what=f"{node.name} to catch up",
        )
        wait_for(lambda n=node: not ede_codes(n.ask("www.acme.")), what="fresh answers again")
        transfers = node.status()["mirror"]["transfers"]
        # (acme.: the zone the registry saved; the node directory's zone may need a whole copy
        # when a mirror's copy came from another mirror behind the registry's last change)
        assert transfers["fullByZone"].get("acme.", 0) == full[node.name], (
            f"{node.name} needed a full transfer of acme."
        )
        assert transfers["refused"] == 0
