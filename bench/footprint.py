"""What a node costs: its memory, its CPU at rest, its start-up; before and after, in one run.

Each variant runs the same real networks with a real ``hmctl apply`` (fresh ``--state`` in a
temporary folder, ``hmctl down`` at the end whatever happens):

  baseline  the code of ``--baseline-rev`` (``git archive`` into a temporary folder, put first on
            PYTHONPATH): every node spawned as ``python -m hypermesh.node`` importing every feature
  plain     this code with the fork server off (``HM_FORKSERVER=0``): each node spawned, importing
            only the features it opens
  forked    this code: nodes forked from the fork server (``hypermesh.node.forkserver``)

and prints, for each:

  (1) a network of ``--small`` nodes (a registry, the rest mirrors, public and private interfaces):
      each node's resident memory (VmRSS) and proportional share (Pss, from smaps_rollup) once
      converged, the CPU each used to start (user + system from /proc/<pid>/stat when ``hmctl
      apply`` returns), and its CPU at rest over ``--idle`` seconds, in ms per second
  (2) ``--many`` nodes (default 50) from nothing: wall time of ``hmctl apply``, nodes Ready, CPU
      per node, memory per node
  (3) ``--huge`` nodes (default 0, off; 200 for the goal): the same, to show they converge

then a table side by side with the goals of issue 19. First, the floor: RSS and Pss of a fresh
interpreter that only imports aioquic and cryptography (``FLOORS``). The machine is assumed
otherwise idle.

    .venv/bin/python bench/footprint.py                           # ~4 minutes
    .venv/bin/python bench/footprint.py --huge 200                # and 200 nodes converging
    .venv/bin/python bench/footprint.py --variants forked --many 10 --idle 10   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness
from tests.harness.git import archived_package
from tests.harness.proc import cpu_seconds, proc_mib

ROOT = Path(__file__).resolve().parents[1]
HEADER = "apiVersion: hypermesh.online/v1alpha1\n"
NETWORK = "bench"
HMCTL = [sys.executable, "-m", "hypermesh.cli.main"]
GOALS = {
    "rss": 35.0,
    "pss": 15.0,
    "idle": 0.5,
    "startup": 0.05,
    "many_wall": 3.0,
}


def network_yaml(nodes: int) -> str:
    docs = [
        f"{HEADER}kind: Network\nmetadata:\n  name: {NETWORK}\nspec:\n  mode: private\n"
        "  registry:\n    node: node-000\n"
    ]
    for i in range(nodes):
        roles = "[registry]" if i == 0 else "[mirror]"
        docs.append(
            f"{HEADER}kind: Node\nmetadata:\n  name: node-{i:03d}\nspec:\n"
            f'  network: {NETWORK}\n  listen: "127.0.0.1:0"\n  roles: {roles}\n'
            "  interfaces: [public, private]\n"
        )
    return "---\n".join(docs)


def cpu_of(pid: int) -> float | None:
    """CPU seconds ``pid`` has used, every thread's; None once it is gone."""
    try:
        return cpu_seconds(pid)
    except OSError:
        return None


@dataclass
class Network:
    """A converged network: how long it took, and its node processes."""

    wall: float
    hmctl_cpu: float
    code: int
    pids: dict[str, int] = field(default_factory=dict)
    """Pid by node name (the registry is ``node-000``)."""
    ready: int = 0
    tail: str = ""
    state: Path | None = None

    def started_cpu(self, name: str) -> float | None:
        """The CPU seconds node ``name`` had used when it logged ``node started``."""
        assert self.state is not None
        try:
            lines = (self.state / "nodes" / name / "node.log").read_text().splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            with suppress(ValueError):
                record = json.loads(line)
                if record.get("msg") == "node started" and "cpu" in record:
                    return float(record["cpu"])
        return None


