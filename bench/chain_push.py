"""Chains push, not poll (issue 19): how soon a follower takes in a peer's new block and a
witness hears a new checkpoint, and what a follower and its peer cost while nothing happens.
The poll loops the node ran before sit side by side with the push paths, in one run:

``block -> follower``
    node A appends a block; the delay until node B's replica of A's chain holds it.
    ``poll 2 s``: B runs ``ChainFollower.round`` every 2 s (what ``ChainFollower.run`` did
    before: each round asks every peer for every followed chain and the proofs).
    ``push``: ``ChainFollower.run``, watching A's head feed (``GET /chain/v1/watch``)
``checkpoint -> witness``
    node A appends a block (a new checkpoint); the delay until its witness W is asked to cosign
    it. ``poll 1 s``: ``CosignCollector.round`` every second (the node's former loop).
    ``push``: ``CosignCollector.run``, woken by the append
``idle``
    nothing appended for ``--idle`` seconds after the last event: the CPU time this process
    (A, B, W and their loops, all in it) used per second, and the requests A and W served

Each delay row gives p50, p90 and max over ``--events`` appends, each made after a random wait
(0 … the poll interval) so the appends fall at every phase of the poll, with only that row's
loop running (the idle row runs both). A, B and W are real
QUIC endpoints on 127.0.0.1 in this process's event loop, their chains real SQLite files in a
temporary folder, removed at the end. Every loop is bounded by ``--events`` and by a 10 s wait
per event.

Run by hand, not by the tests::

    .venv/bin/python bench/chain_push.py                  # 20 events, 10 s idle: about 2 min
    .venv/bin/python bench/chain_push.py --events 5 --idle 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import operator
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypermesh.chain.block import Block, Link
from hypermesh.chain.client import ask_witness
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.chain.witness import (
    Cosignature,
    CosignatureStore,
    CosignCollector,
    Witness,
)
from hypermesh.node.chain_api import add_chain_routes
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity

WAIT = 10.0
"""Seconds one event may take at most."""


class CountingRouter(Router):
    """A router that counts the requests it dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.served: Counter[str] = Counter()

    async def dispatch(self, request: Request) -> RouteResponse:
        self.served[request.path] += 1
        return await super().dispatch(request)


class HeardWitness(Witness):
    """A witness noting when each checkpoint's cosign request arrived."""

    heard: dict[int, float]
    changed: asyncio.Event

    def cosign(self, block: Block, old_size: int, proof: Any) -> Cosignature:
        self.heard.setdefault(block.seq, time.perf_counter())
        self.changed.set()
        return super().cosign(block, old_size, proof)


class Rig:
    """Node A (chain, replicas), its follower B, its witness W, in a temporary folder."""

    def __init__(self, base: Path) -> None:
        self.a = ChainStore.open(base / "a.db", Identity.generate())
        self.a.append(1, b"genesis")
        self.a_replicas = Replicas.open(base / "a-replicas.db")
        self.b = ChainStore.open(base / "b.db", Identity.generate())
        self.b_replicas = Replicas.open(base / "b-replicas.db")
        first = self.a.block(0)
        self.b.append(2, b"", [Link(first.author, first.seq, first.hash)])
        w_key = Identity.generate()
        self.w_chain = ChainStore.open(base / "w.db", w_key)
        self.w_db = Replicas.open(base / "w-replicas.db")
        self.witness = HeardWitness(self.w_db.connection, w_key)
        self.witness.heard, self.witness.changed = {}, asyncio.Event()
        self.cosignatures = CosignatureStore(self.a.connection)
        self.taken: dict[int, float] = {}
        self.changed = asyncio.Event()
        self.b_replicas.on_change(self._changed)
        self.a_router, self.w_router = CountingRouter(), CountingRouter()
        add_chain_routes(self.a_router, self.a, replicas=self.a_replicas)
        add_chain_routes(self.w_router, self.w_chain, witness=self.witness)
        self.endpoints: list[QuicEndpoint] = []

    def _changed(self, author: bytes, _: str) -> None:
        self.taken.setdefault(self.b_replicas.size(author), time.perf_counter())
        self.changed.set()

    async def start(self) -> tuple[PeerRef, PeerRef]:
        peers = []
        for identity, router in (
            (self.a.identity, self.a_router),
            (self.w_chain.identity, self.w_router),
        ):
            endpoint = await bind_endpoint(
                "127.0.0.1", 0, configuration=server_configuration(identity), router=router
            )
            self.endpoints.append(endpoint)
            peers.append(PeerRef(endpoint.address, identity.node_id))
        return peers[0], peers[1]

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
        for closing in (self.a, self.a_replicas, self.b, self.b_replicas, self.w_chain, self.w_db):
            closing.close()


