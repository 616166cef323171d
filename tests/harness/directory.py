"""A network whose nodes publish node records (issue 16): a registry node and members on
127.0.0.1, each key made before its node starts so that the registry's config names it as a
static member. Shared by the node, SDK and CLI tests of the node directory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.identity import Identity, load_or_create_identity
from hypermesh.transport.noderecord import NodeRecord
from tests.harness.node_process import NodeStarter, RunningNode

NETWORK = "acme"


def make_key(base: Path, name: str) -> Identity:
    """The key of node ``name`` (in ``base/name``), made now if missing."""
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return load_or_create_identity(folder)


def start(
    starter: NodeStarter,
    name: str,
    *,
    members: Sequence[str] = (),
    roles: Sequence[str] = (),
    registry: str | None = None,
    listen: str = "127.0.0.1:0",
    advertise: Sequence[str] = (),
    private_listen: str | None = None,
    record_lifetime: float = 600.0,
    relays: Sequence[str] = (),
    path_keepalive: float = 25.0,
    path_observe: float = 30.0,
) -> RunningNode:
    """Start node ``name``; ``members`` (names of nodes under the same base) make the config's
    directory, with their keys; ``registry`` names the node that is the registry; ``relays``
    the nodes (under the same base) it attaches to, its home relay first."""
    base = starter.base
    make_key(base, name)
    directory = {
        member: {"kind": "Node", "identity": make_key(base, member).node_id, "tags": []}
        for member in {*members, name}
    }
    node_dir = base / name
    config = NodeConfig(
        name=name,
        network=NETWORK,
        listen=listen,
        prefer_port=None,
        interfaces=("public",) + (("private",) if private_listen else ()),
        roles=tuple(roles),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        log_level="debug",
        registry=Upstream(node_dir=str(base / registry)) if registry else None,
        directory=directory,
        private_listen=private_listen,
        advertise=tuple(advertise),
        record_lifetime=record_lifetime,
        chain=False,
        relays=tuple(Upstream(node_dir=str(base / relay)) for relay in relays),
        path_keepalive=path_keepalive,
        path_observe=path_observe,
    )
    path = node_dir / "config.json"
    path.write_text(config.to_json())
    return starter.restart(path)


def start_with_chain(nodes: NodeStarter, name: str, *, new_key: bool = False) -> RunningNode:
    """Node ``name`` with its chain (and messages) on: a member whose registry is ``registry``
    and which has no other peer (``start`` turns chains off). ``new_key``: its key is made by
    its own start (not the one the directory lists, then)."""
    node_dir = nodes.base / name
    registry = make_key(nodes.base, "registry").node_id
    config = NodeConfig(
        name=name,
        network=NETWORK,
        listen="127.0.0.1:0",
        prefer_port=None,
        interfaces=("public",),
        roles=(),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        log_level="debug",
        registry=Upstream(node_dir=str(nodes.base / "registry")),
        directory={
            name: {"kind": "Node", "identity": make_key(nodes.base, name).node_id},
            "registry": {"kind": "Node", "identity": registry},
        },
        record_lifetime=10,
    )
    (node_dir / "config.json").write_text(config.to_json())
    if new_key:
        for made in ("identity.key", "identity.pub"):
            (node_dir / made).unlink()
    return nodes.restart(node_dir / "config.json")


def lookup(registry: RunningNode, query: str) -> tuple[int, dict[str, Any]]:
    """``GET /registry/v1/node?<query>`` at the registry, anonymously."""
    client = RegistryClient(registry.address, registry.identity, identity=None, timeout=5.0)
    return asyncio.run(client.call("GET", f"/registry/v1/node?{query}"))


def wait_record(registry: RunningNode, node_id: str, timeout: float = 20.0) -> NodeRecord:
    """The record of ``node_id`` once the registry holds one (``AssertionError`` if not)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, data = lookup(registry, f"id={node_id}")
        if status == 200:
            return NodeRecord.verify(data, now=time.time())
        last = (status, data)
        time.sleep(0.1)
    raise AssertionError(f"no record of {node_id} at the registry: {last}")
