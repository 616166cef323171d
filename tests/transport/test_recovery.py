"""The bounded probe backoff (``transport.recovery``): a connection whose packets are all lost
probes again at most ``MAX_PTO`` seconds apart, however long the loss lasts, where aioquic alone
doubles the wait without end; and a peer that answers again is heard at the next probe.

Two real QUIC connections (a node's server configuration and a client's) driven in memory on a
virtual clock: the handshake is exchanged, then every datagram is dropped while the timers fire."""

from __future__ import annotations

from aioquic._buffer import Buffer
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from hypermesh.node.server import server_configuration
from hypermesh.transport.client import client_configuration
from hypermesh.transport.identity import Identity
from hypermesh.transport.recovery import MAX_PTO, cap_backoff

SERVER, CLIENT = ("127.0.0.1", 2), ("127.0.0.1", 1)


def connected(*, capped: bool) -> tuple[QuicConnection, QuicConnection, float]:
    """A client and a server connection after their handshake, and the virtual time then."""
    identity = Identity.generate()
    client = QuicConnection(configuration=client_configuration(identity.node_id, identity=None))
    client.connect(SERVER, now=0.0)
    first = [data for data, _ in client.datagrams_to_send(now=0.0)]
    header = pull_quic_header(Buffer(data=first[0]), host_cid_length=8)
    server = QuicConnection(
        configuration=server_configuration(identity),
        original_destination_connection_id=header.destination_cid,
    )
    if capped:
        cap_backoff(client)
        cap_backoff(server)
    now, to_server = 0.0, first
    for _ in range(10):
        now += 0.01
        for data in to_server:
            server.receive_datagram(data, CLIENT, now=now)
        for data, _ in server.datagrams_to_send(now=now):
            client.receive_datagram(data, SERVER, now=now)
        to_server = [data for data, _ in client.datagrams_to_send(now=now)]
    assert client._handshake_confirmed and server._handshake_complete
    return client, server, now


def probe_gaps(client: QuicConnection, now: float, probes: int) -> tuple[list[float], float]:
    """Send stream data whose every datagram is lost; the gaps between the probe timers."""
    client.send_stream_data(0, b"x" * 100)
    list(client.datagrams_to_send(now=now))  # lost
    gaps = []
    for _ in range(probes):
        at = client.get_timer()
        assert at is not None, "no probe timer with data in flight"
        gaps.append(at - now)
        now = at
        client.handle_timer(now=now)
        list(client.datagrams_to_send(now=now))  # lost too
    return gaps, now


def test_probes_back_off_to_max_pto_and_no_further() -> None:
    client, _, now = connected(capped=True)
    gaps, _ = probe_gaps(client, now, 12)
    assert max(gaps) <= MAX_PTO + 1e-9, gaps
    assert gaps[-1] > gaps[0], f"no backoff at all: {gaps}"
    assert sum(gaps) > 6 * MAX_PTO, "twelve probes should span many capped periods"


def test_without_the_cap_aioquic_doubles_without_end() -> None:
    """What the cap changes (and proof the test above can fail)."""
    client, _, now = connected(capped=False)
    gaps, _ = probe_gaps(client, now, 10)  # 51 s of probes: short of the 60 s idle timeout
    assert gaps[-1] > 10 * MAX_PTO, gaps


def test_a_peer_heard_again_resets_the_backoff() -> None:
    client, server, now = connected(capped=True)
    _, now = probe_gaps(client, now, 8)
    assert client._loss._pto_count > 0
    # the path is back: the client's next probe reaches the server, whose ACK comes back
    now = client.get_timer() or now
    client.handle_timer(now=now)
    for data, _ in client.datagrams_to_send(now=now):
        server.receive_datagram(data, CLIENT, now=now)
    now = server.get_timer() or now  # its ACK may wait for the ACK delay
    server.handle_timer(now=now)
    for data, _ in server.datagrams_to_send(now=now):
        client.receive_datagram(data, SERVER, now=now)
    assert client._loss._pto_count == 0
