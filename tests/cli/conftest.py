"""What the command-line tests of several hosts share: two state directories on loopback, one a
host, whose nodes are always brought down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Hmctl


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Hmctl, Hmctl]]:
    """Host a's and host b's ``hmctl`` (their own ``--state``), brought down afterwards."""
    a, b = Hmctl(tmp_path / "state-a", tmp_path), Hmctl(tmp_path / "state-b", tmp_path)
    yield a, b
    for host in (b, a):  # never leave a node behind
        if (host.state / "state.db").exists():
            host("down", timeout=120)
