"""Port mapping in the lab (issue 17, point 3): a node behind a port-restricted NAT whose router
runs a real NAT-PMP server (miniupnpd, ``tests.lab.nat.add_portmap``) gets its UDP port
mapped, publishes the mapped address first among its reflexive ones, and a node behind a
*symmetric* NAT — which without the mapping stays on the relay (``test_paths_matrix.py``)
— reaches it directly on its first dial; the mapping is deleted from miniupnpd when the node
stops.

One network (registry, relay, ``symmetric``, and ``pmp`` behind a port-restricted router with
miniupnpd); about 15 s.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import require_lab
from tests.lab.lab import Lab
from tests.lab.nat import MINIUPNPD
from tests.lab.paths_net import PORT, PathsNet, build, stop, wait_published


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PathsNet]:
    require_lab()
    if not Path(MINIUPNPD).exists():
        pytest.fail("needs miniupnpd: apt-get install -y miniupnpd-nftables", pytrace=False)
    base = tmp_path_factory.mktemp("portmap")
    lab = Lab()
    made: PathsNet | None = None
    try:
        made = build(
            lab,
            base,
            kinds=("symmetric",),
            extra={"pmp": "port-restricted"},
            portmap=("pmp",),
        )
        lacking = wait_published(made, ["symmetric", "pmp", "relay"], timeout=30)
        assert not lacking, f"not published: {lacking}\n" + made.tail("pmp")
        yield made
    finally:
        if made is not None:
            made.close()
        lab.close()
        keep = Path("/tmp/hm-portmap-logs")
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(base, keep, ignore=shutil.ignore_patterns("*.key"), dirs_exist_ok=True)


def until(check: Callable[[], object], seconds: float) -> object:
    """``check()``'s first true value within ``seconds`` (looked at every 0.2 s), else its last."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.2) + 1):
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
    return check()


def record_reflexive(net: PathsNet, name: str) -> tuple[str, ...]:
    from hypermesh.registry.client import RegistryClient

    reg = net.reg
    client = RegistryClient(f"{reg.host.address}:{reg.port}", reg.node_id, identity=None)
    record = asyncio.run(client.node_record(node_id=net.members[name].node_id))
    return () if record is None else record.reflexive


def test_the_mapped_address_is_published_and_a_symmetric_nat_dials_it_directly(
    net: PathsNet,
) -> None:
    portmap = net.portmaps["pmp"]
    mapped = f"{portmap.address}:{PORT}"
    host = net.members["pmp"].host
    rule = f"dnat ip to {host.address}:{PORT}"
    assert until(lambda: any(rule in r for r in portmap.redirects()), 10), (
        f"miniupnpd holds no redirect to the node: {portmap.redirects()}\n" + net.tail("pmp")
    )
    assert any(f":{PORT}:{host.address}:{PORT}:" in lease for lease in portmap.leases())
    view = net.view("pmp")
    assert view["mapping"]["protocol"] == "nat-pmp", view
    assert view["mapping"]["address"] == mapped
    assert view["reflexive"][0] == mapped
    assert until(lambda: record_reflexive(net, "pmp")[:1] == (mapped,), 10), (
        f"the record does not name the mapped address first: {record_reflexive(net, 'pmp')}"
    )
    metrics = net.call("pmp", {"op": "metrics"})["text"]
    assert 'hypermesh_port_mapping{protocol="nat-pmp"} 1.0' in metrics

    got = net.ping("symmetric", "pmp", count=1)
    answer = got.get("answer", {})
    print(f"\nsymmetric → pmp (mapped {mapped}): {answer}")
    assert got.get("status") == 200, got
    assert answer["path"] == "direct", f"not direct on the first dial: {answer}"
    assert not answer.get("upgraded"), "went through the relay first"
    assert answer["remote"] == mapped


def test_the_mapping_is_deleted_when_the_node_stops(net: PathsNet) -> None:
    portmap = net.portmaps["pmp"]
    member = net.members["pmp"]
    assert portmap.redirects(), "no mapping to delete"
    assert member.proc is not None
    stop(member.proc)
    assert until(lambda: not portmap.redirects(), 5) is True, portmap.redirects()
    assert portmap.leases() == []
    log = portmap.log_file.read_text()
    assert f"port mapping request : 0->{member.host.address}:{PORT} udp lifetime=0s" in log
    assert f"NAT-PMP UDP port {PORT} mapping removed" in log  # asked by the node, not expired
