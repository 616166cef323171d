"""How fast a change to the registry reaches every mirror, and what a mirror's answer costs next
to the registry's own.

Real node processes on 127.0.0.1 (the helpers of ``tests/harness/nodes.py``), in a temporary
folder: one registry and ``--mirrors`` mirrors following it. TLD ``acme`` is registered and a
first ``www.acme.`` A record put (a warm-up, not counted); once every mirror answers it,
``--changes`` changes are timed, one after another:

  put            the signed write itself (the request ``Owner.put`` makes: a new connection,
                 ``POST /registry/v1/rrsets`` with ``www`` replaced by a new address), until the
                 registry has committed it and answered with the new serial
  first mirror   from just before the write is sent until the first mirror answers
                 ``www.acme. A`` with the new address over DNS over QUIC
  all mirrors    the same, until the last of the mirrors does

"Answers" is seen by polling: each mirror is asked ``www.acme. A`` on a warm DoQ connection
(pinned, ``hypermesh.transport.dns_client.DoqClientProtocol``) every ``--poll-ms`` until it
answers with the new address, from the moment the registry answered the write on (a mirror
hears of a change once it is committed; polling during the write would only slow the write,
which shares this process with the polls; a mirror already answering with it at its first
poll is counted). A time is when that answer arrived, so it is late by up to one poll
interval plus one round trip: the ``slack`` row (the first answer with the address less the
sending of the last one without it, per mirror and change) is that resolution, and the idle
round trip of one poll is printed first. The polls cost CPU on a small machine (every mirror
answers one every ``--poll-ms``): the CPU the registry, the mirrors and this process used per
change is printed, polls included, with the polls per change. As a cross-check that no
polling delays, ``first (log)`` and ``all (log)`` give the same two times from the mirrors'
own logs (when each installed the new copy; millisecond resolution; the polls' CPU still
slows the machine). The goal: ``p99 (all mirrors) under 1000 ms``. A change not seen by every
mirror within ``--timeout`` seconds is counted as failed (and fails the goal); three in a row
end the run.

Then queries per second answered by one mirror and by the registry itself, ``www.acme. A``
one at a time on a warm DoQ connection, ``--queries`` each: queries per second, median and
99th-percentile round trip, and the server's CPU time per query (``/proc/PID/stat``). The
nodes log at debug level (as the helpers configure them); DNS queries are not logged.

Every node is stopped at the end, after a failure or Ctrl-C too. Run by hand, not by the tests::

    .venv/bin/python bench/propagation.py              # 20 mirrors, 50 changes: about a minute
    .venv/bin/python bench/propagation.py --quick      # 5 mirrors, 10 changes, 300 queries
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness.nodes

import dns.message
import dns.rcode
from tests.harness.nodes import NodeProc, Owner, answer_values, start_node
from tests.harness.proc import cpu_seconds, free_udp_port

from hypermesh.errors import HyperMeshError
from hypermesh.node.config import Upstream
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import connect_pinned, h3_get_json
from hypermesh.transport.dns_client import DOQ_ALPN, DoqClientProtocol

TLD = "acme"
NAME = "www.acme."
QUICK = {"mirrors": 5, "changes": 10, "queries": 300}
DEFAULTS = {"mirrors": 20, "changes": 50, "queries": 2000}
FIRST_SERVE_TIMEOUT = 60.0
"""Seconds for every mirror to serve the new TLD and the warm-up record."""
QUERY_TIMEOUT = 3.0
PAUSE = 0.1
"""Seconds between one change seen everywhere and the next write."""
MAX_FAILURES_IN_A_ROW = 3


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` percent of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def address_of(n: int) -> str:
    """A distinct IPv4 address for change ``n``, in 198.18.0.0/15 (RFC 2544, benchmarking)."""
    return f"198.{18 + n // 65536 % 2}.{n // 256 % 256}.{n % 256}"


def query_wire(name: str, rdtype: str) -> bytes:
    return dns.message.make_query(name, rdtype, use_edns=0).to_wire()


class WarmDoq:
    """One DoQ connection to a node, kept open, opened again after a failure."""

    def __init__(self, node: NodeProc) -> None:
        self.node = node
        self.client: DoqClientProtocol | None = None
        self.stack: contextlib.AsyncExitStack | None = None

    async def open(self) -> DoqClientProtocol:
        stack = contextlib.AsyncExitStack()
        try:
            client = await stack.enter_async_context(
                connect_pinned(
                    self.node.address,
                    expected_id=self.node.identity,
                    protocol=DoqClientProtocol,
                    alpn=DOQ_ALPN,
                    identity=None,
                )
            )
        except BaseException:
            await stack.aclose()
            raise
        self.client, self.stack = client, stack
        return client

    async def query(self, wire: bytes, limit: float = QUERY_TIMEOUT) -> dns.message.Message:
        try:
            async with asyncio.timeout(limit):
                client = self.client if self.client is not None else await self.open()
                answer = await client.query(wire)
        except BaseException:
            await self.close()
            raise
        return dns.message.from_wire(answer)

    async def close(self) -> None:
        stack, self.stack, self.client = self.stack, None, None
        if stack is not None:
            await stack.aclose()


@dataclass
class Sighting:
    """One mirror's view of one change (seconds from the start of the change)."""

    seen: float | None = None
    """When the first answer with the new value arrived (None: not within the timeout)."""
    last_miss: float | None = None
    """When the last query answered without it was sent."""
    polls: int = 0


