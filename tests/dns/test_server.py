"""The real thing: DoQ and DoH3 on one UDP port of 127.0.0.1, queried by independent clients
(dnspython, kdig) and by a raw aioquic client that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamDataReceived, StreamReset

from hypermesh.dns import DOQ_PROTOCOL_ERROR, StaticZones
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import connect_h3
from hypermesh.transport.pinning import peer_node_id
from tests.harness.dns_server import ZONE_TEXT, DnsServer, ServerThread, SignedZone, make_zone
from tests.harness.kdig import kdig
from tests.harness.node_process import NodeStarter

TIMEOUT = 5.0


def doq(port: int, query: dns.message.Message) -> dns.message.Message:
    return dns.query.quic(query, "127.0.0.1", port=port, verify=False, timeout=TIMEOUT)


def doh3(port: int, query: dns.message.Message, *, post: bool) -> dns.message.Message:
    return dns.query.https(
        query,
        "127.0.0.1",
        port=port,
        verify=False,
        post=post,
        http_version=dns.query.HTTPVersion.H3,
        timeout=TIMEOUT,
    )


def rr_lines(rrsets: list[dns.rrset.RRset]) -> list[str]:
    """RRs as kdig prints them (one a line, fields separated by one space), sorted."""
    lines = []
    for rrset in rrsets:
        for rdata in rrset:
            text = rdata.to_text()
            if rrset.rdtype in (dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY):
                text = _join_base64(text)
            lines.append(
                f"{rrset.name} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {text}"
            )
    return sorted(lines)


def _join_base64(text: str) -> str:
    """dnspython splits long base64 into chunks; kdig prints it in one piece."""
    fields = text.split(" ")
    head = 8 if fields[0].isalpha() and len(fields) > 9 else 3  # RRSIG: 8 fields, DNSKEY: 3
    return " ".join(fields[:head]) + " " + "".join(fields[head:])


# -- the same answers from dnspython DoQ, DoH3 GET, DoH3 POST and kdig ------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("www.hmtest.", "A", dns.rcode.NOERROR),
        ("alias.hmtest.", "AAAA", dns.rcode.NOERROR),
        ("nothing.hmtest.", "A", dns.rcode.NXDOMAIN),
        ("www.hmtest.", "MX", dns.rcode.NOERROR),
        ("example.org.", "A", dns.rcode.REFUSED),
    ],
)
def test_every_client_gets_the_same_answer(
    dns_server: DnsServer, name: str, rdtype: str, rcode: dns.rcode.Rcode
) -> None:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    answers = [doq(dns_server.port, query), doh3(dns_server.port, query, post=False)]
    answers.append(doh3(dns_server.port, query, post=True))
    for response in answers:
        assert response.id == 0  # DoQ requires it; dnspython uses 0 for DoH too
        assert response.rcode() == rcode
        assert response.ednsflags & dns.flags.DO
        assert response.answer == answers[0].answer
        assert response.authority == answers[0].authority
    by_kdig = kdig(dns_server.port, name, rdtype, "+dnssec")
    assert by_kdig["rcode"] == dns.rcode.to_text(rcode) and by_kdig["id"] == 0
    sections = by_kdig["sections"]
    assert isinstance(sections, dict)
    assert sorted(sections.get("ANSWER", [])) == rr_lines(answers[0].answer)
    assert sorted(sections.get("AUTHORITY", [])) == rr_lines(answers[0].authority)


def test_doq_answers_validate_with_the_zone_keys(
    dns_server: DnsServer, signed_zone: SignedZone
) -> None:
    response = doq(dns_server.port, dns.message.make_query("www.hmtest.", "A", want_dnssec=True))
    www, IN = dns.name.from_text("www.hmtest."), dns.rdataclass.IN
    a = response.find_rrset(response.answer, www, IN, dns.rdatatype.A)
    rrsig = response.find_rrset(response.answer, www, IN, dns.rdatatype.RRSIG, dns.rdatatype.A)
    dns.dnssec.validate(a, rrsig, signed_zone.keys)


def test_a_change_to_the_zones_is_served_at_once(signed_zone: SignedZone) -> None:
    zones = StaticZones([make_zone()])
    thread = ServerThread(zones)
    server = thread.start()
    try:
        query = dns.message.make_query("fresh.hmtest.", "A")
        assert doq(server.port, query).rcode() == dns.rcode.NXDOMAIN
        zones.set(make_zone(ZONE_TEXT + "fresh IN A 203.0.113.77\n"))
        response = doq(server.port, query)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.answer[0][0].to_text() == "203.0.113.77"
    finally:
        thread.stop()


# -- DoH3 status codes and headers ----------------------------------------------------------


def test_doh3_status_codes_and_headers(dns_server: DnsServer) -> None:
    wire = dns.message.make_query("www.hmtest.", "A").to_wire()

    async def exchanges() -> list[tuple[int, dict[str, str], bytes]]:
        async with (
            asyncio.timeout(TIMEOUT),
            connect_h3(dns_server.address, expected_id=None, identity=None) as h3,
        ):
            return [
                await h3.request(
                    "POST",
                    "/dns-query",
                    headers=[("content-type", "application/dns-message")],
                    body=wire,
                ),
                await h3.request("GET", "/dns-query?dns=!!notbase64"),
                await h3.request("GET", "/dns-query"),
                await h3.request(
                    "POST", "/dns-query", headers=[("content-type", "text/plain")], body=wire
                ),
                await h3.request(
                    "POST",
                    "/dns-query",
                    headers=[("content-type", "application/dns-message")],
                    body=b"\0" * 70000,
                ),
                await h3.request("PUT", "/dns-query", body=wire),
                await h3.request("GET", "/status"),
            ]

    ok, bad, missing, wrong_type, too_big, put, status = asyncio.run(exchanges())
    assert ok[0] == 200
    assert ok[1]["content-type"] == "application/dns-message"
    assert ok[1]["cache-control"] == "max-age=300"
    assert dns.message.from_wire(ok[2]).answer[0][0].to_text() == "192.0.2.10"
    assert bad[0] == 400 and missing[0] == 400
    assert wrong_type[0] == 415
    assert too_big[0] == 413
    assert put[0] == 405
    assert status[0] == 404  # the in-process server routes DNS only


# -- DoQ that misbehaves --------------------------------------------------------------------


class RawDoq(QuicConnectionProtocol):
    """A DoQ client that sends whatever bytes it is given on a fresh stream."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._waiting: dict[int, asyncio.Future[tuple[str, object]]] = {}
        self._buffers: dict[int, bytearray] = {}

    async def exchange(self, payload: bytes, *, end: bool = True) -> tuple[str, object]:
        """``("data", bytes)`` for an answer ended with FIN, ``("reset", code)`` for a reset."""
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[tuple[str, object]] = self._loop.create_future()
        self._waiting[stream_id] = future
        self._quic.send_stream_data(stream_id, payload, end_stream=end)
        self.transmit()
        async with asyncio.timeout(TIMEOUT):
            return await future

    def quic_event_received(self, event: QuicEvent) -> None:
        future = self._waiting.get(getattr(event, "stream_id", -1))
        if future is None or future.done():
            return
        if isinstance(event, StreamDataReceived):
            buffer = self._buffers.setdefault(event.stream_id, bytearray())
            buffer += event.data
            if event.end_stream:
                future.set_result(("data", bytes(buffer)))
        elif isinstance(event, StreamReset):
            future.set_result(("reset", event.error_code))


