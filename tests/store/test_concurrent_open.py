"""Several hmctl processes opening one new state store at the same moment (a controller starting
while `hmctl get` runs) all get a working store: none fails on a table another one just made."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

from hypermesh.store.store import StateStore

ROUNDS = 6
PROCESSES = 4


def _open(state_dir: str, start: Event) -> None:
    start.wait(10)
    store = StateStore.open(Path(state_dir))
    try:
        assert store.schema_version() > 0
    finally:
        store.close()


def test_new_store_opened_by_several_processes_at_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        state_dir = tmp_path / f"state{round_}"
        state_dir.mkdir()
        start = context.Event()
        workers = [
            context.Process(target=_open, args=(str(state_dir), start)) for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        start.set()
        for worker in workers:
            worker.join(30)
        assert [w.exitcode for w in workers] == [0] * PROCESSES, f"round {round_}"