async def watch(
    conn: WarmDoq,
    wire: bytes,
    accept: Callable[[dns.message.Message], bool],
    t0: float,
    deadline: float,
    offset: float,
    interval: float,
) -> Sighting:
    """Ask ``conn`` every ``interval`` seconds (the first after ``offset``) until an answer is
    accepted or ``deadline`` (perf_counter) passes."""
    sighting = Sighting()
    await asyncio.sleep(offset)
    while (now := time.perf_counter()) < deadline:
        sent = now - t0
        try:
            answer = await conn.query(wire, min(QUERY_TIMEOUT, deadline - now))
        except (HyperMeshError, TimeoutError, OSError):
            answer = None
        sighting.polls += 1
        if answer is not None and accept(answer):
            sighting.seen = time.perf_counter() - t0
            return sighting
        sighting.last_miss = sent
        await asyncio.sleep(interval)
    return sighting


@dataclass
class Change:
    started: float = 0.0
    """The wall clock (``time.time()``) at the start, to read the mirrors' logs against."""
    put: float | None = None
    serial: int | None = None
    sightings: list[Sighting] = field(default_factory=list)
    error: str | None = None

    @property
    def seen(self) -> list[float]:
        return [s.seen for s in self.sightings if s.seen is not None]

    @property
    def complete(self) -> bool:
        return self.error is None and len(self.seen) == len(self.sightings)


async def put(owner: Owner, value: str) -> int:
    """What ``Owner.put(TLD, "www", value)`` does, awaited in this event loop (``Owner.put``
    runs its own loop and would stop the polling while it waits)."""
    change = {"name": "www", "type": "A", "changetype": "REPLACE", "ttl": 60, "values": [value]}
    body = {"tld": TLD, "rrsets": [change]}
    status, data = await owner.client.call("POST", "/registry/v1/rrsets", body, signer=owner.key)
    if status not in (200, 201):
        raise RuntimeError(f"the registry refused the change: {status} {data}")
    return int(data["serial"])


async def one_change(
    owner: Owner, conns: list[WarmDoq], value: str, limit: float, interval: float
) -> Change:
    wire = query_wire(NAME, "A")
    result = Change()

    def accept(message: dns.message.Message) -> bool:
        return answer_values(message) == {value}

    async def write() -> None:
        try:
            result.serial = await put(owner, value)
            result.put = time.perf_counter() - t0
        except (HyperMeshError, RuntimeError, KeyError, ValueError) as exc:
            result.error = f"put failed: {exc}"

    result.started = time.time()
    t0 = time.perf_counter()  # just before the write is made
    deadline = t0 + limit
    await write()
    if result.error is not None:
        return result
    # Polls from the registry's answer on (a mirror is told of the change when it is
    # committed, then fetches and checks it), evenly spread over one interval.
    spread = interval / len(conns)
    watchers = [
        asyncio.create_task(watch(c, wire, accept, t0, deadline, i * spread, interval))
        for i, c in enumerate(conns)
    ]
    try:
        result.sightings = list(await asyncio.gather(*watchers))
    finally:
        for task in watchers:
            task.cancel()
    return result


