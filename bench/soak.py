"""A soak under faults: a registry and its mirrors in network namespaces take record writes at
a steady rate while nodes are killed, the registry is killed and a third of the mirrors is
partitioned away and healed; then every acknowledged write is looked for everywhere.

Run by hand, as root, as Jepsen-style checks are (not by the tests)::

    .venv/bin/python bench/soak.py                          # 20 mirrors, 10 minutes
    .venv/bin/python bench/soak.py --duration 90 --nodes 6  # a short look

The cluster: host 0 holds the registry, hosts 1..``--nodes`` one mirror each, every host a
network namespace of its own on one bridge (``tests/harness/netns.py``), every node a real
process (``tests/harness/nodes.py``) following the registry (``mirror_expire`` = ``--expire``)
with up to eight other mirrors as peers, as the controller configures them. This process is
the client of all of them, from the bridge's address.

The workload, from a sequential writer: write ``n`` replaces, in one signed request to the
registry, ``k<n mod --keys>.soak.`` and ``head.soak.`` (A, a value unique to ``n``), every
``1/--rate`` s; the first ``--keys`` writes (every key once) are the warm-up. A write is
acknowledged (the registry answered 2xx with the new serial), refused (4xx: never committed)
or unknown (no answer within ``--write-timeout``, or 5xx: maybe committed). Meanwhile each
mirror is asked ``head.soak.`` or a random key over DNS over QUIC every ``--poll-every`` s.

The faults, on a schedule drawn from ``--seed``: every ``--kill-every`` s a random mirror gets
SIGKILL and is started again ``--restart-after`` s later (the controller's next pass); the
registry gets SIGKILL twice (at a third and two thirds of the run, plus half a kill interval),
and after each restart the registry is asked every name to check no acknowledged write went
with the crash; at 45% of the run a third of the mirrors is cut off from the registry and
the other mirrors for ``--partition-for`` s (nftables drop rules inside their namespaces, so
this process still asks them: the cut-off mirrors go stale before the eyes of a client; with
``--partition link`` their veth is set down instead). A node that dies on its own is counted
and started again.

After ``--duration`` s the writes stop, the partition is healed, every node is up, and once
every mirror holds the registry's serial (within ``--settle`` s) the registry and every mirror
are asked every name. Reported:

- acknowledged writes lost: an acknowledged write whose value, or a later one, is not what the
  registry (or, after the heal, a mirror) answers for each of its names; checked at the end
  and after each registry restart. Goal 0.
- writes answered wrongly: an answer from a mirror with a value never written to that name
  (or refused, or not yet sent), or an answer not marked stale (EDE 3) that misses a write
  acknowledged longer ago than the answer declares its data may be old (``--expire`` for a
  mirror's copy; for an answer forwarded to the registry and cached, the part of the record's
  TTL counted down), plus ``STALE_SLACK``. Goal 0.
- the longest time a mirror served data older than its declared staleness: over every answer,
  how long it had been outdated (since the first acknowledged write it misses) less
  ``--expire`` — marked stale or not (informational).
- propagation under faults: per acknowledged write and mirror, from the write's sending until
  the mirror installed that serial or a later one (its log, ``zone applied``): p50, p90, p99
  and max, over all of them and over those clear of faults: the mirror up and joined and the
  registry up from ``--expire`` s before the sending until then (informational).
- per node, resident memory (VmRSS), open files (``/proc/PID/fd``) and CPU use (ms per s) over
  a ``--window`` once warm (``--warm`` s after the start, or after the node's restart) and over
  the last ``--window`` of the run. Goal: no growth beyond 5% (open files: and by more than
  ``FD_SLACK``), for every node whose process lived through both windows. And no node may die
  on its own, and every mirror must catch up after the heal.

Everything made (namespaces, veths, the bridge, nftables tables, processes, the temporary
folder) is removed at the end, after a failure, Ctrl-C or SIGTERM too (``--keep`` keeps the
folder with the nodes' logs). Exit code 0 when every goal is met, 1 when one is not, 2 when
the cluster could not be set up.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.mirror

import dns.edns
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
from tests.harness.netns import Hosts, can_filter, can_make_namespaces
from tests.harness.nodes import NodeProc, start_node

from hypermesh.errors import HyperMeshError
from hypermesh.node.config import Upstream
from hypermesh.node.runtime import read_runtime
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import connect_pinned, h3_get_json
from hypermesh.transport.dns_client import DOQ_ALPN, DoqClientProtocol
from hypermesh.transport.identity import Identity, load_or_create_identity

TLD = "soak"
ZONE = f"{TLD}."
HEAD = "head"
TTL = 60
"""The TTL of every record written."""
PORT = 5300
REGISTRY = "registry"
MAX_PEERS = 8
"""Other mirrors named as peers of each, as the controller names them."""
REGISTRY_KILLS = 2
GROWTH = 0.05
"""The resource goal: no growth beyond 5% between the warm window and the end."""
FD_SLACK = 2
"""Open files may also differ by this many: a connection being opened or closed as a sample
is taken is one descriptor, and a node holds some twenty."""
STALE_SLACK = 2.0
"""Seconds past ``--expire`` an unmarked answer may still miss a write: the follower marks
its copies stale once a second, and a notice sent as a partition begins may be lost."""
QUERY_TIMEOUT = 2.0
STATUS_TIMEOUT = 3.0
WARM_UP_TIMEOUT = 60.0
"""Seconds the registration, each warm-up write and the mirrors' first copies may take."""
ASK_ATTEMPTS = 10
"""Tries per name when every name is asked of a node (after a restart it may not serve yet)."""


# -- the pure part: what happened, and what it means -------------------------------------------


class SetupError(Exception):
    """The cluster could not be brought to where the run begins."""


@dataclass(frozen=True, slots=True)
class Fault:
    at: float
    """Seconds from the start of the run."""
    kind: str
    """``kill`` (a mirror), ``kill-registry``, ``partition`` or ``heal``."""
    targets: tuple[str, ...]