def hmctl(env: dict[str, str], *args: str, timeout: float) -> tuple[float, float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [*HMCTL, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done.returncode, (done.stdout + done.stderr)


@contextmanager
def network(env: dict[str, str], nodes: int, timeout: float) -> Iterator[Network]:
    """``nodes`` nodes converged from nothing by ``hmctl apply``; down at the end."""
    root = Path(tempfile.mkdtemp(prefix="hm-bench-footprint-"))
    state = root / "state"
    (root / "m").mkdir()
    (root / "m" / "network.yaml").write_text(network_yaml(nodes))
    try:
        wall, cpu, code, out = hmctl(
            env, "--state", str(state), "apply", "-f", str(root / "m"), "--timeout",
            f"{timeout:g}s", timeout=timeout + 120,
        )  # fmt: skip
        found = Network(wall, cpu, code, tail=out.strip().splitlines()[-1] if out.strip() else "")
        found.state = state
        _, _, got_code, got = hmctl(
            env, "--state", str(state), "get", "nodes", "-o", "json", timeout=120
        )
        if got_code == 0:
            for item in json.loads(got)["items"]:
                pid = item["status"].get("pid")
                if isinstance(pid, int):
                    found.pids[item["metadata"]["name"]] = pid
                ready = any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in item["status"].get("conditions", [])
                )
                found.ready += int(ready)
        yield found
    finally:
        try:
            hmctl(env, "--state", str(state), "down", timeout=120 + 3 * nodes)
        except subprocess.TimeoutExpired:
            print(f"  hmctl down timed out: nodes may be left; hmctl --state {state} down")
        else:
            shutil.rmtree(root, ignore_errors=True)


FLOORS = (
    ("Python alone", "pass"),
    ("aioquic + cryptography", "import aioquic.asyncio, aioquic.h3.connection, cryptography.x509"),
    (
        "+ ssl, sqlite3, asyncio, dnspython",
        "import aioquic.asyncio, aioquic.h3.connection, cryptography.x509, ssl, sqlite3, "
        "asyncio, dns.message",
    ),
    ("a node's imports (node.process)", "import hypermesh.node.process"),
)
"""What a fresh interpreter holds having imported only these: the floor under a node's RSS."""


def floors() -> None:
    """Print RSS and Pss of a fresh interpreter for each of ``FLOORS`` (one process each)."""
    probe = "\nimport os\nos.write(1, open('/proc/self/smaps_rollup', 'rb').read())"
    for label, code in FLOORS:
        out = subprocess.run(
            [sys.executable, "-c", code + probe], capture_output=True, text=True, timeout=60
        ).stdout
        rows = [line.split() for line in out.splitlines()]
        kib = {row[0]: int(row[1]) for row in rows if len(row) == 3 and row[1].isdigit()}
        print(
            f"  floor, {label}: RSS {kib.get('Rss:', 0) / 1024:.1f} MiB, "
            f"Pss {kib.get('Pss:', 0) / 1024:.1f} MiB"
        )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Figures:
    """What one variant measured (medians over the mirrors unless said)."""

    rss: float = float("nan")
    pss: float = float("nan")
    registry_rss: float = float("nan")
    registry_pss: float = float("nan")
    startup: float = float("nan")
    """CPU until the node serves (``node started`` in its log: its features open)."""
    converged: float = float("nan")
    """CPU until ``hmctl apply`` returned: the start, and the first copies of zones and chains."""
    idle: float = float("nan")
    idle_max: float = float("nan")
    idle_registry: float = float("nan")
    many_wall: float = float("nan")
    many_ready: str = "-"
    many_cpu: float = float("nan")
    many_pss: float = float("nan")
    huge_wall: float = float("nan")
    huge_ready: str = "-"


def small(env: dict[str, str], args: argparse.Namespace, figures: Figures) -> None:
    with network(env, args.small, args.timeout) as net:
        print(f"  (1) {args.small} nodes: apply {net.wall:.2f} s, {net.ready} Ready; {net.tail}")
        mirrors = [pid for name, pid in net.pids.items() if name != "node-000"]
        registry = net.pids.get("node-000")
        figures.startup = median(
            [s for n in net.pids if n != "node-000" and (s := net.started_cpu(n)) is not None]
        )
        figures.converged = median([s for pid in mirrors if (s := cpu_of(pid)) is not None])
        time.sleep(args.settle)
        before = {pid: cpu_of(pid) for pid in net.pids.values()}
        began = time.monotonic()
        time.sleep(args.idle)
        spent = time.monotonic() - began
        idle: list[float] = []
        by_pid: dict[int, float] = {}
        for pid, was in before.items():
            now = cpu_of(pid)
            if was is not None and now is not None:
                idle.append(by_pid.setdefault(pid, (now - was) * 1000 / spent))
        figures.idle, figures.idle_max = median(idle), max(idle, default=float("nan"))
        figures.idle_registry = by_pid.get(registry or -1, float("nan"))
        figures.rss = median([v for p in mirrors if (v := proc_mib(p, "status", "VmRSS"))])
        figures.pss = median([v for p in mirrors if (v := proc_mib(p, "smaps_rollup", "Pss"))])
        if registry is not None:
            figures.registry_rss = proc_mib(registry, "status", "VmRSS") or float("nan")
            figures.registry_pss = proc_mib(registry, "smaps_rollup", "Pss") or float("nan")
        print(
            f"      mirror RSS {figures.rss:.1f} MiB, Pss {figures.pss:.1f} MiB; registry RSS "
            f"{figures.registry_rss:.1f}, Pss {figures.registry_pss:.1f}; start-up CPU "
            f"{figures.startup:.3f} s ({figures.converged:.3f} s when converged); idle "
            f"{figures.idle:.2f} ms/s (max "
            f"{figures.idle_max:.2f}) over {spent:.0f} s, each of {len(idle)}: "
            + ", ".join(f"{v:.2f}" for v in idle)
        )


def many(env: dict[str, str], count: int, timeout: float) -> tuple[Network, float, float]:
    with network(env, count, timeout) as net:
        cpu = median([s for n in net.pids if (s := net.started_cpu(n)) is not None])
        pss = median([v for p in net.pids.values() if (v := proc_mib(p, "smaps_rollup", "Pss"))])
        print(
            f"      {count} nodes: apply {net.wall:.2f} s wall, {net.hmctl_cpu:.2f} s CPU of hmctl "
            f"(and its fork server), {net.ready}/{count} Ready, start-up CPU median {cpu:.3f} s, "
            f"Pss median {pss:.1f} MiB; {net.tail}"
        )
        return net, cpu, pss


def run_variant(name: str, env: dict[str, str], args: argparse.Namespace) -> Figures:
    print(f"\n[{name}]")
    figures = Figures()
    small(env, args, figures)
    if args.many:
        net, figures.many_cpu, figures.many_pss = many(env, args.many, args.timeout)
        figures.many_wall, figures.many_ready = net.wall, f"{net.ready}/{args.many}"
    if args.huge:
        net, _, _ = many(env, args.huge, args.timeout * 3)
        figures.huge_wall, figures.huge_ready = net.wall, f"{net.ready}/{args.huge}"
    return figures


def table(results: dict[str, Figures]) -> None:
    names = list(results)
    rows = [
        ("mirror RSS, MiB", "rss", f"<= {GOALS['rss']:g}"),
        ("mirror Pss, MiB", "pss", f"<= {GOALS['pss']:g}"),
        ("registry RSS, MiB", "registry_rss", ""),
        ("registry Pss, MiB", "registry_pss", ""),
        ("idle CPU per node, ms/s (median)", "idle", f"<= {GOALS['idle']:g}"),
        ("idle CPU per node, ms/s (max)", "idle_max", f"<= {GOALS['idle']:g}"),
        ("idle CPU of the registry, ms/s", "idle_registry", f"<= {GOALS['idle']:g}"),
        ("start-up CPU per mirror, s", "startup", f"<= {GOALS['startup']:g}"),
        ("CPU per mirror when converged, s", "converged", ""),
        ("many nodes from nothing, s", "many_wall", f"<= {GOALS['many_wall']:g}"),
        ("many nodes Ready", "many_ready", "all"),
        ("many nodes: start-up CPU per node, s", "many_cpu", ""),
        ("many nodes: Pss per node, MiB", "many_pss", ""),
        ("huge: converge, s", "huge_wall", ""),
        ("huge: Ready", "huge_ready", "all"),
    ]
    print(f"\n{'':<36}" + "".join(f"{n:>12}" for n in names) + f"{'goal':>10}")
    for label, attr, goal in rows:
        cells = []
        for name in names:
            value = getattr(results[name], attr)
            cells.append(f"{value:>12.3f}" if isinstance(value, float) else f"{value:>12}")
        print(f"{label:<36}" + "".join(cells) + f"{goal:>10}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="baseline,plain,forked")
    parser.add_argument("--baseline-rev", default="b9b6d5b")
    parser.add_argument("--small", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds left alone")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the idle")
    parser.add_argument("--many", type=int, default=50)
    parser.add_argument("--huge", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    print(
        f"footprint: {time.strftime('%Y-%m-%d %H:%M')}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, baseline {args.baseline_rev}"
    )
    floors()
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory(prefix="hm-bench-base-") as tmp:
        for name in args.variants.split(","):
            env = {**os.environ, "NO_COLOR": "1"}
            if name == "baseline":
                tree = archived_package(ROOT, args.baseline_rev, Path(tmp))
                env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
            env["HM_FORKSERVER"] = "1" if name == "forked" else "0"
            results[name] = run_variant(name, env, args)
    table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