def applied_at(node: NodeProc) -> list[tuple[int, float]]:
    """(serial, wall-clock time) of each copy of the TLD the mirror installed, from its log
    ("zone applied", milliseconds): a figure no polling disturbs."""
    found: list[tuple[int, float]] = []
    with contextlib.suppress(OSError):
        for line in (node.node_dir / "node.log").read_text().splitlines():
            if '"zone applied"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                if record["msg"] == "zone applied" and record["zone"] == f"{TLD}.":
                    when = datetime.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                    found.append((int(record["serial"]), when.replace(tzinfo=UTC).timestamp()))
    return found


def from_logs(changes: list[Change], mirrors: list[NodeProc]) -> tuple[list[float], list[float]]:
    """Per change seen by all: when the first and the last mirror installed its serial (or a
    later one), by their logs, from the start of the change."""
    logs = [applied_at(m) for m in mirrors]
    first: list[float] = []
    last: list[float] = []
    for change in changes:
        if not change.complete or change.serial is None:
            continue
        times = [
            min((t for serial, t in log if serial >= change.serial), default=None) for log in logs
        ]
        known = [t for t in times if t is not None]
        if len(known) == len(times):
            first.append(min(known) - change.started)
            last.append(max(known) - change.started)
    return first, last


def row(label: str, values: list[float], note: str = "") -> str:
    if not values:
        return f"  {label:13} {'-':>8} {'-':>8} {'-':>8} {'-':>8}  {note}".rstrip()
    figures = [percentile(values, p) for p in (50, 90, 99)] + [max(values)]
    return (f"  {label:13}" + "".join(f" {1e3 * v:8.1f}" for v in figures) + f"  {note}").rstrip()


async def first_serve(conns: list[WarmDoq], owner: Owner, interval: float) -> None:
    """Register the TLD and put the warm-up record; wait until every mirror answers both."""
    begin = time.perf_counter()
    body = {"tld": TLD, "network": "acme", "ttl": 60}
    status, data = await owner.client.call("POST", "/registry/v1/register", body, signer=owner.key)
    if status not in (200, 201):
        raise SystemExit(f"the registry refused to register {TLD}: {status} {data}")
    registered = time.perf_counter()
    soa = query_wire(f"{TLD}.", "SOA")

    def served(message: dns.message.Message) -> bool:
        return message.rcode() == dns.rcode.NOERROR and bool(message.answer)

    deadline = registered + FIRST_SERVE_TIMEOUT
    spread = interval / len(conns)
    sightings = await asyncio.gather(
        *(
            watch(c, soa, served, registered, deadline, i * spread, interval)
            for i, c in enumerate(conns)
        )
    )
    missing = [c.node.name for c, s in zip(conns, sightings, strict=True) if s.seen is None]
    if missing:
        raise SystemExit(f"never served {TLD}. within {FIRST_SERVE_TIMEOUT:g} s: {missing}")
    print(
        f"registered {TLD} in {1e3 * (registered - begin):.0f} ms; every mirror served it"
        f" {1e3 * max(s.seen for s in sightings if s.seen):.0f} ms later",
        flush=True,
    )
    warm = await one_change(owner, conns, address_of(0), FIRST_SERVE_TIMEOUT, interval)
    if not warm.complete:
        raise SystemExit(f"the warm-up change did not reach every mirror: {warm.error}")
    print(f"warm-up change (not counted) at every mirror in {1e3 * max(warm.seen):.0f} ms")


async def idle_round_trip(conns: list[WarmDoq], count: int = 20) -> list[float]:
    wire = query_wire(NAME, "A")
    times: list[float] = []
    for _ in range(count):
        for conn in conns:
            begin = time.perf_counter()
            await conn.query(wire)
            times.append(time.perf_counter() - begin)
    return times


async def propagation(
    registry: NodeProc, mirrors: list[NodeProc], owner: Owner, args: argparse.Namespace
) -> bool:
    """The changes; prints their figures, returns whether the goal was met."""
    interval = args.poll_ms / 1e3
    conns = [WarmDoq(m) for m in mirrors]
    try:
        await first_serve(conns, owner, interval)
        await asyncio.sleep(0.5)  # the warm-up change applied and written everywhere
        idle = await idle_round_trip(conns)
        print(
            f"one poll on a warm DoQ connection, idle: p50 {1e6 * statistics.median(idle):.0f} us,"
            f" p99 {1e6 * percentile(idle, 99):.0f} us; each mirror polled every {args.poll_ms:g}"
            " ms while a change is under way",
            flush=True,
        )
        changes: list[Change] = []
        pids = [registry.process.pid] + [m.process.pid for m in mirrors]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        own_before = time.process_time()
        failures_in_a_row = 0
        for n in range(1, args.changes + 1):
            change = await one_change(owner, conns, address_of(n), args.timeout, interval)
            changes.append(change)
            if change.complete:
                failures_in_a_row = 0
            else:
                failures_in_a_row += 1
                late = [
                    m.name
                    for m, s in zip(mirrors, change.sightings, strict=False)
                    if s.seen is None
                ]
                print(f"change {n} FAILED: {change.error or 'not seen in time by'} {late}")
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    print(f"{failures_in_a_row} failures in a row: stopping", flush=True)
                    break
            if n % 10 == 0:
                print(f"  {n} of {args.changes} changes", file=sys.stderr, flush=True)
            await asyncio.sleep(PAUSE)
        cpu_used = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        own_used = time.process_time() - own_before
        return report_propagation(changes, mirrors, cpu_used, own_used, args)
    finally:
        for conn in conns:
            await conn.close()


