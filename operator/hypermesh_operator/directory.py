"""The node directory of a Kubernetes namespace: Node status and the nodes' Secrets.

Where a Node answers and the node ID it proves are in its status (``address``,
``privateAddress``, ``ephemeralAddress``, ``identity``), which the operator writes and kopf's
indexes already hold for every Node of the cluster: locating a node costs no API call. A node's
key is in its identity Secret (``children.identity_secret``), immutable once made: it is read
once and kept in memory (``Keys``), so signing as a node costs one GET for the operator's
lifetime, not one per request. RBAC lets the operator ``get`` and ``create`` Secrets only; it
never lists them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hypermesh.errors import HyperMeshError
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh_operator import children
from hypermesh_operator.kube import Kube, path_of

ADDRESS_FIELDS = {"public": "address", "private": "privateAddress", "ephemeral": "ephemeralAddress"}
"""The status field holding where a Node serves each interface (the names of ``hmctl``)."""


def pem_of(identity: Identity) -> bytes:
    """The PKCS#8 PEM of a key, as the identity Secret holds it."""
    return identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def identity_of_pem(pem: bytes) -> Identity:
    """The key a Secret holds; ``HyperMeshError`` when it is not an Ed25519 key."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise HyperMeshError(f"the identity Secret does not hold a key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HyperMeshError("the identity Secret holds a key that is not Ed25519")
    return Identity(key)


class Keys:
    """The nodes' keys by (namespace, node), read from their Secrets once and kept (a Secret
    is immutable; a key the operator makes is remembered as it creates the Secret)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._held: dict[tuple[str, str], Identity] = {}

    def remember(self, namespace: str, name: str, identity: Identity) -> None:
        self._held[(namespace, name)] = identity

    async def get(self, namespace: str, name: str) -> Identity | None:
        """Node ``name``'s key, or None while it has no Secret (not cached: it may come)."""
        found = self._held.get((namespace, name))
        if found is not None:
            return found
        secret = await self.kube.get(
            path_of("v1", "secrets", namespace, children.object_name(name, "identity"))
        )
        if secret is None:
            return None
        data = secret.get("data") or {}
        identity = identity_of_pem(base64.b64decode(str(data.get(children.KEY_FILE, ""))))
        self._held[(namespace, name)] = identity
        return identity


class KubeDirectory:
    """``NodeDirectory`` of one namespace: ``nodes`` is the Nodes' status by name (from kopf's
    index, as the handler saw it), ``keys`` the operator's key cache. A resource's namespace
    is "" (a namespace is one manifest set, its resources namespace-less): it means this one."""

    def __init__(self, namespace: str, nodes: Mapping[str, Mapping[str, Any]], keys: Keys) -> None:
        self.namespace = namespace
        self.nodes = nodes
        self.keys = keys

    def _status(self, name: str, namespace: str) -> Mapping[str, Any]:
        if namespace and namespace != self.namespace:
            return {}
        return self.nodes.get(name) or {}

    async def locate(self, name: str, namespace: str, interface: str = "public") -> PeerRef | None:
        status = self._status(name, namespace)
        address, node_id = status.get(ADDRESS_FIELDS.get(interface, "")), status.get("identity")
        if not address or not node_id:
            return None
        return PeerRef(str(address), str(node_id))

    async def node_id(self, name: str, namespace: str) -> str | None:
        found = self._status(name, namespace).get("identity")
        if found:
            return str(found)
        key = await self.signer(name, namespace)  # its status is not written yet
        return key.node_id if key is not None else None

    async def signer(self, name: str, namespace: str) -> Identity | None:
        if namespace and namespace != self.namespace:
            return None
        return await self.keys.get(self.namespace, name)

    async def key_for(self, node_id: str, namespace: str) -> Identity | None:
        for name, status in sorted(self.nodes.items()):
            if status.get("identity") == node_id:
                key = await self.signer(name, namespace)
                return key if key is not None and key.node_id == node_id else None
        return None


__all__ = ["ADDRESS_FIELDS", "Keys", "KubeDirectory", "identity_of_pem", "pem_of"]
