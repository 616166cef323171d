"""The HyperMesh SDK: ``from hypermesh.sdk import Mesh`` (async) or ``hypermesh.sdk.sync``.

See ``hypermesh.sdk.mesh`` and docs/sdk.md."""

from hypermesh.errors import HyperMeshError, NotReady, TransportError
from hypermesh.sdk.mesh import Mesh, Unverified
from hypermesh.sdk.paths import BadPaths, HomeRelay, PathsView, PeerPath, PunchStats
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
    "BadPaths",
    "DnsResult",
    "HomeRelay",
    "HyperMeshError",
    "Mesh",
    "MeshNode",
    "NodeResponse",
    "NotReady",
    "PathsView",
    "PeerPath",
    "PeerRef",
    "PingResult",
    "PunchStats",
    "Refused",
    "TransportError",
    "Tunnel",
    "TunnelFailed",
    "Unverified",
    "VerifiedChain",
]