def schedule(
    duration: float,
    mirrors: Sequence[str],
    *,
    kill_every: float,
    partition_for: float,
    rng: random.Random,
) -> list[Fault]:
    """The faults of a run, in time order: a random mirror killed every ``kill_every`` s, the
    registry at a third and two thirds of the run (plus half a kill interval, not to fall on a
    mirror's kill), and a third of the mirrors partitioned at 45% of the run for
    ``partition_for`` s (healed at the end of the run at the latest)."""
    faults: list[Fault] = []
    at = kill_every
    while at < duration:
        faults.append(Fault(at, "kill", (rng.choice(list(mirrors)),)))
        at += kill_every
    for k in range(1, REGISTRY_KILLS + 1):
        at = k * duration / (REGISTRY_KILLS + 1) + kill_every / 2
        if at < duration:
            faults.append(Fault(at, "kill-registry", (REGISTRY,)))
    third = max(1, round(len(mirrors) / 3))
    minority = tuple(sorted(rng.sample(list(mirrors), third)))
    start = 0.45 * duration
    faults.append(Fault(start, "partition", minority))
    faults.append(Fault(min(start + partition_for, duration), "heal", minority))
    return sorted(faults, key=lambda f: f.at)


@dataclass(slots=True)
class Write:
    n: int
    names: tuple[str, ...]
    """The names it replaces (relative to the zone): its key and ``head``."""
    value: str
    sent: float
    """Wall clock (``time.time()``) just before the request."""
    done: float = math.nan
    outcome: str = "pending"
    """``acked``, ``refused`` (a 4xx: not committed) or ``unknown`` (maybe committed)."""
    serial: int | None = None


@dataclass(frozen=True, slots=True)
class Read:
    node: str
    name: str
    sent: float
    received: float
    rcode: str | None
    """``NOERROR``, ``NXDOMAIN``, … or None: no answer (a timeout or a failed connection)."""
    values: frozenset[str] = frozenset()
    stale: bool = False
    """Marked stale (extended DNS error 3)."""
    ttl: int | None = None
    """The TTL the answer gave its A record set (None: no records)."""

    def allowance(self, expire: float) -> float:
        """How old the answer says its data may be: a mirror's copy, ``expire``; an answer
        forwarded to the registry and cached, the part of the record's TTL counted down."""
        return max(expire, TTL - self.ttl) if self.ttl is not None else expire


@dataclass(frozen=True, slots=True)
class Span:
    """A time a node was touched by a fault: ``down`` (killed, until it served again),
    ``partitioned``, or the registry ``down``."""

    node: str
    kind: str
    start: float
    end: float


def value_of(n: int) -> str:
    """A distinct IPv4 address for write ``n``, in 198.18.0.0/15 (RFC 2544, benchmarking)."""
    return f"198.{18 + n // 65536 % 2}.{n // 256 % 256}.{n % 256}"


def key_of(n: int, keys: int) -> str:
    return f"k{n % keys:03d}"


class History:
    """The writes, indexed by value and by name, for judging answers."""

    def __init__(self, writes: Iterable[Write]) -> None:
        self.writes = sorted(writes, key=lambda w: w.n)
        self.by_value = {w.value: w for w in self.writes}
        self.names = sorted({name for w in self.writes for name in w.names})
        acked: dict[str, list[Write]] = {name: [] for name in self.names}
        for w in self.writes:
            if w.outcome == "acked":
                for name in w.names:
                    acked[name].append(w)
        self.acked = acked

    def outdated_since(self, name: str, seen: int, at: float) -> float | None:
        """When the first write to ``name`` after write ``seen`` (-1: none seen) that was
        acknowledged before ``at`` was acknowledged; None when no such write."""
        times = [w.done for w in self.acked.get(name, []) if w.n > seen and w.done <= at]
        return min(times) if times else None

    def explain(self, name: str, read: Read) -> tuple[int | None, str | None]:
        """The write an answer shows for ``name`` (-1: none yet), or None and why it is wrong."""
        if not read.values:
            return -1, None
        if len(read.values) != 1:
            return None, f"{len(read.values)} values {sorted(read.values)}"
        (value,) = read.values
        write = self.by_value.get(value)
        if write is None or name not in write.names:
            return None, f"{value}, never written to {name}"
        if write.outcome == "refused":
            return None, f"{value}, of write {write.n}, which the registry refused"
        if write.sent > read.received:
            return None, f"{value}, of write {write.n}, not yet sent"
        return write.n, None


@dataclass(frozen=True, slots=True)
class Wrong:
    read: Read
    why: str


@dataclass(frozen=True, slots=True)
class Answers:
    """What the mirrors' answers during the run say."""

    asked: int
    answered: int
    marked_stale: int
    unanswered: dict[str, int]
    """Questions without a usable answer, by rcode (``timeout`` for none at all)."""
    wrong: list[Wrong]
    max_lag: float
    """The longest an answer had been outdated (since the first acknowledged write it
    misses), over all answers."""
    max_lag_unmarked: float
    """The same, over answers not marked stale."""
    lag_node: str | None


def judge_reads(
    history: History, reads: Iterable[Read], expire: float, slack: float = STALE_SLACK
) -> Answers:
    asked = answered = marked = 0
    unanswered: dict[str, int] = {}
    wrong: list[Wrong] = []
    max_lag = max_unmarked = 0.0
    lag_node: str | None = None
    for read in reads:
        asked += 1
        if read.rcode not in ("NOERROR", "NXDOMAIN"):
            key = read.rcode or "timeout"
            unanswered[key] = unanswered.get(key, 0) + 1
            continue
        answered += 1
        marked += read.stale
        seen, why = history.explain(read.name, read)
        if seen is None:
            wrong.append(Wrong(read, why or "?"))
            continue
        since = history.outdated_since(read.name, seen, read.sent)
        lag = 0.0 if since is None else read.sent - since
        if lag > max_lag:
            max_lag, lag_node = lag, read.node
        if not read.stale:
            max_unmarked = max(max_unmarked, lag)
            if lag > read.allowance(expire) + slack:
                wrong.append(
                    Wrong(
                        read,
                        f"not marked stale, TTL {read.ttl}, {lag:.1f} s behind a write"
                        " acknowledged",
                    )
                )
    return Answers(asked, answered, marked, unanswered, wrong, max_lag, max_unmarked, lag_node)


def lost_writes(
    history: History, answers: Mapping[str, Read], before: float = math.inf
) -> list[Write]:
    """The writes acknowledged before ``before`` that a server's answers (one per name) do
    not hold: for each name, the write shown must be the last of them or a later one."""
    lost: dict[int, Write] = {}
    for name in history.names:
        read = answers.get(name)
        seen: int | None = -1
        if read is not None and read.rcode in ("NOERROR", "NXDOMAIN"):
            seen, _ = history.explain(name, read)
        elif read is not None:
            seen = None  # no answer: nothing is shown to hold
        for w in history.acked[name]:
            if w.done <= before and (seen is None or w.n > seen):
                lost[w.n] = w
    return sorted(lost.values(), key=lambda w: w.n)


