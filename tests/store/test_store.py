"""The state store on a real SQLite file and on the real PostgreSQL server of this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from hypermesh.errors import LockHeldError, StateError
from hypermesh.model.resources import DesiredState, Resource, ResourceKey
from hypermesh.store import StateLock, StateStore


def node(name: str, listen: str = "127.0.0.1:0") -> Resource:
    return Resource("Node", name, {"network": "n", "listen": listen})


def test_generation_bumps_only_when_the_spec_changes(store: StateStore) -> None:
    key = ResourceKey("Node", "a")
    assert store.save_desired(DesiredState.of([node("a")])) == {key: 1}
    assert store.save_desired(DesiredState.of([node("a")])) == {key: 1}
    assert store.save_desired(DesiredState.of([node("a", "127.0.0.1:7000")])) == {key: 2}
    record = store.record(key)
    assert record is not None and record.desired is not None
    assert record.desired["spec"]["listen"] == "127.0.0.1:7000"


def test_inventory_survives_undeclaring_and_is_forgotten_on_delete(store: StateStore) -> None:
    key = ResourceKey("Node", "a")
    store.save_desired(DesiredState.of([node("a")]))
    store.mark_managed(key, {"dir": "/x"})
    store.record_applied(key, {"listen": "127.0.0.1:0"}, 1, {"dir": "/x"}, {"pid": 1})
    store.save_desired(DesiredState.of([]))
    record = store.record(key)
    assert record is not None and record.managed and not record.declared
    assert record.applied == {"listen": "127.0.0.1:0"}
    store.forget(key)
    assert store.record(key) is None


def test_undeclared_and_unmanaged_rows_disappear(store: StateStore) -> None:
    store.save_desired(DesiredState.of([node("a")]))
    store.save_desired(DesiredState.of([]))
    assert store.records() == []


def test_events_are_kept_in_order(store: StateStore) -> None:
    key = ResourceKey("Node", "a")
    for i in range(5):
        store.add_event(key, "Normal", "Test", f"event {i}")
    assert [e.message for e in store.events(key, limit=3)] == ["event 2", "event 3", "event 4"]
    store.prune_events(keep=2)
    assert [e.message for e in store.events(key)] == ["event 3", "event 4"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    opened = StateStore.open(tmp_path)
    with opened.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value = '99' WHERE key = 'schema_version'"))
    opened.close()
    with pytest.raises(StateError, match="schema version 99, newer than"):
        StateStore.open(tmp_path)


def test_second_lock_holder_is_told_who_holds_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from pathlib import Path; from hypermesh.store import StateLock;"
            f"l=StateLock(Path({str(tmp_path)!r}), 'hmctl apply'); l.acquire();"
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeldError, match=rf"locked by hmctl apply \(pid {holder.pid} on "):
            StateLock(tmp_path, "hmctl apply").acquire()
    finally:
        holder.kill()
        holder.wait()
    # kill -9 releases the lock: the kernel drops the flock with the process.
    with StateLock(tmp_path, "hmctl apply"):
        pass
