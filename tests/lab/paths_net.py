"""A lab network of one node behind each NAT kind, a registry and a relay: what the paths
matrix test (``test_paths_matrix.py``) and the paths benchmark (``bench/paths.py``) run on.

Hosts: ``reg`` (public; the registry node, role ``registry``), ``relay`` (public; role
``relay``) and one host per kind of ``KINDS``, named after it (``public`` has a public address,
the others sit behind a NAT router of that kind, ``tests/lab/nat.py``), each running one node
of the same name. Nodes are started directly (``python -m hypermesh.node --config``), not by a
controller: every key is made first, so each node's config lists every member of the network;
every node but the relay has the relay as its home relay; the registry is at
``reg.address:4433``; ``path_observe`` 1 s and ``path_keepalive`` 2 s, so that changes and lost
paths are noticed within seconds.

The paths API (``/paths/v1``) answers only the node's own key, and a NATed node is reached only
from inside its host, so each host runs an **agent** (``python -m tests.lab.paths_net agent
NODE_DIR``): one process that reads JSON requests on its standard input, one per line
(``{"op": "ping", "node": NAME, "count": n}``, ``{"op": "forget", "node": NAME}``,
``{"op": "paths"}``, ``{"op": "send", "to": NODE_ID, "text": T}`` and ``{"op": "inbox"}`` (signed
by the node's key: nodes built with ``chains``) or ``{"op": "metrics"}``: then ``{"status",
"text"}``), makes them to its node
over HTTP/3 with the node's key, and writes one JSON line per request (``{"status", "answer",
"wall_ms"}``; ``status`` 0 and ``error`` when the node did not answer). One agent per host
saves a Python start per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import load_or_create_identity
from tests.lab.lab import Host, Lab, python_env
from tests.lab.nat import PortMap, add_portmap

KINDS = ("public", "full-cone", "port-restricted", "symmetric", "double", "udp-blocked")
"""The NAT kinds, each a host and a node of that name (``public``: no NAT)."""
PORT = 4433
NETWORK = "lab"
START_TIMEOUT = 20.0
AGENT_TIMEOUT = 40.0
"""Seconds an agent may take for one request before the caller gives up on it."""


def nat_of(kind: str) -> str | None:
    """The lab's NAT kind of the host for ``kind`` (None for ``public``)."""
    return None if kind == "public" else kind


@dataclass
class Member:
    """One node of the network: its host, its files and its processes."""

    name: str
    host: Host
    node_dir: Path
    node_id: str
    roles: tuple[str, ...] = ()
    port: int = PORT
    proc: subprocess.Popen[str] | None = None
    agent: Agent | None = None

    @property
    def log_file(self) -> Path:
        return self.node_dir / "node.log"

    @property
    def config_path(self) -> Path:
        return self.node_dir / "config.json"

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name}: not started"
        return self.proc.pid


