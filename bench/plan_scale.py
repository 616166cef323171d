"""How fast validate and plan are at scale, and what converging real nodes costs.

Generates, into a temporary folder, 1 Network, ``--nodes`` Nodes, ``--tlds`` TLDs and
``--records`` Records (A or TXT with ``values``, spread over the TLDs and over several files),
then measures, each as the median of ``--repeat`` rounds:

  (a) the floor: PyYAML's C loader alone on the same files
  (b) ``hmctl validate``'s work: load + build, in process (and once as a real subprocess)
  (c) plan from empty: ``plan(desired, [])``
  (d) plan against a converged state (a no-op)
  (e) plan after one record changed: plan() alone, and reload + build + plan
  (f) ``--converge`` nodes (default 50) converged from nothing by a real ``hmctl apply``, and
      each node process's resident memory

Run by hand, not by the tests::

    .venv/bin/python bench/plan_scale.py                      # full size, about 2.5 minutes
    .venv/bin/python bench/plan_scale.py --records 1000 --nodes 10 --skip-nodes
    .venv/bin/python bench/plan_scale.py --profile            # where (b)+(c) spend their time
    .venv/bin/python bench/plan_scale.py --skip-plan --baseline-rev HEAD~1 --node-rounds 3
                                            # (f) alone, this code and HEAD~1's in turns
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.harness
from tests.harness.git import archived_package

from hypermesh.model.loader import load
from hypermesh.model.resources import DesiredState
from hypermesh.model.validate import ManifestSet, build
from hypermesh.plan import Action, Observed, Plan, plan

HEADER = "apiVersion: hypermesh.online/v1alpha1\n"
NETWORK = "bench"
HMCTL = [sys.executable, "-m", "hypermesh.cli.main"]
ROOT = Path(__file__).resolve().parents[1]

GOAL_VALIDATE_PLAN = 3.0
"""(b)+(c) should take at most this many times the floor (a)."""
GOAL_ONE_CHANGE = 1.0
"""(e), reload + plan after one record changed, should take less than this many seconds."""


# -- manifests ---------------------------------------------------------------------------------


def node_name(i: int) -> str:
    return f"node-{i:03d}"


def network_yaml(nodes: int) -> str:
    docs = [
        f"{HEADER}kind: Network\nmetadata:\n  name: {NETWORK}\nspec:\n  mode: private\n"
        f"  registry:\n    node: {node_name(0)}\n"
    ]
    for i in range(nodes):
        roles = "[registry]" if i == 0 else "[mirror]"
        docs.append(
            f"{HEADER}kind: Node\nmetadata:\n  name: {node_name(i)}\nspec:\n"
            f'  network: {NETWORK}\n  listen: "127.0.0.1:0"\n  roles: {roles}\n'
            "  interfaces: [public, private]\n"
        )
    return "---\n".join(docs)


def tld_name(i: int) -> str:
    return f"tld{i:02d}"


def tlds_yaml(tlds: int, nodes: int) -> str:
    return "---\n".join(
        f"{HEADER}kind: TLD\nmetadata:\n  name: {tld_name(i)}\nspec:\n  network: {NETWORK}\n"
        f"  owner:\n    node: {node_name(i % nodes)}\n  dnssec: true\n  ttl: 3600\n"
        for i in range(tlds)
    )


def record_yaml(i: int, tlds: int, edit: int = 0) -> str:
    """Record ``i``; ``edit`` changes its data (a different address or text)."""
    tld = tld_name(i % tlds)
    if i % 2:
        kind = "TXT"
        value = f"""'"bench record {i} edit {edit}"'"""
    else:
        kind = "A"
        value = f"10.{(i >> 8) & 255}.{i & 255}.{(1 + edit) % 255}"
    return (
        f"{HEADER}kind: Record\nmetadata:\n  name: r{i:05d}.{tld}\n  labels:\n    bench: scale\n"
        f"spec:\n  tld: {tld}\n  type: {kind}\n  ttl: 300\n  values:\n    - {value}\n"
    )


def write_manifests(
    folder: Path, *, nodes: int, tlds: int, records: int, record_files: int
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "network.yaml", folder / "tlds.yaml"]
    files[0].write_text(network_yaml(nodes))
    files[1].write_text(tlds_yaml(tlds, nodes))
    per_file = -(-records // record_files) if records else 0
    for f in range(record_files):
        chunk = range(f * per_file, min(records, (f + 1) * per_file))
        if not chunk:
            break
        path = folder / f"records-{f:02d}.yaml"
        path.write_text("---\n".join(record_yaml(i, tlds) for i in chunk))
        files.append(path)
    return files


def edit_record(
    folder: Path, i: int, tlds: int, record_files: int, records: int, edit: int
) -> None:
    """Rewrite record ``i`` in place with different data, as a person editing one file would."""
    per_file = -(-records // record_files)
    path = folder / f"records-{i // per_file:02d}.yaml"
    text = path.read_text()
    # Every generated record carries one of a handful of edit markers; replace whichever it has.
    for old in range(edit + 2):
        before = record_yaml(i, tlds, old)
        if before in text:
            path.write_text(text.replace(before, record_yaml(i, tlds, edit), 1))
            return
    raise RuntimeError(f"record {i} not found in {path}")


# -- timing ------------------------------------------------------------------------------------


class Timings:
    """Wall times of named steps over several rounds. The steps are interleaved (every round runs
    each step once, in order), so a slow spell of a shared machine hits every step alike and the
    ratios between them stay meaningful; each step starts from a collected heap."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def run(self, name: str, work: Callable[..., Any], *args: Any) -> Any:
        gc.collect()
        start = time.perf_counter()
        result = work(*args)
        self.times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])


