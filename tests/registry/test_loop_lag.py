"""The registry node's event loop keeps turning while the registry writes (its calls run on the
registry's writer thread), on a real SQLite file and on the real PostgreSQL server; and two
writers of one TLD on PostgreSQL never lose each other's change (the TLD row is locked).

The loop-lag test is the one place with a wall-clock bound, which the issue asks for: a probe
on the loop asks to wake every millisecond and keeps how late it woke. Each write re-signs a few
hundred record sets (a few hundred milliseconds of work). On the loop (``Worker(inline=True)``,
the old way) the probe waits out whole writes; with the writer thread it must never wait 100 ms
(the bound is generous: on this 2-core machine, loaded with other test processes, the longest
wait measured was 12-35 ms, most of it the scheduler's; p99 6-16 ms, p50 under 1 ms), nor half
the shortest write, on a machine so loaded that writes take seconds."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from typing import Any

import pytest
from sqlmodel import col, select

from hypermesh.dns import StaticZones
from hypermesh.node.registry_api import PREFIX, add_registry_routes
from hypermesh.node.router import Request, Router
from hypermesh.registry import worker
from hypermesh.registry.service import Change, Registry
from hypermesh.registry.signing import sign_request
from hypermesh.registry.tables import JournalRow
from hypermesh.registry.worker import Worker
from tests.registry.conftest import ADMIN, OWNER, fresh_postgres

BOUND = 0.100
"""The longest the loop may wait while the registry writes on its own thread (seconds)."""
RECORDS = 300
"""Record sets each write replaces (so that one write is long)."""
WRITERS, ROUNDS = 2, 3
"""Concurrent writers, and writes each."""


def _signed(path: str, body: dict[str, Any]) -> Request:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    headers |= sign_request(OWNER, "POST", path, raw, now=time.time())
    return Request("POST", path, headers=tuple(headers.items()), body=raw)


async def _probe(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - started - 0.001)


async def _lags_under_writes(registry: Registry, tld: str) -> tuple[list[float], list[float]]:
    """The probe's lags while ``WRITERS`` writers each send ``ROUNDS`` record batches of
    ``RECORDS`` record sets through the API's handler; with each write's duration."""
    registry.register(tld, OWNER.node_id, "demo")
    router = add_registry_routes(Router(), registry, StaticZones())
    lags: list[float] = []
    took: list[float] = []
    stop = asyncio.Event()

    async def writer(me: int) -> None:
        for n in range(ROUNDS):
            address = f"192.0.2.{1 + me * ROUNDS + n}"
            rrsets = [
                {"name": f"h{i}", "type": "A", "ttl": 300, "values": [address]}
                for i in range(RECORDS)
            ]
            started = time.perf_counter()
            answer = await router.dispatch(
                _signed(f"{PREFIX}/rrsets", {"tld": tld, "rrsets": rrsets})
            )
            took.append(time.perf_counter() - started)
            assert answer.status == 200, answer.body
            await asyncio.sleep(0)  # the next request arrives at another turn of the loop

    probe = asyncio.create_task(_probe(stop, lags))
    await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(WRITERS))), 120)
    finally:
        stop.set()
        await probe
    assert registry.get_tld(tld).serial == 1 + WRITERS * ROUNDS
    return lags, took


def _figures(lags: list[float], took: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (
        f"lag p50 {1e3 * ordered[len(ordered) // 2]:.2f} ms, p99 {1e3 * p99:.2f} ms, "
        f"max {1e3 * ordered[-1]:.2f} ms over {len(lags)} wake-ups; a write took "
        f"{1e3 * min(took):.0f}-{1e3 * max(took):.0f} ms"
    )


def test_the_loop_turns_while_the_registry_writes(where: str) -> None:
    on_loop = Registry.open(where, admin=ADMIN.node_id, worker=Worker(inline=True))
    try:
        before = asyncio.run(_lags_under_writes(on_loop, "onloop"))
    finally:
        on_loop.close()
    off_loop = Registry.open(where, admin=ADMIN.node_id)
    try:
        after = asyncio.run(_lags_under_writes(off_loop, "offloop"))
        assert off_loop.worker.thread_id not in (None, threading.get_ident())
    finally:
        off_loop.close()
    print(f"\non the loop (before): {_figures(*before)}\nwriter thread (now): {_figures(*after)}")
    # The load is heavy enough to show: on the loop, the probe waited out whole writes ...
    assert max(before[0]) > BOUND
    # ... and with the writer thread it never waits long, though each write is as long: never
    # BOUND, nor half the shortest write when the machine is so loaded that writes take seconds
    # (a CI run beside a 200-node benchmark: writes 0.5-1.2 s, the probe's longest wait 104 ms)
    assert min(after[1]) > BOUND
    assert max(after[0]) < max(BOUND, min(after[1]) / 2), _figures(*after)


# -- two writers of one TLD on PostgreSQL ----------------------------------------------------


def test_concurrent_patches_on_postgresql_lose_no_update() -> None:
    """Two registries on one PostgreSQL database (two nodes, or a node and an operator's
    script) patch one TLD at once: each write reads the TLD's row ``FOR UPDATE``, so the
    second waits for the first and every change gets a serial and a journal entry of its own.
    Without the lock both would read the same serial and one increment would be lost."""
    url = fresh_postgres()
    first = Registry.open(url, admin=ADMIN.node_id)
    second = Registry.open(url, admin=ADMIN.node_id)
    first.register("acme", OWNER.node_id, "demo")
    each = 12
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def patches(registry: Registry, who: str) -> None:
        try:
            start.wait(timeout=10)
            for n in range(each):
                change = Change(f"{who}{n}", "A", "REPLACE", 300, ("192.0.2.1",))
                registry.patch("acme", [change], signer=OWNER.node_id)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [
        threading.Thread(target=patches, args=(first, "a")),
        threading.Thread(target=patches, args=(second, "b")),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert failures == []
        assert first.get_tld("acme").serial == 1 + 2 * each
        names = {r.name for r in first.rrsets("acme")}
        assert names >= {f"{w}{n}" for w in "ab" for n in range(each)}
        entries = first.journal_since("acme", 1)
        assert entries is not None and len(entries) == 2 * each  # one chain, no gap, no twin
        with first.transaction() as session:
            serials = session.exec(
                select(JournalRow.to_serial).where(col(JournalRow.tld) == "acme")
            ).all()
        assert sorted(serials) == list(range(2, 2 + 2 * each))
    finally:
        first.close()
        second.close()


@pytest.fixture(autouse=True)
def _restore_the_interpreter() -> Any:
    """The writer lowers the interpreter's switch interval and freezes the objects made before
    it (``gc.freeze``) for the process: undo both for the tests that follow."""
    saved = sys.getswitchinterval()
    yield
    sys.setswitchinterval(saved)
    gc.unfreeze()
    worker._frozen = False  # the next test's writer freezes anew
