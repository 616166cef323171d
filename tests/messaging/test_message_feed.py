"""The message feed over a real QUIC socket: ``GET /message/v1/watch`` pushes each message the
moment it is stored, to the node's own key only; ``Mesh.messages`` and a ``nexus run`` message
handler wait on it instead of polling the inbox, and a ``nexus run`` block handler waits on the
chain's head feed (``ChainClient.heads``) instead of reading the head every 0.5 s.

The issue asks that a message (or block) reach its reader within 100 ms. Each delay is printed
from the delivery's start (a QUIC handshake and the receipt appended, printed too: on a quiet
machine about 7 ms in all), and the time from the node's answer (the message stored and
announced) to the reader seeing it is asserted under a generous 1 s: the test processes share
two cores with others, and loaded ones stretch the delivery itself to hundreds of ms. Only a
push can be that quick here: ``Mesh.messages`` is set to poll every 30 s, and ``nexus run`` no
longer polls at all."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.dns.source import StaticZones
from hypermesh.messaging.envelope import load_or_create_message_key
from hypermesh.messaging.inbox import Mailbox
from hypermesh.nexus.compiler import compile_source
from hypermesh.nexus.runtime import Runner
from hypermesh.node.chain_api import add_chain_routes
from hypermesh.node.message_api import SEALED, add_message_routes
from hypermesh.registry.signing import sign_request
from hypermesh.sdk import Mesh, MeshNode, PeerRef
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import ServerThread
from tests.messaging.test_message_api import ALICE, BOB, Node

WATCH = "/message/v1/watch"
BOUND = 1.0
"""Seconds a pushed message may take here (the goal is 100 ms; see the module's docstring)."""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    chain = ChainStore.open(tmp_path / "chain.db", BOB)
    mailbox = Mailbox.open(tmp_path / "messages.db")
    key = load_or_create_message_key(tmp_path)

    def routes(router: Any) -> None:
        add_message_routes(router, BOB, key, mailbox, GroupAppender(chain))
        add_chain_routes(router, chain)  # each message's receipt is a block on this chain

    thread = ServerThread(StaticZones(), routes=routes)
    server = thread.start()
    try:
        yield Node(server.address, server.identity.node_id, chain, mailbox, key)
    finally:
        thread.stop()
        chain.close()
        mailbox.close()


async def deliver(node: Node, text: bytes) -> Delivery:
    """Deliver a message from ALICE; returns when the node had stored it (perf_counter): it
    answers once the message is stored and announced, so a reader may see it a little before.
    The delays below are counted from then: the delivery itself (a QUIC handshake, the receipt
    appended to the chain) is not what is measured, and takes longer when the machine is
    loaded."""
    began = time.perf_counter()
    status, error = await node._request(
        "POST", "/message/v1/inbox", node.sealed_from(ALICE, text), {"content-type": SEALED}
    )
    assert status == 201, error
    return Delivery(began, time.perf_counter())


@dataclass(frozen=True)
class Delivery:
    began: float
    stored: float

    def seen(self, what: str, at: float) -> float:
        """Print when ``what`` was seen; returns the seconds from the answer (0 if before)."""
        took = (self.stored - self.began) * 1000
        print(f"{what} {(at - self.began) * 1000:.1f} ms after the delivery began ({took:.1f} ms)")
        return max(0.0, at - self.stored)


async def watch_status(node: Node, signer: Identity | None) -> int:
    headers = sign_request(signer, "GET", WATCH, b"", now=time.time()) if signer else {}
    async with (
        asyncio.timeout(10),
        connect_h3(node.address, expected_id=node.pin, identity=signer) as h3,
        h3.subscribe("GET", WATCH, headers=list(headers.items())) as (status, _, _pieces),
    ):
        return status


def test_the_feed_pushes_each_message_to_the_owner_as_it_is_stored(node: Node) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], float]:
        headers = sign_request(BOB, "GET", WATCH, b"", now=time.time())
        async with (
            asyncio.timeout(60),
            connect_h3(node.address, expected_id=node.pin, identity=BOB) as h3,
            h3.subscribe("GET", WATCH, headers=list(headers.items())) as (status, _, pieces),
        ):
            assert status == 200
            lines: list[dict[str, Any]] = []
            buffer = b""
            started: Delivery | None = None
            async for piece in pieces:
                buffer += piece
                *complete, buffer = buffer.split(b"\n")
                lines += [json.loads(line) for line in complete]
                if len(lines) == 1 and started is None:
                    started = await deliver(node, b"pushed")
                if len(lines) == 2 and started is not None:
                    return lines, started.seen(f"GET {WATCH}: announced", time.perf_counter())
        raise AssertionError("the feed ended")

    lines, delay = asyncio.run(scenario())
    assert lines[0] == {"received": 0}
    assert lines[1] == {"message": node.mailbox.inbox()[0]}
    assert lines[1]["message"]["text"] == "pushed" and lines[1]["message"]["from"] == ALICE.node_id
    assert delay < BOUND