def converged(desired: DesiredState) -> list[Observed]:
    """What the reconciler would observe after applying ``desired``: every spec as last-applied,
    read back from JSON as the state store does (equal values, not the same objects)."""
    return [
        Observed(r.key, spec=json.loads(r.spec_json()), generation=1, managed=True) for r in desired
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:10.1f} ms"


def floor_parse(files: list[Path]) -> int:
    """PyYAML's C loader alone, given the same decoded text as HyperMesh's loader."""
    count = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        count += sum(1 for _ in yaml.load_all(text, Loader=yaml.CSafeLoader))
    return count


def load_build(files: list[Path]) -> DesiredState:
    desired, problems = build(load([str(f) for f in files]))
    if problems:
        raise RuntimeError(f"generated manifests are invalid: {problems[0]}")
    return desired


def reload_and_plan(files: list[Path], observed: list[Observed]) -> tuple[DesiredState, Plan]:
    desired = load_build(files)
    return desired, plan(desired, observed)


@dataclass(frozen=True)
class Run:
    """One finished ``hmctl``: wall time, its own CPU time (user + system, not counting the node
    processes it leaves running) and what it printed."""

    wall: float
    cpu: float
    code: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        lines = (self.stdout.strip() or self.stderr.strip()).splitlines()
        return lines[-1][:100] if lines else ""


