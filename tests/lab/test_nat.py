"""The lab's NAT routers are what RFC 4787 calls them, seen with plain UDP sockets.

One lab for the module: two public hosts running reflectors (``probe reflect``: each answers
with the address it saw) and a host behind each kind. From inside a host, an agent
(``probe agent``: one UDP socket driven line by line) asks the reflectors which address it is
seen from, and the tests' own sockets in the root namespace play a third party:

- mapping: one socket seen with the same outside port by different destinations is
  endpoint-independent (full-cone, port-restricted, double); a different one each time is
  endpoint-dependent (symmetric: three destinations, so a random coincidence is ~1 in 4e9);
- filtering: a packet from an address the host never sent to reaches it only through a full
  cone (or to a public host); from the address it sent to, through every kind but udp-blocked;
- udp-blocked: no UDP either way, TCP passes (and is NATed);
- double: the internet sees the carrier-grade NAT's address; the home router's outside is in
  100.64.0.0/10;
- two port-restricted hosts open to each other by sending at once (simultaneous open);
- ``flush_conntrack`` drops a mapping (the third party it allowed is refused again), ``move``
  gives a running process a new network (new outside address, new kind).

Every wait is bounded (the agent caps each command); negatives wait 1 s.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.lab.conftest import require_lab
from tests.lab.lab import REPO, Host, Lab, LabError, python_env, sh

REFLECT = (3478, 3479)
"""The ports of the reflectors on each public host."""
ECHO = 7000
KINDS = ["full-cone", "port-restricted", "symmetric", "double", "udp-blocked", None]
NEGATIVE = 1.0
"""How long a test waits for a packet that must not come (seconds)."""


def _name(kind: str | None) -> str:
    return {"full-cone": "fc", "port-restricted": "pr", "symmetric": "sym", "double": "dbl",
            "udp-blocked": "ub", None: "pub"}[kind]  # fmt: skip


@pytest.fixture(scope="module")
def nat_lab() -> Iterator[Lab]:
    """One lab for the module: reflectors ``r1``, ``r2`` and a host per kind (``_name``)."""
    require_lab()
    lab = Lab()
    try:
        for reflector in (lab.add_host("r1"), lab.add_host("r2")):
            for port in REFLECT:
                _ready(reflector.popen(_probe("reflect", port)))
        _ready(lab.host("r1").popen(_probe("echo", ECHO)))
        for kind in KINDS:
            lab.add_host(_name(kind), nat=kind)
        yield lab
    finally:
        lab.close()


def _probe(*args: object) -> list[str]:
    return [sys.executable, "-m", "tests.lab.probe", *map(str, args)]


def _ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("ready"), f"a probe did not start: {line!r}"
    return line


class Agent:
    """A ``probe agent`` in a host: one UDP socket, one command line at a time."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.process = host.popen(_probe("agent"), env=python_env(), stdin=subprocess.PIPE)
        self.port = int(_ready(self.process).split()[1])

    def start(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def call(self, line: str) -> str:
        self.start(line)
        return self.result()

    def got(self, line: str) -> str | None:
        """The text of the datagram a ``recv``/``ask``/``punch``/``tcp`` command got; None."""
        answer = self.call(line)
        assert answer == "none" or answer.startswith("got "), answer
        return None if answer == "none" else answer.split(" ", 2)[-1]

    def observed(self, reflector: Host, port: int = REFLECT[0]) -> tuple[str, int] | None:
        """The address this socket is seen from by ``reflector`` (None: no answer)."""
        seen = self.got(f"ask {reflector.address} {port} 2")
        return None if seen is None else _split(seen)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


def _split(address: str) -> tuple[str, int]:
    ip, port = address.rsplit(":", 1)
    return ip, int(port)


@contextmanager
def agent(host: Host) -> Iterator[Agent]:
    made = Agent(host)
    try:
        yield made
    finally:
        made.close()


@contextmanager
def root_socket(lab: Lab) -> Iterator[socket.socket]:
    """A UDP socket of the root namespace (a third party on the internet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((lab.root_address, 0))
        sock.settimeout(2)
        yield sock


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "udp-blocked"])
def test_mapping(nat_lab: Lab, kind: str | None) -> None:
    host = nat_lab.host(_name(kind))
    r1, r2 = nat_lab.host("r1"), nat_lab.host("r2")
    with agent(host) as probe:
        seen = [probe.observed(r1), probe.observed(r2), probe.observed(r1, REFLECT[1])]
    assert None not in seen, seen
    assert {ip for ip, _ in filter(None, seen)} == {host.public_address}
    ports = {port for _, port in filter(None, seen)}
    if kind == "symmetric":  # endpoint-dependent: a new port per destination
        assert len(ports) > 1, seen
    else:  # endpoint-independent: one port whatever the destination
        assert len(ports) == 1, seen
    if kind in {None, "full-cone"}:  # the port is kept (what full cone's dnat relies on)
        assert ports == {probe.port}


@pytest.mark.parametrize("kind", KINDS)
def test_filtering(nat_lab: Lab, kind: str | None) -> None:
    """The host sends to the root namespace's socket ``known``; then ``stranger`` (same IP,
    another port) and ``known`` send to the address ``known`` saw."""
    host = nat_lab.host(_name(kind))
    with agent(host) as probe, root_socket(nat_lab) as known, root_socket(nat_lab) as stranger:
        target = known.getsockname()
        probe.call(f"send {target[0]} {target[1]} hello")
        if kind == "udp-blocked":
            known.settimeout(NEGATIVE)
            with pytest.raises(TimeoutError):
                known.recvfrom(100)
            return
        data, seen = known.recvfrom(100)
        assert data == b"hello" and seen[0] == host.public_address
        stranger.sendto(b"stranger", seen)
        if kind in {None, "full-cone"}:  # endpoint-independent filtering
            assert probe.got("recv 2") == "stranger"
        else:  # address-and-port-dependent filtering
            assert probe.got(f"recv {NEGATIVE}") is None
        known.sendto(b"reply", seen)
        assert probe.got("recv 2") == "reply"


def test_udp_blocked_lets_tcp_through(nat_lab: Lab) -> None:
    host = nat_lab.host("ub")
    r1 = nat_lab.host("r1")
    with agent(host) as probe:
        assert probe.got(f"ask {r1.address} {REFLECT[0]} {NEGATIVE}") is None
        seen = probe.got(f"tcp {r1.address} {REFLECT[0]}")
    assert seen is not None and _split(seen)[0] == host.public_address
    # Nor does UDP come in: not even to a host behind it that sent first (test_filtering).


def test_double_nat_is_seen_as_the_carrier(nat_lab: Lab) -> None:
    host = nat_lab.host("dbl")
    home, carrier = host.routers
    assert (home.role, carrier.role) == ("home", "carrier")
    assert ipaddress.IPv4Address(home.outside) in ipaddress.IPv4Network("100.64.0.0/10")
    assert ipaddress.IPv4Address(home.outside) in nat_lab.carrier_block
    assert host.public_address == carrier.outside != home.outside
    with agent(host) as probe:
        seen = probe.observed(nat_lab.host("r1"))
    assert seen is not None and seen[0] == carrier.outside


def test_simultaneous_open_between_port_restricted_hosts(nat_lab: Lab) -> None:
    a = nat_lab.host("pr")
    b = nat_lab.add_host("pr2", nat="port-restricted")
    r1 = nat_lab.host("r1")
    with agent(a) as left, agent(b) as right:
        seen_a, seen_b = left.observed(r1), right.observed(r1)
        assert seen_a is not None and seen_b is not None
        # Alone, neither would reach the other (test_filtering): the first packet to arrive is
        # dropped by the other's router, unless that one's own packet opened it already.
        left.start(f"punch {seen_b[0]} {seen_b[1]} 5")
        right.start(f"punch {seen_a[0]} {seen_a[1]} 5")
        got_a, got_b = left.result(), right.result()
    assert got_a == f"got {seen_b[0]}:{seen_b[1]} punch", got_a
    assert got_b == f"got {seen_a[0]}:{seen_a[1]} punch", got_b


@pytest.mark.parametrize("kind", ["port-restricted", "double"])
def test_flush_conntrack_drops_the_mapping(nat_lab: Lab, kind: str) -> None:
    host = nat_lab.add_host(f"fl-{_name(kind)}", nat=kind)
    with agent(host) as probe, root_socket(nat_lab) as known:
        target = known.getsockname()
        probe.call(f"send {target[0]} {target[1]} hello")
        _, seen = known.recvfrom(100)
        known.sendto(b"allowed", seen)
        assert probe.got("recv 2") == "allowed"
        assert any(f"dport={target[1]}" in line for line in nat_lab.mappings(host.name))
        assert nat_lab.flush_conntrack(host.name) == len(host.routers)
        assert not any(f"dport={target[1]}" in line for line in nat_lab.mappings(host.name))
        known.sendto(b"dropped", seen)  # the mapping is gone: unsolicited again
        assert probe.got(f"recv {NEGATIVE}") is None
        probe.call(f"send {target[0]} {target[1]} again")  # a new mapping
        data, again = known.recvfrom(100)
        assert data == b"again" and again[0] == host.public_address
    assert nat_lab.flush_conntrack("r1") == 0  # a public host has no router


def test_move_rehomes_a_running_process(nat_lab: Lab) -> None:
    host = nat_lab.add_host("mover", nat="port-restricted")
    r1 = nat_lab.host("r1")
    old_routers: list[str] = []
    with agent(host) as probe, root_socket(nat_lab) as stranger:
        assert probe.observed(r1) == (host.public_address, probe.port)
        for kind in ["full-cone", None, "double", "symmetric"]:
            before = (host.address, host.public_address)
            old_routers += [r.namespace for r in host.routers]
            assert nat_lab.move(host.name, nat=kind) is host and host.nat == kind
            assert host.address != before[0] and host.public_address != before[1]
            seen = probe.observed(r1)  # the same process, the same socket
            assert seen is not None and seen[0] == host.public_address, (kind, seen)
            if kind in {None, "full-cone"}:  # reachable unsolicited now
                stranger.sendto(b"welcome", seen)
                assert probe.got("recv 2") == "welcome"
        assert probe.process.poll() is None
    namespaces = sh("ip", "netns", "list").split()
    assert not set(old_routers) & set(namespaces)  # the old routers are gone
    assert [r.namespace in namespaces for r in host.routers] == [True]


def test_the_uplink_of_a_nat_host_is_its_routers(nat_lab: Lab) -> None:
    """Delay, loss and cuts act on the link into the internet: the router's, for NAT."""
    host = nat_lab.add_host("far", nat="symmetric", delay_ms=10)
    r1 = nat_lab.host("r1")
    done = host.run(_probe("ask", r1.address, ECHO), env=python_env())
    assert done.returncode == 0 and float(done.stdout) >= 20, done  # a lower bound only
    with agent(host) as probe:
        ask = f"ask {r1.address} {REFLECT[0]}"
        nat_lab.set_link("far", loss=1.0)
        assert probe.got(f"{ask} {NEGATIVE}") is None
        nat_lab.set_link("far", loss=0.0)
        nat_lab.cut("far")
        assert probe.got(f"{ask} {NEGATIVE}") is None
        nat_lab.heal("far")
        assert probe.got(f"{ask} 2") is not None
    lines = "\n".join(nat_lab.describe())
    assert "behind symmetric NAT" in lines and f"router far.r{host.index}" in lines


