"""An attachment's life over TLS/TCP: the reservation renewed on the same stream before its TTL
ends, a circuit ended by a relay's limit (LIMIT to both ends), and a relay that stops answering
PINGs taken for dead and reattached. The keepalive clocks are shortened for the test (module
settings, read at each use); the relay is the real ``RelayHub`` except for the silent one, a TLS
server that attaches nodes by the relay protocol and then reads nothing."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from hypermesh.node.relay_hub import RelayHub, RelayLimits
from hypermesh.node.tls_tcp import tls_context
from hypermesh.transport import relayclient
from hypermesh.transport import relaywire as wire
from hypermesh.transport.identity import Identity
from tests.relay_client.relay import Relay, make_link, running_relay, until


def test_the_reservation_is_renewed_on_the_same_stream() -> None:
    async def scenario() -> None:
        async with running_relay(limits=RelayLimits(reservation_ttl=1.0)) as relay:
            alice, _ = make_link(relay, transports=("tcp",))
            await alice.connect_once()
            try:
                # without renewals the relay would close the stream after 1 s
                await asyncio.sleep(2.5)
                assert alice.ready.is_set() and alice.stats.attachments == 1, alice.last_error
                assert relay.hub.attached() == [alice.identity.node_id]
            finally:
                await alice.aclose()

    asyncio.run(scenario())


def test_a_circuit_limit_reaches_both_ends() -> None:
    async def scenario() -> None:
        async with running_relay(limits=RelayLimits(circuit_bytes=3000)) as relay:
            alice, alice_inbox = make_link(relay, transports=("tcp",))
            bob, bob_inbox = make_link(relay, transports=("tcp",))
            await alice.connect_once()
            await bob.connect_once()
            try:
                for _ in range(4):
                    alice.send(bob.identity.node_id, b"\x40" * 1000)
                await until(lambda: bool(alice_inbox.limits and bob_inbox.limits))
                assert alice_inbox.limits[0][0] == bob.identity.node_id
                assert bob_inbox.limits[0][0] == alice.identity.node_id
                assert "3000 bytes" in alice_inbox.limits[0][1]
                assert len(bob_inbox.packets) == 3
                assert alice.ready.is_set()  # a circuit's end is not the link's
            finally:
                await alice.aclose()
                await bob.aclose()

    asyncio.run(scenario())


@asynccontextmanager
async def silent_relay() -> AsyncIterator[Relay]:
    """A TLS server that attaches every node (CHALLENGE, AUTH checked, WELCOME) and then
    never answers: a relay that hung, or a path that lost its packets."""
    identity = Identity.generate()
    streams: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        streams.append(writer)
        nonce = secrets.token_bytes(wire.NONCE_BYTES)
        writer.write(wire.challenge(nonce, identity.node_id))
        decoder = wire.FrameDecoder()
        frames: list[wire.Frame] = []
        for _ in range(10):
            if frames:
                break
            data = await reader.read(4096)
            if not data:
                return
            frames = decoder.feed(data)
        assert frames and frames[0].type == wire.AUTH
        assert wire.verify_auth(frames[0].payload, nonce, identity.node_id) is not None
        writer.write(wire.welcome("127.0.0.1:1", 3600, {}))
        await asyncio.sleep(60)  # reads nothing more (cancelled when the server closes)

    server = await asyncio.start_server(
        serve, "127.0.0.1", 0, ssl=tls_context(identity, [wire.RELAY_ALPN])
    )
    relay = Relay(identity, RelayHub(identity, None), server)
    try:
        yield relay
    finally:
        for writer in streams:
            writer.close()
        server.close()


def test_a_relay_that_stops_answering_is_reattached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relayclient, "PONG_TIMEOUT", 0.5)
    monkeypatch.setattr(relayclient, "BACKOFF_INITIAL", 0.1)

    async def scenario() -> None:
        async with silent_relay() as relay:
            alice, _ = make_link(relay, transports=("tcp",))
            running = asyncio.ensure_future(alice.run())
            try:
                await until(lambda: alice.stats.attachments >= 2, what="a second attachment")
                assert alice.rtt is None
                assert alice.last_error is None or "PONG" in alice.last_error
            finally:
                await alice.aclose()
                async with asyncio.timeout(10):
                    await running

    asyncio.run(scenario())


def test_check_asks_the_relay_at_once_and_detaches_when_it_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``check`` (what a node asks when its handshake through the relay goes unanswered): a
    relay that answers says so, with the round trip; a silent one ends the attachment."""
    monkeypatch.setattr(relayclient, "PONG_TIMEOUT", 0.5)

    async def scenario() -> None:
        async with running_relay() as relay:
            alice, _ = make_link(relay, transports=("tcp",))
            await alice.connect_once()
            try:
                assert await alice.check()
                assert alice.rtt is not None and alice.ready.is_set()
            finally:
                await alice.aclose()
        async with silent_relay() as relay:
            alice, _ = make_link(relay, transports=("tcp",))
            await alice.connect_once()
            try:
                assert not await alice.check()
                assert not alice.ready.is_set()
                assert alice.last_error is not None and "PONG" in alice.last_error
                assert not await alice.check()  # detached: nothing to ask
            finally:
                await alice.aclose()

    asyncio.run(scenario())