@dataclass(frozen=True, slots=True)
class Propagation:
    everything: list[float]
    clear: list[float]
    """Delays of (write, mirror) pairs clear of faults: the mirror up and joined and the
    registry up from ``margin`` s before the write's sending until the mirror installed it."""
    never: int
    """(write, mirror) pairs never installed."""


def propagation(
    history: History,
    applied: Mapping[str, Sequence[tuple[float, int]]],
    spans: Iterable[Span],
    margin: float,
) -> Propagation:
    """From each mirror's installed copies ((wall clock, serial), in time order)."""
    spans = list(spans)
    registry_down = [s for s in spans if s.node == REGISTRY]
    everything: list[float] = []
    clear: list[float] = []
    never = 0
    writes = [w for w in history.writes if w.outcome == "acked" and w.serial is not None]
    for node, copies in applied.items():
        touching = [s for s in spans if s.node == node] + registry_down
        # The first time each serial or a later one was installed.
        times = [t for t, _ in copies]
        best: list[int] = []
        for _, serial in copies:
            best.append(max(serial, best[-1]) if best else serial)
        for w in writes:
            assert w.serial is not None
            at = bisect.bisect_left(best, w.serial)
            if at == len(best):
                never += 1
                continue
            seen = max(times[at], w.sent)
            delay = seen - w.sent
            everything.append(delay)
            if not any(s.start <= seen and s.end >= w.sent - margin for s in touching):
                clear.append(delay)
    return Propagation(everything, clear, never)


@dataclass(frozen=True, slots=True)
class Sample:
    node: str
    pid: int
    at: float
    rss_kib: int
    fds: int
    cpu: float
    """utime + stime, seconds."""


@dataclass(frozen=True, slots=True)
class Usage:
    rss_kib: float
    fds: float
    cpu_ms_per_s: float


@dataclass(frozen=True, slots=True)
class Growth:
    node: str
    pid: int
    restarts: int
    warm: Usage | None
    end: Usage | None
    note: str = ""

    @property
    def judged(self) -> bool:
        return self.warm is not None and self.end is not None

    def ratios(self) -> tuple[float, float, float]:
        assert self.warm is not None and self.end is not None
        return (
            _ratio(self.end.rss_kib, self.warm.rss_kib),
            _ratio(self.end.fds, self.warm.fds),
            _ratio(self.end.cpu_ms_per_s, self.warm.cpu_ms_per_s),
        )

    @property
    def grew(self) -> list[str]:
        """What grew beyond the goal (empty when not judged)."""
        if not self.judged:
            return []
        assert self.warm is not None and self.end is not None
        rss, fds, cpu = self.ratios()
        grew = []
        if rss > 1 + GROWTH:
            grew.append("RSS")
        if fds > 1 + GROWTH and self.end.fds - self.warm.fds > FD_SLACK:
            grew.append("open files")
        if cpu > 1 + GROWTH:
            grew.append("CPU")
        return grew


def _ratio(end: float, warm: float) -> float:
    return end / warm if warm > 0 else (1.0 if end == 0 else math.inf)


def usage(samples: Sequence[Sample]) -> Usage | None:
    """Median RSS and open files, and CPU per second between the first and last sample."""
    if len(samples) < 2 or samples[-1].at <= samples[0].at:
        return None
    cpu = (samples[-1].cpu - samples[0].cpu) / (samples[-1].at - samples[0].at)
    return Usage(
        statistics.median(s.rss_kib for s in samples),
        statistics.median(s.fds for s in samples),
        1e3 * cpu,
    )


