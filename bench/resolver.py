"""The stub resolver over UDP: queries per second and the stub's CPU per query, against the
mesh (a node asked over DoQ, every answer verified from the registry's key) and against Knot
over plain UDP (names forwarded), each with a cold cache and a warm one.

Starts a registry and a mirror node on loopback (the tests' harness), registers ``bench``-like
names under the TLD ``acme``, runs Knot (Debian's ``knotd``, one UDP worker) serving a zone
``bench.`` with the same number of names, and runs ``hmctl resolver run`` in a child process
asking the mirror over DoQ and forwarding to Knot. The client here sends UDP queries (one at
a time, then ``--inflight`` at once) and reads the CPU time of the stub (and of what it asks:
the node, or knotd) from ``/proc/PID/stat``:

  mesh cold   a different name per query: the stub asks the node over DoQ (one stream on a
              kept connection) and checks the answer's signatures from the registry's anchors
  mesh warm   one name again and again: answered from the stub's cache (kept for its TTL)
  knot cold   a different name per query: forwarded to Knot over UDP
  knot warm   one name again and again: from the stub's cache
  knot direct the same queries sent to Knot itself, for scale

Run by hand, not by the tests (about a minute)::

    .venv/bin/python bench/resolver.py
    .venv/bin/python bench/resolver.py --names 300 --inflight 16

The figures measured so far are in docs/benchmarks.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ must not be on the path (bench/operator.py would shadow the standard library's); the
# repository's root must, for tests.harness.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
from tests.harness.nodes import NodeProc, Owner, start_node, wait_for  # noqa: E402
from tests.harness.proc import cpu_seconds, free_udp_port  # noqa: E402

from hypermesh.node.config import Upstream  # noqa: E402
from hypermesh.transport.address import PeerRef  # noqa: E402

KNOTD = "/usr/sbin/knotd"
DEADLINE = 60.0
"""No series runs longer than this, whatever the counts say."""
BATCH = 100
"""Records registered per registry call."""


@contextmanager
def mesh(names: int) -> Iterator[tuple[NodeProc, NodeProc]]:
    """A registry and a mirror with ``host0.acme`` … registered, the mirror holding them."""
    root = Path(tempfile.mkdtemp(prefix="hm-bench-resolver-"))
    nodes: list[NodeProc] = []
    try:
        registry = start_node(
            root, "registry", roles=("registry",), listen=f"127.0.0.1:{free_udp_port()}"
        )
        nodes.append(registry)
        m1 = start_node(root, "m1", registry=Upstream(PeerRef(registry.address, registry.identity)))
        nodes.append(m1)
        owner = Owner(registry)
        owner.register("acme")
        for start in range(0, names, BATCH):
            rrsets = [
                {"name": f"host{n}", "type": "A", "changetype": "REPLACE", "ttl": 300,
                 "values": [f"198.51.{n // 256 % 256}.{n % 256}"]}
                for n in range(start, min(names, start + BATCH))
            ]  # fmt: skip
            owner.call("/registry/v1/rrsets", {"tld": "acme", "rrsets": rrsets})
        last = f"host{names - 1}.acme."
        wait_for(lambda: m1.ask(last).answer, timeout=60, what="the mirror to hold every name")
        yield registry, m1
    finally:
        for node in nodes:
            node.stop()


@contextmanager
def knot(names: int) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``knotd`` serving ``host0.bench.`` … on 127.0.0.1 over UDP, one UDP worker."""
    if not Path(KNOTD).exists():
        raise SystemExit("knotd is missing: apt-get install knot")
    with tempfile.TemporaryDirectory() as folder:
        lines = ["$TTL 300", "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 120", "@ IN NS ns1"]
        lines += ["ns1 IN A 192.0.2.1"]
        lines += [f"host{n} IN A 198.51.{n // 256 % 256}.{n % 256}" for n in range(names)]
        Path(folder, "bench.zone").write_text("\n".join(lines) + "\n")
        port = free_udp_port()
        Path(folder, "knot.conf").write_text(
            f"server:\n    rundir: {folder}\n    listen: 127.0.0.1@{port}\n"
            "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            f"database:\n    storage: {folder}\n"
            "log:\n  - target: stderr\n    any: warning\n"
            f"zone:\n  - domain: bench.\n    storage: {folder}\n    file: bench.zone\n"
        )
        process = subprocess.Popen([KNOTD, "-c", f"{folder}/knot.conf"], stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: ask_once(port, "host0.bench."), timeout=10, what="knotd")
            yield port, process
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def stub(m1: NodeProc, registry: NodeProc, knot_port: int) -> Iterator[tuple[int, int]]:
    """``hmctl resolver run`` in a child process: (its port, its pid)."""
    command = [
        sys.executable, "-m", "hypermesh.cli.main", "resolver", "run", "--listen", "127.0.0.1:0",
        "--address", m1.address, "--identity", m1.identity, "--registry-id", registry.identity,
        "--upstream", f"127.0.0.1:{knot_port}",
        "--status-file", str(Path(tempfile.mkdtemp(prefix="hm-bench-stub-")) / "status.json"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", process.stdout.readline())
        if found is None:
            raise SystemExit("hmctl resolver run did not start")
        yield int(found.group(1)), process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def ask_once(port: int, name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", port))
            return bool(sock.recv(4096))
        except OSError:
            return False


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        future = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if future is not None and not future.done():
            future.set_result(data)


async def blast(port: int, names: list[str], inflight: int) -> tuple[int, int, float]:
    """Ask ``names`` (in order, ``inflight`` at once) of 127.0.0.1:``port``: (answered,
    failed, seconds). Each query waits at most 3 s; the series at most ``DEADLINE``."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, remote_addr=("127.0.0.1", port)
    )
    answered = failed = 0
    queue = list(enumerate(names))
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal answered, failed
        while queue and time.perf_counter() - started < DEADLINE:
            n, name = queue.pop(0)
            query = dns.message.make_query(name, "A", id=n % 65536)
            future: asyncio.Future[bytes] = loop.create_future()
            client.waiting[query.id] = future
            transport.sendto(query.to_wire())
            try:
                data = await asyncio.wait_for(future, 3)
                ok = dns.message.from_wire(data).rcode() == dns.rcode.NOERROR
                answered, failed = answered + ok, failed + (not ok)
            except TimeoutError:
                client.waiting.pop(query.id, None)
                failed += 1

    await asyncio.gather(*(worker() for _ in range(inflight)))
    transport.close()
    return answered, failed, time.perf_counter() - started


@dataclass
class Row:
    what: str
    inflight: int
    answered: int
    failed: int
    seconds: float
    stub_cpu: float
    behind_cpu: float

    def show(self) -> str:
        n = max(1, self.answered + self.failed)
        qps = n / self.seconds if self.seconds else 0.0
        stub = f"{self.stub_cpu / n * 1e6:9.0f}" if self.stub_cpu >= 0 else "        -"
        return (
            f"{self.what:<12} {self.inflight:>4} {n:>6} {self.failed:>6} {qps:>9.0f} "
            f"{stub} {self.behind_cpu / n * 1e6:11.0f}"
        )


def measure(
    what: str, port: int, names: list[str], inflight: int, pids: tuple[int | None, int]
) -> Row:
    stub_pid, behind_pid = pids
    read: Callable[[int | None], float] = lambda pid: cpu_seconds(pid) if pid else 0.0  # noqa: E731
    before = (read(stub_pid), read(behind_pid))
    answered, failed, seconds = asyncio.run(blast(port, names, inflight))
    stub_cpu = read(stub_pid) - before[0] if stub_pid else -1.0
    return Row(what, inflight, answered, failed, seconds, stub_cpu, read(behind_pid) - before[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--names", type=int, default=500, help="distinct names per cold series (default 500)"
    )
    parser.add_argument(
        "--warm", type=int, default=2000, help="queries per warm series (default 2000)"
    )
    parser.add_argument(
        "--inflight", type=int, default=32, help="queries at once in the second pass (default 32)"
    )
    args = parser.parse_args()
    names = max(10, min(args.names, 5000))
    warm = max(10, min(args.warm, 20000))
    with (
        mesh(2 * names) as (registry, m1),
        knot(2 * names) as (knot_port, knotd),
        stub(m1, registry, knot_port) as (port, pid),
    ):
        print(f"stub pid {pid} on 127.0.0.1:{port}; node pid {m1.process.pid}; knotd {knotd.pid}")
        print(f"{'series':<12} {'at':>4} {'asked':>6} {'failed':>6} {'q/s':>9}", end=" ")
        print(f"{'stub µs/q':>9} {'behind µs/q':>11}")
        node, knot_pid = (pid, m1.process.pid), (pid, knotd.pid)
        for inflight in (1, max(1, min(args.inflight, 256))):
            half = 0 if inflight == 1 else names  # fresh names for the second cold pass
            series = [
                ("mesh cold", port, [f"host{n}.acme." for n in range(half, half + names)], node),
                ("mesh warm", port, ["host0.acme."] * warm, node),
                (
                    "knot cold",
                    port,
                    [f"host{n}.bench." for n in range(half, half + names)],
                    knot_pid,
                ),
                ("knot warm", port, ["host0.bench."] * warm, knot_pid),
                ("knot direct", knot_port, ["host0.bench."] * warm, (None, knotd.pid)),
            ]
            for what, to, asked, pids in series:
                print(measure(what, to, asked, inflight, pids).show(), flush=True)
    # gateway: see bench/gateway.py


if __name__ == "__main__":
    main()