def report_propagation(
    changes: list[Change],
    mirrors: list[NodeProc],
    cpu_used: list[float],
    own_used: float,
    args: argparse.Namespace,
) -> bool:
    done = [c for c in changes if c.complete]
    failed = len(changes) - len(done)
    print(
        f"{len(changes)} changes to {len(mirrors)} mirrors, {len(done)} seen by all,"
        f" {failed} failed (timeout {args.timeout:g} s); in ms:"
    )
    print(f"  {'':13} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(row("put", [c.put for c in changes if c.put is not None], "registry committed, answered"))
    print(row("first mirror", [min(c.seen) for c in changes if c.seen]))
    print(row("all mirrors", [max(c.seen) for c in done]))
    slack = [
        s.seen - s.last_miss
        for c in changes
        for s in c.sightings
        if s.seen is not None and s.last_miss is not None
    ]
    print(row("slack", slack, "detection: first answer with it less last query without"))
    early = sum(1 for c in changes for s in c.sightings if s.seen and s.last_miss is None)
    if early:
        print(f"  ({early} times a mirror answered with the change at its first poll)")
    log_first, log_all = from_logs(changes, mirrors)
    print(row("first (log)", log_first, "the mirrors' logs: copy installed, ms resolution"))
    print(row("all (log)", log_all))
    last: dict[str, int] = {}
    for c in done:
        latest = max(range(len(mirrors)), key=lambda i: c.sightings[i].seen or 0.0)
        last[mirrors[latest].name] = last.get(mirrors[latest].name, 0) + 1
    if last:
        name, times = max(last.items(), key=lambda item: item[1])
        print(f"last mirror to answer, most often: {name} ({times} of {len(done)} changes)")
    count = max(1, len(changes))
    polls = sum(s.polls for c in changes for s in c.sightings) / count
    mirror_cpu = statistics.median(cpu_used[1:])
    print(
        f"CPU per change: registry {1e3 * cpu_used[0] / count:.1f} ms, each mirror"
        f" {1e3 * mirror_cpu / count:.1f} ms (median; answering polls included), this process"
        f" {1e3 * own_used / count:.1f} ms; {polls:.0f} polls per change"
    )
    all_times = [max(c.seen) for c in done]
    p99 = percentile(all_times, 99) if all_times else math.inf
    met = failed == 0 and bool(done) and p99 < 1.0
    shown = f"{1e3 * p99:.0f} ms" if all_times else "no change seen by all"
    extra = f", {failed} failed" if failed else ""
    print(f"goal: p99 (all mirrors) under 1000 ms: {'met' if met else 'NOT met'} ({shown}{extra})")
    return met


async def mirror_state(
    registry: NodeProc, mirrors: list[NodeProc]
) -> tuple[int | None, dict[str, int], dict[int | None, int]]:
    """The registry's serial of the TLD, the mirrors' transfers summed, and how many mirrors
    hold each serial."""
    status = await h3_get_json(
        registry.address, "/status", expected_id=registry.identity, identity=None
    )
    wanted = status.get("zones", {}).get(f"{TLD}.")
    totals: dict[str, int] = {}
    serials: dict[int | None, int] = {}
    for mirror in mirrors:
        try:
            data = await h3_get_json(
                mirror.address, "/status", expected_id=mirror.identity, identity=None
            )
        except HyperMeshError:
            serials[None] = serials.get(None, 0) + 1
            continue
        held = data["mirror"]["zones"].get(f"{TLD}.", {}).get("serial")
        serials[held] = serials.get(held, 0) + 1
        for kind, number in data["mirror"]["transfers"].items():
            if isinstance(number, int):  # "fullByZone" is a breakdown of "full", not a count
                totals[kind] = totals.get(kind, 0) + number
    return wanted, totals, serials


@dataclass
class Rate:
    qps: float
    p50_us: float
    p99_us: float
    cpu_us: float


async def rate(node: NodeProc, count: int) -> Rate:
    """``count`` queries one at a time on a warm DoQ connection to ``node``."""
    wire = query_wire(NAME, "A")
    conn = WarmDoq(node)
    try:
        for _ in range(min(50, count)):  # warm up
            await conn.query(wire)
        await asyncio.sleep(0.05)
        latencies: list[float] = []
        cpu, started = cpu_seconds(node.process.pid), time.perf_counter()
        for _ in range(count):
            begin = time.perf_counter()
            answer = await conn.query(wire)
            latencies.append(time.perf_counter() - begin)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.05)  # the server's delayed ACKs
        used = cpu_seconds(node.process.pid) - cpu
        if answer.rcode() != dns.rcode.NOERROR or not answer_values(answer):
            raise SystemExit(f"{node.name} did not answer {NAME} A: {answer}")
    finally:
        await conn.close()
    return Rate(
        count / elapsed,
        1e6 * statistics.median(latencies),
        1e6 * percentile(latencies, 99),
        1e6 * used / count,
    )


