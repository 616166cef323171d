"""Port mapping in the lab (issue 17, point 3): a node behind a port-restricted NAT whose router
runs a NAT-PMP server (the lab's own, ``tests.lab.natpmp_router``, started by
``tests.lab.nat.add_portmap``) gets its UDP port mapped, publishes the mapped address first
among its reflexive ones, and a node behind a *symmetric* NAT — which without the mapping stays
on the relay (``test_paths_matrix.py``) — reaches it directly on its first dial; a mapping
leads a datagram from the internet to its host and is deleted when it expires; the node's
mapping is deleted at its request when it stops.

One network (registry, relay, ``symmetric``, and ``pmp`` behind a port-restricted router with
the NAT-PMP server); about 20 s.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.lab.conftest import require_lab
from tests.lab.lab import python_env
from tests.lab.paths_net import PORT, PathsNet, published_net, stop


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PathsNet]:
    require_lab()
    with published_net(
        tmp_path_factory.mktemp("portmap"),
        Path("/tmp/hm-portmap-logs"),
        ["symmetric", "pmp", "relay"],
        kinds=("symmetric",),
        extra={"pmp": "port-restricted"},
        portmap=("pmp",),
    ) as made:
        yield made


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
    rule = f"udp dport {PORT} dnat to {host.address}:{PORT}"
    assert until(lambda: any(rule in r for r in portmap.redirects()), 10), (
        f"the router holds no redirect to the node: {portmap.redirects()}\n" + net.tail("pmp")
    )
    internal = f"{host.address}:{PORT}"
    assert [(m["event"], m["external"]) for m in portmap.held() if m["internal"] == internal] in (
        [("add", mapped)],
        [("renew", mapped)],
    ), portmap.events()
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


MAPPER = """
import asyncio, json, socket, sys
from hypermesh.transport.portmap import NatPmpClient

port, lifetime = int(sys.argv[1]), int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", port))
sock.settimeout(15)
client = NatPmpClient(port, lifetime=lifetime)


async def ask():
    try:
        return await client.map()
    finally:
        await client.aclose()


mapping = asyncio.run(ask())
print(json.dumps({"address": mapping.address, "lifetime": mapping.lifetime}), flush=True)
data, source = sock.recvfrom(100)
print(json.dumps({"got": data.decode(), "from": source[0]}), flush=True)
"""
"""Run in a host: map UDP ``port`` for ``lifetime`` s (the node's client, alone), say the
mapping, then the first datagram that reaches the port."""


def line_of(process: subprocess.Popen[str], seconds: float) -> dict[str, object]:
    """The next JSON line ``process`` prints, within ``seconds`` (``{}`` when none)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    text = process.stdout.readline() if ready else ""
    found: dict[str, object] = json.loads(text) if text.startswith("{") else {}
    return found


def test_a_mapping_leads_the_internet_to_the_host_and_expires(net: PathsNet) -> None:
    portmap, host = net.portmaps["pmp"], net.members["pmp"].host
    port, internal = 5000, f"{host.address}:5000"
    process = host.popen(
        [sys.executable, "-c", MAPPER, str(port), "3"], env=python_env(), stderr=subprocess.PIPE
    )
    try:
        granted = line_of(process, 10)
        assert granted == {"address": f"{portmap.address}:{port}", "lifetime": 3}, (
            process.poll(),
            process.stderr.read() if process.poll() is not None and process.stderr else "",
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(10):  # a datagram from the root namespace, as from the internet
                sender.sendto(b"hello", (portmap.address, port))
                heard = line_of(process, 0.5)
                if heard:
                    break
        assert heard == {"got": "hello", "from": net.lab.root_address}, heard
    finally:
        stop(process)
    assert until(lambda: not any(f"dnat to {internal}" in r for r in portmap.redirects()), 10)

    def deletions() -> list[object]:
        events = portmap.events()
        return [e["reason"] for e in events if e["event"] == "delete" and e["internal"] == internal]

    # the server logs a deletion just after it takes the rule away: wait for the line too
    assert until(deletions, 5) == ["expired"], portmap.events()


def test_the_mapping_is_deleted_when_the_node_stops(net: PathsNet) -> None:
    portmap = net.portmaps["pmp"]
    member = net.members["pmp"]
    assert portmap.redirects(), "no mapping to delete"
    assert member.proc is not None
    stop(member.proc)
    assert until(lambda: not portmap.redirects(), 5) is True, portmap.redirects()
    assert portmap.held() == []
    internal = f"{member.host.address}:{PORT}"
    deletions = [
        e for e in portmap.events() if e["event"] == "delete" and e["internal"] == internal
    ]
    assert [e["reason"] for e in deletions] == ["request"], portmap.events()  # not expired
