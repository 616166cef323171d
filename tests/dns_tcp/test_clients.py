"""DoT and DoH2 on a node, asked by independent clients (kdig, dnspython, httpx2) and by raw TLS
sockets: the same answers as over QUIC, the key pinned, pipelining, and bad requests refused
with a status, never a dropped node."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import httpx2
import pytest

from tests.dns_tcp.conftest import TcpNode
from tests.harness.kdig import answer_lines, rr_lines, run_kdig

TIMEOUT = 5.0
NAMES = [("www.hmtest.", "A"), ("alias.hmtest.", "AAAA"), ("nothing.hmtest.", "A")]


def doq(node: TcpNode, query: dns.message.Message) -> dns.message.Message:
    return dns.query.quic(query, "127.0.0.1", port=node.port, verify=False, timeout=TIMEOUT)


@contextlib.contextmanager
def tls_socket(port: int, alpn: list[str] | None) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to the node, the certificate not checked (the tests pin elsewhere)."""
    with (
        socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw,
        tls_context(alpn).wrap_socket(raw) as tls,
    ):
        yield tls


def tls_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


# -- kdig --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rdtype"), NAMES)
def test_kdig_over_tls_and_https_with_the_key_pinned_gets_the_doq_answer(
    tcp_node: TcpNode, name: str, rdtype: str
) -> None:
    expected = doq(tcp_node, dns.message.make_query(name, rdtype))
    pin = f"+tls-pin={tcp_node.pin}"
    for transport in (["+tls"], ["+https"], ["+https", "+https-get"]):
        result = run_kdig(tcp_node.port, name, rdtype, *transport, pin)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"status: {dns.rcode.to_text(expected.rcode())}" in result.stdout
        assert answer_lines(result.stdout) == rr_lines(expected.answer), transport
    assert "TLS1.3" in run_kdig(tcp_node.port, name, rdtype, "+tls", pin).stdout


def test_kdig_refuses_a_node_whose_key_is_not_the_pinned_one(tcp_node: TcpNode) -> None:
    wrong = base64.b64encode(b"\x01" * 32).decode()
    result = run_kdig(tcp_node.port, "www.hmtest.", "A", "+tls", f"+tls-pin={wrong}")
    assert "ANSWER SECTION" not in result.stdout
    assert "error in the certificate" in (result.stdout + result.stderr).lower()


# -- dnspython ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rdtype"), NAMES)
def test_dnspython_over_tls_and_http2_gets_the_doq_answer(
    tcp_node: TcpNode, name: str, rdtype: str
) -> None:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    expected = doq(tcp_node, query)
    answers = [
        dns.query.tls(query, "127.0.0.1", port=tcp_node.port, timeout=TIMEOUT, verify=False),
        *(
            dns.query.https(
                query,
                "127.0.0.1",
                port=tcp_node.port,
                verify=False,
                post=post,
                http_version=dns.query.HTTPVersion.H2,
                timeout=TIMEOUT,
            )
            for post in (False, True)
        ),
    ]
    for response in answers:
        assert response.rcode() == expected.rcode()
        assert response.ednsflags & dns.flags.DO
        assert response.answer == expected.answer
        assert response.authority == expected.authority


def test_queries_are_counted_under_their_transport(tcp_node: TcpNode) -> None:
    before = {t: tcp_node.answered(t) for t in ("dot", "doq", "doh")}
    query = dns.message.make_query("www.hmtest.", "A")
    for _ in range(2):
        dns.query.tls(query, "127.0.0.1", port=tcp_node.port, timeout=TIMEOUT, verify=False)
    doq(tcp_node, query)
    after = {t: tcp_node.answered(t) for t in ("dot", "doq", "doh")}
    assert after["dot"] - before["dot"] == 2, (before, after)
    assert after["doq"] - before["doq"] == 1, (before, after)
    assert after["doh"] == before["doh"]


def test_padded_queries_get_padded_answers_over_tls(tcp_node: TcpNode) -> None:
    query = dns.message.make_query("www.hmtest.", "A", use_edns=0, pad=128)
    response = dns.query.tls(query, "127.0.0.1", port=tcp_node.port, timeout=TIMEOUT, verify=False)
    assert len(response.to_wire()) % 468 == 0


