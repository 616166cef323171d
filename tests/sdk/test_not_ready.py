"""A node that has just started answers verified names only once its mirror holds the
registry's anchors; until then it says 503 and the SDK asks again, within its timeout, so a
script run right after ``hmctl apply`` does not fail on a node still starting."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import dns.message
import pytest

from hypermesh.errors import NotReady, TransportError
from hypermesh.sdk import DnsResult, Mesh
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import load_identity
from tests.harness import directory
from tests.harness.node_process import NodeStarter


def _ask(alpha: PeerRef, key_dir: Path, anchor: str, timeout: float) -> DnsResult:
    mesh = Mesh(load_identity(key_dir / "identity.key"), node=alpha, timeout=timeout)
    query = dns.message.make_query("_nodes.", "SOA")
    return asyncio.run(mesh.query(query, verify=True, anchor=anchor))


def test_a_mirror_without_anchors_yet_is_asked_again_until_it_holds_them(
    nodes: NodeStarter,
) -> None:
    registry_id = directory.make_key(nodes.base, "registry").node_id
    alpha = directory.start(nodes, "alpha", members=("registry",), registry="registry")
    peer = PeerRef(alpha.address, alpha.identity)
    # the registry does not run: alpha holds no anchors, and after the timeout the SDK says so
    with pytest.raises(NotReady, match=r"no anchors yet \(still so after 1 s\)") as raised:
        _ask(peer, alpha.node_dir, registry_id, timeout=1.0)
    assert isinstance(raised.value, TransportError)  # callers catching transport errors still do

    # asked while the registry starts: the SDK waits for alpha's first copy instead of failing
    outcome: list[DnsResult | BaseException] = []

    def ask() -> None:
        try:
            outcome.append(_ask(peer, alpha.node_dir, registry_id, timeout=30.0))
        except BaseException as exc:  # reported by the assertion below
            outcome.append(exc)

    asking = threading.Thread(target=ask)
    asking.start()
    directory.start(nodes, "registry", roles=("registry",), members=("alpha",))
    asking.join(40)
    assert len(outcome) == 1 and isinstance(outcome[0], DnsResult), outcome
    assert outcome[0].rcode == "NOERROR"
