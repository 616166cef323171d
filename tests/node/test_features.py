"""A node is its features: a start that fails part-way closes what it had opened, in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import Feature, NodeContext
from hypermesh.node.features import FEATURES
from hypermesh.node.process import serve
from hypermesh.node.runtime import RUNTIME_FILE
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import load_or_create_identity


class Broken(RuntimeError):
    """What the failing feature raises."""


class Recorder:
    """A feature that notes what it saw when it opened and when it was closed."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal
        self.public: str | None = None

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        self.public = node.addresses.public
        self.journal.append(f"open {self.name}")
        stack.callback(self.journal.append, f"close {self.name}")


class Failing:
    """A feature that cannot open."""

    name = "failing"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        raise Broken("this feature cannot open")


def _registry_config(tmp_path: Path) -> NodeConfig:
    node_dir = tmp_path / "registry"
    node_dir.mkdir(mode=0o700)
    return NodeConfig(
        name="registry",
        network="demo",
        listen="127.0.0.1:0",
        prefer_port=None,
        interfaces=("public", "private"),
        roles=("registry",),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        private_listen="127.0.0.1:0",
    )


def test_a_feature_failing_to_open_closes_the_ones_opened_before_it(tmp_path: Path) -> None:
    config = _registry_config(tmp_path)
    journal: list[str] = []
    first, after_interfaces, never = (Recorder(n, journal) for n in ("first", "late", "never"))
    features: list[Feature] = [first, *FEATURES, after_interfaces, Failing(), never]

    with pytest.raises(Broken):
        asyncio.run(serve(config, load_or_create_identity(Path(config.node_dir)), features))

    assert journal == ["open first", "open late", "close late", "close first"]
    assert after_interfaces.public is not None  # the public interface had been bound
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(parse_address(after_interfaces.public))  # and its port is free again
    assert not (Path(config.node_dir) / RUNTIME_FILE).exists()
