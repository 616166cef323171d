"""The registry under test: a real SQLite file, and the real PostgreSQL server of this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hypermesh.registry.service import Registry
from hypermesh.transport.identity import Identity
from tests.conftest import require_postgres
from tests.harness.registry_db import emptied

NOW = 1_800_000_000.0
ADMIN = Identity.generate()
OWNER = Identity.generate()
OTHER = Identity.generate()


def fresh_postgres() -> str:
    """The test database, with every registry row removed (the schema version kept)."""
    return emptied(require_postgres())


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh registry lives: a SQLite file path or the PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "registry.db")
    return fresh_postgres()


@pytest.fixture
def registry(where: str) -> Iterator[Registry]:
    opened = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW)
    yield opened
    opened.close()
