"""DNS workers (``dns_workers``): several processes answering DNS over QUIC on one UDP port
(``SO_REUSEPORT``), from the zones the node writes, gone with the node."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.zone
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hypermesh.dns.source import StaticZones
from hypermesh.dns.workers import DnsWorkers
from hypermesh.node.dns_worker import MODULE
from hypermesh.transport.client import h3_get
from hypermesh.transport.identity import Identity
from tests.harness.kdig import answer_lines, run_kdig
from tests.harness.node_process import NodeStarter, write_config

ZONE = "$TTL 60\n@ IN SOA ns hm 1 60 60 600 60\n@ IN NS ns\nns IN A 192.0.2.1\n"
CLIENTS = 24
"""DoQ clients, each from its own source port: enough that two workers both get some (the
chance that the kernel's hash sends all 24 to one of two sockets is 2 in 2**24)."""


def _zone(origin: str, extra: str = "") -> dns.zone.Zone:
    return dns.zone.from_text(ZONE + extra, origin=origin, relativize=True)


def _ask(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    """One DoQ query from a new connection (a new source port), certificate not checked."""
    query = dns.message.make_query(name, rdtype)
    return dns.query.quic(query, "127.0.0.1", port=port, timeout=5, verify=False)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
    except FileNotFoundError:
        return True


def _wait(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {what}")


def test_workers_answer_from_the_zones_and_follow_their_changes() -> None:
    async def run() -> None:
        zones = StaticZones([_zone("one.", "www IN A 198.51.100.1\n")])
        workers = DnsWorkers(zones, Identity.generate(), "127.0.0.1:0", 2, module=MODULE)
        await workers.start()
        try:
            port = int(workers.address.rsplit(":", 1)[1])
            pids = workers.pids
            assert len(set(pids)) == 2 and os.getpid() not in pids
            answers = [await asyncio.to_thread(_ask, port, "www.one.") for _ in range(CLIENTS)]
            assert {a.answer[0][0].address for a in answers} == {"198.51.100.1"}
            zones.set(_zone("one.", "www IN A 198.51.100.2\n"))
            zones.set(_zone("two.", "mail IN A 203.0.113.9\n"))
            zones.set_stale([dns.name.from_text("two.")])
            await asyncio.sleep(0.3)  # the changes go to the workers on the next loop turn
            later = [await asyncio.to_thread(_ask, port, "www.one.") for _ in range(CLIENTS)]
            assert {a.answer[0][0].address for a in later} == {"198.51.100.2"}
            two = await asyncio.to_thread(_ask, port, "mail.two.")
            assert two.answer[0][0].address == "203.0.113.9"
            zones.remove("two.")
            await asyncio.sleep(0.3)
            gone = await asyncio.to_thread(_ask, port, "mail.two.")
            assert gone.rcode() == dns.rcode.REFUSED
            deadline = time.monotonic() + 10  # the counts come at most 0.5 s after a query
            while sum(workers.queries().values()) < 2 * CLIENTS + 2:
                assert time.monotonic() < deadline, workers.queries()
                await asyncio.sleep(0.1)
            counts = workers.queries()
            assert all(counts[pid] > 0 for pid in pids), counts
            assert sum(counts.values()) == 2 * CLIENTS + 2
        finally:
            await workers.close()
        assert all(_gone(pid) for pid in pids)

    asyncio.run(run())


def _worker_queries(address: str, pin: str) -> dict[str, float]:
    status, _, body = asyncio.run(h3_get(address, "/metrics", expected_id=pin, identity=None))
    assert status == 200
    return {
        sample.labels["pid"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "hypermesh_dns_worker_queries_total"
    }


def test_a_node_with_two_dns_workers(nodes: NodeStarter, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, "workers")
    config = json.loads(config_path.read_text())
    config.update(dns_workers=2, dns_listen="127.0.0.1:0")
    config_path.write_text(json.dumps(config))
    node = nodes.restart(config_path)
    started = [
        json.loads(line)
        for line in node.log_file.read_text().splitlines()
        if line.startswith("{") and "DNS workers serve" in line
    ]
    assert len(started) == 1, node.log_file.read_text()
    port = int(started[0]["address"].rsplit(":", 1)[1])
    pids = [int(pid) for pid in started[0]["pids"]]
    assert len(set(pids)) == 2 and node.proc.pid not in pids

    kdig = run_kdig(port, "www.example.", "A", "+quic")
    assert kdig.returncode == 0, kdig.stderr
    assert "status: REFUSED" in kdig.stdout  # the node serves no zones: REFUSED, from a worker
    assert answer_lines(kdig.stdout) == []
    for _ in range(CLIENTS):
        assert _ask(port, "www.example.").rcode() == dns.rcode.REFUSED

    def all_counted() -> bool:
        return sum(_worker_queries(node.address, node.identity).values()) >= CLIENTS + 1

    _wait(all_counted, "the workers' counts in /metrics")
    counts = _worker_queries(node.address, node.identity)
    assert sum(counts.values()) == CLIENTS + 1
    assert all(counts.get(str(pid), 0) > 0 for pid in pids), counts  # both served queries

    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(5)
    _wait(lambda: all(_gone(pid) for pid in pids), "the workers exit with the killed node")


def test_spec_dns_becomes_the_node_config_fields(tmp_path: Path) -> None:
    from hypermesh.drivers.nodeconfig import dns_of
    from hypermesh.node.config import NodeConfig

    assert dns_of({}) == {}
    assert dns_of({"dns": {"workers": 1}}) == {}
    fields = dns_of({"dns": {"workers": 4, "listen": "0.0.0.0:8853"}})
    assert fields == {"dns_workers": 4, "dns_listen": "0.0.0.0:8853"}
    config = NodeConfig.load(write_config(tmp_path, "spec"))
    assert config.dns_workers == 1 and "dns_workers" not in config.to_json()  # old files alike
    changed = NodeConfig.from_dict({**json.loads(config.to_json()), **fields})
    assert NodeConfig.from_json(changed.to_json()) == changed
    assert (changed.dns_workers, changed.dns_listen) == (4, "0.0.0.0:8853")
    for wrong, field in (({"dns_workers": 0}, "dns_workers"), ({"dns_listen": "x"}, "dns_listen")):
        with pytest.raises(ValueError, match=field):
            NodeConfig.from_dict({**json.loads(config.to_json()), **wrong})
