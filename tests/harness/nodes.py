"""Real node processes started from hand-written configs (on loopback or in network
namespaces), and the registry writes and DNS queries made of them: shared by the mirror and
operator tests and the propagation, soak and operator benchmarks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype

from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.runtime import read_runtime
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity, load_or_create_identity


@dataclass
class NodeProc:
    name: str
    node_dir: Path
    process: subprocess.Popen[bytes]
    address: str
    identity: str
    netns: str | None = None
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def status(self) -> dict[str, Any]:
        return asyncio.run(
            h3_get_json(self.address, "/status", expected_id=self.identity, identity=None)
        )

    def ask(self, name: str, rdtype: str = "A", *, dnssec: bool = False) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=dnssec, use_edns=0)
        wire = asyncio.run(
            doq_query(
                self.address, query.to_wire(), expected_id=self.identity, timeout=3.0, identity=None
            )
        )
        return dns.message.from_wire(wire)


def start_node(
    root: Path,
    name: str,
    *,
    listen: str = "127.0.0.1:0",
    roles: Sequence[str] = (),
    registry: Upstream | None = None,
    peers: Sequence[Upstream] = (),
    expire: float | None = None,
    netns: str | None = None,
    reach: str | None = None,
    wait: bool = True,
) -> NodeProc:
    """Start a node process (in network namespace ``netns`` if given, where it is reached at
    ``reach`` from outside) and wait until it publishes its runtime file."""
    node_dir = root / name
    node_dir.mkdir(parents=True, exist_ok=True)
    identity = load_or_create_identity(node_dir)  # before start: the test knows the key
    config = NodeConfig(
        name=name,
        network="acme",
        listen=listen,
        prefer_port=None,
        interfaces=("public",),
        roles=tuple(roles),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        log_level="debug",
        registry=registry,
        peers=tuple(peers),
        mirror_expire=expire,
    )
    (node_dir / "config.json").write_text(config.to_json())
    command = [sys.executable, "-m", "hypermesh.node", "--config", str(node_dir / "config.json")]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    runtime = None
    deadline = time.monotonic() + 20
    while wait and time.monotonic() < deadline:
        runtime = read_runtime(node_dir)
        if runtime is not None and runtime.pid == process.pid:
            break
        if process.poll() is not None:
            raise RuntimeError(f"node {name} exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        time.sleep(0.05)
    else:
        if wait:
            process.kill()
            raise RuntimeError(f"node {name} did not start")
    address = reach or (runtime.address if runtime else listen)
    return NodeProc(name, node_dir, process, address, identity.node_id, netns)


class Owner:
    """A TLD owner writing through the registry API."""

    def __init__(self, registry: NodeProc, key: Identity | None = None) -> None:
        self.key = key or Identity.generate()
        self.client = RegistryClient(registry.address, registry.identity, identity=None)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, data = asyncio.run(self.client.call("POST", path, body, signer=self.key))
        assert status in (200, 201), (status, data)
        return data

    def register(self, tld: str) -> dict[str, Any]:
        return self.call("/registry/v1/register", {"tld": tld, "network": "acme", "ttl": 60})

    def put(self, tld: str, name: str, value: str, rdtype: str = "A") -> int:
        change = {
            "name": name,
            "type": rdtype,
            "changetype": "REPLACE",
            "ttl": 60,
            "values": [value],
        }
        data = self.call("/registry/v1/rrsets", {"tld": tld, "rrsets": [change]})
        return int(data["serial"])


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def answer_values(message: dns.message.Message, rdtype: str = "A") -> set[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return {r.to_text() for rrset in message.answer if rrset.rdtype == wanted for r in rrset}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
