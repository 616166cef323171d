"""The state store of these tests, on a real SQLite file and on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from hypermesh.store import StateStore
from hypermesh.store.tables import SCHEMA_VERSION
from tests.conftest import require_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        opened = StateStore.open(tmp_path / "state")
        yield opened
        opened.close()
        return
    opened = StateStore.open(tmp_path, url=require_postgres())
    with opened.engine.begin() as conn:
        for table in ("events", "resources", "meta"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text(f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}')"))
    yield opened
    opened.close()