def _client_configuration(alpn: str = "doq", idle_timeout: float = 60.0) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        verify_mode=ssl.CERT_NONE,
        idle_timeout=idle_timeout,
    )


def _framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def test_garbage_on_a_stream_never_costs_the_connection(dns_server: DnsServer) -> None:
    query = dns.message.make_query("www.hmtest.", "A")
    query.id = 0
    good = _framed(query.to_wire())

    async def session() -> list[tuple[str, object]]:
        async with (
            asyncio.timeout(3 * TIMEOUT),
            connect(
                "127.0.0.1",
                dns_server.port,
                configuration=_client_configuration(),
                create_protocol=RawDoq,
            ) as client,
        ):
            assert isinstance(client, RawDoq)
            assert peer_node_id(client._quic) == dns_server.identity.node_id
            results = [
                await client.exchange(_framed(b"\0\0\1\0" + b"\xff" * 40)),  # garbage, ID 0
                await client.exchange(b"\x00\x40short"),  # length says 64, 5 arrive
                await client.exchange(b"\x01"),  # not even a length
                await client.exchange(_framed(b"\x12\x34" + query.to_wire()[2:])),  # ID not 0
                await client.exchange(_framed(b"\0\0\0")),  # too short to answer
                await client.exchange(b"\xff\xff" + b"\0" * 70000),  # over 65,535 bytes
                await client.exchange(b""),  # FIN and nothing else
            ]
            results.append(await client.exchange(good))  # and the connection still serves
            pipelined = await asyncio.gather(*(client.exchange(good) for _ in range(20)))
            results.extend(pipelined)
            return results

    results = asyncio.run(session())
    formerr, short, nolength, nonzero, tiny, oversized, empty = results[:7]
    assert formerr[0] == "data"
    assert isinstance(formerr[1], bytes)
    assert int.from_bytes(formerr[1][:2], "big") == len(formerr[1]) - 2
    assert dns.message.from_wire(formerr[1][2:]).rcode() == dns.rcode.FORMERR
    for reset in (short, nolength, nonzero, tiny, oversized, empty):
        assert reset == ("reset", DOQ_PROTOCOL_ERROR)
    for kind, framed in results[7:]:
        assert kind == "data" and isinstance(framed, bytes)
        response = dns.message.from_wire(framed[2:])
        assert response.id == 0 and response.answer[0][0].to_text() == "192.0.2.10"


