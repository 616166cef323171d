"""With a registry: a member removed from the network is refused by every node once they
reloaded, the mirrors too, whose registry's anchors (which list the members) are fetched again
when the registry's static members change (its feed's ``{"members": N}`` notice)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypermesh.transport.identity import load_identity
from tests import conftest as c
from tests.conftest import Hmctl
from tests.e2e import test_federation as federation
from tests.e2e.test_live_reload import INTERFACES, apply, private_status


def test_with_a_registry_a_removed_member_is_refused_by_the_mirrors(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    def write(*mirrors: str) -> None:
        network = federation.network("demo", "reg")
        nodes = [c.node("reg", roles="[registry]", interfaces=INTERFACES)]
        nodes += [c.node(name, roles="[mirror]", interfaces=INTERFACES) for name in mirrors]
        (tmp_path / "net.yaml").write_text(c.documents(network, *nodes))

    write("m1", "m2", "m3")
    before = apply(hmctl, tmp_path)
    leaver = load_identity(hmctl.state / "nodes" / "m3" / "identity.key")
    assert asyncio.run(private_status(before["m1"], leaver)) == 200
    write("m1", "m2")
    after = apply(hmctl, tmp_path, "--prune")
    assert [after[n]["pid"] for n in ("reg", "m1", "m2")] == [
        before[n]["pid"] for n in ("reg", "m1", "m2")
    ]
    # Neither its config nor the registry's anchors (fetched again on the feed's notice) name
    # m3 any more: every node refuses its key.
    for name in ("reg", "m1", "m2"):
        c.wait_for(lambda n=name: asyncio.run(private_status(after[n], leaver)) == 403, 15)
