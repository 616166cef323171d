"""Fixtures of the mirror tests: a registry and two mirrors as real processes on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypermesh.node.config import Upstream
from hypermesh.transport.address import PeerRef
from tests.harness.nodes import NodeProc, start_node


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, NodeProc]]:
    nodes: dict[str, NodeProc] = {}
    try:
        port = free_port()
        nodes["registry"] = start_node(
            tmp_path, "registry", roles=("registry",), listen=f"127.0.0.1:{port}"
        )
        upstream = Upstream(PeerRef(nodes["registry"].address, nodes["registry"].identity))
        for name in ("m1", "m2"):
            nodes[name] = start_node(tmp_path, name, registry=upstream, expire=2.0)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()
