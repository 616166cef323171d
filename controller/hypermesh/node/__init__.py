"""The node process: one QUIC endpoint serving the HyperMesh API, run by the controller.

``python -m hypermesh.node --config PATH`` runs it; ``running_pid`` tells whether it runs.
"""

from hypermesh.node.config import NodeConfig
from hypermesh.node.lockfile import running_pid
from hypermesh.node.logs import JsonFormatter
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.runtime import RUNTIME_FILE, RuntimeInfo, read_runtime

__all__ = [
    "RUNTIME_FILE",
    "JsonFormatter",
    "NodeConfig",
    "Request",
    "RouteResponse",
    "Router",
    "RuntimeInfo",
    "read_runtime",
    "running_pid",
]
