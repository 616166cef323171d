"""The HyperMesh SDK: ``from hypermesh.sdk import Mesh`` (async) or ``hypermesh.sdk.sync``.

See ``hypermesh.sdk.mesh`` and docs/sdk.md."""

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.sdk.mesh import Mesh, Unverified
from hypermesh.sdk.results import (
    DnsResult,
    MeshNode,
    NodeResponse,
    PingResult,
    Refused,
    VerifiedChain,
)
from hypermesh.transport.address import PeerRef
from hypermesh.tunnel.client import Tunnel, TunnelFailed

__all__ = [
    "DnsResult",
    "HyperMeshError",
    "Mesh",
    "MeshNode",
    "NodeResponse",
    "PeerRef",
    "PingResult",
    "Refused",
    "TransportError",
    "Tunnel",
    "TunnelFailed",
    "Unverified",
    "VerifiedChain",
]
