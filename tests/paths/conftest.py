"""Fixtures for the paths tests: node processes stopped at teardown whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.node_process import NodeStarter


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodeStarter]:
    starter = NodeStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.stop_all()