def growth(
    samples: Iterable[Sample],
    started: Mapping[int, float],
    *,
    begin: float,
    end: float,
    warm: float,
    window: float,
    spans: Iterable[Span] = (),
) -> list[Growth]:
    """Per node, its last process: usage over ``window`` s from ``warm`` s after the latest of
    ``begin``, the process's start (``started``, by pid) and the end of any partition of the
    node (``spans``: a cut-off node idles, so a window there is no baseline), and over the last
    ``window`` s before ``end``; not judged when the two windows overlap or one lacks samples."""
    by_node: dict[str, dict[int, list[Sample]]] = {}
    for s in samples:
        by_node.setdefault(s.node, {}).setdefault(s.pid, []).append(s)
    cut_off: dict[str, float] = {}
    for span in spans:
        if span.kind == "partitioned":
            cut_off[span.node] = max(cut_off.get(span.node, begin), span.end)
    out: list[Growth] = []
    for node, processes in sorted(by_node.items()):
        pid = max(processes, key=lambda p: processes[p][-1].at)
        own = sorted(processes[pid], key=lambda s: s.at)
        warm_from = max(begin, started.get(pid, begin), cut_off.get(node, begin)) + warm
        restarts = len(processes) - 1
        if warm_from + window > end - window:
            why = "restarted or partitioned too late to judge"
            out.append(Growth(node, pid, restarts, None, None, why))
            continue
        first = usage([s for s in own if warm_from <= s.at <= warm_from + window])
        last = usage([s for s in own if end - window <= s.at <= end])
        note = "" if first and last else "too few samples"
        out.append(Growth(node, pid, restarts, first, last, note))
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` percent of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def applied_at(log: Path, zone: str = ZONE) -> list[tuple[float, int]]:
    """(wall clock, serial) of each copy of ``zone`` a node installed, from its log."""
    found: list[tuple[float, int]] = []
    with contextlib.suppress(OSError), log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if '"zone applied"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                record = json.loads(line)
                if record["msg"] == "zone applied" and record["zone"] == zone:
                    when = datetime.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
                    stamp = when.replace(tzinfo=datetime.UTC).timestamp()
                    found.append((stamp, int(record["serial"])))
    return sorted(found)


# -- the I/O part: the cluster, the workload, the faults ---------------------------------------


def read_usage(node: str, pid: int, at: float) -> Sample | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError):
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:"), 0)
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return Sample(node, pid, at, rss, fds, cpu)


def _drain(stream: IO[bytes], path: Path) -> None:
    """Copy a node's stderr to a file, so that the pipe never fills."""
    with contextlib.suppress(OSError, ValueError), path.open("ab") as out:
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            out.write(chunk)
            out.flush()


class Cluster:
    """The hosts and the node processes on them, started and restarted alike."""

    def __init__(self, hosts: Hosts, root: Path, mirrors: int, expire: float) -> None:
        self.hosts = hosts
        self.root = root
        self.expire = expire
        self.names = [REGISTRY] + [f"m{i:02d}" for i in range(1, mirrors + 1)]
        self.ids = {n: load_or_create_identity(root / n).node_id for n in self.names}
        self.procs: dict[str, NodeProc] = {}
        self.started: dict[int, float] = {}
        """When each process (by pid) started serving (wall clock)."""
        self.down: set[str] = set()
        """Nodes killed on purpose and not yet started again."""
        self.closed = False
        """Set by ``stop``: a start still under way is undone, none begins."""

    def host(self, name: str) -> int:
        return self.names.index(name)

    def address(self, name: str) -> str:
        return f"{self.hosts.address(self.host(name))}:{PORT}"

    @property
    def mirrors(self) -> list[str]:
        return self.names[1:]

    def spawn(self, name: str) -> NodeProc:
        """Start ``name``'s process with the configuration it always has (not waiting)."""
        if self.closed:
            raise RuntimeError("the cluster is being stopped")
        i = self.host(name)
        if name == REGISTRY:
            proc = start_node(
                self.root,
                name,
                roles=("registry",),
                listen=f"0.0.0.0:{PORT}",
                netns=self.hosts.ns(i),
                reach=self.address(name),
                wait=False,
            )
        else:
            others = self.mirrors[i:] + self.mirrors[: i - 1]
            proc = start_node(
                self.root,
                name,
                listen=self.address(name),
                netns=self.hosts.ns(i),
                registry=Upstream(PeerRef(self.address(REGISTRY), self.ids[REGISTRY])),
                peers=[Upstream(PeerRef(self.address(o), self.ids[o])) for o in others[:MAX_PEERS]],
                expire=self.expire,
                wait=False,
            )
        if proc.process.stderr is not None:
            threading.Thread(
                target=_drain, args=(proc.process.stderr, proc.node_dir / "stderr.log"), daemon=True
            ).start()
        return proc

    def serving(self, name: str, proc: NodeProc, timeout: float) -> NodeProc:
        """Wait until ``proc`` publishes its runtime file, then count it as ``name``'s."""
        deadline = time.monotonic() + timeout
        while (runtime := read_runtime(proc.node_dir)) is None or runtime.pid != proc.process.pid:
            code = proc.process.poll()
            if code is not None or self.closed or time.monotonic() > deadline:
                if code is None:
                    proc.process.kill()
                    proc.process.wait(10)
                why = f"exited with code {code}" if code is not None else "did not serve"
                raise RuntimeError(f"{name} {why} within {timeout:g} s (see its stderr.log)")
            time.sleep(0.1)
        self.procs[name] = proc
        self.started[proc.process.pid] = time.time()
        self.down.discard(name)
        return proc

    def start(self, name: str, timeout: float) -> NodeProc:
        """Start ``name`` and wait until it serves."""
        return self.serving(name, self.spawn(name), timeout)

    def start_all(self, timeout: float) -> None:
        """The registry, then every mirror at once."""
        self.start(REGISTRY, timeout)
        spawned = [(m, self.spawn(m)) for m in self.mirrors]
        try:
            for name, proc in spawned:
                self.serving(name, proc, timeout)
        finally:
            for name, proc in spawned:  # those not waited for, stopped with the rest
                self.procs.setdefault(name, proc)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        self.down.add(name)
        with contextlib.suppress(ProcessLookupError):
            proc.process.kill()
        proc.process.wait(10)

    def stop(self) -> None:
        self.closed = True
        for proc in self.procs.values():  # all told at once, then each waited for
            if proc.process.poll() is None:
                proc.process.terminate()
        for proc in self.procs.values():
            proc.stop()


class Doq:
    """One DNS over QUIC connection to a node, kept open, opened again after a failure."""

    def __init__(self, address: str, node_id: str) -> None:
        self.address = address
        self.node_id = node_id
        self.client: DoqClientProtocol | None = None
        self.stack: contextlib.AsyncExitStack | None = None

    async def ask(self, name: str, limit: float = QUERY_TIMEOUT) -> dns.message.Message:
        wire = dns.message.make_query(name, "A", use_edns=0).to_wire()
        try:
            async with asyncio.timeout(limit):
                if self.client is None:
                    stack = contextlib.AsyncExitStack()
                    try:
                        self.client = await stack.enter_async_context(
                            connect_pinned(
                                self.address,
                                expected_id=self.node_id,
                                identity=None,
                                protocol=DoqClientProtocol,
                                alpn=DOQ_ALPN,
                            )
                        )
                    except BaseException:
                        await stack.aclose()
                        raise
                    self.stack = stack
                answer = await self.client.query(wire)
        except BaseException:
            await self.close()
            raise
        return dns.message.from_wire(answer)

    async def read(self, node: str, name: str) -> Read:
        """Ask ``name`` (relative to the zone); a failure is a Read without an rcode."""
        sent = time.time()
        try:
            message = await self.ask(f"{name}.{ZONE}")
        except (HyperMeshError, TimeoutError, OSError, dns.exception.DNSException):
            return Read(node, name, sent, time.time(), None)
        found = [rrset for rrset in message.answer if rrset.rdtype == dns.rdatatype.A]
        values = frozenset(r.to_text() for rrset in found for r in rrset)
        ttl = min((rrset.ttl for rrset in found), default=None)
        stale = any(
            isinstance(o, dns.edns.EDEOption) and o.code == dns.edns.EDECode.STALE_ANSWER
            for o in message.options
        )
        rcode = dns.rcode.to_text(message.rcode())
        return Read(node, name, sent, time.time(), rcode, values, stale, ttl)

    async def close(self) -> None:
        stack, self.stack, self.client = self.stack, None, None
        if stack is not None:
            await stack.aclose()


@dataclass
class Run:
    """What a run saw, as it happens."""

    t0: float = 0.0
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    """Nodes that died without being killed: ``"+12.3 s m04 (exit 1)"``."""
    durability: list[tuple[float, list[Write]]] = field(default_factory=list)
    """After each registry restart: when, and the acknowledged writes it did not hold."""
    open_spans: dict[tuple[str, str], float] = field(default_factory=dict)

    def say(self, text: str) -> None:
        print(f"  +{time.time() - self.t0:6.1f} s  {text}", flush=True)

    def begin(self, node: str, kind: str) -> None:
        self.open_spans.setdefault((node, kind), time.time())

    def finish(self, node: str, kind: str) -> None:
        start = self.open_spans.pop((node, kind), None)
        if start is not None:
            self.spans.append(Span(node, kind, start, time.time()))


class Soak:
    def __init__(self, cluster: Cluster, args: argparse.Namespace, rng: random.Random) -> None:
        self.cluster = cluster
        self.args = args
        self.rng = rng
        self.run = Run(t0=time.time())
        self.owner = Identity.generate()
        self.client = RegistryClient(
            cluster.address(REGISTRY),
            cluster.ids[REGISTRY],
            identity=self.owner,
            timeout=args.write_timeout,
        )
        self.conns = {n: Doq(cluster.address(n), cluster.ids[n]) for n in cluster.names}
        self.restarting: set[asyncio.Task[None]] = set()
        self.partitioned: tuple[str, ...] = ()

    # -- writes --

    async def write(self, n: int, client: RegistryClient | None = None) -> Write:
        key = key_of(n, self.args.keys)
        value = value_of(n)
        changes = [
            {"name": name, "type": "A", "changetype": "REPLACE", "ttl": TTL, "values": [value]}
            for name in (key, HEAD)
        ]
        write = Write(n, (key, HEAD), value, time.time())
        self.run.writes.append(write)
        try:
            status, data = await (client or self.client).call(
                "POST", "/registry/v1/rrsets", {"tld": TLD, "rrsets": changes}, signer=self.owner
            )
        except (HyperMeshError, TimeoutError, OSError):
            status, data = 0, {}
        write.done = time.time()
        if status in (200, 201) and isinstance(data.get("serial"), int):
            write.outcome, write.serial = "acked", int(data["serial"])
        elif 400 <= status < 500:
            write.outcome = "refused"
            self.run.say(f"write {n} refused: {status} {data.get('error')}")
        else:
            write.outcome = "unknown"
        return write

    async def writer(self, first: int, until: float) -> None:
        n, due = first, time.time()
        while time.time() < until:
            await asyncio.sleep(max(0.0, due - time.time()))
            await self.write(n)
            n += 1
            due = max(due + 1 / self.args.rate, time.time())

    # -- reads --

    async def reader(self, node: str, offset: float, until: float) -> None:
        await asyncio.sleep(offset)
        turn = 0
        while time.time() < until:
            begin = time.time()
            turn += 1
            name = HEAD if turn % 2 else key_of(self.rng.randrange(self.args.keys), self.args.keys)
            self.run.reads.append(await self.conns[node].read(node, name))
            await asyncio.sleep(max(0.0, self.args.poll_every - (time.time() - begin)))

    # -- faults --

    async def restart(self, name: str, kind: str) -> None:
        await asyncio.sleep(self.args.restart_after)
        while True:
            try:
                proc = await asyncio.to_thread(self.cluster.start, name, self.args.start_timeout)
                break
            except (RuntimeError, OSError) as exc:
                self.run.say(f"{name} did not start again: {exc}; retrying")
                await asyncio.sleep(self.args.restart_after)
        self.run.finish(name, kind)
        self.run.say(f"{name} serving again (pid {proc.process.pid})")
        if name == REGISTRY:
            await self.check_registry()

    def spawn_restart(self, name: str, kind: str) -> None:
        task = asyncio.create_task(self.restart(name, kind))
        self.restarting.add(task)
        task.add_done_callback(self.restarting.discard)

    async def kill(self, name: str) -> None:
        if name in self.cluster.down:
            self.run.say(f"{name} is down already; not killed")
            return
        kind = "down"
        self.run.begin(name, kind)
        await asyncio.to_thread(self.cluster.kill, name)
        self.run.say(f"SIGKILL {name}")
        self.spawn_restart(name, kind)

    async def check_registry(self) -> None:
        """Every name asked of the registry just restarted: every write acknowledged before it
        was killed must still show."""
        killed = max(s.start for s in self.run.spans if s.node == REGISTRY)
        answers = await self.ask_all(REGISTRY)
        lost = lost_writes(History(self.run.writes), answers, before=killed)
        self.run.durability.append((time.time(), lost))
        shown = ", ".join(str(w.n) for w in lost[:10])
        self.run.say(
            f"registry restarted: {len(lost)} acknowledged writes lost"
            + (f" ({shown})" if lost else "")
        )

    async def ask_all(self, node: str) -> dict[str, Read]:
        names = [HEAD] + [key_of(k, self.args.keys) for k in range(self.args.keys)]
        answers: dict[str, Read] = {}
        for name in names:
            for _ in range(ASK_ATTEMPTS):
                read = await self.conns[node].read(node, name)
                if read.rcode in ("NOERROR", "NXDOMAIN"):
                    break
                await asyncio.sleep(0.5)
            answers[name] = read
        return answers

    def partition(self, members: tuple[str, ...]) -> None:
        hosts = self.cluster.hosts
        allowed = [hosts.outside] + [hosts.address(self.cluster.host(m)) for m in members]
        for m in members:
            if self.args.partition == "nft":
                hosts.isolate(self.cluster.host(m), allowed)
            else:
                hosts.cut(self.cluster.host(m))
            self.run.begin(m, "partitioned")
        self.partitioned = members
        self.run.say(f"partitioned {', '.join(members)} from the registry and the rest")

    def heal(self) -> None:
        hosts = self.cluster.hosts
        for m in self.partitioned:
            if self.args.partition == "nft":
                hosts.rejoin(self.cluster.host(m))
            else:
                hosts.restore(self.cluster.host(m))
            self.run.finish(m, "partitioned")
        if self.partitioned:
            self.run.say(f"healed {', '.join(self.partitioned)}")
        self.partitioned = ()

    async def faults(self, plan: list[Fault]) -> None:
        for fault in plan:
            await asyncio.sleep(max(0.0, self.run.t0 + fault.at - time.time()))
            if fault.kind == "kill":
                await self.kill(fault.targets[0])
            elif fault.kind == "kill-registry":
                await self.kill(REGISTRY)
            elif fault.kind == "partition":
                await asyncio.to_thread(self.partition, fault.targets)
            elif fault.kind == "heal":
                await asyncio.to_thread(self.heal)

    # -- resources, and deaths nobody asked for --

    def sample(self) -> None:
        now = time.time()
        for name, proc in list(self.cluster.procs.items()):
            if name in self.cluster.down:
                continue
            code = proc.process.poll()
            if code is not None:
                self.cluster.down.add(name)
                self.run.crashes.append(f"+{now - self.run.t0:.1f} s {name} (exit {code})")
                self.run.say(f"{name} DIED on its own (exit {code}); starting it again")
                self.run.begin(name, "down")
                self.spawn_restart(name, "down")
                continue
            got = read_usage(name, proc.process.pid, now)
            if got is not None:
                self.run.samples.append(got)

    async def sampler(self, until: float) -> None:
        while True:
            self.sample()
            left = until - time.time()
            if left <= 0:
                return
            await asyncio.sleep(min(self.args.sample_every, left))

    async def progress(self, until: float) -> None:
        while time.time() < until:
            await asyncio.sleep(min(30.0, max(0.0, until - time.time())))
            w = self.run.writes
            acked = sum(x.outcome == "acked" for x in w)
            reads = self.run.reads
            stale = sum(r.stale for r in reads)
            failed = sum(r.rcode is None for r in reads)
            self.run.say(
                f"{len(w)} writes ({acked} acknowledged); {len(reads)} questions"
                f" ({stale} answered stale, {failed} unanswered)"
            )

    # -- the phases --

    async def status_serial(self, node: str) -> int | None:
        try:
            data = await h3_get_json(
                self.cluster.address(node),
                "/status",
                expected_id=self.cluster.ids[node],
                identity=None,
                timeout=STATUS_TIMEOUT,
            )
        except (HyperMeshError, TimeoutError, OSError):
            return None
        serial = data.get("zones", {}).get(ZONE)
        return int(serial) if isinstance(serial, int) else None

    async def converged(self, limit: float) -> tuple[int | None, dict[str, int | None]]:
        """Wait until every mirror holds the registry's serial; the last serials seen."""
        deadline = time.time() + limit
        while True:
            wanted = await self.status_serial(REGISTRY)
            held = dict(
                zip(
                    self.cluster.mirrors,
                    await asyncio.gather(*(self.status_serial(m) for m in self.cluster.mirrors)),
                    strict=True,
                )
            )
            if wanted is not None and all(s == wanted for s in held.values()):
                return wanted, held
            if time.time() > deadline:
                return wanted, held
            await asyncio.sleep(0.5)

    async def warm_up(self) -> None:
        """Register the TLD and write every key once (patiently: a cluster just started on a
        small machine is slow to answer); every mirror must hold them all."""
        client = RegistryClient(
            self.cluster.address(REGISTRY),
            self.cluster.ids[REGISTRY],
            identity=self.owner,
            timeout=WARM_UP_TIMEOUT,
        )
        body = {"tld": TLD, "network": "acme", "ttl": TTL}
        try:
            status, data = await client.call(
                "POST", "/registry/v1/register", body, signer=self.owner
            )
        except HyperMeshError as exc:
            raise SetupError(f"registering {TLD}: {exc}") from None
        if status not in (200, 201):
            raise SetupError(f"the registry refused to register {TLD}: {status} {data}")
        for n in range(self.args.keys):
            write = await self.write(n, client)
            if write.outcome != "acked":
                raise SetupError(f"warm-up write {n} failed: {write.outcome}")
        wanted, held = await self.converged(WARM_UP_TIMEOUT)
        late = [m for m, s in held.items() if s != wanted]
        if late:
            raise SetupError(f"mirrors not at the registry's serial {wanted} in time: {late}")

    async def soak(self, plan: list[Fault]) -> None:
        args = self.args
        self.run.t0 = time.time()
        until = self.run.t0 + args.duration
        spread = args.poll_every / len(self.cluster.mirrors)
        tasks = [
            asyncio.create_task(self.writer(args.keys, until)),
            asyncio.create_task(self.faults(plan)),
            asyncio.create_task(self.sampler(until)),
            asyncio.create_task(self.progress(until)),
            *(
                asyncio.create_task(self.reader(m, i * spread, until))
                for i, m in enumerate(self.cluster.mirrors)
            ),
        ]
        try:
            # Each ends by itself at the end of the run (the writer and the readers once their
            # request in flight is answered or times out); a failure ends the run at once.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wind_down(self) -> tuple[int | None, dict[str, int | None]]:
        """Heal, bring every node back, wait for the mirrors to catch up."""
        await asyncio.to_thread(self.heal)
        if self.restarting:
            await asyncio.wait(set(self.restarting), timeout=60)
        for name in self.cluster.names:
            proc = self.cluster.procs.get(name)
            if proc is None or proc.process.poll() is not None:
                self.run.say(f"{name} not running at the end; starting it")
                self.run.begin(name, "down")
                await asyncio.to_thread(self.cluster.start, name, self.args.start_timeout)
                self.run.finish(name, "down")
        for key in list(self.run.open_spans):
            self.run.finish(*key)
        begin = time.time()
        wanted, held = await self.converged(self.args.settle)
        behind = [m for m, s in held.items() if s != wanted]
        self.run.say(
            f"registry at serial {wanted}; "
            + (
                f"every mirror caught up in {time.time() - begin:.1f} s"
                if not behind
                else f"NOT caught up after {self.args.settle:g} s: {behind}"
            )
        )
        return wanted, held

    async def close(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                await conn.close()


# -- the report ---------------------------------------------------------------------------------


def row(label: str, values: Sequence[float], note: str = "") -> str:
    if not values:
        return f"  {label:22} {'-':>8} {'-':>8} {'-':>8} {'-':>8} {0:>7}  {note}".rstrip()
    figures = [percentile(values, p) for p in (50, 90, 99)] + [max(values)]
    cells = "".join(f" {1e3 * v:8.0f}" for v in figures)
    return f"  {label:22}{cells} {len(values):7d}  {note}".rstrip()


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


@dataclass(frozen=True)
class Losses:
    """What the report found of acknowledged writes after the heal."""

    total: int
    caught_up: bool
    wanted: int | None
    differ: Mapping[str, list[str]]


def report(
    soak: Soak,
    final: Mapping[str, Mapping[str, Read]],
    serials: tuple[int | None, Mapping[str, int | None]],
) -> bool:
    """Print what the run did and whether each goal is met; True when all are."""
    print()
    print("== report ==")
    crashed = report_run(soak)
    losses = report_losses(soak, final, serials)
    answers = report_answers(soak)
    report_propagation(soak)
    judged, grew = report_resources(soak)
    goals = [
        ("acknowledged writes lost: 0", losses.total == 0 and losses.caught_up, f"{losses.total}"),
        ("writes answered wrongly: 0", not answers.wrong, f"{len(answers.wrong)}"),
        ("no node died on its own", crashed == 0, f"{crashed}"),
        (
            "every mirror caught up after the heal, answering as the registry does",
            losses.caught_up and not losses.differ,
            f"serial {losses.wanted}; {len(losses.differ)} mirrors answer otherwise",
        ),
        (
            f"no growth beyond {100 * GROWTH:g}% once warm (RSS, open files, CPU)",
            bool(judged) and not grew,
            f"{len(grew)} of {len(judged)} judged nodes grew"
            + (f": {', '.join(g.node for g in grew)}" if grew else ""),
        ),
    ]
    print()
    for label, met, detail in goals:
        print(f"goal: {label}: {'met' if met else 'NOT met'} ({detail})")
    ok = all(met for _, met, _ in goals)
    print(f"verdict: {'PASS' if ok else 'FAIL'}")
    return ok


def report_run(soak: Soak) -> int:
    """The writes sent, the faults injected and the nodes that died; returns the deaths."""
    args, run = soak.args, soak.run
    counts = {k: sum(w.outcome == k for w in run.writes) for k in ("acked", "refused", "unknown")}
    main = [w for w in run.writes if w.n >= args.keys]
    span = (main[-1].sent - main[0].sent) if len(main) > 1 else 0.0
    print(
        f"writes: {len(run.writes)} ({args.keys} warm-up), {counts['acked']} acknowledged,"
        f" {counts['refused']} refused, {counts['unknown']} unknown (no answer or 5xx);"
        f" {len(main) / span if span else 0:.2f} writes/s attempted (asked {args.rate:g})"
    )
    kinds: dict[str, list[Span]] = {}
    for s in run.spans:
        kinds.setdefault(s.kind if s.node != REGISTRY else "registry down", []).append(s)
    shown = "; ".join(
        f"{k}: {len(v)} (longest {max(s.end - s.start for s in v):.1f} s)"
        for k, v in sorted(kinds.items())
    )
    print(f"faults: {shown or 'none'}")
    crashed = len(run.crashes)
    print(
        f"nodes that died on their own: {crashed}"
        + (f" ({'; '.join(run.crashes)})" if crashed else "")
    )
    return crashed


def report_losses(
    soak: Soak,
    final: Mapping[str, Mapping[str, Read]],
    serials: tuple[int | None, Mapping[str, int | None]],
) -> Losses:
    """Acknowledged writes lost at the registry, across its restarts and in the mirrors."""
    run, cluster = soak.run, soak.cluster
    history = History(run.writes)
    wanted, held = serials
    caught_up = wanted is not None and all(s == wanted for s in held.values())
    lost_registry = lost_writes(history, final.get(REGISTRY, {}))
    lost_restart = sum(len(lost) for _, lost in run.durability)
    lost_mirrors = {m: lost_writes(history, final.get(m, {})) for m in cluster.mirrors}
    differ = {
        m: sorted(
            name
            for name, read in final.get(m, {}).items()
            if read.values != final.get(REGISTRY, {}).get(name, read).values or read.stale
        )
        for m in cluster.mirrors
    }
    differ = {m: names for m, names in differ.items() if names}
    worst = max((len(v) for v in lost_mirrors.values()), default=0)
    lost_total = len(
        {w.n for w in lost_registry}
        | {w.n for _, lost in run.durability for w in lost}
        | {w.n for lost in lost_mirrors.values() for w in lost}
    )
    print()
    print(
        f"acknowledged writes lost: {lost_total} — at the registry at the end"
        f" {len(lost_registry)}, after its {len(run.durability)} restarts {lost_restart},"
        f" in a mirror after the heal at most {worst}"
    )
    for w in lost_registry[:5]:
        print(f"  lost at the registry: write {w.n} ({', '.join(w.names)} = {w.value})")
    for m, lost in lost_mirrors.items():
        if lost:
            print(f"  lost in {m}: writes {', '.join(str(w.n) for w in lost[:10])}")
    for m, names in differ.items():
        print(f"  {m} answers differently from the registry (or stale) for {', '.join(names)}")
    print(
        f"mirrors at the registry's serial {wanted} after the heal:"
        f" {sum(s == wanted for s in held.values())} of {len(held)}"
    )
    return Losses(lost_total, caught_up, wanted, differ)


def report_answers(soak: Soak) -> Answers:
    """The mirrors' answers during the run, judged against the writes' history."""
    args, run = soak.args, soak.run
    answers = judge_reads(History(run.writes), run.reads, args.expire)
    unanswered = ", ".join(f"{k} {v}" for k, v in sorted(answers.unanswered.items()))
    print()
    print(
        f"questions to mirrors: {answers.asked}, answered {answers.answered}"
        f" ({answers.marked_stale} marked stale), unanswered {sum(answers.unanswered.values())}"
        + (f" ({unanswered})" if unanswered else "")
    )
    print(f"writes answered wrongly: {len(answers.wrong)}")
    for wrong in answers.wrong[:10]:
        r = wrong.read
        print(
            f"  +{r.sent - run.t0:.1f} s {r.node} {r.name}: {sorted(r.values) or r.rcode}"
            f"{' (stale)' if r.stale else ''}: {wrong.why}"
        )
    past = max(0.0, answers.max_lag - args.expire)
    print(
        f"longest time a mirror served data older than its declared staleness ({args.expire:g} s):"
        f" {past:.1f} s (oldest answer {answers.max_lag:.1f} s behind"
        f"{', at ' + answers.lag_node if answers.lag_node else ''}; unmarked answers at most"
        f" {answers.max_lag_unmarked:.1f} s behind)"
    )
    return answers


def report_propagation(soak: Soak) -> None:
    """How long each write took to reach each mirror, under faults and clear of them."""
    args, run, cluster = soak.args, soak.run, soak.cluster
    applied = {m: applied_at(cluster.procs[m].node_dir / "node.log") for m in cluster.mirrors}
    acked_main = History([w for w in run.writes if w.n >= args.keys])
    prop = propagation(acked_main, applied, run.spans, args.expire)
    print()
    print("propagation under faults, ms from the write's sending until a mirror installed it:")
    print(f"  {'':22} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'n':>7}")
    print(row("every write x mirror", prop.everything))
    print(
        row(
            "clear of faults",
            prop.clear,
            f"mirror up and joined, registry up, from {args.expire:g} s before the sending",
        )
    )
    if prop.never:
        print(f"  never installed: {prop.never} (write, mirror) pairs")


def report_resources(soak: Soak) -> tuple[list[Growth], list[Growth]]:
    """Each node's RSS, open files and CPU once warm against the end; (judged, grew)."""
    args, run, cluster = soak.args, soak.run, soak.cluster
    grown = growth(
        run.samples,
        cluster.started,
        begin=run.t0,
        end=run.t0 + args.duration,
        warm=args.warm,
        window=args.window,
        spans=run.spans,
    )
    print()
    print(
        f"resources, median over {args.window:g} s from {args.warm:g} s after the start (or"
        f" the restart, or the end of a partition) -> the last {args.window:g} s; CPU in ms per s:"
    )
    print(f"  {'node':9} {'restarts':>8} {'RSS MiB':>16} {'open files':>12} {'CPU ms/s':>14}")
    for g in grown:
        if g.warm is None or g.end is None:
            print(f"  {g.node:9} {g.restarts:8d}  not judged: {g.note}")
            continue
        rss, fds, cpu = g.ratios()
        mark = "  GREW: " + ", ".join(g.grew) if g.grew else ""
        print(
            f"  {g.node:9} {g.restarts:8d} {mib(g.warm.rss_kib):>7}->{mib(g.end.rss_kib):<7}"
            f" {g.warm.fds:>5.0f}->{g.end.fds:<5.0f} {g.warm.cpu_ms_per_s:>6.1f}->"
            f"{g.end.cpu_ms_per_s:<6.1f} {100 * (rss - 1):+5.1f}% {100 * (fds - 1):+5.1f}%"
            f" {100 * (cpu - 1):+5.1f}%{mark}"
        )
    judged = [g for g in grown if g.judged]
    return judged, [g for g in judged if g.grew]


# -- the command --------------------------------------------------------------------------------


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Drop the one known complaint: aioquic's handshake waiter (shielded) failing after a
    connection attempt to a dead node timed out, with nobody left to retrieve it."""
    if isinstance(context.get("exception"), ConnectionError) and "never retrieved" in str(
        context.get("message")
    ):
        return
    loop.default_exception_handler(context)


async def measure(soak: Soak, plan: list[Fault]) -> bool:
    asyncio.get_running_loop().set_exception_handler(_quiet)
    try:
        begin = time.time()
        await soak.warm_up()
        print(
            f"registered {TLD}, {soak.args.keys} warm-up writes at every mirror in"
            f" {time.time() - begin:.1f} s; the run begins",
            flush=True,
        )
        await soak.soak(plan)
        soak.run.say("the run is over: writes stop, the partition heals, every node up")
        serials = await soak.wind_down()
        final = {n: await soak.ask_all(n) for n in soak.cluster.names}
        return report(soak, final, serials)
    finally:
        await soak.close()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=600.0, help="seconds of writes under faults (600)")
    add("--nodes", type=int, default=20, help="mirrors, beside the registry (20)")
    add("--rate", type=float, default=1.0, help="writes per second (1)")
    add("--keys", type=int, default=50, help="names the writes go round (50)")
    add("--expire", type=float, default=10.0, help="the mirrors' declared staleness, s (10)")
    add("--kill-every", type=float, default=30.0, help="s between mirror kills (30)")
    add("--restart-after", type=float, default=5.0, help="s before a killed node restarts (5)")
    add("--partition-for", type=float, help="s a third of the mirrors is cut off (duration/6)")
    add("--partition", choices=("nft", "link"), help="how: nft drop rules (default) or veth down")
    add("--poll-every", type=float, default=1.0, help="s between questions to each mirror (1)")
    add("--write-timeout", type=float, default=5.0, help="s a write may take (5)")
    add("--warm", type=float, help="s after a start before usage counts (min(60, duration/6))")
    add("--window", type=float, help="s of each usage window (min(60, duration/8))")
    add("--sample-every", type=float, help="s between usage samples (min(5, window/6))")
    add("--start-timeout", type=float, default=120.0, help="s a node may take to start (120)")
    add("--settle", type=float, default=180.0, help="s for the mirrors to catch up (180)")
    add("--seed", type=int, help="the faults' random seed (printed; random by default)")
    add("--tmp", help="where the temporary folder is made")
    add("--keep", action="store_true", help="keep the temporary folder (the nodes' logs)")
    args = parser.parse_args()
    if args.partition_for is None:
        args.partition_for = args.duration / 6
    if args.partition is None:
        args.partition = "nft" if can_filter() else "link"
    if args.warm is None:
        args.warm = min(60.0, args.duration / 6)
    if args.window is None:
        args.window = min(60.0, args.duration / 8)
    if args.sample_every is None:
        args.sample_every = min(5.0, args.window / 6)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**31)
    if args.nodes < 2 or args.keys < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--nodes must be at least 2, --keys 1, --rate and --duration above 0")
    if args.partition == "nft" and not can_filter():
        parser.error("--partition nft needs nft (apt-get install nftables)")
    return args


def main() -> int:
    args = arguments()
    # The nodes inherit this path (PYTHONPATH): bench/ must not be in it, where operator.py
    # would shadow the standard library's.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != here]
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if not can_make_namespaces():
        print("needs root and `ip netns` (network namespaces)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()};"
        f" seed {args.seed}"
    )
    hosts: Hosts | None = None
    cluster: Cluster | None = None
    tmp = tempfile.mkdtemp(prefix="hm-bench-soak-", dir=args.tmp)

    def interrupt(signum: int, frame: object) -> None:
        """SIGINT (even when inherited ignored), SIGTERM and SIGHUP end the run through the
        cleanup; a node start under way in a thread gives up at once."""
        if cluster is not None:
            cluster.closed = True
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    try:
        hosts = Hosts(1 + args.nodes)
        cluster = Cluster(hosts, Path(tmp), args.nodes, args.expire)
        plan = schedule(
            args.duration,
            cluster.mirrors,
            kill_every=args.kill_every,
            partition_for=args.partition_for,
            rng=rng,
        )
        print(
            f"{args.nodes} mirrors and a registry in namespaces {hosts.tag}-*, {hosts.subnet}.0/24;"
            f" {args.duration:g} s at {args.rate:g} writes/s over {args.keys} names; faults:"
        )
        for fault in plan:
            print(f"  at {fault.at:6.1f} s  {fault.kind:13} {', '.join(fault.targets)}")
        begin = time.time()
        try:
            cluster.start_all(args.start_timeout)
        except (RuntimeError, OSError) as exc:
            print(f"the cluster did not start: {exc}", file=sys.stderr)
            return 2
        print(f"started {len(cluster.names)} nodes in {time.time() - begin:.1f} s", flush=True)
        ok = asyncio.run(measure(Soak(cluster, args, rng), plan))
        return 0 if ok else 1
    except SetupError as exc:
        print(f"the run could not begin: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # the cleanup runs to its end
        if cluster is not None:
            cluster.stop()
        if hosts is not None:
            hosts.remove()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