async def queries(registry: NodeProc, mirror: NodeProc, count: int) -> None:
    print(f"{NAME} A one at a time on a warm DoQ connection, {count} queries each:")
    print(f"  {'server':9} {'q/s':>7} {'p50 us':>7} {'p99 us':>7} {'CPU us/query':>13}")
    for label, node in ((f"mirror {mirror.name}", mirror), ("registry", registry)):
        r = await rate(node, count)
        print(f"  {label:9} {r.qps:7.0f} {r.p50_us:7.0f} {r.p99_us:7.0f} {r.cpu_us:13.0f}")


async def measure(registry: NodeProc, mirrors: list[NodeProc], args: argparse.Namespace) -> None:
    owner = Owner(registry)
    await propagation(registry, mirrors, owner, args)
    wanted, transfers, serials = await mirror_state(registry, mirrors)
    held = ", ".join(
        f"{n} at {s}" if s is not None else f"{n} with no copy or no /status answer"
        for s, n in sorted(serials.items(), key=lambda i: str(i[0]))
    )
    shown = ", ".join(f"{k} {v}" for k, v in transfers.items())
    print(f"registry serial {wanted}; mirrors: {held}; transfers summed: {shown}")
    await queries(registry, mirrors[0], args.queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirrors", type=int, help=f"mirror nodes (default {DEFAULTS['mirrors']})")
    parser.add_argument(
        "--changes", type=int, help=f"timed changes (default {DEFAULTS['changes']})"
    )
    parser.add_argument(
        "--queries", type=int, help=f"queries per server, rate rows (default {DEFAULTS['queries']})"
    )
    parser.add_argument("--quick", action="store_true", help="5 mirrors, 10 changes, 300 queries")
    parser.add_argument(
        "--poll-ms", type=float, default=20.0, help="each mirror's poll interval (default 20)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds one change may take (default 30)"
    )
    parser.add_argument("--tmp", default=None, help="where the nodes' temporary folder is made")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # the nodes too
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.mirrors < 1 or args.changes < 1 or args.queries < 1:
        parser.error("--mirrors, --changes and --queries must be at least 1")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="hm-bench-prop-", dir=args.tmp) as tmp:
        root = Path(tmp)
        nodes: list[NodeProc] = []
        try:
            begin = time.perf_counter()
            registry = start_node(
                root, "registry", roles=("registry",), listen=f"127.0.0.1:{free_udp_port()}"
            )
            nodes.append(registry)
            upstream = Upstream(PeerRef(registry.address, registry.identity))
            for n in range(1, args.mirrors + 1):
                nodes.append(start_node(root, f"m{n:02d}", registry=upstream))
            print(
                f"started a registry and {args.mirrors} mirrors in"
                f" {time.perf_counter() - begin:.1f} s",
                flush=True,
            )
            asyncio.run(measure(registry, nodes[1:], args))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            for node in nodes:  # all told at once, then each waited for
                if node.process.poll() is None:
                    node.process.terminate()
            for node in nodes:
                node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