def test_idle_connections_are_dropped() -> None:
    thread = ServerThread(StaticZones([make_zone()]), idle_timeout=0.5)
    server = thread.start()
    counts: list[int] = []
    try:

        async def idle() -> None:
            async with (
                asyncio.timeout(TIMEOUT),
                connect(
                    "127.0.0.1",
                    server.port,
                    configuration=_client_configuration(idle_timeout=30.0),
                    create_protocol=RawDoq,
                ),
            ):
                thread.call(lambda: counts.append(len(server.endpoint.server._protocols)))
                await asyncio.sleep(1.5)  # the server's 0.5 s idle timeout is the one in force
                thread.call(lambda: counts.append(len(server.endpoint.server._protocols)))
                await asyncio.sleep(0.1)

        asyncio.run(idle())
    finally:
        thread.stop()
    assert counts[0] > 0 and counts[-1] == 0


# -- the node process serves DNS ------------------------------------------------------------


@pytest.fixture
def node_starter(tmp_path: Path) -> Iterator[NodeStarter]:
    starter = NodeStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.stop_all()


def test_the_node_process_serves_doq_and_doh3(node_starter: NodeStarter) -> None:
    node = node_starter.start("dnsnode")
    port = parse_address(node.address)[1]
    query = dns.message.make_query("anything.example.", "A")
    started = time.monotonic()
    assert doq(port, query).rcode() == dns.rcode.REFUSED  # no zones yet
    assert doh3(port, query, post=True).rcode() == dns.rcode.REFUSED
    assert doh3(port, query, post=False).rcode() == dns.rcode.REFUSED
    assert kdig(port, "anything.example.", "A")["rcode"] == "REFUSED"
    assert time.monotonic() - started < 10
    status = asyncio.run(_status(node.address, node.identity))
    assert status == 200  # and the HTTP/3 API still answers on the same port


async def _status(address: str, identity: str) -> int:
    async with (
        asyncio.timeout(TIMEOUT),
        connect_h3(address, expected_id=identity, identity=None) as h3,
    ):
        status, _, _ = await h3.request("GET", "/healthz")
        return status
