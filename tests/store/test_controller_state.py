"""The reconcile loop's row in the state store, and the upgrade of a store made before it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from hypermesh.errors import StateError
from hypermesh.store import StateStore
from hypermesh.store.tables import SCHEMA_VERSION


def test_suspend_and_status_are_kept_apart(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    assert not store.controller().suspended and store.controller().status == {}
    assert store.set_suspended(True, "maintenance")
    assert not store.set_suspended(True, "maintenance")  # already so
    store.set_controller_status({"lastAppliedRevision": "sha256:x"})
    state = store.controller()
    # The loop's write left the suspension alone.
    assert state.suspended and state.reason == "maintenance" and state.suspended_at is not None
    assert state.status == {"lastAppliedRevision": "sha256:x"}
    assert store.set_suspended(False)
    state = store.controller()
    assert not state.suspended and state.reason == "" and state.suspended_at is None
    assert state.status == {"lastAppliedRevision": "sha256:x"}
    store.close()


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE controller"))
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    store.close()
    upgraded = StateStore.open(tmp_path)
    assert upgraded.schema_version() == SCHEMA_VERSION == 2
    assert upgraded.set_suspended(True)
    upgraded.close()


def test_a_newer_store_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE controller"))
        conn.execute(text("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    store.close()
    with pytest.raises(StateError, match="schema version 99, newer than"):
        StateStore.open(tmp_path)
    # The refusal created no table of this version either.
    with sqlite3.connect(tmp_path / "state.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "controller" not in tables
