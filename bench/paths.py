"""Paths across NATs (issue 17), measured in the network lab: for every ordered pair of NAT kinds,
how often a fresh dial ends direct, on the first punch, how long the relayed connection and
the direct path take, the RTT relayed against direct, and the relay's CPU per relayed MB.
Run by hand, as root (the lab makes network namespaces)::

    .venv/bin/python bench/paths.py                   # 20 attempts per pair: ~15 min
    .venv/bin/python bench/paths.py --attempts 3      # a smoke run: ~3 min
    .venv/bin/python bench/paths.py --pairs port-restricted:double,symmetric:public

The network is ``tests/lab/paths_net.py``'s (a registry, a relay and one node per NAT kind:
public, full-cone, port-restricted, symmetric, double, udp-blocked), in a lab where every link
delays each packet ``--delay-ms`` each way (default 5: 4 x 5 = 20 ms RTT host to host) and drops
``--loss`` of them each way (default 0.005). Nodes run with ``path_observe`` 1 s and
``path_keepalive`` 2 s.

**An attempt** of a pair A → B: A and B forget each other (``POST /paths/v1/forget`` at both
nodes, so that neither holds a link nor keeps one alive), then the NAT mappings between the
two hosts are deleted from their routers (``conntrack -D`` of the entries to or from the other
host's public address; the mappings to the registry and the relay stay, as they would on a
live node), then A pings B (``POST /paths/v1/ping``, ``--count`` requests, default 3): the
dial by key, the relayed connection, the punch and the upgrade, then the requests after it.
``--warm`` keeps the mappings (a re-dial with the NATs still open). Attempts run in rounds: in
a round each node dials one peer and is dialled by one, and no two nodes dial each other.

Per pair: ``ok`` (the ping answered 200: reachable), ``direct`` (the link ended direct),
``1st`` (direct with at most one punch attempt: ``punch.attempts`` of GET /paths/v1 ≤ 1),
``want`` (what RFC 4787 allows: ``tests/lab/test_paths_matrix.py``), ``req1`` (when the link
began relayed: the first request's time through the relay; the dial before it is not in the
ping's answer, so not here), ``up`` (``direct_after_ms``: from the relayed connection to the direct
one), ``rtt r`` and ``rtt d`` (the later requests' times on a relayed and a direct path),
p50/p99 in ms. Then the goals of the issue, each met or NOT met, and the relay's CPU time
(``/proc/PID/stat`` of its node, idle included) per MB it relayed (its
``hypermesh_relay_bytes_total``). **Throughput**: in the first ``--bulk-attempts`` attempts of
each pair (default 2) the ping then fetches ``--bulk`` bytes (default 1 MiB) from the peer's
``/paths/v1/bulk`` on the path the link ended on; the table's ``Mbit/s`` is their median, and
the goals' lines compare relayed with direct.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ must not be on the path: bench/operator.py would shadow the standard library's.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # for tests.lab

import argparse  # noqa: E402
import asyncio  # noqa: E402
import itertools  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from tests.harness.proc import cpu_seconds  # noqa: E402
from tests.lab.lab import Lab, in_ns  # noqa: E402
from tests.lab.paths_net import KINDS, PathsNet, build, wait_published  # noqa: E402
from tests.lab.test_paths_matrix import expected  # noqa: E402

IDLE = 5.0
"""Seconds the relay's idle CPU rate is sampled for."""
Pair = tuple[str, str]


@dataclass
class Outcome:
    """What the attempts of one pair gave."""

    ok: int = 0
    direct: int = 0
    first: int = 0
    attempts: int = 0
    ttfb: list[float] = field(default_factory=list)
    up: list[float] = field(default_factory=list)
    rtt: dict[str, list[float]] = field(default_factory=lambda: {"relayed": [], "direct": []})
    mbit: dict[str, list[float]] = field(default_factory=lambda: {"relayed": [], "direct": []})
    errors: list[str] = field(default_factory=list)