def hmctl(*args: str, timeout: float, env: dict[str, str]) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [*HMCTL, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(wall, cpu, done.returncode, done.stdout, done.stderr)


def measure_rounds(
    args: argparse.Namespace, folder: Path, files: list[Path]
) -> tuple[Timings, tuple[int, DesiredState, Plan, Plan]]:
    """``--repeat`` rounds of (a)-(e), each ending with one record edited on disk; the timings
    and what the last round saw (documents, desired state, plan from empty, no-op plan)."""
    target = args.records // 2
    timings = Timings()
    manifests = ManifestSet([str(folder)])
    manifests.load()  # what `hmctl controller run` holds before an edit arrives
    for edit in range(1, args.repeat + 1):
        documents = timings.run("a", floor_parse, files)
        timings.run("load", load, [str(f) for f in files])
        desired = timings.run("b", load_build, files)
        from_empty = timings.run("c", plan, desired, [])
        observed = converged(desired)
        noop = timings.run("d", plan, desired, observed)
        if noop.has_changes:
            raise RuntimeError(f"a converged plan has changes: {noop.summary()}")
        # (e) one record edited on disk, then reload + plan against the converged state.
        edit_record(folder, target, args.tlds, args.record_files, args.records, edit)
        edited, changed = timings.run("e-reload", reload_and_plan, files, observed)
        changed = timings.run("e-plan", plan, edited, observed)
        incremental = timings.run("e-incr", lambda seen=observed: plan(manifests.load(), seen))
        if incremental.count(Action.UPDATE) != 1:
            raise RuntimeError(f"incremental reload saw: {incremental.summary()}")
        if changed.count(Action.UPDATE) != 1 or changed.count(Action.CREATE):
            raise RuntimeError(f"expected one update after one edit, got: {changed.summary()}")

    return timings, (documents, desired, from_empty, noop)


def print_goals(timings: Timings) -> None:
    """Each goal of the benchmark against its figure, met or not."""
    t_floor, t_build, t_empty = timings.median("a"), timings.median("b"), timings.median("c")
    t_one, t_reload = timings.median("e-plan"), timings.median("e-reload")
    t_incr = timings.median("e-incr")
    ratio = (t_build + t_empty) / t_floor
    rounds = [
        (b + c) / a
        for a, b, c in zip(timings.times["a"], timings.times["b"], timings.times["c"], strict=True)
    ]
    print()
    print(
        f"goal (b)+(c) <= {GOAL_VALIDATE_PLAN:g} x (a): {ratio:.1f} x the floor "
        f"({ms(t_build + t_empty).strip()} vs {ms(GOAL_VALIDATE_PLAN * t_floor).strip()}; "
        f"{min(rounds):.1f}-{max(rounds):.1f} x in single rounds) "
        f"-> {'met' if ratio <= GOAL_VALIDATE_PLAN else 'NOT met'}"
    )
    for what, seconds in (
        ("plan() alone", t_one),
        ("incremental reload + plan", t_incr),
        ("full reload + build + plan", t_reload),
    ):
        print(
            f"goal (e) < {GOAL_ONE_CHANGE:g} s, {what}: {seconds:.2f} s "
            f"-> {'met' if seconds < GOAL_ONE_CHANGE else 'NOT met'}"
        )


def bench_plan(args: argparse.Namespace, folder: Path) -> None:
    files = write_manifests(
        folder,
        nodes=args.nodes,
        tlds=args.tlds,
        records=args.records,
        record_files=args.record_files,
    )
    size = sum(f.stat().st_size for f in files)
    total = 1 + args.nodes + args.tlds + args.records
    print(
        f"manifests: 1 Network, {args.nodes} Nodes, {args.tlds} TLDs, {args.records} Records = "
        f"{total} resources in {len(files)} files, {size / 1e6:.1f} MB"
    )
    print(f"each figure is the median of {args.repeat} rounds\n")

    def row(label: str, seconds: float, note: str = "") -> None:
        print(f"  {label:<48}{ms(seconds)}  {note}".rstrip(), flush=True)

    timings, (documents, desired, from_empty, noop) = measure_rounds(args, folder, files)
    t_floor, t_build, t_empty = timings.median("a"), timings.median("b"), timings.median("c")
    t_one, t_reload = timings.median("e-plan"), timings.median("e-reload")
    row("(a) floor: yaml.load_all, CSafeLoader", t_floor, f"{documents} documents")
    row("(b) validate work: load + build", t_build, f"{len(desired)} resources")
    row("    of which load (YAML + positions)", timings.median("load"))
    row("(c) plan from empty", t_empty, f"{from_empty.count(Action.CREATE)} to create")
    row("(d) plan against converged state", timings.median("d"), f"{len(noop.items)} unchanged")
    row("(e) plan after one record changed: plan() alone", t_one, "1 to update")
    row("    reload + build + plan", t_reload, "1 to update")
    t_incr = timings.median("e-incr")
    row("    incremental reload (ManifestSet) + plan", t_incr, "as controller run does")

    env = {**os.environ, "NO_COLOR": "1"}
    run = hmctl("version", timeout=60, env=env)
    row("    hmctl version (interpreter + imports only)", run.wall, f"exit {run.code}")
    run = hmctl("validate", "-f", str(folder), timeout=300, env=env)
    row("(b') hmctl validate, subprocess, one run", run.wall, f"exit {run.code}: {run.last_line()}")

    print_goals(timings)

    if args.profile:
        profile(files)


def profile(files: list[Path]) -> None:
    """Where (b)+(c) spend their time: cProfile, top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    desired = load_build(files)
    plan(desired, [])
    profiler.disable()
    print("\nprofile of (b)+(c), by own time (cProfile inflates call-heavy code):")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    print("by cumulative time:")
    stats.sort_stats("cumulative").print_stats(30)


# -- (f) real nodes ----------------------------------------------------------------------------


def proc_kib(pid: int, file: str, field: str) -> int | None:
    """A ``kB`` figure from ``/proc/<pid>/<file>`` (``status``: VmRSS; ``smaps_rollup``: Pss)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(label: str, values: list[float], unit: str) -> None:
    print(
        f"  {label:<48}min {min(values):.1f}, median {statistics.median(values):.1f}, "
        f"max {max(values):.1f}; total {sum(values):.1f} {unit} over {len(values)} processes"
    )


@contextmanager
def state_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="hm-bench-nodes-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Converged:
    """One ``hmctl apply`` of ``--converge`` nodes from nothing."""

    wall: float
    cpu: float
    code: int
    ready: int
    load: float
    """The 1-minute load average just before it started."""
    retried: int = 0
    """Resources the apply reported failed and retried (a probe timed out: one more pass)."""


def converge_once(args: argparse.Namespace, env: dict[str, str], *, measure: bool) -> Converged:
    """Apply ``--converge`` nodes into a fresh state, count the Ready ones (with ``measure``,
    print the node processes' memory and CPU too), then ``hmctl down``."""
    count = args.converge
    load = os.getloadavg()[0]
    with state_dir() as root:
        manifests = root / "manifests"
        manifests.mkdir()
        (manifests / "network.yaml").write_text(network_yaml(count))
        state = root / "state"
        try:
            apply = hmctl(
                "--state", str(state), "apply", "-f", str(manifests),
                "--timeout", f"{args.apply_timeout:g}s",
                timeout=args.apply_timeout + 60, env=env,
            )  # fmt: skip
            if apply.code != 0:
                sys.stdout.write(apply.stdout[-2000:] + apply.stderr[-2000:])
            got = hmctl("--state", str(state), "get", "nodes", "-o", "json", timeout=120, env=env)
            if got.code != 0:
                print(f"  hmctl get nodes failed (exit {got.code}): {got.stderr.strip()}")
                return Converged(apply.wall, apply.cpu, apply.code, 0, load)
            items = json.loads(got.stdout)["items"]
            ready = sum(
                1
                for i in items
                for c in i["status"].get("conditions", [])
                if c.get("type") == "Ready" and c.get("status") == "True"
            )
            if measure:
                print(f"  {'hmctl apply, wall time':<48}{apply.wall:9.2f} s   exit {apply.code}")
                print(f"  {'hmctl apply, its own CPU time':<48}{apply.cpu:9.2f} s")
                print(f"  {'':<48}{apply.last_line()}")
                print(f"  {'nodes Ready':<48}{ready:9d} of {len(items)}")
                node_figures([p for i in items if isinstance(p := i["status"].get("pid"), int)])
            retried = apply.stdout.count("\u2717 ")  # the failure mark of hmctl's progress
            return Converged(apply.wall, apply.cpu, apply.code, ready, load, retried)
        finally:
            down = hmctl("--state", str(state), "down", timeout=180, env=env)
            if measure or down.code != 0:
                print(f"  {'hmctl down':<48}{down.wall:9.2f} s   exit {down.code}")


def node_figures(pids: list[int]) -> None:
    """Each running node process's resident and proportional memory and CPU so far."""
    rss = [kib / 1024 for pid in pids if (kib := proc_kib(pid, "status", "VmRSS"))]
    pss = [kib / 1024 for pid in pids if (kib := proc_kib(pid, "smaps_rollup", "Pss"))]
    cpu = [s for pid in pids if (s := cpu_seconds(pid)) is not None]
    if not rss:
        print("  no running node processes found to measure")
        return
    spread("node resident memory (VmRSS), MiB", rss, "MiB")
    if pss:
        spread("node proportional memory (Pss), MiB", pss, "MiB")
    if cpu:
        spread("node CPU time so far (user + system), s", cpu, "s")


def bench_nodes(args: argparse.Namespace) -> None:
    """(f): ``--node-rounds`` rounds, each applying this code and (with ``--baseline-rev``)
    the code of that revision one after the other, so that both see the same load."""
    count = args.converge
    print(f"\n(f) {count} nodes converged from nothing by `hmctl apply` (real node processes)")
    env = {**os.environ, "NO_COLOR": "1"}
    variants = {"now": env}
    with tempfile.TemporaryDirectory(prefix="hm-bench-baseline-") as tmp:
        if args.baseline_rev:
            tree = archived_package(ROOT, args.baseline_rev, Path(tmp))
            path = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH")) if p)
            variants = {args.baseline_rev: {**env, "PYTHONPATH": path}, **variants}
        runs: dict[str, list[Converged]] = {name: [] for name in variants}
        for round_ in range(args.node_rounds):
            order = list(variants.items())  # ABBA: neither goes first in every round
            for name, variant_env in order[:: -1 if round_ % 2 else 1]:
                last = name == "now" and round_ == args.node_rounds - 1  # measured in full
                run = converge_once(args, variant_env, measure=last)
                runs[name].append(run)
                print(
                    f"  round {round_ + 1} {name:<12} load {run.load:4.1f}: apply {run.wall:6.2f} s"
                    f" (its CPU {run.cpu:5.2f} s), {run.ready}/{count} Ready, exit {run.code}"
                    f", {run.retried} retried",
                    flush=True,
                )
    if len(variants) > 1 or args.node_rounds > 1:
        print(f"\n  {'':<12}{'apply, s (median, min-max)':>32}{'hmctl CPU, s':>16}{'Ready':>10}")
        for name, done in runs.items():
            walls = [r.wall for r in done]
            print(
                f"  {name:<12}{statistics.median(walls):>14.2f} ({min(walls):.2f}-{max(walls):.2f})"
                f"{statistics.median(r.cpu for r in done):>16.2f}"
                f"{min(r.ready for r in done):>7}/{count}"
            )


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="records (default 10000)")
    parser.add_argument("--nodes", type=int, default=100, help="nodes in the plan set (100)")
    parser.add_argument("--tlds", type=int, default=10, help="TLDs (default 10)")
    parser.add_argument("--record-files", type=int, default=10, help="files of records (10)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--converge", type=int, default=50, help="nodes for (f) (default 50)")
    parser.add_argument(
        "--apply-timeout", type=float, default=300, help="seconds (f) may take (default 300)"
    )
    parser.add_argument("--skip-nodes", action="store_true", help="skip (f), the node processes")
    parser.add_argument("--skip-plan", action="store_true", help="skip (a)-(e), only (f)")
    parser.add_argument(
        "--baseline-rev",
        help="also run (f) with the code of this git revision, side by side (e.g. HEAD~1)",
    )
    parser.add_argument("--node-rounds", type=int, default=1, help="rounds of (f) (default 1)")
    parser.add_argument("--profile", action="store_true", help="cProfile (b)+(c) and print it")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.tlds < 1 or args.records < 2 or args.record_files < 1:
        parser.error("need at least 1 node, 1 TLD, 2 records and 1 file of records")

    print(
        f"plan_scale: {time.strftime('%Y-%m-%d %H:%M')}, Python {sys.version.split()[0]}, "
        f"PyYAML {yaml.__version__} (libyaml {'yes' if yaml.__with_libyaml__ else 'no'}), "
        f"{os.cpu_count()} CPUs\n"
    )
    if not args.skip_plan:
        with tempfile.TemporaryDirectory(prefix="hm-bench-plan-") as tmp:
            bench_plan(args, Path(tmp))
    if not args.skip_nodes:
        bench_nodes(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
