"""The node directory of standalone mode: a folder per node under the state directory.

``<state>/nodes/[NAMESPACE/]NAME/`` holds the node's key (``identity.key``, 0600), its node
ID (``identity.pub``), the lock its process holds for its whole life (``node.lock``) and the
runtime file it writes once it serves (``runtime.json``: its addresses). A node is located only
while its process holds the lock and the runtime file is that process's, so a crashed node's
stale file is never trusted.
"""

from __future__ import annotations

from pathlib import Path

from hypermesh.node.lockfile import running_pid
from hypermesh.node.runtime import read_runtime
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import (
    PUBLIC_FILE,
    Identity,
    held_identity,
    load_or_create_identity,
    read_node_id,
)


class StandaloneDirectory:
    """``NodeDirectory`` over the node folders of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def node_dir(self, name: str, namespace: str = "") -> Path:
        parts = [namespace, name] if namespace else [name]
        return self.state_dir.joinpath("nodes", *parts)

    async def locate(self, name: str, namespace: str, interface: str = "public") -> PeerRef | None:
        node_dir = self.node_dir(name, namespace)
        pid = running_pid(node_dir)
        runtime = read_runtime(node_dir)
        if pid is None or runtime is None or runtime.pid != pid:
            return None
        address = {"private": runtime.private, "ephemeral": runtime.ephemeral}.get(
            interface, runtime.address
        )
        node_id = read_node_id(node_dir)
        if not address or node_id is None:
            return None
        return PeerRef(address, node_id)

    async def node_id(self, name: str, namespace: str) -> str | None:
        return read_node_id(self.node_dir(name, namespace))

    async def signer(self, name: str, namespace: str) -> Identity | None:
        return held_identity(self.node_dir(name, namespace))

    async def key_for(self, node_id: str, namespace: str) -> Identity | None:
        nodes = self.node_dir("", namespace) if namespace else self.state_dir / "nodes"
        for public in sorted(nodes.glob(f"*/{PUBLIC_FILE}")) if nodes.is_dir() else []:
            if read_node_id(public.parent) == node_id:
                return held_identity(public.parent)
        return None

    def ensure_node_id(self, name: str, namespace: str) -> str:
        """Node ``name``'s ID, its key made now if the node has not started yet (so every
        member is known to every other from the first start on)."""
        return load_or_create_identity(self.node_dir(name, namespace)).node_id


__all__ = ["StandaloneDirectory"]
