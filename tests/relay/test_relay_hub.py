"""The relay hub served over its real TLS/TCP listener on 127.0.0.1, with real clients: the
handshake, forwarding both ways, GONE, membership, reservation and circuit limits, bad
signatures, streams that never authenticate, and a slow reader's packets dropped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from hypermesh.node.relay_hub import RelayHub, RelayLimits
from hypermesh.node.relay_tcp import open_tcp_listener
from hypermesh.transport import relaywire as wire
from hypermesh.transport.certificates import node_id_from_certificate
from hypermesh.transport.identity import Identity
from hypermesh.transport.relaywire import Frame, FrameDecoder

WAIT = 10.0
"""The most any one step waits (a bound, never an expectation)."""


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 60))


class Client:
    """A minimal relay client: TLS to the listener, frames by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.pending: list[Frame] = []

    @classmethod
    async def connect(cls, port: int, alpn: list[str] | None = None) -> Client:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the relay is pinned by its key below
        context.set_alpn_protocols(alpn if alpn is not None else [wire.RELAY_ALPN])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        return cls(reader, writer)

    def relay_id(self) -> str:
        certificate = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return node_id_from_certificate(certificate)

    @property
    def local(self) -> str:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    async def frame(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        async with asyncio.timeout(WAIT):
            while not self.pending:
                try:
                    data = await self.reader.read(65536)
                except (ConnectionError, ssl.SSLError):
                    data = b""
                if not data:
                    return None
                self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    async def expect(self, frame_type: int) -> bytes:
        frame = await self.frame()
        assert frame is not None, f"the stream ended, {wire.name_of(frame_type)} expected"
        assert frame.type == frame_type, (frame.name, frame.payload[:200])
        return frame.payload

    async def attach(self, identity: Identity, *, signer: Identity | None = None) -> Frame:
        """Answer the challenge as ``identity`` (signed by ``signer``); WELCOME or REFUSED."""
        nonce, relay_id = wire.parse_challenge(await self.expect(wire.CHALLENGE))
        assert relay_id == self.relay_id()
        signature = (signer or identity).sign(wire.auth_message(nonce, relay_id))
        self.write(wire.encode(wire.AUTH, identity.public_key_bytes + signature))
        answer = await self.frame()
        assert answer is not None and answer.type in (wire.WELCOME, wire.REFUSED)
        return answer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def ping(self, data: bytes = b"12345678") -> None:
        """A round trip: everything the relay wrote to this stream before is read before."""
        self.write(wire.ping(data))
        assert await self.expect(wire.PONG) == data

    async def ended(self) -> bool:
        """True once the relay closed the stream (frames before the end are skipped)."""
        for _ in range(100):
            if await self.frame() is None:
                return True
        return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def relay(
    admits: Callable[[str], bool] | None = None, **limits: Any
) -> AsyncIterator[tuple[RelayHub, int, list[Client]]]:
    """A hub and its TLS listener on 127.0.0.1 (a free port); clients made closed after."""
    hub = RelayHub(
        Identity.generate(),
        admits,
        dataclasses.replace(RelayLimits(), **limits),
        network="lab",
    )
    server = await open_tcp_listener(hub, "127.0.0.1", 0, hub.identity)
    port = server.sockets[0].getsockname()[1]
    clients: list[Client] = []
    try:
        yield hub, port, clients
    finally:
        for client in clients:
            await client.close()
        server.close()
        hub.close()
        await server.wait_closed()


async def attached(port: int, clients: list[Client], identity: Identity) -> Client:
    client = await Client.connect(port)
    clients.append(client)
    answer = await client.attach(identity)
    assert answer.type == wire.WELCOME, wire.parse_refused(answer.payload)
    welcome = wire.parse_welcome(answer.payload)
    assert welcome.observed == client.local
    return client


def test_two_nodes_exchange_packets_both_ways() -> None:
    async def main() -> None:
        a, b = Identity.generate(), Identity.generate()
        async with relay() as (hub, port, clients):
            ca, cb = await attached(port, clients, a), await attached(port, clients, b)
            assert sorted(hub.attached()) == sorted([a.node_id, b.node_id])
            ca.write(wire.send(b.node_id, b"\xc0hello b"))
            assert wire.parse_packet(await cb.expect(wire.RECV)) == (a.node_id, b"\xc0hello b")
            big = bytes(range(256)) * 5
            cb.write(wire.send(a.node_id, big))
            assert wire.parse_packet(await ca.expect(wire.RECV)) == (b.node_id, big)
            await ca.ping(b"rtt-1234")
            assert hub.stats.packets_relayed == 2
            assert hub.stats.bytes_relayed == len(b"\xc0hello b") + len(big)
            assert hub.stats.circuits == 1

    run(main())


def test_the_listener_speaks_tls_with_the_relays_key_and_alpn_only() -> None:
    async def main() -> None:
        async with relay() as (hub, port, clients):
            client = await Client.connect(port)
            clients.append(client)
            assert client.relay_id() == hub.node_id
            ssl_object = client.writer.get_extra_info("ssl_object")
            assert ssl_object.version() == "TLSv1.3"
            assert ssl_object.selected_alpn_protocol() == wire.RELAY_ALPN
            other = await Client.connect(port, alpn=["h3"])
            clients.append(other)
            assert await other.ended()

    run(main())


def test_a_packet_for_a_node_not_attached_is_answered_gone() -> None:
    async def main() -> None:
        a, absent = Identity.generate(), Identity.generate()
        async with relay() as (hub, port, clients):
            ca = await attached(port, clients, a)
            ca.write(wire.send(absent.node_id, b"anyone?"))
            assert wire.parse_gone(await ca.expect(wire.GONE)) == absent.node_id
            ca.write(wire.send(a.node_id, b"myself"))
            assert wire.parse_gone(await ca.expect(wire.GONE)) == a.node_id
            assert hub.stats.gone == 2 and hub.stats.packets_relayed == 0

    run(main())


def test_a_non_member_is_refused_and_nothing_is_attached() -> None:
    async def main() -> None:
        a, outsider = Identity.generate(), Identity.generate()
        async with relay(admits={a.node_id}.__contains__) as (hub, port, clients):
            await attached(port, clients, a)
            client = await Client.connect(port)
            clients.append(client)
            answer = await client.attach(outsider)
            assert answer.type == wire.REFUSED
            status, error = wire.parse_refused(answer.payload)
            assert status == 403
            assert error == f"{outsider.node_id} is not a member of network lab"
            assert await client.ended()
            assert hub.attached() == [a.node_id]
            assert hub.stats.refused == {"member": 1}

    run(main())


def test_the_reservation_limit_refuses_one_more_but_not_a_node_reattaching() -> None:
    async def main() -> None:
        a, b, c = (Identity.generate() for _ in range(3))
        async with relay(max_reservations=2) as (hub, port, clients):
            first = await attached(port, clients, a)
            await attached(port, clients, b)
            client = await Client.connect(port)
            clients.append(client)
            answer = await client.attach(c)
            assert answer.type == wire.REFUSED
            assert wire.parse_refused(answer.payload) == (
                429,
                "the relay holds its maximum of 2 nodes",
            )
            assert await client.ended()
            # the same node on a new stream replaces its old session (its reservation renewed)
            again = await attached(port, clients, a)
            assert await first.ended()
            assert sorted(hub.attached()) == sorted([a.node_id, b.node_id])
            await again.ping()
            assert hub.stats.refused == {"full": 1} and hub.stats.attaches == 3

    run(main())


def test_a_circuit_past_its_byte_limit_ends_with_limit_to_both() -> None:
    async def main() -> None:
        a, b = Identity.generate(), Identity.generate()
        async with relay(circuit_bytes=3000) as (hub, port, clients):
            ca, cb = await attached(port, clients, a), await attached(port, clients, b)
            packet = b"q" * 1200
            for _ in range(3):
                ca.write(wire.send(b.node_id, packet))
            assert wire.parse_packet(await cb.expect(wire.RECV)) == (a.node_id, packet)
            assert wire.parse_packet(await cb.expect(wire.RECV)) == (a.node_id, packet)
            peer, error = wire.parse_limit(await cb.expect(wire.LIMIT))
            assert (peer, error) == (a.node_id, "the circuit carried its limit of 3000 bytes")
            assert wire.parse_limit(await ca.expect(wire.LIMIT))[0] == b.node_id
            # the pair cools down: packets either way are dropped, not forwarded
            ca.write(wire.send(b.node_id, packet))
            cb.write(wire.send(a.node_id, packet))
            await ca.ping()
            await cb.ping()
            assert hub.stats.limits_hit == 1 and hub.stats.packets_relayed == 2
            assert hub.stats.circuits == 0

    run(main())


def test_circuits_per_node_are_bounded() -> None:
    async def main() -> None:
        a, b, c = (Identity.generate() for _ in range(3))
        async with relay(max_circuits_per_peer=1) as (hub, port, clients):
            ca = await attached(port, clients, a)
            cb, cc = await attached(port, clients, b), await attached(port, clients, c)
            ca.write(wire.send(b.node_id, b"one"))
            assert wire.parse_packet(await cb.expect(wire.RECV)) == (a.node_id, b"one")
            ca.write(wire.send(c.node_id, b"two"))
            peer, error = wire.parse_limit(await ca.expect(wire.LIMIT))
            assert peer == c.node_id and "at most 1 per node" in error
            await cc.ping()
            # when b leaves, its circuit goes with it and a may reach c
            await cb.close()
            clients.remove(cb)
            for _ in range(200):
                if b.node_id not in hub.attached():
                    break
                await asyncio.sleep(0.01)
            ca.write(wire.send(c.node_id, b"three"))
            assert wire.parse_packet(await cc.expect(wire.RECV)) == (a.node_id, b"three")

    run(main())


def test_a_bad_signature_is_refused() -> None:
    async def main() -> None:
        a, impostor = Identity.generate(), Identity.generate()
        async with relay() as (hub, port, clients):
            client = await Client.connect(port)
            clients.append(client)
            answer = await client.attach(a, signer=impostor)
            assert answer.type == wire.REFUSED
            status, error = wire.parse_refused(answer.payload)
            assert status == 403 and "signature does not verify" in error
            assert await client.ended()
            assert hub.attached() == [] and hub.stats.refused == {"signature": 1}

    run(main())


def test_a_client_that_never_authenticates_is_dropped_after_the_timeout() -> None:
    async def main() -> None:
        async with relay(auth_timeout=0.3) as (hub, port, clients):
            client = await Client.connect(port)
            clients.append(client)
            await client.expect(wire.CHALLENGE)
            status, error = wire.parse_refused(await client.expect(wire.REFUSED))
            assert (status, error) == (400, "no AUTH within 0.3 s")
            assert await client.frame() is None
            assert hub.stats.refused == {"timeout": 1}

    run(main())


def test_a_malformed_frame_ends_the_stream_and_the_session() -> None:
    async def main() -> None:
        a = Identity.generate()
        async with relay() as (hub, port, clients):
            ca = await attached(port, clients, a)
            ca.write(b"\x7f\x00\x00")
            status, error = wire.parse_refused(await ca.expect(wire.REFUSED))
            assert (status, error) == (400, "unknown relay frame type 0x7f")
            assert await ca.frame() is None
            client = await Client.connect(port)
            clients.append(client)
            await client.expect(wire.CHALLENGE)
            # a few PINGs before AUTH are answered (over QUIC a PING opens the stream), no more
            for i in range(9):
                client.write(wire.ping(b"1234567" + bytes([i])))
            for i in range(8):
                assert await client.expect(wire.PONG) == b"1234567" + bytes([i])
            status, error = wire.parse_refused(await client.expect(wire.REFUSED))
            assert (status, error) == (400, "expected AUTH, got PING")
            assert hub.attached() == []

    run(main())


def test_a_reservation_ends_at_its_ttl_and_an_auth_again_extends_it() -> None:
    async def main() -> None:
        a, b = Identity.generate(), Identity.generate()
        async with relay(reservation_ttl=0.5) as (hub, port, clients):
            short = await attached(port, clients, a)
            assert await short.ended()
            assert a.node_id not in hub.attached()
            # a renewing AUTH on the same stream answers WELCOME again
            client = await Client.connect(port)
            clients.append(client)
            nonce, relay_id = wire.parse_challenge(await client.expect(wire.CHALLENGE))
            client.write(wire.auth(b, nonce, relay_id))
            await client.expect(wire.WELCOME)
            client.write(wire.auth(b, nonce, relay_id))
            await client.expect(wire.WELCOME)

    run(main())


def test_public_limits_rate_limit_attachments_per_source() -> None:
    async def main() -> None:
        limits = dataclasses.asdict(RelayLimits.public()) | {"attach_burst": 2, "attach_rate": 1}
        async with relay(**limits) as (hub, port, clients):
            for _ in range(2):
                await attached(port, clients, Identity.generate())
            client = await Client.connect(port)
            clients.append(client)
            answer = await client.attach(Identity.generate())
            assert answer.type == wire.REFUSED
            assert wire.parse_refused(answer.payload)[0] == 429
            assert hub.stats.refused == {"rate": 1}

    run(main())


@pytest.mark.parametrize("slow", [False, True])
def test_a_slow_readers_packets_are_dropped(slow: bool) -> None:
    """In memory (the TCP buffers would take megabytes to fill): the receiver's transport says
    how much it still holds; past ``queue_bytes`` the packet is dropped and counted."""

    async def main() -> None:
        hub = RelayHub(Identity.generate(), None, RelayLimits(queue_bytes=1000))
        a, b = Identity.generate(), Identity.generate()
        written: dict[str, list[Frame]] = {a.node_id: [], b.node_id: []}
        readers = {a.node_id: asyncio.StreamReader(), b.node_id: asyncio.StreamReader()}

        def serve(node: Identity, held: int) -> asyncio.Task[None]:
            decoder = FrameDecoder()

            def write(data: bytes) -> None:
                written[node.node_id].extend(decoder.feed(data))

            return asyncio.create_task(
                hub.serve_stream(
                    readers[node.node_id],
                    write,
                    readers[node.node_id].feed_eof,
                    "192.0.2.1:1",
                    buffered=lambda: held,
                )
            )

        tasks = [serve(a, 0), serve(b, 5000 if slow else 0)]
        for node in (a, b):
            for _ in range(100):
                if written[node.node_id]:
                    break
                await asyncio.sleep(0)
            nonce, relay_id = wire.parse_challenge(written[node.node_id][0].payload)
            readers[node.node_id].feed_data(wire.auth(node, nonce, relay_id))
            for _ in range(100):
                if len(written[node.node_id]) == 2:
                    break
                await asyncio.sleep(0)
            assert written[node.node_id][1].type == wire.WELCOME
        readers[a.node_id].feed_data(wire.send(b.node_id, b"packet"))
        for _ in range(100):
            if hub.stats.packets_relayed + hub.stats.dropped:
                break
            await asyncio.sleep(0)
        assert (hub.stats.dropped, hub.stats.packets_relayed) == ((1, 0) if slow else (0, 1))
        received = [f.type for f in written[b.node_id]]
        assert received == [wire.CHALLENGE, wire.WELCOME] + ([] if slow else [wire.RECV])
        hub.close()
        await asyncio.wait(tasks, timeout=WAIT)
        assert all(t.done() for t in tasks)

    run(main())


def test_the_listener_holds_a_bounded_number_of_connections() -> None:
    async def main() -> None:
        hub = RelayHub(Identity.generate(), None)
        server = await open_tcp_listener(hub, "127.0.0.1", 0, hub.identity, max_connections=1)
        port = server.sockets[0].getsockname()[1]
        first = await Client.connect(port)
        second: Client | None = None
        try:
            await first.expect(wire.CHALLENGE)
            second = await Client.connect(port)
            assert await second.frame() is None  # closed before a byte of the protocol
            await first.close()
            for _ in range(200):  # the first one's slot is given back once its stream ended
                if not hub._streams:
                    break
                await asyncio.sleep(0.01)
            third = await Client.connect(port)
            await third.expect(wire.CHALLENGE)
            await third.close()
        finally:
            for client in (first, second):
                if client is not None:
                    await client.close()
            server.close()
            hub.close()
            await server.wait_closed()

    run(main())
