"""Push, not poll (issue 19): each former polling path of the chains is woken by a push.

Real QUIC endpoints on loopback in the test's own event loop, real SQLite chains:

- a block appended on node A is taken in by its follower B, told by A's head feed
  (``GET /chain/v1/watch``), not found by a timer;
- a new checkpoint on A gets a cosignature request to its witness W as soon as it is durable;
- ``ChainClient.heads`` yields the head now, then each new one;
- a follower (and a cosign collector) left alone with nothing changing makes no exchange at all,
  even with the feed's heartbeats coming every half second.

The delays are printed (p50 and max over 20 events). The issue asks for a wake within 100 ms;
the assertion is a generous 1 s per event, since the two cores of the machine running the
tests are shared with other test processes (the printed figures are the measure; the former
paths waited up to their poll interval, 2 s for the follower and 1 s for the cosigner).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hypermesh.chain.block import Block, Link
from hypermesh.chain.client import ChainClient, Head, ask_witness
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.chain.witness import Cosignature, CosignatureStore, CosignCollector, Witness
from hypermesh.node import chain_api
from hypermesh.node.chain_api import add_chain_routes
from hypermesh.node.router import Router
from hypermesh.node.server import Gate, QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.transport.address import PeerRef
from hypermesh.transport.feeds import NoFeed
from hypermesh.transport.identity import Identity

EVENTS = 20
WAIT = 10.0
"""Seconds any one wait of the tests may take at most."""
BOUND = 1.0
"""Seconds each push may take at most here (the goal is 0.1 s; see the module's docstring)."""


@contextlib.asynccontextmanager
async def serving(
    identity: Identity, routes: Callable[[Router], object], gate: Gate | None = None
) -> AsyncIterator[tuple[QuicEndpoint, str]]:
    """Node ``identity``'s endpoint with ``routes`` on 127.0.0.1 (behind ``gate``), in this
    loop; (endpoint, ID)."""
    router = Router()
    routes(router)
    endpoint = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(identity), router=router, gate=gate
    )
    try:
        yield endpoint, identity.node_id
    finally:
        endpoint.close()


@contextlib.asynccontextmanager
async def b_following(
    chains: Chains, endpoint: QuicEndpoint, peer_id: str, refused: Noted | None = None
) -> AsyncIterator[ChainFollower]:
    """B's follower running, the node at ``endpoint`` its one peer (``refused``: where it notes
    the peers that refuse it); stopped at the end."""
    follower = ChainFollower(
        chains.b, chains.b_replicas, lambda: [PeerRef(endpoint.address, peer_id)]
    )
    if refused is not None:
        follower.refused = refused
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        await stopped(task)


async def until(predicate: Callable[[], bool], changed: asyncio.Event, what: str) -> None:
    """Wait (at most ``WAIT`` s) for ``predicate``, looked at each time ``changed`` is set."""
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        raise AssertionError(f"not within {WAIT:g} s: {what}") from None


def report(name: str, delays: list[float]) -> None:
    print(
        f"\n{name}: p50 {statistics.median(delays) * 1000:.1f} ms, "
        f"max {max(delays) * 1000:.1f} ms over {len(delays)} events"
    )
    assert len(delays) == EVENTS
    assert max(delays) < BOUND, delays


class Chains:
    """Node A (its chain, replicas, witness, the chain API) and node B following A."""

    def __init__(self, base: Path) -> None:
        self.a = ChainStore.open(base / "a.db", Identity.generate())
        self.a_replicas = Replicas.open(base / "a-replicas.db")
        self.a.append(1, b"genesis")
        self.b = ChainStore.open(base / "b.db", Identity.generate())
        self.b_replicas = Replicas.open(base / "b-replicas.db")
        self.taken: dict[int, float] = {}
        """Size of B's replica of A -> when it was reached (perf_counter)."""
        self.changed = asyncio.Event()
        self.b_replicas.on_change(self._changed)

    def _changed(self, author: bytes, _: str) -> None:
        self.taken.setdefault(self.b_replicas.size(author), time.perf_counter())
        self.changed.set()

    def routes(self, router: Router) -> None:
        add_chain_routes(router, self.a, replicas=self.a_replicas)

    def link_b_to_a(self) -> None:
        first = self.a.block(0)
        self.b.append(2, b"", [Link(first.author, first.seq, first.hash)])

    def close(self) -> None:
        for closing in (self.a, self.a_replicas, self.b, self.b_replicas):
            closing.close()


