"""The node directory of standalone mode: a folder per node under the state directory.

``<state>/nodes/[NAMESPACE/]NAME/`` holds the node's key (``identity.key``, 0600), its node
ID (``identity.pub``), the lock its process holds for its whole life (``node.lock``) and the
runtime file it writes once it serves (``runtime.json``: its addresses). A node is located only
while its process holds the lock and the runtime file is that process's, so a crashed node's
stale file is never trusted.

A Node placed on another host (``hypermesh.model.placement``) has no folder here: a remote
registry node is found by what its manifest pins (``advertise[0]`` or a concrete ``listen``, and
``identity``); any other remote node by its signed record in the network's node directory
(``GET /registry/v1/node`` at the registry), verified before its addresses are used.
"""

from __future__ import annotations

from pathlib import Path

from hypermesh.drivers.bootstrap import load_bootstrap
from hypermesh.errors import HyperMeshError, TemporaryError, TransportError
from hypermesh.model.placement import Placement, reachable_address
from hypermesh.model.resources import DesiredState, Resource
from hypermesh.node.lockfile import running_pid
from hypermesh.node.runtime import read_runtime
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import (
    PUBLIC_FILE,
    Identity,
    held_identity,
    load_or_create_identity,
    read_node_id,
)
from hypermesh.transport.noderecord import BadNodeRecord, NodeRecord


class StandaloneDirectory:
    """``NodeDirectory`` over the node folders of one state directory."""

    def __init__(self, state_dir: Path, placement: Placement | None = None) -> None:
        self.state_dir = state_dir
        self.placement = placement or Placement()
        """The host this controller runs for: which Nodes have a folder here."""
        self.desired = DesiredState(())
        """The manifests of the current pass (``prepare``): where remote Nodes are placed."""

    def prepare(self, desired: DesiredState) -> None:
        """The desired state of this pass, to tell local Nodes from remote ones."""
        self.desired = desired

    def remote_node(self, name: str, namespace: str) -> Resource | None:
        """Node ``name`` when it is declared and placed on another host, else None."""
        node = self.desired.get("Node", name, namespace)
        return node if node is not None and not self.placement.is_local(node) else None

    def node_dir(self, name: str, namespace: str = "") -> Path:
        parts = [namespace, name] if namespace else [name]
        return self.state_dir.joinpath("nodes", *parts)

    async def locate(self, name: str, namespace: str, interface: str = "public") -> PeerRef | None:
        remote = self.remote_node(name, namespace)
        if remote is not None:
            return await self._locate_remote(remote, interface)
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

    async def _locate_remote(self, node: Resource, interface: str) -> PeerRef | None:
        """A Node on another host: a registry by its pinned address and key; any other by its
        record in the directory (its own addresses for ``interface``, and its key)."""
        if interface == "public" and self._is_registry(node):
            address, pinned = reachable_address(node), node.spec.get("identity")
            return PeerRef(address, str(pinned)) if address and pinned else None
        record = await self.lookup(node)
        if record is None:
            return None
        addresses = record.interfaces.get(interface, ())
        return PeerRef(addresses[0], record.node_id) if addresses else None

    def _is_registry(self, node: Resource) -> bool:
        network = self.desired.get("Network", str(node.spec.get("network")), node.namespace)
        registry = (network.spec.get("registry") or {}) if network is not None else {}
        return bool(registry.get("node") == node.name)

    async def registry_of(self, network_name: str, namespace: str) -> PeerRef | None:
        """Where Network ``network_name``'s registry answers and its key: a Node of these
        manifests (located as any node), a remote endpoint, or for a public network without
        one the bootstrap registry; None when it cannot be reached from here yet."""
        network = self.desired.get("Network", network_name, namespace)
        if network is None:
            return None
        registry = dict(network.spec.get("registry") or {})
        if registry.get("node"):
            return await self.locate(str(registry["node"]), namespace)
        if registry.get("endpoint") and registry.get("identity"):
            return PeerRef(str(registry["endpoint"]), str(registry["identity"]))
        if network.spec.get("mode") == "public":
            bootstrap = load_bootstrap()
            return PeerRef(bootstrap.endpoint, bootstrap.identity)
        return None

    async def lookup(self, node: Resource) -> NodeRecord | None:
        """Node ``node``'s record in its network's directory (by its pinned key, else by its
        member name), verified: signature, expiry, and the key when one is pinned. None when
        the directory has none; ``TemporaryError`` when the registry cannot be asked."""
        where = await self.registry_of(str(node.spec.get("network")), node.namespace)
        if where is None:
            return None
        pinned = node.spec.get("identity")
        client = RegistryClient(where.address, where.node_id, identity=None)
        try:
            if pinned:
                record = await client.node_record(node_id=str(pinned))
            else:
                record = await client.node_record(name=node.name)
        except TransportError as exc:
            raise TemporaryError(str(exc), reason="RegistryDown") from exc
        except BadNodeRecord as exc:
            raise TemporaryError(
                f"the directory's record of node {node.name!r} is not valid: {exc}",
                reason="BadNodeRecord",
            ) from None
        except HyperMeshError as exc:
            raise TemporaryError(
                f"looking up node {node.name!r} in the directory: {exc}", reason="DirectoryError"
            ) from None
        if record is not None and record.network != node.spec.get("network"):
            raise TemporaryError(
                f"the directory's record of node {node.name!r} is of network {record.network!r}",
                reason="BadNodeRecord",
            )
        return record

    async def node_id(self, name: str, namespace: str) -> str | None:
        remote = self.remote_node(name, namespace)
        if remote is not None:
            pinned = remote.spec.get("identity")
            return str(pinned) if pinned else None
        return read_node_id(self.node_dir(name, namespace))

    async def signer(self, name: str, namespace: str) -> Identity | None:
        if self.remote_node(name, namespace) is not None:
            return None  # its key is on its own host
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
