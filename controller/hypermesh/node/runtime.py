"""``runtime.json``: what a running node tells the controller about itself (pid, address, …).

Written atomically once the endpoint is bound, removed on a clean shutdown. It is a hint, not
proof: the lock says whether the node runs; ``pid`` says whether this file belongs to it.

``ports.json`` keeps the addresses the node last bound, and outlives the process (a clean stop,
``kill -9``, ``hmctl down``): a node whose config asks for any port (port 0) tries the one it
had first, so that its addresses stay put across restarts (``previous_port``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hypermesh.files import write_atomic
from hypermesh.transport.address import format_address, parse_address

RUNTIME_FILE = "runtime.json"
PORTS_FILE = "ports.json"
INTERFACES = ("address", "web", "private", "ephemeral")
"""The bound addresses a node has: its QUIC endpoint, its pages over TCP, its private and
ephemeral interfaces (the names of ``RuntimeInfo``'s fields)."""


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """The facts a node publishes once it serves."""

    pid: int
    """The node process's pid."""
    address: str
    """The bound ``host:port`` (the real port, also when the config said 0)."""
    identity: str
    """The node ID."""
    started_at: str
    """When the process started, RFC 3339 UTC."""
    version: str
    """The HyperMesh version the node runs."""
    generation: int
    """The configuration generation the node was started with."""
    web: str | None = None
    """The bound ``host:port`` of the read-only pages over TCP, when the node serves them."""
    private: str | None = None
    """The bound ``host:port`` of the private interface, when the node has one."""
    ephemeral: str | None = None
    """The bound ``host:port`` of the ephemeral interface (tunnels), when the node has one."""

    def to_json(self) -> str:
        """The file's text (sorted keys, newline)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RuntimeInfo:
        """Parse a runtime file; ``ValueError`` when it is not one."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("runtime file is not a JSON object")
        try:
            return cls(
                pid=int(data["pid"]),
                address=str(data["address"]),
                identity=str(data["identity"]),
                started_at=str(data["started_at"]),
                version=str(data["version"]),
                generation=int(data["generation"]),
                web=str(data["web"]) if data.get("web") else None,
                private=str(data["private"]) if data.get("private") else None,
                ephemeral=str(data["ephemeral"]) if data.get("ephemeral") else None,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"runtime file lacks or mistypes {exc}") from exc


def write_runtime(node_dir: Path, info: RuntimeInfo) -> Path:
    """Publish ``info`` as ``<node_dir>/runtime.json`` and remember its addresses in
    ``ports.json``; returns the path of the runtime file."""
    bound = {name: getattr(info, name) for name in INTERFACES if getattr(info, name)}
    write_atomic(node_dir / PORTS_FILE, json.dumps(bound, indent=2, sort_keys=True) + "\n")
    path = node_dir / RUNTIME_FILE
    write_atomic(path, info.to_json())
    return path


def previous_port(node_dir: Path, listen: str | None, interface: str = "address") -> int | None:
    """The port to try first for ``interface`` (one of ``INTERFACES``) when the node is told
    to listen on ``listen``: the one it last bound on that host, when ``listen`` asks for any
    port (port 0). None when there is none to prefer; the caller falls back to any free port
    when it is taken."""
    if listen is None:
        return None
    try:
        host, port = parse_address(listen)
        remembered = json.loads((node_dir / PORTS_FILE).read_text(encoding="utf-8"))
        old_host, old_port = parse_address(str(remembered[interface]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if port != 0 or old_host != host or old_port == 0:
        return None
    return old_port


def remove_runtime(node_dir: Path) -> None:
    """Withdraw ``runtime.json`` (no error when it is already gone)."""
    with contextlib.suppress(FileNotFoundError):
        (node_dir / RUNTIME_FILE).unlink()


def read_runtime(node_dir: Path) -> RuntimeInfo | None:
    """The runtime file in ``node_dir``, or None when absent or unreadable."""
    try:
        return RuntimeInfo.from_json((node_dir / RUNTIME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def with_port(listen: str, port: int | None) -> str:
    """``listen`` with its port replaced by ``port`` (unchanged when ``port`` is None)."""
    if port is None:
        return listen
    host, _ = parse_address(listen)
    return format_address(host, port)
