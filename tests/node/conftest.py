"""Fixtures for the node tests: node processes (:mod:`tests.harness.node_process`) stopped at
teardown whatever happened."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness.node_process import NodeStarter, RunningNode


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One node for the tests that only query it."""
    starter = NodeStarter(tmp_path_factory.mktemp("shared"))
    try:
        yield starter.start("shared")
    finally:
        starter.stop_all()


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)
