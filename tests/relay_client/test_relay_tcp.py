"""RelayLink over TLS/TCP against a real relay (``RelayHub`` + its TLS listener) on 127.0.0.1:
packets both ways, refusal of a non-member, the relay's key pinned, GONE, reconnection after
the relay restarts, and ``send`` before the link is ready."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from hypermesh.errors import IdentityMismatch
from hypermesh.transport.identity import Identity
from hypermesh.transport.relayclient import RelayLink, RelayRefused
from tests.relay_client.relay import make_link, running_relay, until


def test_two_links_exchange_packets_both_ways() -> None:
    async def scenario() -> None:
        async with running_relay() as relay:
            alice, alice_inbox = make_link(relay, transports=("tcp",))
            bob, bob_inbox = make_link(relay, transports=("tcp",))
            await alice.connect_once()
            await bob.connect_once()
            try:
                assert alice.ready.is_set() and bob.ready.is_set()
                assert alice.transport == "tcp" and alice.address == relay.address
                assert alice.observed is not None and alice.observed.startswith("127.0.0.1:")
                assert alice.limits["max_reservations"] == 128
                for n in range(5):
                    alice.send(bob.identity.node_id, b"\x40to bob %d" % n)
                    bob.send(alice.identity.node_id, b"\x40to alice %d" % n)
                await until(lambda: len(bob_inbox.packets) == 5 and len(alice_inbox.packets) == 5)
                assert bob_inbox.packets == [
                    (alice.identity.node_id, b"\x40to bob %d" % n) for n in range(5)
                ]
                assert alice_inbox.packets == [
                    (bob.identity.node_id, b"\x40to alice %d" % n) for n in range(5)
                ]
                big = bytes(range(256)) * 255  # a packet of 65280 bytes, as big as frames go
                alice.send(bob.identity.node_id, big[: 65535 - 32])
                await until(lambda: len(bob_inbox.packets) == 6)
                assert bob_inbox.packets[-1][1] == big[: 65535 - 32]
                await until(lambda: alice.rtt is not None, what="the first PING's PONG")
                assert alice.stats.packets_sent == 6 and bob.stats.packets_received == 6
            finally:
                await alice.aclose()
                await bob.aclose()
            assert not alice.ready.is_set() and alice.transport is None

    asyncio.run(scenario())


def test_a_non_member_is_refused_with_the_status() -> None:
    async def scenario() -> None:
        member = Identity.generate()
        async with running_relay(admits=lambda node: node == member.node_id) as relay:
            stranger, _ = make_link(relay, transports=("tcp",))
            with pytest.raises(RelayRefused) as refused:
                await stranger.connect_once()
            assert refused.value.status == 403
            assert "not a member" in refused.value.message
            assert not stranger.ready.is_set()
            welcome, _ = make_link(relay, member, transports=("tcp",))
            await welcome.connect_once()
            assert welcome.ready.is_set()
            await welcome.aclose()
            assert relay.hub.stats.refused == {"member": 1}

    asyncio.run(scenario())


def test_the_relay_key_is_pinned() -> None:
    async def scenario() -> None:
        async with running_relay() as relay:
            impostor = RelayLink(
                Identity.generate().node_id,  # not the key the relay holds
                [relay.address],
                Identity.generate(),
                None,
                lambda peer, packet: None,
            )
            with pytest.raises(IdentityMismatch, match="expected relay"):
                await impostor.connect_once()
            assert relay.hub.attached() == []

    asyncio.run(scenario())


def test_a_peer_not_attached_is_gone() -> None:
    async def scenario() -> None:
        async with running_relay() as relay:
            alice, inbox = make_link(relay, transports=("tcp",))
            await alice.connect_once()
            nobody = Identity.generate().node_id
            alice.send(nobody, b"\x40anyone there?")
            await until(lambda: inbox.gone == [nobody])
            assert inbox.packets == []
            await alice.aclose()

    asyncio.run(scenario())


def test_send_before_ready_drops_without_error() -> None:
    async def scenario() -> None:
        async with running_relay() as relay:
            alice, _ = make_link(relay, transports=("tcp",))
            bob = Identity.generate().node_id
            alice.send(bob, b"\x40too early")
            assert alice.stats.packets_dropped == 1 and alice.stats.packets_sent == 0
            await alice.connect_once()
            alice.send(bob, b"")  # an empty packet fits no frame: dropped too
            assert alice.stats.packets_dropped == 2
            with pytest.raises(ValueError, match="malformed node ID"):
                alice.send("hm1nope", b"\x40x")
            await alice.aclose()
            alice.send(bob, b"\x40too late")
            assert alice.stats.packets_dropped == 3

    asyncio.run(scenario())


def test_the_link_reattaches_after_the_relay_restarts() -> None:
    async def scenario() -> None:
        identity = Identity.generate()
        async with running_relay(identity) as first:
            port = first.port
            alice, _ = make_link(first, transports=("tcp",))
            bob, bob_inbox = make_link(first, transports=("tcp",))
            runs = [asyncio.ensure_future(link.run()) for link in (alice, bob)]
            try:
                await until(lambda: alice.ready.is_set() and bob.ready.is_set())
                await first.stop()
                await until(lambda: not alice.ready.is_set(), what="the link seeing the relay go")
                assert alice.last_error is not None
                async with running_relay(identity, port=port):
                    await until(lambda: alice.ready.is_set() and bob.ready.is_set(), 20)
                    assert alice.stats.attachments == 2
                    alice.send(bob.identity.node_id, b"\x40after the restart")
                    await until(lambda: bool(bob_inbox.packets))
                    assert bob_inbox.packets == [(alice.identity.node_id, b"\x40after the restart")]
            finally:
                for link in (alice, bob):
                    await link.aclose()
                async with asyncio.timeout(10):
                    await asyncio.gather(*runs)
            assert all(run.done() and run.exception() is None for run in runs)

    asyncio.run(scenario())


def test_no_relay_there_is_a_transport_error() -> None:
    async def scenario() -> None:
        async with running_relay() as relay:
            address = relay.address
            identity = relay.identity
        link = RelayLink(identity.node_id, [address], Identity.generate(), None, print)
        with pytest.raises(Exception, match="cannot attach") as error:
            await link.connect_once()
        assert not isinstance(error.value, RelayRefused)
        with contextlib.suppress(Exception):
            await link.aclose()

    asyncio.run(scenario())