async def follow(chains: Chains, address: str, node_id: str) -> tuple[ChainFollower, Any]:
    chains.link_b_to_a()
    follower = ChainFollower(
        chains.b, chains.b_replicas, lambda: [PeerRef(address, node_id)], resync=3600.0
    )
    task = asyncio.create_task(follower.run())
    await until(lambda: 1 in chains.taken, chains.changed, "B took A's first block in")
    return follower, task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_a_new_block_on_a_is_taken_in_by_its_follower_b_at_once(tmp_path: Path) -> None:
    chains = Chains(tmp_path)
    author = chains.a.identity.public_key_bytes

    async def main() -> list[float]:
        async with serving(chains.a.identity, chains.routes) as (endpoint, node_id):
            _, task = await follow(chains, endpoint.address, node_id)
            taken, delays = chains.taken, []
            for n in range(EVENTS):
                started = time.perf_counter()
                chains.a.append(1, f"block {n}".encode())
                size = chains.a.size
                await until(
                    functools.partial(operator.contains, taken, size),
                    chains.changed,
                    f"B took block {size - 1}",
                )
                delays.append(taken[size] - started)
            await stopped(task)
            assert chains.b_replicas.size(author) == EVENTS + 1
            return delays

    try:
        report("new block on A -> taken in by B (push)", asyncio.run(main()))
    finally:
        chains.close()


def test_an_idle_follower_makes_no_exchange_while_heartbeats_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain_api, "WATCH_HEARTBEAT", 0.5)
    chains = Chains(tmp_path)

    async def main() -> tuple[int, int, int, int]:
        async with serving(chains.a.identity, chains.routes) as (endpoint, node_id):
            follower, task = await follow(chains, endpoint.address, node_id)
            await asyncio.sleep(0.5)  # the first sync's tail settles
            syncs, wakes = follower.syncs, follower.wakes
            await asyncio.sleep(3.0)  # six heartbeats on the feed, nothing else
            idle = (follower.syncs - syncs, follower.wakes - wakes)
            chains.a.append(1, b"after the idle time")
            await until(lambda: 2 in chains.taken, chains.changed, "B took the block in")
            busy = (follower.syncs - syncs, follower.wakes - wakes)
            await stopped(task)
            return (*idle, *busy)

    try:
        idle_syncs, idle_wakes, syncs, wakes = asyncio.run(main())
    finally:
        chains.close()
    print(
        f"\nidle 3 s: {idle_syncs} exchanges, {idle_wakes} wakes; then one block: {syncs}, {wakes}"
    )
    assert (idle_syncs, idle_wakes) == (0, 0)
    assert syncs == 1 and wakes == 0  # the block woke one exchange with A, and no timer


def cosigned(cosignatures: CosignatureStore, size: int) -> bool:
    return bool(cosignatures.for_size(size))


class HeardWitness(Witness):
    """A witness that notes when each cosign request arrived."""

    heard: dict[int, float]
    changed: asyncio.Event

    def cosign(self, block: Block, old_size: int, proof: Sequence[bytes]) -> Cosignature:
        self.heard[block.seq] = time.perf_counter()
        self.changed.set()
        return super().cosign(block, old_size, proof)