async def every(interval: float, work: Callable[[], Awaitable[Any]]) -> None:
    """The former loops: ``work`` then a sleep of ``interval``, until cancelled."""
    while True:
        try:
            await work()
        except Exception as exc:  # as the node's loops did: log and go on
            print(f"  round failed: {exc!r}", file=sys.stderr)
        await asyncio.sleep(interval)


async def until(predicate: Callable[[], bool], changed: asyncio.Event) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            changed.clear()
            await changed.wait()


async def delays(rig: Rig, events: int, spread: float, witness: bool) -> list[float]:
    """Append ``events`` blocks on A, each after a random wait in 0 … ``spread``; the delay
    of each until B took it in (or W heard it, with ``witness``)."""
    found = []
    for _ in range(events):
        await asyncio.sleep(random.uniform(0.0, spread))
        started = time.perf_counter()
        made = rig.a.append(1, b"event")
        if witness:
            heard = rig.witness.heard
            await until(functools.partial(operator.contains, heard, made.seq), rig.witness.changed)
            found.append(heard[made.seq] - started)
        else:
            size = rig.a.size
            await until(functools.partial(operator.contains, rig.taken, size), rig.changed)
            found.append(rig.taken[size] - started)
    return found


async def idle(rig: Rig, seconds: float) -> tuple[float, int]:
    """CPU ms per second of this process, and requests A and W served, over ``seconds``."""
    before = sum(rig.a_router.served.values()) + sum(rig.w_router.served.values())
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    used = (time.process_time() - cpu) / (time.perf_counter() - wall) * 1000
    after = sum(rig.a_router.served.values()) + sum(rig.w_router.served.values())
    return used, after - before


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def measure(mode: str, events: int, idle_s: float, base: Path) -> dict[str, Any]:
    rig = Rig(base)
    try:
        a, w = await rig.start()
        follower = ChainFollower(rig.b, rig.b_replicas, lambda: [a], resync=3600.0)

        async def ask(peer: PeerRef, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            return await ask_witness(peer, body, identity=rig.a.identity)

        collector = CosignCollector(rig.a, rig.cosignatures, lambda: [w], 1, ask)
        if mode == "poll":
            following = functools.partial(every, 2.0, follower.round)
            cosigning = functools.partial(every, 1.0, collector.round)
        else:
            following, cosigning = follower.run, collector.run
        spread = 2.0 if mode == "poll" else 0.2
        tasks = [asyncio.create_task(following())]  # the block row: the follower alone
        await until(lambda: 1 in rig.taken, rig.changed)
        block = await delays(rig, events, spread, witness=False)
        await stop(tasks)
        tasks = [asyncio.create_task(cosigning())]  # the checkpoint row: the cosigner alone
        checkpoint = await delays(rig, events, spread / 2, witness=True)
        tasks.append(asyncio.create_task(following()))  # the idle row: both
        await asyncio.sleep(2.0)  # the follower catches up, the last event's tail
        cpu, served = await idle(rig, idle_s)
        await stop(tasks)
        return {"block": block, "checkpoint": checkpoint, "cpu": cpu, "served": served}
    finally:
        rig.close()


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"{name:<34} p50 {statistics.median(values) * 1000:8.1f} ms   "
        f"p90 {p90 * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20, help="appends per delay row")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle row")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("poll", "push"):
            base = Path(tmp) / mode
            base.mkdir()
            results[mode] = asyncio.run(measure(mode, args.events, args.idle, base))
    poll, push = results["poll"], results["push"]
    print(f"chains, poll vs push ({args.events} events a row, idle {args.idle:g} s)")
    print(row("block -> follower, poll 2 s", poll["block"]))
    print(row("block -> follower, push", push["block"]))
    print(row("checkpoint -> witness, poll 1 s", poll["checkpoint"]))
    print(row("checkpoint -> witness, push", push["checkpoint"]))
    for mode, result in (("poll", poll), ("push", push)):
        print(
            f"{'idle, ' + mode:<34} CPU {result['cpu']:6.2f} ms/s   "
            f"requests served {result['served']} in {args.idle:g} s"
        )


if __name__ == "__main__":
    main()
