"""The HyperMesh SDK: ``from hypermesh.sdk import Mesh`` (async) or ``hypermesh.sdk.sync``.

See ``hypermesh.sdk.mesh`` and docs/sdk.md."""

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.sdk.mesh import Answer, Endpoint, Mesh, Refused, Response, Unverified
from hypermesh.tunnel.client import Tunnel, TunnelFailed

__all__ = [
    "Answer",
    "Endpoint",
    "HyperMeshError",
    "Mesh",
    "Refused",
    "Response",
    "TransportError",
    "Tunnel",
    "TunnelFailed",
    "Unverified",
]
