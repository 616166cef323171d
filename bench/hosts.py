"""Many hosts, one mesh, measured in the network lab (``tests/lab``): how long a node on a new
host takes to become dialable by key from every other host, what a directory lookup costs from
a mirror against the registry, and how long a 10-host network takes to converge after one
manifest change lands in git. Run by hand, as root (the lab makes network namespaces)::

    .venv/bin/python bench/hosts.py                  # every section, plain and slow links
    .venv/bin/python bench/hosts.py --quick          # 5 joins, plain links, 4 hosts: ~2 min
    .venv/bin/python bench/hosts.py --joins 10 --delay-ms 0 --skip-converge

Sections, each bounded in count and time:

1. joins (``--joins``, default 20, over plain links; ``--slow-joins``, default 10, over slow
   links): a lab of a registry host ``reg`` and two mirror hosts ``b`` and ``c``, each with
   its own controller (``hmctl controller run --git-pull`` of one git repository, identities
   pinned). Each join is a FRESH host ``jNN`` added to the lab, whose node (a new key, made by
   ``hmctl keys show`` just before) is brought up by a real ``hmctl apply --join-token-file``
   (a reusable token): from just before the apply starts, a prober process on each of reg, b
   and c polls every ``--poll-ms`` (a) its own node's DNS for the TXT record ``<id>._nodes.``
   (the directory reached that host's node) and (b) ``Mesh.connect(<id>)`` (the SDK's dial by
   key: the record from the local node, else the registry, then a QUIC handshake proving the
   key). Rows: a floor (``hmctl version`` in the new host just before: the interpreter's start
   and the CLI's imports, which the apply and the node process each pay), the apply's wall
   time, when the node process logged "node started", the last host's (a) and the last
   host's (b) — the figure. The node is stopped (SIGTERM) after each join. With
   ``--delay-ms D`` (default 25) and ``--loss L`` (default 0.01) the same runs again in a lab
   where every link delays each packet D ms each way and drops L of them (so host to host is
   4 D ms of RTT); ``--delay-ms 0`` skips it.
2. lookups (``--lookups``, default 100, in each lab): from host b, of mirror c's node ID,
   ``Mesh.locate`` through b's own mirror (DNS over QUIC, a new connection each, as the SDK
   does), ``Mesh.locate`` through the registry's DNS, and straight from the registry's API
   (``GET /registry/v1/node?id=``, what ``locate`` falls back to); the record's signature
   checked each time. p50 and p99 in ms.
3. the registry's cost per node-record update and lookup at 100,000 records: measured by
   ``bench/directory.py`` (in process, SQLite and PostgreSQL); ``--with-directory`` runs it
   after the rest (a few minutes), otherwise a line points to it.
4. convergence (``--converge-hosts``, default 10; ``--changes``, default 5): a lab of that many
   hosts, each running ``hmctl controller run --git-pull --pull-interval 1s --interval 1s``
   with one node (the registry on the first, a mirror on each other) and a TLD ``bench`` owned
   by the registry node with a TXT record ``v.bench``. Each change commits a new value of that
   record; rows (from just before the commit): the first and the last host whose controller
   reports the new revision applied and converged (``lastAppliedRevision`` of ``hmctl
   controller status``, read from each host's state store every 100 ms) and the last host
   whose own node answers the new value (prober, DNS over QUIC), and the registry's host
   (the owner of the TLD: only its controller writes the record to the registry, whence the
   mirrors get it). p50 and max over the changes.

Everything the lab made is removed at the end, after a failure or Ctrl-C too. The machine is
assumed otherwise idle: on two cores the nodes, controllers and probers share both, and other
work shows in every figure.
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
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

HEADER = "apiVersion: hypermesh.online/v1alpha1\n"
PORT = 4433
NETWORK = "demo"
WAIT = 180.0
"""Bound of every wait for the lab to come up (seconds)."""


# -- the prober: runs inside a lab host, driven by JSON lines on its standard input -----------


async def _probe_join(mesh: Any, cmd: Mapping[str, Any]) -> dict[str, Any]:
    """Poll until the node ``cmd["id"]`` is in this host's mirror (TXT) and dialable."""
    import dns.message

    from hypermesh.transport.noderecord import directory_name

    node_id, every = str(cmd["id"]), float(cmd["every"])
    deadline = time.monotonic() + float(cmd["timeout"])
    seen: float | None = None
    dialled: float | None = None
    error = ""
    while (seen is None or dialled is None) and time.monotonic() < deadline:
        if seen is None:
            try:
                query = dns.message.make_query(directory_name(node_id), "TXT")
                if (await mesh.query(query)).records:
                    seen = time.monotonic()
            except Exception as exc:  # a poll: any failure means "not yet"
                error = f"mirror: {exc}"
        if dialled is None:
            try:
                await mesh.connect(node_id)
                dialled = time.monotonic()
            except Exception as exc:
                error = f"dial: {exc}"
        await asyncio.sleep(every)
    return {"seen": seen, "dialled": dialled, "error": error[:300]}