def test_bad_kinds_are_refused(nat_lab: Lab) -> None:
    with pytest.raises(LabError, match="NAT kind 'cone'"):
        nat_lab.add_host("bad", nat="cone")
    with pytest.raises(LabError, match="NAT kind"):
        nat_lab.move("pub", nat="restricted")
    assert "bad" not in nat_lab.hosts


def test_close_removes_routers_too() -> None:
    require_lab()
    lab = Lab(delay_ms=1)
    lab.add_host("a", nat="double")
    lab.add_host("b", nat="full-cone", loss=0.1)
    lab.move("b", nat="udp-blocked")
    lab.cut("a")
    assert len(lab.namespaces()) == 6
    lab.close()
    assert not [n for n in sh("ip", "netns", "list").splitlines() if n.startswith(lab.tag)]
    assert lab.tag not in sh("ip", "-o", "link", "show")
    assert str(lab.block) not in sh("ip", "route", "show")


HELD = """
import time
from tests.lab.lab import Lab
lab = Lab()
lab.add_host("a", nat="double", delay_ms=1)
lab.add_host("b", nat="full-cone")
print(lab.tag, flush=True)
time.sleep(60)
"""


def test_routers_of_a_killed_owner_are_swept() -> None:
    """SIGKILL leaves the routers behind; the next lab made on the machine removes them."""
    require_lab()
    owner = subprocess.Popen(
        [sys.executable, "-c", HELD], cwd=REPO, env=python_env(), stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    tag = owner.stdout.readline().strip()
    left = [n for n in sh("ip", "netns", "list").split() if n.startswith(f"{tag}-")]
    assert len(left) == 6, left  # a, its home router and carrier, b, its router, the internet
    owner.kill()
    owner.wait(timeout=30)
    Lab().close()
    assert not [n for n in sh("ip", "netns", "list").split() if n.startswith(tag)]
    assert tag not in sh("ip", "-o", "link", "show")