def pct(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank); None when there is nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def mbit(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def rounds(pairs: Sequence[Pair]) -> list[list[Pair]]:
    """``pairs`` in rounds where no node dials twice, is dialled twice, or dials a node that
    dials it (greedy, in order)."""
    left, out = list(pairs), []
    while left:
        batch: list[Pair] = []
        busy: set[str] = set()
        for pair in list(left):
            a, b = pair
            if a in busy or b in busy:
                continue
            batch.append(pair)
            busy |= {a, b}
            left.remove(pair)
        out.append(batch)
    return out


def forget_mappings(net: PathsNet, a: str, b: str) -> None:
    """Delete the conntrack entries between hosts ``a`` and ``b`` in their routers (the NAT
    mappings and filter entries of their earlier paths); the others stay."""
    for mine, other in ((a, b), (b, a)):
        host, peer = net.lab.host(mine), net.lab.host(other)
        for router in host.routers:
            for flag in ("--orig-src", "--orig-dst"):
                subprocess.run(
                    in_ns(
                        router.namespace,
                        ["conntrack", "-D", "-p", "udp", flag, peer.public_address],
                    ),
                    capture_output=True,
                    timeout=10,
                    check=False,
                )


def attempt(net: PathsNet, a: str, b: str, count: int, size: int) -> dict[str, Any]:
    """One ping ``a`` → ``b`` (then ``size`` bulk bytes), with ``a``'s view of the link."""
    got = net.ping(a, b, count=count, size=size)
    got["peer"] = net.peer(a, b) if got.get("status") == 200 else None
    return got


def record(outcome: Outcome, got: dict[str, Any]) -> None:
    """Add one attempt's answer to its pair's outcome."""
    outcome.attempts += 1
    if got.get("status") != 200:
        outcome.errors.append(str(got.get("answer") or got.get("error"))[:160])
        return
    answer, peer = got["answer"], got.get("peer") or {}
    outcome.ok += 1
    path, rtts = answer.get("path"), answer.get("rtt_ms") or []
    began_relayed = answer.get("upgraded") or path == "relayed"
    if path == "direct":
        outcome.direct += 1
        if (peer.get("punch") or {}).get("attempts", 0) <= 1:
            outcome.first += 1
    if began_relayed and rtts:
        outcome.ttfb.append(float(rtts[0]))
    if answer.get("upgraded") and answer.get("direct_after_ms") is not None:
        outcome.up.append(float(answer["direct_after_ms"]))
    if path in outcome.rtt:
        outcome.rtt[path] += [float(r) for r in rtts[1:]]
    bulk = answer.get("bulk") or {}
    if bulk.get("path") in outcome.mbit:
        outcome.mbit[bulk["path"]].append(float(bulk["mbit_s"]))


def run(net: PathsNet, pairs: Sequence[Pair], args: argparse.Namespace) -> dict[Pair, Outcome]:
    """``args.attempts`` attempts of every pair, in rounds (see the module's docstring)."""
    outcomes = {pair: Outcome() for pair in pairs}
    schedule = rounds(pairs)
    started = time.monotonic()
    with ThreadPoolExecutor(len(KINDS)) as pool:
        for number in range(args.attempts):
            for batch in schedule:
                for a, b in batch:
                    net.forget(a, b)
                    net.forget(b, a)
                if not args.warm:
                    time.sleep(0.2)  # the closes are out before the mappings go
                    list(pool.map(lambda p: forget_mappings(net, *p), batch))
                size = args.bulk if number < args.bulk_attempts else 0
                results = pool.map(
                    lambda p, size=size: attempt(net, p[0], p[1], args.count, size), batch
                )
                for pair, got in zip(batch, results, strict=True):
                    record(outcomes[pair], got)
            print(f"  attempt {number + 1}/{args.attempts}: {time.monotonic() - started:.0f}s")
    return outcomes


def relayed_bytes(net: PathsNet) -> float:
    """The relay's ``hypermesh_relay_bytes_total`` (GET /metrics from here: it is public)."""
    from hypermesh.transport.client import h3_get

    relay = net.relay
    status, _, body = asyncio.run(
        h3_get(
            f"{relay.host.address}:{relay.port}",
            "/metrics",
            expected_id=relay.node_id,
            identity=None,
        )
    )
    found = re.search(rb"^hypermesh_relay_bytes_total(?:\{[^}]*\})? ([0-9.e+]+)$", body, re.M)
    if status != 200 or found is None:
        raise RuntimeError(f"the relay's metrics have no hypermesh_relay_bytes_total ({status})")
    return float(found.group(1))


def report(outcomes: dict[Pair, Outcome], args: argparse.Namespace) -> None:
    """The table per pair, then the goals."""
    print(
        f"\n{'dialer':16} {'target':16} {'ok':>4} {'direct':>6} {'1st':>4} {'want':8} "
        f"{'req1 p50/p99':>13} {'up p50/p99':>11} {'rtt r':>6} {'rtt d':>6} {'Mbit/s':>7}"
    )
    for (a, b), o in sorted(outcomes.items()):
        want = expected(a, b)[0]
        print(
            f"{a:16} {b:16} {o.ok:>2}/{o.attempts:<2}{o.direct:>5} {o.first:>4} {want:8} "
            f"{ms(pct(o.ttfb, 50)):>6}/{ms(pct(o.ttfb, 99)):<6} "
            f"{ms(pct(o.up, 50)):>5}/{ms(pct(o.up, 99)):<5} "
            f"{ms(pct(o.rtt['relayed'], 50)):>6} {ms(pct(o.rtt['direct'], 50)):>6} "
            f"{mbit(pct(o.mbit['relayed'] + o.mbit['direct'], 50)):>7}"
        )
        for error in o.errors[:3]:
            print(f"    error: {error}")
    goals(outcomes, args)


def goals(outcomes: dict[Pair, Outcome], args: argparse.Namespace) -> None:
    possible = [o for (a, b), o in outcomes.items() if expected(a, b)[0] == "direct"]
    total = sum(o.attempts for o in outcomes.values())
    ok = sum(o.ok for o in outcomes.values())
    tried = sum(o.attempts for o in possible)
    direct = sum(o.direct for o in possible)
    first = sum(o.first for o in possible)
    up = [u for o in outcomes.values() for u in o.up]
    ttfb = [t for o in outcomes.values() for t in o.ttfb]
    rtt = {k: [r for o in outcomes.values() for r in o.rtt[k]] for k in ("relayed", "direct")}
    budget = 4 * args.delay_ms + 100

    def line(what: str, value: str, met: bool) -> None:
        print(f"  {what:58} {value:>22}  {'met' if met else 'NOT met'}")

    print("\ngoals (issue 17):")
    line("reachable (every pair)", f"{ok}/{total}", ok == total)
    share = direct / tried if tried else 1.0
    line("direct where possible (>= 95%)", f"{direct}/{tried} = {share:.1%}", share >= 0.95)
    share1 = first / direct if direct else 1.0
    line(
        "of those, on the first attempt (>= 99%)",
        f"{first}/{direct} = {share1:.1%}",
        share1 >= 0.99,
    )
    p50 = pct(up, 50)
    line(
        f"relayed → direct p50 (<= RTT + 100 = {budget:.0f} ms)",
        f"{ms(p50)} ms (p99 {ms(pct(up, 99))})",
        p50 is not None and p50 <= budget,
    )
    print(
        "  first request through the relay (dial not included): "
        f"p50 {ms(pct(ttfb, 50))} ms, p99 {ms(pct(ttfb, 99))} ms"
    )
    for kind, values in rtt.items():
        print(
            f"  RTT {kind:8}: p50 {ms(pct(values, 50))} ms, p99 {ms(pct(values, 99))} ms "
            f"({len(values)} requests)"
        )
    rates = {k: [r for o in outcomes.values() for r in o.mbit[k]] for k in ("relayed", "direct")}
    for kind, values in rates.items():
        print(
            f"  throughput {kind:8}: p50 {mbit(pct(values, 50))} Mbit/s, min "
            f"{mbit(min(values, default=None))} ({len(values)} fetches of {args.bulk} bytes)"
        )
    relayed, direct = pct(rates["relayed"], 50), pct(rates["direct"], 50)
    if relayed and direct:
        print(f"  throughput relayed / direct (p50): {relayed / direct:.2f}x")


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[Pair]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=20, help="attempts per ordered pair (20)")
    parser.add_argument("--count", type=int, default=3, help="requests per ping, 2..10 (3)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="each way, per link (5)")
    parser.add_argument("--loss", type=float, default=0.005, help="per link, each way (0.005)")
    parser.add_argument("--pairs", default="", help="dialer:target,... (default: all 30)")
    parser.add_argument("--bulk", type=int, default=1 << 20, help="bytes fetched (1 MiB)")
    parser.add_argument(
        "--bulk-attempts", type=int, default=2, help="attempts per pair that fetch --bulk (2)"
    )
    parser.add_argument("--warm", action="store_true", help="keep NAT mappings between attempts")
    args = parser.parse_args(argv)
    if not 1 <= args.attempts <= 1000 or not 2 <= args.count <= 10:
        parser.error("--attempts 1..1000 and --count 2..10")
    pairs: list[Pair] = list(itertools.permutations(KINDS, 2))
    if args.pairs:
        pairs = []
        for text in args.pairs.split(","):
            a, _, b = text.partition(":")
            if a not in KINDS or b not in KINDS or a == b:
                parser.error(f"--pairs: {text!r} is not two distinct kinds of {', '.join(KINDS)}")
            pairs.append((a, b))
    return args, pairs


def measure(
    net: PathsNet, pairs: Sequence[Pair], args: argparse.Namespace
) -> tuple[dict[Pair, Outcome], str]:
    """The attempts, and the relay's CPU per relayed MB (its idle rate, sampled for
    ``IDLE`` s before, taken off)."""
    pid = net.relay.pid
    idle0 = cpu_seconds(pid)
    time.sleep(IDLE)
    idle_rate = (cpu_seconds(pid) - idle0) / IDLE
    cpu0, bytes0, started = cpu_seconds(pid), relayed_bytes(net), time.monotonic()
    outcomes = run(net, pairs, args)
    cpu = cpu_seconds(pid) - cpu0
    elapsed = time.monotonic() - started
    mb = (relayed_bytes(net) - bytes0) / 1e6
    busy = cpu - idle_rate * elapsed
    line = (
        f"relay: {cpu:.2f} CPU s in {elapsed:.0f} s ({idle_rate * 100:.1f}% idle CPU), "
        f"{mb:.3f} MB relayed"
    )
    if mb > 0:
        line += f": {cpu / mb:.1f} CPU s per MB, {busy / mb:.1f} without the idle rate"
    return outcomes, line


def main(argv: list[str] | None = None) -> int:
    args, pairs = parse(argv)
    print(
        f"paths: {len(pairs)} pairs x {args.attempts} attempts, RTT {4 * args.delay_ms:g} ms "
        f"host to host, loss {args.loss:g} per link each way, {'warm' if args.warm else 'cold'}"
    )
    started = time.monotonic()
    with Lab(delay_ms=args.delay_ms, loss=args.loss) as lab, tempfile.TemporaryDirectory() as tmp:
        net = build(lab, Path(tmp))
        try:
            lacking = wait_published(net, [n for n in net.members if n != "reg"], timeout=60)
            if lacking:
                print(f"not published: {lacking}")
                return 1
            print(f"network up in {time.monotonic() - started:.0f}s")
            outcomes, relay = measure(net, pairs, args)
        finally:
            net.close()
    report(outcomes, args)
    print(f"  {relay}")
    print(f"total {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