def test_only_the_node_itself_may_watch_its_messages(node: Node) -> None:
    assert asyncio.run(watch_status(node, None)) == 401
    assert asyncio.run(watch_status(node, ALICE)) == 403
    assert asyncio.run(watch_status(node, BOB)) == 200


def test_mesh_messages_sees_a_message_pushed(node: Node) -> None:
    mesh = Mesh(BOB, node=PeerRef(node.address, node.pin))

    async def scenario() -> tuple[list[str], float]:
        await deliver(node, b"before")  # in the inbox already: left out with since_now
        seen: list[str] = []
        arrived = asyncio.Event()

        async def read() -> None:
            async for message in mesh.messages(poll=30, since_now=True):
                seen.append(str(message["text"]))
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            async with asyncio.timeout(60):
                # A warm-up sent before the iterator looked at the inbox counts as sent before
                # it started (since_now): warm-ups go until one comes through, the feed open.
                for count in range(1, 31):
                    await deliver(node, b"warm-up %d" % count)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), 2)
                        break
                started = await deliver(node, b"measured")
                while "measured" not in seen:  # a late warm-up may come first
                    arrived.clear()
                    await arrived.wait()
                return seen, started.seen("Mesh.messages: seen", time.perf_counter())
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    seen, delay = asyncio.run(scenario())
    assert seen[-1] == "measured" and len(seen) >= 2, seen
    assert all(text.startswith("warm-up ") for text in seen[:-1]), seen  # never "before"
    assert delay < BOUND


def handler_delay(node: Node, folder: Path, program: str, expected: Callable[[int], str]) -> float:
    """Seconds from a message stored by BOB until ``program``'s one handler, run by ``nexus run``'s
    runner as "bob", logs ``expected(seq)`` (``seq``: the delivery's receipt block). Deliveries
    are repeated until the handler runs once, so its feed is open before the measured one."""
    compiled = compile_source(program, str(folder / "h.nx"), validate=False)
    assert len(compiled.handlers) == 1, compiled.problems
    times: dict[str, float] = {}
    logged = asyncio.Event()
    bob = MeshNode(node.address, node.pin, name="bob")

    class AtBob(Runner):
        def _mesh(self, name: str) -> Mesh:
            assert name == "bob"
            return Mesh(BOB, node=bob, directory={"bob": bob})

    def out(line: str) -> None:
        times.setdefault(line, time.perf_counter())
        logged.set()

    async def scenario() -> float:
        running = asyncio.create_task(AtBob(compiled, folder, out=out).run())
        try:
            async with asyncio.timeout(60):
                sent = 0
                while len(times) < 2:  # "…: running", then the handler's first line
                    sent += 1
                    await deliver(node, f"warm-up {sent}".encode())
                    await asyncio.sleep(0.2)
                started = await deliver(node, b"measured")
                line = expected(node.chain.size - 1)  # the receipt: the last block appended
                while line not in times:
                    logged.clear()
                    await logged.wait()
                return started.seen(f"nexus run: {line!r}", times[line])
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    delay = asyncio.run(scenario())
    assert not [line for line in times if "failed" in line], times
    return delay


def test_a_nexus_message_handler_runs_on_a_message_pushed(node: Node, tmp_path: Path) -> None:
    program = 'on message to "bob" as msg {\n  log("${msg.body} (${len(msg.body)})")\n}\n'
    delay = handler_delay(node, tmp_path, program, lambda _: "on message to bob: measured (8)")
    assert delay < BOUND


def test_a_nexus_block_handler_runs_on_a_head_pushed(node: Node, tmp_path: Path) -> None:
    program = 'on block of "bob" as block {\n  log("block ${block.height}")\n}\n'
    delay = handler_delay(node, tmp_path, program, lambda seq: f"on block of bob: block {seq}")
    assert delay < BOUND