async def _probe_lookup(mesh: Any, cmd: Mapping[str, Any]) -> dict[str, Any]:
    """Time ``count`` lookups of ``cmd["id"]`` each way, the ways taking turns."""
    from hypermesh.registry.client import API, RegistryClient
    from hypermesh.transport.noderecord import NodeRecord

    node_id = str(cmd["id"])
    registry = mesh.registry

    async def api() -> None:
        client = RegistryClient(
            registry.address, registry.node_id, identity=None, timeout=mesh.timeout
        )
        status, data = await client.call("GET", f"{API}/node?id={node_id}")
        if status != 200 or NodeRecord.verify(data, now=time.time()).node_id != node_id:
            raise RuntimeError(f"registry API answered {status}")

    ways: dict[str, Callable[[], Any]] = {
        "mirror": lambda: mesh.locate(node_id),
        "registry-dns": lambda: mesh.locate(node_id, via=registry),
        "registry-api": api,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(int(cmd["count"])):
        for name, way in ways.items():
            started = time.perf_counter()
            await way()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


async def _probe_resolve(mesh: Any, cmd: Mapping[str, Any]) -> dict[str, Any]:
    """Poll this host's node for ``name`` ``type`` until an answer contains ``want``."""
    import dns.message

    query = dns.message.make_query(str(cmd["name"]), str(cmd["type"]))
    deadline = time.monotonic() + float(cmd["timeout"])
    error = ""
    while time.monotonic() < deadline:
        try:
            if any(str(cmd["want"]) in r for r in (await mesh.query(query)).records):
                return {"at": time.monotonic(), "error": ""}
        except Exception as exc:  # a poll: any failure means "not yet"
            error = str(exc)
        await asyncio.sleep(float(cmd["every"]))
    return {"at": None, "error": error[:300]}


async def _probe(spec: Mapping[str, Any]) -> None:
    from hypermesh.sdk.mesh import Mesh
    from hypermesh.transport.address import PeerRef

    mesh = Mesh(
        None,
        node=PeerRef(spec["node"], spec["node_id"]),
        registry=PeerRef(spec["registry"], spec["registry_id"]),
        timeout=float(spec.get("timeout", 5.0)),
    )
    ops = {"join": _probe_join, "lookup": _probe_lookup, "resolve": _probe_resolve}
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = json.loads(line)
        try:
            answer = await ops[cmd["op"]](mesh, cmd)
        except Exception as exc:  # reported to the driver, which says so
            answer = {"failed": f"{exc.__class__.__name__}: {exc}"[:500]}
        print(json.dumps(answer), flush=True)


class Prober:
    """A prober process in one lab host, its own node and the registry given."""

    def __init__(self, host: Any, node: str, node_id: str, registry: str, registry_id: str):
        from tests.lab.lab import python_env

        spec = {"node": node, "node_id": node_id, "registry": registry, "registry_id": registry_id}
        self.name = host.name
        self.process = host.popen(
            [sys.executable, __file__, "probe", json.dumps(spec)],
            env=python_env(),
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        line = self._line(60)
        if line != "ready":
            raise RuntimeError(f"the prober on host {self.name} did not start: {line!r}")

    def _line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"the prober on host {self.name} said nothing for {timeout:.0f} s")
        return str(self.process.stdout.readline()).strip()

    def send(self, **cmd: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(cmd) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._line(timeout) or "{}")
        if "failed" in answer:
            raise RuntimeError(f"the prober on host {self.name}: {answer['failed']}")
        return answer


def ask_all(probers: Sequence[Prober], bound: float, **cmd: Any) -> list[dict[str, Any]]:
    """Send ``cmd`` to every prober (they work at once); their answers, in order."""
    for prober in probers:
        prober.send(**cmd)
    return [prober.receive(bound + 30) for prober in probers]


# -- figures ---------------------------------------------------------------------------------


def pct(samples: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank), as bench/directory.py takes it."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Row:
    section: str
    condition: str
    what: str
    samples: list[float] = field(default_factory=list)
    unit: str = "ms"
    failed: int = 0

    def cells(self) -> str:
        if not self.samples:
            return f"{'-':>9}{'-':>9}{'-':>9}{'-':>9}"
        s = self.samples
        return f"{pct(s, 50):>9.0f}{pct(s, 90):>9.0f}{pct(s, 99):>9.0f}{max(s):>9.0f}"


def table(rows: Sequence[Row]) -> None:
    print()
    print(
        f"{'section':<9}{'links':<20}{'what':<38}{'n':>4}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    )
    for row in rows:
        count = f"{len(row.samples)}" + (f"+{row.failed}!" if row.failed else "")
        print(
            f"{row.section:<9}{row.condition:<20}{row.what:<38}{count:>4}{row.cells()}  {row.unit}"
        )
    if any(r.failed for r in rows):
        print("(+N!: N samples that never happened within their time bound, not counted)")


# -- the lab's manifests and hosts -----------------------------------------------------------


def node_yaml(
    name: str, host: str, address: str, role: str | None, identity: str | None = None
) -> str:
    roles = f"roles: [{role}], " if role else ""
    pinned = f", identity: {identity}" if identity else ""
    return (
        f"{HEADER}kind: Node\nmetadata: {{name: {name}}}\n"
        f'spec: {{host: {host}, network: {NETWORK}, listen: "{address}", {roles}'
        f"interfaces: [public]{pinned}}}\n"
    )


def network_yaml() -> str:
    return (
        f"{HEADER}kind: Network\nmetadata: {{name: {NETWORK}}}\n"
        "spec: {mode: private, registry: {node: registry}}\n"
    )


def key_of(controller: Any, name: str) -> str:
    """``hmctl keys show NAME`` on the controller's host: the node's ID (its key made)."""
    controller.folder.mkdir(parents=True, exist_ok=True)
    shown = controller.hmctl("keys", "show", name, timeout=60)
    if shown.returncode != 0:
        raise RuntimeError(f"hmctl keys show {name}: {shown.stdout}{shown.stderr}")
    return str(shown.stdout.strip())


_STORES: dict[Path, Any] = {}


def controller_status(state: Path) -> dict[str, Any]:
    """What ``hmctl controller status -o json`` shows (``status``), read from the host's state
    store (kept open: a poll is one read)."""
    from hypermesh.store import StateStore

    if state not in _STORES:
        if not (state / "state.db").exists():
            return {}
        _STORES[state] = StateStore.open(state)
    return dict(_STORES[state].controller().status)


def close_stores() -> None:
    for store in _STORES.values():
        store.close()
    _STORES.clear()


def wait_until(what: str, predicate: Callable[[], object], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def applied(state: Path, commit: str) -> bool:
    status = controller_status(state)
    return commit in str(status.get("lastAppliedRevision", ""))


@dataclass
class Site:
    """A lab with controllers, probers and the ids of its nodes."""

    lab: Any
    root: Path
    repo: Any
    controllers: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    probers: dict[str, Prober] = field(default_factory=dict)

    def address(self, host: str) -> str:
        return f"{self.lab.host(host).address}:{PORT}"

    def close(self) -> None:
        for controller in self.controllers.values():
            with contextlib.suppress(Exception):
                controller.stop()
        self.lab.close()


@contextlib.contextmanager
def site(
    name: str,
    tmp: Path,
    hosts: Sequence[str],
    delay_ms: float | None,
    loss: float,
    interval: str,
) -> Iterator[Site]:
    """A lab of ``hosts`` (the first the registry's, the others one mirror each), every host's
    controller started on one git repository and converged; probers in each; removed after."""
    from tests.lab.controller import HostController, ManifestRepo
    from tests.lab.lab import Lab

    lab = Lab(delay_ms=delay_ms, loss=loss)
    made = Site(lab, tmp / name, None)
    try:
        made.repo = ManifestRepo(made.root / "git")
        for host in hosts:
            lab.add_host(host)
            made.controllers[host] = HostController(
                lab.host(host), made.repo, made.root / "hosts", interval=interval
            )
        names = {host: ("registry" if i == 0 else f"m-{host}") for i, host in enumerate(hosts)}
        for host, node in names.items():
            made.ids[node] = key_of(made.controllers[host], node)
        files: dict[str, str | None] = {"network.yaml": network_yaml()}
        for i, (host, node) in enumerate(names.items()):
            role = "registry" if i == 0 else "mirror"
            files[f"{node}.yaml"] = node_yaml(node, host, made.address(host), role, made.ids[node])
        files.update(extra_files())
        commit = made.repo.write(files, "the network")
        for controller in made.controllers.values():
            controller.start(wait=0)
        for host, controller in made.controllers.items():
            state: Path = controller.state
            wait_until(f"host {host} applying {commit[:12]}", lambda: applied(state, commit))  # noqa: B023
        registry = made.address(hosts[0])
        for host, node in names.items():
            made.probers[host] = Prober(
                lab.host(host), made.address(host), made.ids[node], registry, made.ids["registry"]
            )
        yield made
    finally:
        made.close()


def extra_files() -> dict[str, str | None]:
    """The TLD ``bench`` (owned by the registry node) and its first ``v.bench`` value."""
    tld = (
        f"{HEADER}kind: TLD\nmetadata: {{name: bench}}\n"
        f"spec: {{network: {NETWORK}, owner: {{node: registry}}, ttl: 60}}\n"
    )
    return {"tld.yaml": tld, "record.yaml": record_yaml(0)}


def record_yaml(value: int) -> str:
    return (
        f"{HEADER}kind: Record\nmetadata: {{name: v.bench}}\n"
        f"spec: {{tld: bench, type: TXT, ttl: 5, values: ['\"rev-{value}\"']}}\n"
    )


# -- 1 and 2: joins, and lookups ------------------------------------------------------------


def joiner_files(made: Site, name: str, host: str) -> str:
    """The manifests a new host applies: the network, its registry (remote, pinned) and the
    new node (placed here, joining by token)."""
    registry = node_yaml("registry", "reg", made.address("reg"), "registry", made.ids["registry"])
    mine = node_yaml(name, host, made.address(host), None)
    return "---\n".join([network_yaml(), registry, mine])


def node_started(log: Path) -> tuple[float | None, int | None]:
    """When the node's log says "node started" (Unix time) and its pid, or Nones."""
    from hypermesh.timefmt import parse_rfc3339

    for line in log.read_text().splitlines() if log.exists() else []:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            moment = parse_rfc3339(entry.get("ts"))
            if entry.get("msg") == "node started" and moment is not None:
                return moment.timestamp(), int(entry["pid"])
    return None, None


def leave(joiner: Any, pid: int | None) -> None:
    """Stop the joined node: SIGTERM to its pid (quicker than an ``hmctl down`` subprocess, so
    the joins follow one another faster; the lab kills whatever is left when it closes)."""
    if pid is None:
        joiner.hmctl("down", timeout=120)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def one_join(made: Site, index: int, token: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh host joins by token with a new key: the times from just before its apply."""
    from tests.lab.controller import HostController

    name = f"j{index:02d}"
    host = made.lab.add_host(name)
    joiner = HostController(host, made.repo, made.root / "hosts")
    node_id = key_of(joiner, name)
    floor = time.monotonic()
    joiner.hmctl("version", timeout=60)
    floor_ms = (time.monotonic() - floor) * 1000
    folder = joiner.folder / "manifests"
    folder.mkdir()
    (folder / "node.yaml").write_text(joiner_files(made, name, name))
    probers = list(made.probers.values())
    for prober in probers:
        prober.send(op="join", id=node_id, every=args.poll_ms / 1000, timeout=args.join_timeout)
    started, wall = time.monotonic(), time.time()
    done = joiner.hmctl(
        "apply",
        "-f",
        str(folder),
        "--join-token-file",
        str(token),
        "--timeout",
        "120s",
        timeout=180,
    )
    apply_s = time.monotonic() - started
    answers = [prober.receive(args.join_timeout + 30) for prober in probers]
    if done.returncode != 0:
        print(f"  join {name}: hmctl apply exit {done.returncode}: {done.stderr.strip()[-300:]}")
    if args.verbose:
        print(done.stdout + done.stderr)
        log = joiner.state / "nodes" / name / "node.log"
        print(log.read_text()[-3000:] if log.exists() else f"(no {log})")
    up, pid = node_started(joiner.state / "nodes" / name / "node.log")
    leave(joiner, pid)
    seen = [a["seen"] for a in answers]
    dialled = [a["dialled"] for a in answers]
    errors = [
        f"{p.name}: {a['error']}"
        for p, a in zip(probers, answers, strict=True)
        if a["dialled"] is None
    ]
    return {
        "floor": floor_ms,
        "apply": apply_s * 1000,
        "up": None if up is None else (up - wall) * 1000,
        "seen": None if None in seen else (max(seen) - started) * 1000,
        "dialled": None if None in dialled else (max(dialled) - started) * 1000,
        "errors": errors,
    }


def joins_and_lookups(
    args: argparse.Namespace, tmp: Path, condition: str, delay_ms: float | None, loss: float
) -> list[Row]:
    """Sections 1 and 2 in one lab of three hosts (see the module's docstring)."""
    rows = [
        Row("join", condition, "floor: hmctl version (start-up)"),
        Row("join", condition, "hmctl apply (exit)"),
        Row("join", condition, "node process up (its log)"),
        Row("join", condition, "record in every host's node (TXT)"),
        Row("join", condition, "dialable from every host (connect)"),
        Row("join", condition, "  of which after 'node started'"),
    ]
    began = time.monotonic()
    with site(condition, tmp, ["reg", "b", "c"], delay_ms, loss, interval="5s") as made:
        print(f"  [{condition}] lab up in {time.monotonic() - began:.0f} s", flush=True)
        created = made.controllers["reg"].hmctl(
            "network", "token", "create", "--ttl", "1h", "--reusable", timeout=60
        )
        if created.returncode != 0:
            raise RuntimeError(f"hmctl network token create: {created.stderr.strip()}")
        token = made.root / "token"
        token.write_text(created.stdout.strip() + "\n")
        token.chmod(0o600)
        bound = time.monotonic() + args.section_timeout
        count = args.joins if delay_ms is None else args.slow_joins
        for index in range(1, count + 1):
            if time.monotonic() > bound:
                print(f"  [{condition}] --section-timeout reached after {index - 1} joins")
                break
            result = one_join(made, index, token, args)
            rows[0].samples.append(result["floor"])
            rows[1].samples.append(result["apply"])
            for row, key in ((rows[2], "up"), (rows[3], "seen"), (rows[4], "dialled")):
                if result[key] is None:
                    row.failed += 1
                else:
                    row.samples.append(result[key])
            if result["up"] is not None and result["dialled"] is not None:
                rows[5].samples.append(result["dialled"] - result["up"])
            print(
                f"  [{condition}] join {index:>2}: hmctl version {result['floor']:.0f} ms, "
                f"apply {result['apply']:.0f} ms, "
                f"node up {result['up'] or -1:.0f} ms, "
                f"in mirrors {result['seen'] or -1:.0f} ms, "
                f"dialable {result['dialled'] or -1:.0f} ms"
                + (f"  NOT REACHED: {'; '.join(result['errors'])}" if result["errors"] else ""),
                flush=True,
            )
        rows += lookups(made, condition, args.lookups)
    return rows


def lookups(made: Site, condition: str, count: int) -> list[Row]:
    """Section 2: from host b, mirror c's record looked up each way ``count`` times."""
    if count <= 0:
        return []
    prober = made.probers["b"]
    prober.send(op="lookup", id=made.ids["m-c"], count=count)
    times = prober.receive(timeout=600)
    labels = {
        "mirror": "Mesh.locate via own mirror (DNS)",
        "registry-dns": "Mesh.locate via registry (DNS)",
        "registry-api": "registry API GET /node?id=",
    }
    return [Row("lookup", condition, labels[k], list(v)) for k, v in times.items()]


# -- 4: convergence --------------------------------------------------------------------------


def convergence(args: argparse.Namespace, tmp: Path) -> list[Row]:
    """Section 4: ``--changes`` commits of a new ``v.bench`` value to a network of
    ``--converge-hosts`` hosts, each converging it with its own controller."""
    hosts = ["reg", *(f"h{i:02d}" for i in range(1, args.converge_hosts))]
    condition = f"plain, {len(hosts)} hosts"
    rows = [
        Row("converge", condition, "first host applied the revision"),
        Row("converge", condition, "registry's host applied (owns the TLD)"),
        Row("converge", condition, "every host applied the revision"),
        Row("converge", condition, "every host's node answers the value"),
    ]
    began = time.monotonic()
    with site("converge", tmp, hosts, None, 0.0, interval=args.interval) as made:
        print(f"  [converge] {len(hosts)} hosts up in {time.monotonic() - began:.0f} s", flush=True)
        probers = list(made.probers.values())
        first = ask_all(
            probers,
            WAIT,
            op="resolve",
            name="v.bench.",
            type="TXT",
            want="rev-0",
            every=0.2,
            timeout=WAIT,
        )
        if any(a["at"] is None for a in first):
            raise RuntimeError(f"v.bench never answered everywhere: {first}")
        for change in range(1, args.changes + 1):
            result = one_change(made, change, args)
            for row, value in zip(rows, result, strict=True):
                if value is None:
                    row.failed += 1
                else:
                    row.samples.append(value)
            shown = ", ".join("-" if v is None else f"{v:.0f} ms" for v in result)
            print(
                f"  [converge] change {change}: first, registry's, every host, answered: {shown}",
                flush=True,
            )
    return rows


def one_change(made: Site, change: int, args: argparse.Namespace) -> list[float | None]:
    """Commit a new value of ``v.bench``; the times until the first host's controller, the
    registry host's and the last host's applied it and until every host's node answers it
    (ms)."""
    probers = list(made.probers.values())
    started = time.monotonic()
    commit = made.repo.write({"record.yaml": record_yaml(change)}, f"v.bench: rev-{change}")
    for prober in probers:
        prober.send(
            op="resolve",
            name="v.bench.",
            type="TXT",
            want=f"rev-{change}",
            every=args.poll_ms / 1000,
            timeout=args.change_timeout,
        )
    pending = {host: c.state for host, c in made.controllers.items()}
    owner = next(iter(pending))
    seen: dict[str, float] = {}
    deadline = started + args.change_timeout
    while pending and time.monotonic() < deadline:
        for host, state in list(pending.items()):
            if applied(state, commit):
                seen[host] = time.monotonic()
                del pending[host]
        time.sleep(0.1)
    answers = [p.receive(args.change_timeout + 30) for p in probers]
    if pending:
        print(f"  [converge] change {change}: not applied on {sorted(pending)} in time")
    answered = [a["at"] for a in answers]
    return [
        (min(seen.values()) - started) * 1000 if seen else None,
        (seen[owner] - started) * 1000 if owner in seen else None,
        None if pending else (max(seen.values()) - started) * 1000,
        None if None in answered else (max(answered) - started) * 1000,
    ]


# -- the run ---------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="defaults: 5 joins, plain links, 30 lookups, 4 hosts")
    add("--joins", type=int, help="fresh hosts joining over plain links (default 20)")
    add("--slow-joins", type=int, help="the same over slow links (default 10)")
    add("--delay-ms", type=float, help="slow links: ms each way (default 25; 0: none)")
    add("--loss", type=float, default=0.01, help="slow links: share of packets dropped")
    add("--lookups", type=int, help="lookups of each kind (section 2; default 100)")
    add("--converge-hosts", type=int, help="hosts of section 4 (2..60; default 10)")
    add("--changes", type=int, help="manifest changes of section 4 (default 5)")
    add("--interval", default="1s", help="the controllers' --interval in section 4")
    add("--poll-ms", type=float, default=100.0, help="how often the probers poll")
    add("--join-timeout", type=float, default=60.0, help="bound of one join (s)")
    add("--change-timeout", type=float, default=60.0, help="bound of one change (s)")
    add("--section-timeout", type=float, default=300.0, help="bound of one join section (s)")
    add("--skip-joins", action="store_true", help="no sections 1 and 2")
    add("--skip-converge", action="store_true", help="no section 4")
    add("--with-directory", action="store_true", help="run bench/directory.py too (minutes)")
    add("--verbose", action="store_true", help="print each join's apply output and node log")
    add("--tmp", default=None, help="where the temporary folder goes")
    args = parser.parse_args()
    defaults = {
        "joins": 20,
        "slow_joins": 10,
        "delay_ms": 25.0,
        "lookups": 100,
        "converge_hosts": 10,
        "changes": 5,
    }
    if args.quick:
        defaults = {
            "joins": 5,
            "slow_joins": 5,
            "delay_ms": 0.0,
            "lookups": 30,
            "converge_hosts": 4,
            "changes": 2,
        }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if (
        min(args.joins, args.slow_joins) < 1
        or not 2 <= args.converge_hosts <= 60
        or args.changes < 1
    ):
        parser.error("--joins and --changes must be at least 1, --converge-hosts 2..60")
    return args


def directory_section(args: argparse.Namespace) -> None:
    """Section 3: bench/directory.py, run (``--with-directory``) or pointed to."""
    script = _HERE / "directory.py"
    if not args.with_directory:
        print(
            "\n[directory] the registry's cost per node-record update and lookup at 100,000 "
            f"records: run {script.relative_to(_HERE.parent)} (SQLite and PostgreSQL, a few "
            "minutes), or this with --with-directory"
        )
        return
    print("\n[directory] bench/directory.py --sizes 100000 --ops 200:", flush=True)
    subprocess.run([sys.executable, str(script), "--sizes", "100000", "--ops", "200"], timeout=1800)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "probe":
        asyncio.run(_probe(json.loads(sys.argv[2])))
        return 0
    args = arguments()
    if os.geteuid() != 0 or shutil.which("nft") is None:
        print("bench/hosts.py needs root (network namespaces) and nft", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    conditions: list[tuple[str, float | None, float]] = [("plain", None, 0.0)]
    if args.delay_ms > 0:
        conditions.append((f"{args.delay_ms:g} ms, {args.loss:.0%} loss", args.delay_ms, args.loss))
    rows: list[Row] = []
    tmp = Path(tempfile.mkdtemp(prefix="hm-bench-hosts-", dir=args.tmp))
    try:
        if not args.skip_joins:
            for label, delay_ms, loss in conditions:
                rows += joins_and_lookups(args, tmp, label, delay_ms, loss)
                close_stores()
        if not args.skip_converge:
            rows += convergence(args, tmp)
    finally:
        close_stores()
        shutil.rmtree(tmp, ignore_errors=True)
    table(rows)
    directory_section(args)
    print(f"\ntotal {time.monotonic() - started:.0f} s; load {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
