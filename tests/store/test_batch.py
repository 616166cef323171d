"""Batches of the state store (one transaction for several writes), on a real SQLite file and on
the real PostgreSQL server of this machine: all of a batch, or none of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from hypermesh.errors import StateError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.store import StateStore

A, B = ResourceKey("Node", "a"), ResourceKey("Node", "b")


def node(name: str, listen: str = "127.0.0.1:0") -> Resource:
    return Resource("Node", name, {"network": "n", "listen": listen})


def seeded(store: StateStore) -> tuple[object, object]:
    """a applied and managed, b declared only; what the store holds then (rows and events)."""
    store.save_desired(DesiredState.of([node("a"), node("b")]))
    store.mark_managed(A, {"dir": "/a"})
    store.record_applied(A, {"listen": "127.0.0.1:0"}, 1, {"dir": "/a"}, {"pid": 1})
    store.add_event(A, "Normal", "Created", "before")
    return store.records(), store.events(limit=100)


@pytest.fixture
def refusing(store: StateStore) -> Iterator[StateStore]:
    """The store, its database refusing any event whose reason is ``Boom`` (a trigger), so that
    a batch fails at its commit, after its other writes went to the database."""
    postgres = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as conn:
        if postgres:
            conn.execute(
                text(
                    "CREATE OR REPLACE FUNCTION hm_test_boom() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'boom'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(text("DROP TRIGGER IF EXISTS hm_test_boom ON events"))
            conn.execute(
                text(
                    "CREATE TRIGGER hm_test_boom BEFORE INSERT ON events FOR EACH ROW "
                    "WHEN (NEW.reason = 'Boom') EXECUTE FUNCTION hm_test_boom()"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER hm_test_boom BEFORE INSERT ON events "
                    "WHEN NEW.reason = 'Boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
                )
            )
    try:
        yield store
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS hm_test_boom" + (" ON events" * postgres)))
            if postgres:
                conn.execute(text("DROP FUNCTION IF EXISTS hm_test_boom()"))


def test_a_batch_whose_commit_fails_leaves_the_store_as_it_was(refusing: StateStore) -> None:
    rows, events = seeded(refusing)
    with pytest.raises(StateError, match="boom"), refusing.batch():
        refusing.record_applied(A, {"listen": "127.0.0.1:7000"}, 2, {"dir": "/a2"}, {"pid": 2})
        refusing.set_status(B, {"pid": 3})
        refusing.mark_managed(ResourceKey("Node", "c"), {"dir": "/c"})
        refusing.add_event(A, "Normal", "Updated", "in the batch")
        refusing.add_event(A, "Warning", "Boom", "refused by the database")
    assert refusing.records() == rows
    assert refusing.events(limit=100) == events
    # The store goes on: the next write (the next apply's) is taken.
    refusing.set_status(B, {"pid": 4})
    record = refusing.record(B)
    assert record is not None and record.status == {"pid": 4}


def test_a_batch_that_raises_inside_leaves_the_store_as_it_was(store: StateStore) -> None:
    rows, events = seeded(store)
    with pytest.raises(RuntimeError, match="driver"), store.batch(durable=False):
        store.set_status(A, {"pid": 9})
        store.add_event(A, "Normal", "Observed", "in the batch")
        store.forget(A)
        raise RuntimeError("a driver failed in the middle")
    assert store.records() == rows
    assert store.events(limit=100) == events


def test_a_batch_commits_all_its_writes_and_reads_them_inside(store: StateStore) -> None:
    seeded(store)
    with store.batch(durable=False):
        store.set_status(A, {"pid": 5})
        store.set_status(B, {"pid": 6})
        with store.batch():  # a batch inside a batch joins it
            store.add_event(B, "Normal", "Observed", "in the batch")
        inside = store.record(A)
        assert inside is not None and inside.status == {"pid": 5}
    statuses = {r.key: r.status for r in store.records()}
    assert statuses == {A: {"pid": 5}, B: {"pid": 6}}
    assert [e.message for e in store.events(B)] == ["in the batch"]