class Agent:
    """The agent of one host (see the module's docstring): one request at a time."""

    def __init__(self, host: Host, node_dir: Path) -> None:
        self.host = host
        self.process = host.popen(
            [sys.executable, "-m", "tests.lab.paths_net", "agent", str(node_dir)],
            env=python_env(),
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def call(self, request: dict[str, Any], timeout: float = AGENT_TIMEOUT) -> dict[str, Any]:
        """Send ``request``, wait (at most ``timeout`` s) for its answer line."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"agent in {self.host.name}: no answer to {request} in {timeout}s")
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"agent in {self.host.name} exited ({self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@dataclass
class PathsNet:
    """The running network: ``members`` by name (``reg``, ``relay`` and the kinds)."""

    lab: Lab
    base: Path
    members: dict[str, Member] = field(default_factory=dict)
    logs: list[IO[str]] = field(default_factory=list)
    portmaps: dict[str, PortMap] = field(default_factory=dict)
    """The NAT-PMP server in the router of each host built with ``portmap`` (by host name)."""
    chains: frozenset[str] = frozenset()
    """The members whose chain (and messages) are on; every other node runs without one."""

    @property
    def reg(self) -> Member:
        return self.members["reg"]

    @property
    def relay(self) -> Member:
        return self.members["relay"]

    def config(self, member: Member) -> NodeConfig:
        """``member``'s node config (every member in its directory; see the module)."""
        reg, relay = self.reg, self.relay
        registry = None
        if member is not reg:
            registry = Upstream(PeerRef(f"{reg.host.address}:{reg.port}", reg.node_id))
        relays: tuple[Upstream, ...] = ()
        if member is not relay:
            relays = (Upstream(PeerRef(f"{relay.host.address}:{relay.port}", relay.node_id)),)
        directory = {
            m.name: {"kind": "Node", "identity": m.node_id, "tags": []}
            for m in self.members.values()
        }
        return NodeConfig(
            name=member.name,
            network=NETWORK,
            listen=f"0.0.0.0:{member.port}",
            prefer_port=None,
            interfaces=("public",),
            roles=member.roles,
            tags=(),
            generation=1,
            node_dir=str(member.node_dir),
            log_file=str(member.log_file),
            log_level="debug",
            registry=registry,
            directory=directory,
            record_lifetime=30.0,
            chain=member.name in self.chains,
            relays=relays,
            path_keepalive=2.0,
            path_observe=1.0,
        )

    def start(self, name: str, port: int | None = None) -> Member:
        """Start (or restart, stopping the running one first) ``name``'s node, on ``port``
        when given (a new port: NAT mappings and peers' filters all new); waits until it
        serves."""
        member = self.launch(name, port)
        wait_runtime(member)
        if member.agent is None:
            member.agent = Agent(member.host, member.node_dir)
        return member

    def launch(self, name: str, port: int | None = None) -> Member:
        """``start`` without the wait."""
        member = self.members[name]
        if member.proc is not None:
            stop(member.proc)
        if port is not None:
            member.port = port
        member.config_path.write_text(self.config(member).to_json())
        log = member.log_file.open("a")
        self.logs.append(log)
        member.proc = member.host.popen(
            [sys.executable, "-m", "hypermesh.node", "--config", str(member.config_path)],
            env=python_env(),
            cwd=str(member.node_dir),
            stdout=log,
            stderr=log,
        )
        return member

    def call(self, name: str, request: dict[str, Any], timeout: float = AGENT_TIMEOUT) -> Any:
        agent = self.members[name].agent
        assert agent is not None, f"{name}: no agent"
        return agent.call(request, timeout)

    def ping(self, dialer: str, target: str, count: int = 3, size: int = 0) -> dict[str, Any]:
        """``POST /paths/v1/ping`` at ``dialer``'s node (with ``size`` bulk bytes after the
        requests): ``{"status", "answer", "wall_ms"}``."""
        answer: dict[str, Any] = self.call(
            dialer,
            {"op": "ping", "node": target, "count": count, "bytes": size, "timeout": 60},
        )
        return answer

    def forget(self, dialer: str, target: str) -> dict[str, Any]:
        """``POST /paths/v1/forget`` at ``dialer``'s node: its next ping of ``target`` dials
        afresh."""
        answer: dict[str, Any] = self.call(dialer, {"op": "forget", "node": target})
        return answer

    def view(self, name: str) -> dict[str, Any]:
        """``GET /paths/v1`` of ``name``'s node (``{}`` when it did not answer)."""
        got = self.call(name, {"op": "paths"}, timeout=15)
        view: dict[str, Any] = got.get("answer", {}) if got.get("status") == 200 else {}
        return view

    def peer(self, name: str, peer: str) -> dict[str, Any] | None:
        """``name``'s view of its link to ``peer`` (None when it holds none)."""
        peer_id = self.members[peer].node_id
        return next((p for p in self.view(name).get("peers", []) if p["node"] == peer_id), None)

    def tail(self, name: str, lines: int = 40) -> str:
        """The last ``lines`` of ``name``'s node log (for failure messages)."""
        try:
            text = self.members[name].log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop every node and agent (the lab stops anything left on its close)."""
        for member in self.members.values():
            if member.agent is not None:
                member.agent.close()
            if member.proc is not None:
                stop(member.proc)
        for log in self.logs:
            log.close()


def stop(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    """SIGTERM, a bounded wait, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def wait_runtime(member: Member, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``member``'s node wrote runtime.json for its current process."""
    deadline = time.monotonic() + timeout
    assert member.proc is not None
    while time.monotonic() < deadline:
        if member.proc.poll() is not None:
            raise RuntimeError(f"node {member.name} exited before serving:\n{tail_of(member)}")
        with contextlib.suppress(OSError, ValueError):
            runtime = json.loads((member.node_dir / "runtime.json").read_text())
            if runtime.get("pid") == member.proc.pid:
                return
        time.sleep(0.05)
    raise RuntimeError(f"node {member.name}: no runtime.json within {timeout}s")


def tail_of(member: Member, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(member.log_file.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def build(
    lab: Lab,
    base: Path,
    kinds: Sequence[str] = KINDS,
    extra: Mapping[str, str | None] | None = None,
    portmap: Iterable[str] = (),
    chains: Iterable[str] = (),
) -> PathsNet:
    """Add the hosts to ``lab`` and start every node (files under ``base``): ``reg``,
    ``relay``, one per kind of ``kinds``, and ``extra`` (name → NAT kind, None: public); the
    routers of the hosts named in ``portmap`` run the lab's NAT-PMP server
    (``tests.lab.nat.add_portmap``); the nodes named in ``chains`` keep a chain and send and
    receive messages. Waits for the nodes' runtime files only: see ``wait_published``."""
    net = PathsNet(lab, base, chains=frozenset(chains))
    hosts: list[tuple[str, str | None, tuple[str, ...]]] = [
        ("reg", None, ("registry",)),
        ("relay", None, ("relay",)),
    ]
    hosts += [(kind, nat_of(kind), ()) for kind in kinds]
    hosts += [(name, nat, ()) for name, nat in (extra or {}).items()]
    for name, nat, roles in hosts:
        host = lab.add_host(name, nat=nat)
        node_dir = base / name
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        identity = load_or_create_identity(node_dir)
        net.members[name] = Member(name, host, node_dir, identity.node_id, roles)
    for name in portmap:
        net.portmaps[name] = add_portmap(lab, net.members[name].host, base / f"{name}.router")
    try:
        for name, _, _ in hosts:
            net.launch(name)
        for name, _, _ in hosts:
            _serving(net, name)
    except BaseException:
        net.close()
        raise
    return net


def _serving(net: PathsNet, name: str) -> None:
    member = net.members[name]
    wait_runtime(member)
    if member.agent is None:
        member.agent = Agent(member.host, member.node_dir)


def published(net: PathsNet, name: str) -> str | None:
    """What ``name``'s record at the registry still lacks (None: it names its relay and, for a
    NATed node with UDP, a reflexive address at its current port)."""
    from hypermesh.registry.client import RegistryClient

    member, reg = net.members[name], net.reg
    client = RegistryClient(f"{reg.host.address}:{reg.port}", reg.node_id, identity=None)
    try:
        record = asyncio.run(client.node_record(node_id=member.node_id))
    except Exception as exc:  # any failure is "not yet", with its reason
        return f"lookup failed: {exc}"
    if record is None:
        return "no record"
    if member is not net.relay and record.relay_id != net.relay.node_id:
        return f"its record names relay {record.relay_id}"
    if member.host.nat not in (None, "udp-blocked") and not record.reflexive:
        return "no reflexive address in its record"
    if not any(a.endswith(f":{member.port}") for a in record.addresses):
        return f"its record's addresses are not at port {member.port}: {record.addresses}"
    return None


def wait_published(net: PathsNet, names: Iterable[str], timeout: float = 30.0) -> dict[str, str]:
    """Wait (at most ``timeout`` s) until every one of ``names`` is published (``published``);
    what each still lacks at the end (empty: all are)."""
    waiting = {name: "not asked" for name in names}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for name in list(waiting):
            lacking = published(net, name)
            if lacking is None:
                del waiting[name]
            else:
                waiting[name] = lacking
        if waiting:
            time.sleep(0.5)
    return waiting


@contextlib.contextmanager
def published_net(
    base: Path, keep: Path, waited: Iterable[str] | None = None, timeout: float = 30.0, **built: Any
) -> Iterator[PathsNet]:
    """A new lab with ``build(lab, base, **built)`` in it, once ``waited`` (default: every node
    but the registry) are published; everything stopped and removed at the end whatever
    happened, and the nodes' files (not their keys) copied to ``keep`` to read afterwards."""
    started = time.monotonic()
    lab = Lab()
    made: PathsNet | None = None
    try:
        made = build(lab, base, **built)
        names = [n for n in made.members if n != "reg"] if waited is None else list(waited)
        lacking = wait_published(made, names, timeout=timeout)
        print(f"\nnetwork up and published in {time.monotonic() - started:.1f}s")
        assert not lacking, f"nodes not published: {lacking}\n" + "\n".join(
            f"--- {name}\n{made.tail(name)}" for name in lacking
        )
        yield made
    finally:
        if made is not None:
            made.close()
        lab.close()
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(base, keep, ignore=shutil.ignore_patterns("*.key"), dirs_exist_ok=True)


# -- the agent ------------------------------------------------------------------------------


async def _answer(node_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One request of the agent's protocol, made to the node of ``node_dir``."""
    from hypermesh.registry.signing import sign_request
    from hypermesh.transport.client import connect_h3
    from hypermesh.transport.identity import load_identity, read_node_id

    runtime = json.loads((node_dir / "runtime.json").read_text())
    port = str(runtime["address"]).rsplit(":", 1)[1]
    identity = load_identity(node_dir / "identity.key")
    node_id = read_node_id(node_dir)
    if request.get("op") == "ping":
        method, path = "POST", "/paths/v1/ping"
        body = json.dumps(
            {
                "node": request["node"],
                "count": request.get("count", 1),
                "bytes": request.get("bytes", 0),
            }
        ).encode()
    elif request.get("op") == "forget":
        method, path = "POST", "/paths/v1/forget"
        body = json.dumps({"node": request["node"]}).encode()
    elif request.get("op") == "paths":
        method, path, body = "GET", "/paths/v1", b""
    elif request.get("op") == "send":
        method, path = "POST", "/message/v1/send"
        body = json.dumps({"to": request["to"], "text": request["text"]}).encode()
    elif request.get("op") == "inbox":
        method, path, body = "GET", "/message/v1/inbox", b""
    elif request.get("op") == "metrics":
        method, path, body = "GET", "/metrics", b""
    else:
        known = "ping, forget, paths, send, inbox, metrics"
        return {"status": 0, "error": f"unknown op {request.get('op')!r}: {known}"}
    timeout = float(request.get("timeout", 20))
    async with asyncio.timeout(timeout):
        async with connect_h3(f"127.0.0.1:{port}", expected_id=node_id, identity=identity) as h3:
            headers = [("content-type", "application/json")] if body else []
            if path.startswith("/message/"):  # the node's own requests: signed by its key
                signed = sign_request(identity, method, path, body, now=time.time())
                headers += list(signed.items())
            started = time.perf_counter()
            status, _, answer = await h3.request(method, path, headers=headers, body=body)
            wall = (time.perf_counter() - started) * 1000
    if path == "/metrics":
        return {"status": status, "text": answer.decode(errors="replace")}
    return {"status": status, "answer": json.loads(answer or b"{}"), "wall_ms": round(wall, 3)}


def agent_main(node_dir: Path) -> int:
    """Answer the requests on standard input, one JSON line each, until it closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = asyncio.run(_answer(node_dir, json.loads(line)))
        except Exception as exc:  # reported to the caller, who decides
            result = {"status": 0, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "agent":
        sys.exit("usage: python -m tests.lab.paths_net agent NODE_DIR")
    sys.exit(agent_main(Path(sys.argv[2])))
