"""Mirrors on separate hosts: a registry and five nodes, each in a network namespace of its
own joined by a bridge, all made by this test on this machine (root and ``ip`` needed: it fails
without them, unless HM_TEST_NETNS=skip).

The registry's link is cut: every node keeps answering; past the expiry, answers are stale and
say so (EDE 3); a node started during the cut takes its copy from another mirror; the registry
takes writes meanwhile (from inside its own namespace); the link comes back and every node
catches up to the registry's serial by increments, without a full transfer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import pytest

from hypermesh.node.config import Upstream
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import load_or_create_identity
from tests.conftest import skipped_on_request
from tests.harness.netns import Hosts, can_make_namespaces
from tests.harness.nodes import NodeProc, Owner, answer_values, start_node, wait_for

MIRRORS = 5
PORT = 5300
EXPIRE = 3.0


# Never a silent skip: without namespaces the test fails (CI runs it as root), unless
# HM_TEST_NETNS=skip asks to skip it on a machine that cannot make them.
pytestmark = pytest.mark.skipif(
    skipped_on_request("netns"), reason="HM_TEST_NETNS=skip: skipped on request"
)


@pytest.fixture(autouse=True)
def _namespaces_possible() -> None:
    if not can_make_namespaces():
        pytest.fail(
            "cannot make network namespaces (root and ip needed); HM_TEST_NETNS=skip skips this",
            pytrace=False,
        )


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    made = Hosts(1 + MIRRORS)
    try:
        yield made
    finally:
        made.remove()


def ede_codes(message: object) -> set[int]:
    return {o.code for o in getattr(message, "options", ()) if isinstance(o, dns.edns.EDEOption)}


def put_inside(hosts: Hosts, registry: NodeProc, key_dir: Path, name: str, value: str) -> int:
    """A signed write made from inside the registry's namespace (its link to the others is
    down), to its loopback address."""
    script = (
        "import sys; from pathlib import Path;"
        "from hypermesh.transport.identity import load_or_create_identity;"
        "from tests.harness.nodes import Owner, NodeProc;"
        f"node = NodeProc('registry', Path('.'), None, '127.0.0.1:{PORT}', {registry.identity!r});"
        f"owner = Owner(node, load_or_create_identity(Path({str(key_dir)!r})));"
        f"print(owner.put('acme', {name!r}, {value!r}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        ["ip", "netns", "exec", hosts.ns(0), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def test_partitioned_mirrors_answer_go_stale_and_catch_up(hosts: Hosts, tmp_path: Path) -> None:
    nodes: list[NodeProc] = []
    try:
        registry = start_node(
            tmp_path,
            "registry",
            roles=("registry",),
            listen=f"0.0.0.0:{PORT}",
            netns=hosts.ns(0),
            reach=f"{hosts.address(0)}:{PORT}",
        )
        nodes.append(registry)
        upstream = Upstream(PeerRef(registry.address, registry.identity))
        mirrors = []
        for i in range(1, 1 + MIRRORS):
            mirrors.append(
                start_node(
                    tmp_path,
                    f"m{i}",
                    listen=f"{hosts.address(i)}:{PORT}",
                    netns=hosts.ns(i),
                    registry=upstream,
                    expire=EXPIRE,
                )
            )
            nodes.append(mirrors[-1])
        key_dir = tmp_path / "owner"
        owner = Owner(registry, load_or_create_identity(key_dir))
        owner.register("acme")
        owner.put("acme", "www", "192.0.2.1")
        for m in mirrors:
            wait_for(
                lambda m=m: answer_values(m.ask("www.acme.")) == {"192.0.2.1"},
                what=f"{m.name} to mirror acme",
            )
        full = {m.name: m.status()["mirror"]["transfers"]["full"] for m in mirrors}

        hosts.cut(0)
        for m in mirrors:
            assert answer_values(m.ask("www.acme.")) == {"192.0.2.1"}, m.name
        for m in mirrors:
            stale = wait_for(
                lambda m=m: (a := m.ask("www.acme.")) and 3 in ede_codes(a) and a,
                timeout=EXPIRE + 10,
                what=f"{m.name} to serve stale",
            )
            assert answer_values(stale) == {"192.0.2.1"}

        # Writes go on at the registry, which nobody can reach.
        put_inside(hosts, registry, key_dir, "www", "192.0.2.2")
        serial = put_inside(hosts, registry, key_dir, "new", "192.0.2.3")

        # A new host joins during the cut and copies the zone from a mirror.
        late_host = hosts.add()
        late = start_node(
            tmp_path,
            "late",
            listen=f"{hosts.address(late_host)}:{PORT}",
            netns=hosts.ns(late_host),
            registry=upstream,
            peers=[Upstream(PeerRef(mirrors[0].address, mirrors[0].identity))],
            expire=EXPIRE,
        )
        nodes.append(late)
        wait_for(
            lambda: answer_values(late.ask("www.acme.")) == {"192.0.2.1"},
            timeout=30,
            what="the late node to copy from a mirror",
        )
        # One whole copy per zone, each from the mirror: acme. and the node directory's _nodes.
        assert late.status()["mirror"]["transfers"]["fromMirrors"] == 2

        hosts.restore(0)
        for m in [*mirrors, late]:
            wait_for(
                lambda m=m: m.status()["mirror"]["zones"]["acme."]["serial"] == serial,
                timeout=60,
                what=f"{m.name} to catch up to serial {serial}",
            )
            # Fresh again once the registry itself speaks to it (a copy taken from another
            # mirror is as fresh as the registry's anchors it carried, no fresher).
            answer = wait_for(
                lambda m=m: (a := m.ask("new.acme.")) and not ede_codes(a) and a,
                timeout=60,
                what=f"{m.name} to answer new.acme. fresh",
            )
            assert answer_values(answer) == {"192.0.2.3"}, m.name
        for m in mirrors:
            transfers = m.status()["mirror"]["transfers"]
            assert transfers["full"] == full[m.name], f"{m.name} caught up by a full transfer"
            assert transfers["refused"] == 0
    finally:
        for node in nodes:
            node.stop()
