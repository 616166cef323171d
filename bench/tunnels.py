"""The ephemeral interface (``hypermesh.tunnel``) against the direct path, on real node
processes: what a tunnel of 1, 2 and 3 relays costs in round trip, throughput and opening,
and what the private interface's mutual TLS handshake costs against the public one.

A real ``hmctl apply`` (subprocess) starts, from a manifest written into a temporary folder, a
private network on 127.0.0.1: a registry, three relays (role relay, interfaces public and
ephemeral) and a destination (interfaces public, private and ephemeral), with no
InterfacePolicy (open: nothing rate-limits the bench). This process is the client. Sections,
each printed side by side with its baseline:

``rtt``
    one small request (GET /healthz on the destination): ``direct`` on a kept-open connection
    to its public endpoint (``ConnectionPool``), and through an open tunnel of 1, 2 and 3
    relays (``Tunnel.request``); median, p90 and p99, each as a multiple of direct
``throughput``
    a POST of ``--payload`` bytes to /healthz (answered 405 once the whole body has reached
    the destination through every hop): MB/s of payload in the request direction

Both take each tunnel path twice, side by side: ``v1`` messages (one AEAD layer over the whole
message per hop: each relay stores the message, then forwards it; the baseline) and ``v2``
(records of 16 KiB each relay opens and passes on as they arrive, ``tunnel.records``), chosen
per tunnel by ``Tunnel.streaming`` on the same nodes. (Left to itself, a client sends v1 for a
request padded to one record or less, such as [rtt]'s, and v2 for larger ones.)
``open``
    ``Tunnel.open`` through 1, 2 and 3 relays (an HPKE layer per hop plus one round trip
    through the path), each tunnel closed after (not timed)
``handshake``
    a fresh QUIC + TLS handshake and one GET /status: the public endpoint anonymously, and the
    private endpoint with a member's key (mutual TLS; the registry's node key)

The paths of a section take turns in ``ROUNDS`` chunks, so drift in the machine's speed hits
each alike; every chunk is bounded by its count and by its share of ``--time-limit``. Next to
the times: the CPU time per operation of the node processes on the path (the relays it passes
and the destination, summed, from ``/proc/PID/stat``; their idle use, printed first, is in it)
and of this client. ``hmctl down`` and removal of the folder always run at the end.

Run by hand, not by the tests::

    .venv/bin/python bench/tunnels.py              # 500 requests, 40 x 256 KiB, 50 opens, 200
    .venv/bin/python bench/tunnels.py --quick      # a smoke run: small counts
    .venv/bin/python bench/tunnels.py --sections rtt throughput   # only those
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hypermesh.node.server import MAX_REQUEST_BYTES
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity, load_identity
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.client import Tunnel, fetch_hops
from hypermesh.tunnel.onion import CIRCUIT_SIZE, LAYER_OVERHEAD, Hop, build_open, encode_request

HMCTL = [sys.executable, "-m", "hypermesh.cli.main"]
NETWORK = "tunbench"
RELAYS = ("r1", "r2", "r3")
DESTINATION = "dest"
REGISTRY = "registry"
NODES = (REGISTRY, *RELAYS, DESTINATION)
ROUNDS = 4
WARM_UP = 5
IDLE = 3.0
TTL = 3600.0
REQUEST_TIMEOUT = 30.0
DEFAULTS = {"requests": 500, "payload": 256 * 1024, "transfers": 40, "opens": 50, "handshakes": 200}
QUICK = {"requests": 40, "payload": 64 * 1024, "transfers": 8, "opens": 8, "handshakes": 20}
TICK = os.sysconf("SC_CLK_TCK")
SECTIONS = {"rtt": "rtt", "throughput": "throughput", "open": "opens", "handshake": "handshakes"}


# -- the network -------------------------------------------------------------------------------


def manifest() -> str:
    head = "apiVersion: hypermesh.online/v1alpha1\n"
    docs = [
        f"{head}kind: Network\nmetadata: {{name: {NETWORK}}}\n"
        f"spec: {{mode: private, registry: {{node: {REGISTRY}}}}}\n"
    ]
    nodes = [(REGISTRY, "[registry]", "[public]")]
    nodes += [(name, "[relay]", "[public, ephemeral]") for name in RELAYS]
    nodes.append((DESTINATION, "[]", "[public, private, ephemeral]"))
    for name, roles, interfaces in nodes:
        docs.append(
            f"{head}kind: Node\nmetadata: {{name: {name}}}\n"
            f'spec: {{network: {NETWORK}, roles: {roles}, listen: "127.0.0.1:0", '
            f"interfaces: {interfaces}}}\n"
        )
    return "---\n".join(docs)


def hmctl(state: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HMCTL, "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


@dataclass(frozen=True)
class Node:
    name: str
    identity: str
    address: str
    pid: int
    ephemeral: str | None
    private: str | None


def read_nodes(state: Path) -> dict[str, Node]:
    got = hmctl(state, "get", "nodes", "-o", "json", timeout=60)
    if got.returncode != 0:
        raise SystemExit(f"hmctl get nodes failed (exit {got.returncode}): {got.stderr.strip()}")
    nodes = {}
    for item in json.loads(got.stdout)["items"]:
        status = item["status"]
        name = item["metadata"]["name"]
        if not status.get("identity") or not status.get("address") or not status.get("pid"):
            raise SystemExit(f"node {name} is not running: {json.dumps(status)[:300]}")
        nodes[name] = Node(
            name,
            status["identity"],
            status["address"],
            status["pid"],
            status.get("ephemeralAddress"),
            status.get("privateAddress"),
        )
    return nodes


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes have used so far, summed."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Series:
    """One path of a section: the time of each operation, and CPU used during its chunks."""

    label: str
    times: list[float] = field(default_factory=list)
    node_cpu: float = 0.0
    client_cpu: float = 0.0
    wall: float = 0.0

    def pct(self, p: float) -> float:
        ordered = sorted(self.times)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    def median(self) -> float:
        return statistics.median(self.times)


Op = Callable[[], Awaitable[float | None]]
"""One operation; it returns the seconds to count when only part of it is to be timed."""


async def measure(
    paths: Sequence[tuple[str, Op]],
    count: int,
    time_limit: float,
    pids: Sequence[Sequence[int]],
) -> list[Series]:
    """``count`` operations per path (after ``WARM_UP`` not counted), the paths taking turns in
    ``ROUNDS`` chunks; each chunk also stops when it has used its share of ``time_limit``.
    ``pids[i]``: the node processes whose CPU time counts for path ``i`` (those it goes through)."""
    series = [Series(label) for label, _ in paths]
    for _, op in paths:
        for _ in range(WARM_UP):
            await op()
    budget = time_limit / (ROUNDS * len(paths))
    bounds = [count * r // ROUNDS for r in range(ROUNDS + 1)]
    for r in range(ROUNDS):
        for (_, op), one, on_path in zip(paths, series, pids, strict=True):
            nodes_before, client_before = cpu_seconds(on_path), time.process_time()
            chunk_start = time.perf_counter()
            for _ in range(bounds[r + 1] - bounds[r]):
                started = time.perf_counter()
                took = await op()
                one.times.append(time.perf_counter() - started if took is None else took)
                if started - chunk_start > budget:
                    break
            one.wall += time.perf_counter() - chunk_start
            one.node_cpu += cpu_seconds(on_path) - nodes_before
            one.client_cpu += time.process_time() - client_before
    return series


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f}"


def cpu_cols(one: Series) -> str:
    n = len(one.times)
    return f"{1e3 * one.node_cpu / n:7.2f} {1e3 * one.client_cpu / n:7.2f}"


def latency_table(series: list[Series], *, p99: bool = True) -> None:
    base = series[0]
    head = f"  {'path':<22}{'n':>5} {'median':>8} {'p90':>8}" + (f" {'p99':>8}" if p99 else "")
    print(f"{head}   {'x base (median)':>16}  {'nodes':>7} {'client':>7}")
    print(
        f"  {'':<22}{'':>5} {'ms':>8} {'ms':>8}"
        + (f" {'ms':>8}" if p99 else "")
        + " " * 21
        + "cpu ms/op (nodes on the path summed)"
    )
    for one in series:
        text = f"  {one.label:<22}{len(one.times):5d} {ms(one.median())} {ms(one.pct(0.9))}"
        if p99:
            text += f" {ms(one.pct(0.99))}"
        ratio = one.median() / base.median()
        text += f"   {ratio:15.2f}x  {cpu_cols(one)}"
        print(text, flush=True)


# -- the sections ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, nodes: dict[str, Node], key: Identity) -> None:
        self.args = args
        self.nodes = nodes
        self.dest = nodes[DESTINATION]
        self.key = key
        self.pool = ConnectionPool(None)
        self.hops: dict[str, Hop] = {}

    async def setup(self) -> None:
        pairs = [(self.nodes[n].ephemeral, self.nodes[n].identity) for n in (*RELAYS, DESTINATION)]
        missing = [n for n in (*RELAYS, DESTINATION) if not self.nodes[n].ephemeral]
        if missing or not self.dest.private:
            raise SystemExit(f"no ephemeral or private endpoint on {missing or DESTINATION}")
        by_id = await fetch_hops(self.pool, [(str(a), i) for a, i in pairs])
        self.hops = {n: by_id[self.nodes[n].identity] for n in (*RELAYS, DESTINATION)}

    def pids(self, relays: int) -> list[int]:
        """The node processes a request through ``relays`` relays passes (0: direct)."""
        return [self.nodes[n].pid for n in (*RELAYS[:relays], DESTINATION)]

    def path(self, relays: int) -> list[Hop]:
        return [self.hops[n] for n in RELAYS[:relays]] + [self.hops[DESTINATION]]

    async def direct(self, method: str, body: bytes, expect: int) -> None:
        status, _, _ = await self.pool.request(
            self.dest.address,
            self.dest.identity,
            method,
            "/healthz",
            body=body,
            timeout=REQUEST_TIMEOUT,
        )
        if status != expect:
            raise SystemExit(f"direct {method} /healthz answered {status}, not {expect}")

    async def open_tunnels(self) -> list[Tunnel]:
        """Tunnels through 1, 2, 3 relays sending v1 messages, then the same sending v2."""
        tunnels = []
        for streaming in (False, True):
            for n in (1, 2, 3):
                tunnel = await Tunnel.open(self.path(n), ttl=TTL, pool=self.pool, min_relays=1)
                tunnel.streaming = streaming
                tunnels.append(tunnel)
        return tunnels

    def paths(
        self, tunnels: list[Tunnel], method: str, body: bytes, expect: int
    ) -> list[tuple[str, Op]]:
        async def direct() -> None:
            await self.direct(method, body, expect)

        def through(tunnel: Tunnel) -> Op:
            async def op() -> None:
                answer = await tunnel.request(
                    method, "/healthz", body=body, timeout=REQUEST_TIMEOUT
                )
                if answer.status != expect:
                    raise SystemExit(f"{method} /healthz through a tunnel answered {answer.status}")

            return op

        return [("direct (kept conn.)", direct)] + [
            (f"{'v2' if t.streaming else 'v1'}, {n} relay{'s' if n > 1 else ''}", through(t))
            for n, t in zip((1, 2, 3, 1, 2, 3), tunnels, strict=True)
        ]

    async def rtt(self) -> None:
        args = self.args
        print(
            f"\n[rtt] one GET /healthz on the destination, {args.requests} per path (+{WARM_UP} "
            "warm-up): the direct path on a kept-open connection to its public endpoint, and the "
            "same request through an open tunnel (the client's connection to the first relay and "
            "the relays' onward connections kept open)",
            flush=True,
        )
        tunnels = await self.open_tunnels()
        try:
            series = await measure(
                self.paths(tunnels, "GET", b"", 200),
                args.requests,
                args.time_limit,
                [self.pids(n) for n in (0, 1, 2, 3, 1, 2, 3)],
            )
        finally:
            for tunnel in tunnels:
                await tunnel.close()
        latency_table(series)
        base = series[0].median()
        for label, part in (("v1", series[1:4]), ("v2", series[4:7])):
            steps = [s.median() for s in part]
            added = ", ".join(f"{1e3 * (b - a):.2f}" for a, b in itertools.pairwise(steps))
            print(
                f"  {label}: first relay adds {1e3 * (steps[0] - base):.2f} ms to direct "
                f"(median); each further relay adds {added} ms",
                flush=True,
            )

    async def throughput(self) -> None:
        args = self.args
        body = os.urandom(args.payload)
        padded = len(encode_request("POST", "/healthz", (), body))
        print(
            f"\n[throughput] REQUEST DIRECTION ONLY: a POST of {args.payload:,} bytes to /healthz, "
            f"{args.transfers} per path (+{WARM_UP} warm-up); the destination answers 405 once the "
            "whole body arrived through every hop (the answer is small). MB/s = payload bytes / "
            f"time (10^6 B). Through a tunnel the request is padded to {padded:,} bytes, plus "
            f"{LAYER_OVERHEAD} per hop",
            flush=True,
        )
        tunnels = await self.open_tunnels()
        try:
            series = await measure(
                self.paths(tunnels, "POST", body, 405),
                args.transfers,
                args.time_limit,
                [self.pids(n) for n in (0, 1, 2, 3, 1, 2, 3)],
            )
        finally:
            for tunnel in tunnels:
                await tunnel.close()
        base = series[0]
        print(
            f"  {'path':<22}{'n':>5} {'MB/s':>8} {'median':>8} {'p90':>8}   {'x direct':>9}  "
            f"{'nodes':>7} {'client':>7}"
        )
        print(f"  {'':<22}{'':>5} {'':>8} {'ms':>8} {'ms':>8}   {'(MB/s)':>9}  cpu ms/op")
        for one in series:
            rate = args.payload * len(one.times) / sum(one.times) / 1e6
            base_rate = args.payload * len(base.times) / sum(base.times) / 1e6
            print(
                f"  {one.label:<22}{len(one.times):5d} {rate:8.1f} {ms(one.median())} "
                f"{ms(one.pct(0.9))}   {rate / base_rate:8.2f}x  {cpu_cols(one)}",
                flush=True,
            )

    async def opens(self) -> None:
        args = self.args
        print(
            f"\n[open] Tunnel.open through 1, 2, 3 relays, {args.opens} each (+{WARM_UP} "
            "warm-up): an HPKE-sealed layer per hop (client) and opened by each hop, one round "
            "trip through the whole path; each tunnel closed after (not timed). Base: one "
            "direct GET /healthz on the kept connection; build_open: the client's HPKE sealing "
            "alone, in process",
            flush=True,
        )

        async def direct() -> None:
            await self.direct("GET", b"", 200)

        def opener(relays: int) -> Op:
            async def op() -> float:
                started = time.perf_counter()
                tunnel = await Tunnel.open(self.path(relays), ttl=TTL, pool=self.pool, min_relays=1)
                took = time.perf_counter() - started
                await tunnel.close()
                return took  # the open alone

            return op

        paths: list[tuple[str, Op]] = [("direct GET (base)", direct)]
        paths += [(f"open, {n} relay{'s' if n > 1 else ''}", opener(n)) for n in (1, 2, 3)]
        series = await measure(
            paths, args.opens, args.time_limit, [self.pids(n) for n in (0, 1, 2, 3)]
        )
        latency_table(series, p99=False)
        print("  (cpu columns include each tunnel's close)")
        for n in (1, 2, 3):
            path = self.path(n)
            started = time.perf_counter()
            rounds = 200
            for _ in range(rounds):
                build_open(path, time.time() + TTL)
            each = (time.perf_counter() - started) / rounds
            print(f"  build_open, {n + 1} hops (client HPKE only){'':<3}{ms(each)} ms", flush=True)

    async def handshakes(self) -> None:
        args = self.args
        print(
            f"\n[handshake] a fresh QUIC + TLS handshake and one GET /status, {args.handshakes} "
            f"per row (+{WARM_UP} warm-up): the destination's public endpoint anonymously, and "
            "its private endpoint with a member's key (the registry's node key: mutual TLS, the "
            "client proves its key); connection closed after each",
            flush=True,
        )

        def connect(address: str, identity: Identity | None) -> Op:
            async def op() -> None:
                async with (
                    asyncio.timeout(REQUEST_TIMEOUT),
                    connect_h3(address, expected_id=self.dest.identity, identity=identity) as h3,
                ):
                    status, _, _ = await h3.request("GET", "/status")
                if status != 200:
                    raise SystemExit(f"GET /status on {address} answered {status}")

            return op

        paths = [
            ("public, anonymous", connect(self.dest.address, None)),
            ("private, member key", connect(str(self.dest.private), self.key)),
        ]
        series = await measure(paths, args.handshakes, args.time_limit, [self.pids(0)] * 2)
        latency_table(series, p99=True)
        async with (
            asyncio.timeout(REQUEST_TIMEOUT),
            connect_h3(str(self.dest.private), expected_id=self.dest.identity, identity=None) as h3,
        ):
            status, _, _ = await h3.request("GET", "/status")
        print(
            f"  check: the private endpoint without a client key answers GET /status {status}"
            f"{'' if status == 403 else ' (expected 403: is the private gate on?)'}",
            flush=True,
        )

    async def idle(self) -> None:
        """What the node processes use doing nothing, over ``IDLE`` seconds: the floor under
        the CPU columns."""
        before = {n: cpu_seconds([node.pid]) for n, node in self.nodes.items()}
        await asyncio.sleep(IDLE)
        used = {
            n: 1e3 * (cpu_seconds([node.pid]) - before[n]) / IDLE for n, node in self.nodes.items()
        }
        print(
            f"idle, over {IDLE:g} s: "
            + ", ".join(f"{n} {used[n]:.0f}" for n in NODES)
            + " ms of CPU per second (10 ms ticks)",
            flush=True,
        )

    async def run(self) -> None:
        try:
            await self.setup()
            await self.idle()
            for section in self.args.sections:
                await getattr(self, SECTIONS[section])()
        finally:
            await self.pool.aclose()


# -- main --------------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, help="GETs per path in [rtt] (default 500)")
    parser.add_argument(
        "--payload", type=int, help="bytes per POST in [throughput] (default 262144)"
    )
    parser.add_argument("--transfers", type=int, help="POSTs per path in [throughput] (40)")
    parser.add_argument("--opens", type=int, help="tunnels opened per path in [open] (50)")
    parser.add_argument("--handshakes", type=int, help="handshakes per row in [handshake] (200)")
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds per section at most (default 60)"
    )
    parser.add_argument("--apply-timeout", type=float, default=120.0, help="seconds (120)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="which sections to run (default: all)",
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.requests, args.transfers, args.opens, args.handshakes, args.payload) < 1:
        parser.error("every count and --payload must be at least 1")
    wire = len(encode_request("POST", "/healthz", (), bytes(args.payload)))
    wire += CIRCUIT_SIZE + len(NODES[1:]) * LAYER_OVERHEAD
    if wire > MAX_REQUEST_BYTES:
        parser.error(
            f"--payload {args.payload} pads to {wire} bytes through 3 relays, over the node's "
            f"limit of {MAX_REQUEST_BYTES}"
        )
    if args.time_limit <= 0:
        parser.error("--time-limit must be positive")

    print(f"tunnels: {time.strftime('%Y-%m-%d %H:%M %Z')}, {machine()}")
    root = Path(tempfile.mkdtemp(prefix="hm-bench-tunnels-"))
    state = root / "state"
    applied = False
    try:
        (root / "manifests").mkdir()
        (root / "manifests" / "network.yaml").write_text(manifest())
        started = time.perf_counter()
        applied = True
        apply = hmctl(
            state,
            "apply",
            "-f",
            str(root / "manifests"),
            "--timeout",
            f"{args.apply_timeout:g}s",
            timeout=args.apply_timeout + 60,
        )
        if apply.returncode != 0:
            sys.stdout.write(apply.stdout[-2000:] + apply.stderr[-2000:])
            raise SystemExit(f"hmctl apply failed (exit {apply.returncode})")
        nodes = read_nodes(state)
        print(
            f"network: {', '.join(NODES)} started by hmctl apply in "
            f"{time.perf_counter() - started:.1f} s (private network, no InterfacePolicy; "
            "relays r1, r2, r3 in that order, destination dest)"
        )
        key = load_identity(state / "nodes" / REGISTRY / "identity.key")
        before = resource.getrusage(resource.RUSAGE_SELF)
        asyncio.run(Bench(args, nodes, key).run())
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(f"\nclient CPU time, all sections: {used:.1f} s; {machine()}")
    finally:
        if applied:
            down = hmctl(state, "down", timeout=120)
            print(f"hmctl down: exit {down.returncode}", flush=True)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
