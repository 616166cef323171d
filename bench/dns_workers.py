"""DNS over QUIC from one and from two worker processes on one UDP port (``SO_REUSEPORT``,
``dns_workers``): queries per second and the CPU of the workers and of the load generator,
side by side in one run.

The workers run as a node runs them (``hypermesh.dns.workers``, ``python -m
hypermesh.node.dns_worker``), started by a ``--serve N`` child serving the generated zone of
``bench/dns_qps.py``. The load comes from ``--clients`` child processes (``--client``), each
with ``--connections`` DoQ connections, each from its own source port (the kernel spreads
clients over the workers by their address), each keeping ``--depth`` queries in flight on
its own stream per query. For each worker count and each round: the clients connect and warm
up, then all measure for ``--seconds`` together; each row prints queries per second, the CPU
used by the workers (in cores: CPU seconds per second) and per query, how the workers' CPU
split between them, and the clients' cores. The machine's cores are shared by both sides: the
clients' share says how much of them the load itself took.

Run by hand, not by the tests::

    .venv/bin/python bench/dns_workers.py                       # 1 and 2 workers, 3 rounds
    .venv/bin/python bench/dns_workers.py --workers 1,2,4 --clients 2 --seconds 10

The figures measured so far are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aioquic.asyncio.client import connect

from dns_qps import _doq_configuration, _DoqClient, bench_zone, query_wire

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness
from tests.harness.proc import cpu_seconds

from hypermesh.dns import StaticZones
from hypermesh.dns.workers import DnsWorkers
from hypermesh.node.dns_worker import MODULE
from hypermesh.transport.identity import Identity

# -- the server and the clients (child processes) ------------------------------------------


async def serve(count: int) -> None:
    """Start ``count`` workers; print the port and their pids; stop at the end of stdin."""
    workers = DnsWorkers(
        StaticZones([bench_zone()]), Identity.generate(), "127.0.0.1:0", count, module=MODULE
    )
    await workers.start()
    print(workers.address.rsplit(":", 1)[1], *workers.pids, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await workers.close()


async def client(port: int, connections: int, depth: int, seconds: float) -> None:
    """Open the connections, warm up, print ``ready``; on a line from stdin, keep ``depth``
    queries in flight on each for ``seconds``, then print how many were answered."""
    wire = query_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    counted = [0]
    measuring = asyncio.Event()
    stop = asyncio.Event()

    async def one_connection() -> None:
        async with connect(
            "127.0.0.1", port, configuration=_doq_configuration(), create_protocol=_DoqClient
        ) as conn:
            assert isinstance(conn, _DoqClient)
            for _ in range(20):
                await conn.query(framed)

            async def lane() -> None:
                while not stop.is_set():
                    await conn.query(framed)
                    if measuring.is_set() and not stop.is_set():
                        counted[0] += 1

            ready.release()
            await asyncio.gather(*(lane() for _ in range(depth)))

    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(one_connection()) for _ in range(connections)]
    for _ in range(connections):
        await ready.acquire()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    measuring.set()
    await asyncio.sleep(seconds)
    stop.set()
    print(counted[0], flush=True)
    await asyncio.gather(*tasks)


# -- the run (the parent) ------------------------------------------------------------------


@dataclass
class Row:
    qps: float
    server_cores: float
    cpu_us: float
    split: list[float]
    client_cores: float


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def one_round(workers: int, args: argparse.Namespace) -> Row:
    server = _child("--serve", str(workers))
    assert server.stdout is not None and server.stdin is not None
    port, *pid_texts = server.stdout.readline().split()
    pids = [int(p) for p in pid_texts]
    clients = [
        _child("--client", port, str(args.connections), str(args.depth), str(args.seconds))
        for _ in range(args.clients)
    ]
    try:
        for proc in clients:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("a client did not connect")
        before = [cpu_seconds(pid) for pid in pids]
        client_before = sum(cpu_seconds(proc.pid) for proc in clients)
        started = time.perf_counter()
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        time.sleep(args.seconds)
        elapsed = time.perf_counter() - started
        used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        client_used = sum(cpu_seconds(proc.pid) for proc in clients) - client_before
        answered = 0
        for proc in clients:
            assert proc.stdout is not None
            answered += int(proc.stdout.readline())
            proc.wait(30)
    finally:
        for proc in clients:
            proc.kill()
        server.stdin.close()
        server.wait(30)
    total = sum(used)
    return Row(
        qps=answered / args.seconds,
        server_cores=total / elapsed,
        cpu_us=1e6 * total / max(answered, 1),
        split=[u / total if total else 0.0 for u in used],
        client_cores=client_used / elapsed,
    )


def report(results: dict[int, list[Row]], args: argparse.Namespace) -> None:
    def med(rows: list[Row], field: str) -> float:
        return statistics.median(getattr(r, field) for r in rows)

    print(
        f"{args.clients} client process(es) x {args.connections} connections x {args.depth} "
        f"in flight, {args.seconds:g} s a round, medians of {args.repeat} rounds"
    )
    print(
        f"{'workers':>7} {'q/s':>8} {'workers cores':>13} {'us CPU/query':>12} "
        f"{'split (min-max share)':>22} {'client cores':>12}"
    )
    base = None
    for count, rows in results.items():
        qps = med(rows, "qps")
        base = base or qps
        shares = [share for r in rows for share in r.split]
        print(
            f"{count:7d} {qps:8.0f} {med(rows, 'server_cores'):13.2f} "
            f"{med(rows, 'cpu_us'):12.0f} {min(shares):10.2f}-{max(shares):.2f}".ljust(72)
            + f"{med(rows, 'client_cores'):10.2f}   x{qps / base:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    parser.add_argument("--connections", type=int, default=16, help="connections a client")
    parser.add_argument("--depth", type=int, default=4, help="queries in flight a connection")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds a round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the counts alternate)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    if args.client:
        port, connections, depth, seconds = args.client
        asyncio.run(client(int(port), int(connections), int(depth), float(seconds)))
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    counts = [int(c) for c in args.workers.split(",")]
    results: dict[int, list[Row]] = {count: [] for count in counts}
    for round_ in range(args.repeat):
        for count in counts:
            print(f"round {round_ + 1}: {count} worker(s)", file=sys.stderr, flush=True)
            results[count].append(one_round(count, args))
    report(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