def test_pipelined_queries_on_one_connection_are_all_answered(tcp_node: TcpNode) -> None:
    names = [f"{label}.hmtest." for label in ("www", "alias", "ns1", "nothing", "a.deep")] * 4
    queries = {}
    for number, name in enumerate(names, start=1):
        query = dns.message.make_query(name, "A")
        query.id = number
        queries[number] = query
    with tls_socket(tcp_node.port, ["dot"]) as tls:
        assert tls.selected_alpn_protocol() == "dot"
        wire = b"".join(
            len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries.values())
        )
        tls.sendall(wire)  # all at once, before any answer is read
        received = b""
        answers: dict[int, dns.message.Message] = {}
        while len(answers) < len(queries):
            chunk = tls.recv(65536)
            assert chunk, f"closed after {len(answers)} answers"
            received += chunk
            while len(received) >= 2 and len(received) >= 2 + int.from_bytes(received[:2]):
                size = int.from_bytes(received[:2])
                message = dns.message.from_wire(received[2 : 2 + size])
                answers[message.id] = message
                received = received[2 + size :]
    for number, query in queries.items():
        assert answers[number].question == query.question


def test_a_client_offering_no_alpn_is_served_dot_and_http1_is_closed(tcp_node: TcpNode) -> None:
    query = dns.message.make_query("www.hmtest.", "A")
    with tls_socket(tcp_node.port, None) as tls:
        assert tls.selected_alpn_protocol() is None
        wire = query.to_wire()
        tls.sendall(len(wire).to_bytes(2, "big") + wire)
        size = int.from_bytes(tls.recv(2))
        assert dns.message.from_wire(tls.recv(size)).id == query.id
    with tls_socket(tcp_node.port, ["http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(b"GET /dns-query HTTP/1.1\r\nHost: node\r\n\r\n")
        assert tls.recv(100) == b""


# -- HTTP/2 status codes -----------------------------------------------------------------------


def test_doh2_statuses_and_cache_control_match_the_http3_route(tcp_node: TcpNode) -> None:
    wire = dns.message.make_query("www.hmtest.", "TXT").to_wire()
    encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
    base = f"https://127.0.0.1:{tcp_node.port}"
    with httpx2.Client(http1=False, http2=True, verify=False, timeout=TIMEOUT) as client:
        good = client.get(f"{base}/dns-query", params={"dns": encoded})
        assert good.http_version == "HTTP/2" and good.status_code == 200
        assert good.headers["content-type"] == "application/dns-message"
        assert good.headers["cache-control"] == "max-age=60"  # the TXT's own TTL
        statuses = [
            client.get(f"{base}/dns-query").status_code,
            client.get(f"{base}/dns-query", params={"dns": "not base64!"}).status_code,
            client.post(f"{base}/dns-query", content=b"\x00" * 5, headers=_dns_type()).status_code,
            client.post(f"{base}/dns-query", content=wire).status_code,
            client.post(f"{base}/dns-query", content=b"x" * 70000, headers=_dns_type()).status_code,
            client.put(f"{base}/dns-query", content=wire).status_code,
            client.get(f"{base}/status").status_code,
        ]
        assert statuses == [400, 400, 400, 415, 413, 405, 404]
        assert client.get(f"{base}/dns-query", params={"dns": encoded}).status_code == 200


def _dns_type() -> dict[str, str]:
    return {"content-type": "application/dns-message"}


def test_garbage_after_the_http2_preface_ends_that_connection_only(tcp_node: TcpNode) -> None:
    with tls_socket(tcp_node.port, ["h2"]) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64)
        received = b""
        while chunk := tls.recv(4096):
            received += chunk
        assert b"\x07\x00\x00\x00\x00\x00" in received  # GOAWAY on stream 0
    query = dns.message.make_query("www.hmtest.", "A")
    response = dns.query.tls(query, "127.0.0.1", port=tcp_node.port, timeout=TIMEOUT, verify=False)
    assert response.rcode() == dns.rcode.NOERROR
