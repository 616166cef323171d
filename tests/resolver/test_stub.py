"""The stub over its sockets, asked by dnspython and kdig: HyperMesh names answered verified
(AD) over UDP and TCP, EDNS, truncation and the retry over TCP, names forwarded to an
upstream, an altered node caught (SERVFAIL, extended error 6), an upstream that dies."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.verify import fetch_anchors
from hypermesh.node.router import Request, RouteResponse
from hypermesh.transport.client import h3_get_json
from tests.harness.dns_server import ServerThread
from tests.harness.nodes import NodeProc, answer_values
from tests.resolver.conftest import (
    BIG_TXT,
    UPSTREAM_ADDRESS,
    FakeUpstream,
    StubThread,
    doq_source,
)


def query(name: str, rdtype: str = "A", *, ad: bool = True, **edns: object) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype, **edns)  # type: ignore[arg-type]
    if ad:
        message.flags |= dns.flags.AD
    return message


def ede(message: dns.message.Message) -> list[int]:
    return [int(o.code) for o in message.options if isinstance(o, dns.edns.EDEOption)]


def test_a_mesh_name_is_answered_verified_over_udp_and_tcp(stub: StubThread) -> None:
    for ask in (dns.query.udp, dns.query.tcp):
        answer = ask(query("www.acme."), "127.0.0.1", timeout=5, port=stub.port)
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer_values(answer) == {"192.0.2.1"}
        assert answer.flags & dns.flags.AD and answer.flags & dns.flags.RA
        assert not answer.flags & dns.flags.AA  # a resolver, not the authority
    # Without DO or AD in the query, no AD (RFC 6840 §5.8); the data is the same.
    plain = dns.query.udp(query("www.acme.", ad=False), "127.0.0.1", timeout=5, port=stub.port)
    assert answer_values(plain) == {"192.0.2.1"} and not plain.flags & dns.flags.AD


def test_negative_answers_are_verified_too(stub: StubThread) -> None:
    missing = dns.query.udp(query("nothing.acme."), "127.0.0.1", timeout=5, port=stub.port)
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.flags & dns.flags.AD
    nodata = dns.query.udp(query("www.acme.", "AAAA"), "127.0.0.1", timeout=5, port=stub.port)
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.flags & dns.flags.AD


def test_edns_is_echoed_and_do_keeps_the_signatures(stub: StubThread) -> None:
    with_do = dns.query.udp(
        query("www.acme.", use_edns=0, payload=1232, want_dnssec=True),
        "127.0.0.1",
        timeout=5,
        port=stub.port,
    )
    assert with_do.edns == 0 and with_do.payload == 1232
    assert with_do.ednsflags & dns.flags.DO and with_do.flags & dns.flags.AD
    assert any(r.rdtype == dns.rdatatype.RRSIG for r in with_do.answer)
    without = dns.query.udp(query("www.acme.", use_edns=0), "127.0.0.1", timeout=5, port=stub.port)
    assert without.edns == 0 and not any(r.rdtype == dns.rdatatype.RRSIG for r in without.answer)
    no_edns = dns.query.udp(query("www.acme."), "127.0.0.1", timeout=5, port=stub.port)
    assert no_edns.edns == -1  # no OPT to a client that sent none
    future = query("www.acme.", use_edns=1)
    assert (
        dns.query.udp(future, "127.0.0.1", timeout=5, port=stub.port).rcode() == dns.rcode.BADVERS
    )


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(stub: StubThread) -> None:
    small = query("big.acme.", "TXT")  # no EDNS: 512 bytes over UDP
    cut = dns.query.udp(small, "127.0.0.1", timeout=5, port=stub.port, ignore_trailing=True)
    assert cut.flags & dns.flags.TC and not cut.answer
    whole, used_tcp = dns.query.udp_with_fallback(small, "127.0.0.1", timeout=5, port=stub.port)
    assert used_tcp and not whole.flags & dns.flags.TC and whole.flags & dns.flags.AD
    assert sorted(answer_values(whole, "TXT")) == sorted(BIG_TXT)
    # An EDNS client that takes 1232 bytes gets it over UDP at once.
    roomy, used_tcp = dns.query.udp_with_fallback(
        query("big.acme.", "TXT", use_edns=0, payload=1232), "127.0.0.1", timeout=5, port=stub.port
    )
    assert not used_tcp and sorted(answer_values(roomy, "TXT")) == sorted(BIG_TXT)


def test_other_names_are_forwarded_without_ad(stub: StubThread) -> None:
    for ask in (dns.query.udp, dns.query.tcp):
        answer = ask(query("host.example.test."), "127.0.0.1", timeout=5, port=stub.port)
        assert answer_values(answer) == {UPSTREAM_ADDRESS} and not answer.flags & dns.flags.AD
    missing = dns.query.udp(query("nowhere.invalid."), "127.0.0.1", timeout=5, port=stub.port)
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_garbage_is_answered_formerr_or_not_at_all(stub: StubThread) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(
            b"\x12\x34" + b"\x01\x00" + b"\x00\x01" + b"\xff" * 20, ("127.0.0.1", stub.port)
        )
        header = sock.recv(512)
        assert header[:2] == b"\x12\x34" and header[3] & 0x0F == dns.rcode.FORMERR
        sock.sendto(b"short", ("127.0.0.1", stub.port))
    # The stub still answers.
    answer = dns.query.udp(query("www.acme."), "127.0.0.1", timeout=5, port=stub.port)
    assert answer_values(answer) == {"192.0.2.1"}


def test_kdig_asks_over_udp_and_tcp(stub: StubThread) -> None:
    if shutil.which("kdig") is None:
        pytest.fail("kdig is missing: apt-get install knot-dnsutils (.ci/run does)")
    for transport in ("+notcp", "+tcp"):
        done = subprocess.run(
            [
                "kdig",
                "@127.0.0.1",
                "-p",
                str(stub.port),
                "www.acme",
                "A",
                "+adflag",
                transport,
                "+timeout=5",
                "+retry=0",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "status: NOERROR" in done.stdout and " ad" in done.stdout, done.stdout
        assert "192.0.2.1" in done.stdout


def copy_of_m1(mesh: dict[str, NodeProc], altered: bool) -> ServerThread:
    """A node serving m1's copy of acme (with www's address altered, its signatures kept as
    they were, when ``altered``) and relaying the registry's true anchors; started."""
    registry, m1 = mesh["registry"], mesh["m1"]
    anchors = asyncio.run(fetch_anchors(m1.address, m1.identity, registry.identity, caller=None))
    data = asyncio.run(
        h3_get_json(
            m1.address,
            "/registry/v1/ixfr?tld=acme.&serial=0",
            expected_id=m1.identity,
            identity=None,
        )
    )
    text = data["zone"].replace("192.0.2.1", "203.0.113.66") if altered else data["zone"]
    zone = dns.zone.from_text(text, origin="acme.", relativize=True)

    async def relayed(_: Request) -> RouteResponse:
        return RouteResponse.json(anchors.signed)

    thread = ServerThread(
        StaticZones([zone]), routes=lambda router: router.add("/registry/v1/anchors", relayed)
    )
    thread.start()
    return thread


