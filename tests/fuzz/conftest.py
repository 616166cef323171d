"""The fuzz suite's one node, closed when the session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .node import NODES


@pytest.fixture(scope="session", autouse=True)
def _close_the_fuzz_node() -> Iterator[None]:
    yield
    NODES.close()