def test_a_new_checkpoint_gets_a_cosign_request_to_the_witness_at_once(tmp_path: Path) -> None:
    author = ChainStore.open(tmp_path / "a.db", Identity.generate())
    witness_key = Identity.generate()
    witness_db = Replicas.open(tmp_path / "w.db")
    witness = HeardWitness(witness_db.connection, witness_key)
    witness.heard, witness.changed = {}, asyncio.Event()
    store = ChainStore.open(tmp_path / "w-chain.db", witness_key)
    cosignatures = CosignatureStore(author.connection)

    def routes(router: Router) -> None:
        add_chain_routes(router, store, witness=witness)

    async def main() -> tuple[list[float], int]:
        async with serving(witness_key, routes) as (endpoint, node_id):
            answered = asyncio.Event()

            async def ask(peer: PeerRef, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                try:
                    return await ask_witness(peer, body, identity=author.identity)
                finally:
                    answered.set()

            peer = PeerRef(endpoint.address, node_id)
            collector = CosignCollector(author, cosignatures, lambda: [peer], 1, ask)
            task = asyncio.create_task(collector.run())
            delays = []
            for n in range(EVENTS):
                started = time.perf_counter()
                author.append(1, f"checkpoint {n}".encode())
                seq = author.size - 1
                heard = functools.partial(operator.contains, witness.heard, seq)
                await until(heard, witness.changed, f"W heard {seq}")
                delays.append(witness.heard[seq] - started)
                await until(
                    functools.partial(cosigned, cosignatures, seq), answered, f"{seq} cosigned"
                )
            rounds = collector.rounds
            await asyncio.sleep(2.5)  # nothing new: no round, no request
            assert collector.rounds == rounds and len(witness.heard) == EVENTS
            await stopped(task)
        return delays, rounds

    try:
        delays, rounds = asyncio.run(main())
    finally:
        author.close()
        store.close()
        witness_db.close()
    report("new checkpoint on A -> cosign request at W (push)", delays)
    assert rounds == EVENTS  # one round per checkpoint (the first runs after the first append)


def test_heads_yields_the_head_now_then_each_new_one(tmp_path: Path) -> None:
    chains = Chains(tmp_path)

    async def main() -> list[Head]:
        async with serving(chains.a.identity, chains.routes) as (endpoint, node_id):
            client = ChainClient(endpoint.address, node_id, caller=None)
            heard: list[Head] = []
            async with asyncio.timeout(10):
                async for head in client.heads():
                    heard.append(head)
                    if len(heard) == 3:
                        break
                    chains.a.append(1, f"block {len(heard)}".encode())
            return heard

    try:
        heard = asyncio.run(main())
        assert [h.size for h in heard] == [1, 2, 3]
        assert {h.author for h in heard} == {chains.a.identity.node_id}
        assert heard[-1].root == chains.a.root()
    finally:
        chains.close()


def test_a_peer_that_starts_late_then_moves_is_watched_where_it_answers(tmp_path: Path) -> None:
    """B starts before A runs (its configured peer is missing: B looks again after ``LOOK``
    waits), then A restarts on another port (its feed closes: B watches it anew there)."""
    chains = Chains(tmp_path)
    chains.link_b_to_a()
    where: list[PeerRef] = []
    follower = ChainFollower(
        chains.b, chains.b_replicas, lambda: where, resync=3600.0, incomplete=lambda: not where
    )

    async def main() -> None:
        task = asyncio.create_task(follower.run())
        await asyncio.sleep(0.3)
        async with serving(chains.a.identity, chains.routes) as (endpoint, node_id):
            where.append(PeerRef(endpoint.address, node_id))  # A's runtime file appears
            await until(lambda: 1 in chains.taken, chains.changed, "B took A's block in")
        where.clear()  # A stopped: its feed was closed, and its runtime file is gone
        async with serving(chains.a.identity, chains.routes) as (endpoint, node_id):
            where.append(PeerRef(endpoint.address, node_id))
            chains.a.append(1, b"after the move")
            await until(lambda: 2 in chains.taken, chains.changed, "B took the block in")
        await stopped(task)

    try:
        asyncio.run(main())
    finally:
        chains.close()
    assert follower.wakes >= 2  # looked again while A was missing


class Noted(dict[str, str]):
    """A follower's ``refused``, setting ``changed`` at every change."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.changed.set()

    def pop(self, key: str, default: Any = None) -> Any:
        self.changed.set()
        return super().pop(key, default)


def test_a_refusal_of_the_watch_is_reported_until_the_peer_stops_refusing(tmp_path: Path) -> None:
    """A peer's gate refusing this node's key (403) makes ``refused`` say so (the node is not
    Ready); once the peer stops refusing, the next watch clears it, even when the peer then
    serves no feed at all (404: unhelpful, not refusing)."""
    chains = Chains(tmp_path)
    chains.link_b_to_a()  # B follows a chain: it has a reason to watch its peers
    peer = Identity.generate()
    refusing = {chains.b.identity.node_id}
    callers: list[str | None] = []

    def gate(caller: str | None, _address: str, _operation: str) -> tuple[int, str]:
        callers.append(caller)
        return (403, "not you") if caller in refusing else (0, "")

    async def main() -> None:
        refused = Noted()
        async with (
            serving(peer, lambda _: None, gate) as (endpoint, peer_id),
            b_following(chains, endpoint, peer_id, refused),
        ):
            await until(lambda: peer.node_id in refused, refused.changed, "the refusal")
            assert "not you" in refused[peer.node_id]
            refusing.clear()
            await until(lambda: not refused, refused.changed, "the refusal cleared")

    try:
        asyncio.run(main())
    finally:
        chains.close()
    assert set(callers) == {chains.b.identity.node_id}  # the watch proves the node's key


def test_a_node_that_follows_no_chain_watches_no_peer_until_its_first_link(
    tmp_path: Path,
) -> None:
    """B links to nothing: it opens no feed to its peer (in a network of n new nodes, n(n -
    1) feeds held for nothing). Its first link starts the watch, and A's chain comes in."""
    chains = Chains(tmp_path)
    peer = chains.a.identity
    callers: list[str | None] = []

    def gate(caller: str | None, _address: str, _operation: str) -> tuple[int, str]:
        callers.append(caller)
        return (0, "")

    async def main() -> None:
        async with (
            serving(peer, chains.routes, gate) as (endpoint, peer_id),
            b_following(chains, endpoint, peer_id) as follower,
        ):
            await asyncio.sleep(1.0)  # time enough for a watch to begin (it takes a few ms)
            assert callers == [] and follower.syncs == 0
            chains.link_b_to_a()
            await until(
                lambda: chains.b_replicas.size(peer.public_key_bytes) == 1,
                chains.changed,
                "A's block in B's replica",
            )
            assert set(callers) == {chains.b.identity.node_id}

    try:
        asyncio.run(main())
    finally:
        chains.close()


def test_a_block_reaches_a_node_that_follows_the_author_only_through_a_replica(
    tmp_path: Path,
) -> None:
    """C peers with B alone; B follows A. A block on A is announced by A's feed to B, which
    takes it in and announces its replica's growth (``{"replica": …}``) to C, which fetches it
    from B's replica: pushed over two hops, polled nowhere."""
    chains = Chains(tmp_path)
    c_store = ChainStore.open(tmp_path / "c.db", Identity.generate())
    c_replicas = Replicas.open(tmp_path / "c-replicas.db")
    first = chains.a.block(0)
    c_store.append(2, b"", [Link(first.author, first.seq, first.hash)])
    author = chains.a.identity.public_key_bytes
    changed = asyncio.Event()
    c_replicas.on_change(lambda _a, _w: changed.set())

    def b_routes(router: Router) -> None:
        add_chain_routes(router, chains.b, replicas=chains.b_replicas)

    def held(size: int) -> bool:
        return c_replicas.size(author) == size

    async def main() -> list[float]:
        async with (
            serving(chains.a.identity, chains.routes) as (a, a_id),
            serving(chains.b.identity, b_routes) as (b, b_id),
        ):
            _, b_task = await follow(chains, a.address, a_id)
            c = ChainFollower(c_store, c_replicas, lambda: [PeerRef(b.address, b_id)])
            c_task = asyncio.create_task(c.run())
            await until(lambda: c_replicas.size(author) == 1, changed, "C took block 0 from B")
            delays = []
            for n in range(5):
                started = time.perf_counter()
                chains.a.append(1, f"block {n}".encode())
                size = chains.a.size
                await until(functools.partial(held, size), changed, f"C holds {size}")
                delays.append(time.perf_counter() - started)
            await stopped(c_task)
            await stopped(b_task)
            return delays

    try:
        delays = asyncio.run(main())
    finally:
        chains.close()
        c_store.close()
        c_replicas.close()
    print(f"\nA -> B -> C (a replica relayed): p50 {statistics.median(delays) * 1000:.1f} ms")
    assert max(delays) < BOUND, delays


def test_heads_of_a_node_without_the_feed_says_so() -> None:
    """A node that serves no head feed (404) ends ``heads`` with ``NoFeed`` at once, so that
    a caller can fall back to asking for the head."""

    async def main() -> None:
        async with serving(Identity.generate(), lambda _router: None) as (endpoint, node_id):
            client = ChainClient(endpoint.address, node_id, caller=None)
            async with asyncio.timeout(WAIT):
                with pytest.raises(NoFeed, match="404"):
                    async for _ in client.heads():
                        raise AssertionError("a head from a node without the feed")

    asyncio.run(main())