@pytest.fixture(scope="module")
def forged(mesh: dict[str, NodeProc]) -> Iterator[ServerThread]:
    thread = copy_of_m1(mesh, altered=True)
    try:
        yield thread
    finally:
        thread.stop()


def test_an_altered_answer_is_servfail_with_dnssec_bogus(
    mesh: dict[str, NodeProc], forged: ServerThread
) -> None:
    server = forged.server
    assert server is not None
    node = NodeProc(
        "forged", mesh["m1"].node_dir, mesh["m1"].process, server.address, server.identity.node_id
    )
    stub = StubThread(doq_source(node, mesh["registry"]), (), forward=False).start()
    try:
        answer = dns.query.udp(
            query("www.acme.", use_edns=0), "127.0.0.1", timeout=5, port=stub.port
        )
        assert answer.rcode() == dns.rcode.SERVFAIL and not answer.answer
        assert ede(answer) == [dns.edns.EDECode.DNSSEC_BOGUS]
        text = next(o.text for o in answer.options if isinstance(o, dns.edns.EDEOption))
        assert text is not None and "www.acme. A" in text
        # What the forger did not touch still verifies; other names are refused (forward off).
        ns = dns.query.udp(query("acme.", "SOA"), "127.0.0.1", timeout=5, port=stub.port)
        assert ns.rcode() == dns.rcode.NOERROR and ns.flags & dns.flags.AD
        other = dns.query.udp(
            query("host.example.test.", use_edns=0), "127.0.0.1", timeout=5, port=stub.port
        )
        assert other.rcode() == dns.rcode.REFUSED and ede(other) == [dns.edns.EDECode.PROHIBITED]
        assert stub.resolver is not None and stub.resolver.counts.bogus == 1
    finally:
        stub.stop()


def test_the_stub_survives_its_upstream(stub: StubThread, upstream: FakeUpstream) -> None:
    upstream.stop()
    try:
        dead = dns.query.udp(
            query("a.example.test.", use_edns=0), "127.0.0.1", timeout=8, port=stub.port
        )
        assert dead.rcode() == dns.rcode.SERVFAIL
        assert ede(dead) == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]
        # Its own names are still answered, verified.
        mesh_name = dns.query.udp(query("www.acme."), "127.0.0.1", timeout=5, port=stub.port)
        assert answer_values(mesh_name) == {"192.0.2.1"} and mesh_name.flags & dns.flags.AD
    finally:
        upstream.start()
    # The upstream back, the next query is forwarded again (it is asked again at once: it is
    # the only one).
    back = dns.query.udp(query("b.example.test."), "127.0.0.1", timeout=5, port=stub.port)
    assert answer_values(back) == {UPSTREAM_ADDRESS}


def test_the_stub_survives_its_node(mesh: dict[str, NodeProc], upstream: FakeUpstream) -> None:
    thread = copy_of_m1(mesh, altered=False)
    server = thread.server
    assert server is not None
    node = NodeProc(
        "copy", mesh["m1"].node_dir, mesh["m1"].process, server.address, server.identity.node_id
    )
    stub = StubThread(doq_source(node, mesh["registry"]), (upstream.address,)).start()
    stopped = False
    try:
        first = dns.query.udp(query("www.acme."), "127.0.0.1", timeout=5, port=stub.port)
        assert answer_values(first) == {"192.0.2.1"} and first.flags & dns.flags.AD
        thread.stop()  # the node is gone
        stopped = True
        gone = dns.query.udp(
            query("nothing.acme.", use_edns=0), "127.0.0.1", timeout=8, port=stub.port
        )
        assert gone.rcode() == dns.rcode.SERVFAIL
        assert ede(gone) == [dns.edns.EDECode.NO_REACHABLE_AUTHORITY]
        # The anchors it held still say acme is the mesh's: never sent to the upstream; other
        # names are still forwarded, and what it had verified is still in its cache.
        assert dns.query.udp(
            query("c.example.test."), "127.0.0.1", timeout=5, port=stub.port
        ).answer
        kept = dns.query.udp(query("www.acme."), "127.0.0.1", timeout=5, port=stub.port)
        assert answer_values(kept) == {"192.0.2.1"}
    finally:
        stub.stop()
        if not stopped:
            thread.stop()
