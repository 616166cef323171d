"""The pinned DNS client and `hmctl dns query` against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from hypermesh.cli.main import main
from hypermesh.errors import IdentityMismatch
from hypermesh.transport.dns_client import doh3_query, doq_query
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import DnsServer


def _ask(server: DnsServer, how: str) -> dns.message.Message:
    query = dns.message.make_query("www.hmtest.", "A")
    wire = query.to_wire()
    pinned = server.identity.node_id
    if how == "doq":
        answer = asyncio.run(doq_query(server.address, wire, expected_id=pinned, identity=None))
    else:
        answer = asyncio.run(
            doh3_query(server.address, wire, expected_id=pinned, method=how, identity=None)
        )
    response = dns.message.from_wire(answer)
    assert response.id == query.id
    return response


@pytest.mark.parametrize("how", ["doq", "GET", "POST"])
def test_pinned_query_gets_the_answer(dns_server: DnsServer, how: str) -> None:
    response = _ask(dns_server, how)
    assert response.rcode() == dns.rcode.NOERROR
    (rrset,) = response.answer
    assert rrset.rdtype == dns.rdatatype.A and [r.to_text() for r in rrset] == ["192.0.2.10"]


def test_wrong_key_is_refused_before_the_query(dns_server: DnsServer) -> None:
    other = Identity.generate().node_id
    wire = dns.message.make_query("www.hmtest.", "A").to_wire()
    with pytest.raises(IdentityMismatch):
        asyncio.run(doq_query(dns_server.address, wire, expected_id=other, identity=None))
    with pytest.raises(IdentityMismatch):
        asyncio.run(doh3_query(dns_server.address, wire, expected_id=other, identity=None))


def test_hmctl_dns_query_prints_like_dig(
    dns_server: DnsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pin = ["--address", dns_server.address, "--identity", dns_server.identity.node_id]
    assert main(["dns", "query", "www.hmtest", "A", *pin]) == 0
    out = capsys.readouterr().out
    assert "rcode NOERROR" in out
    assert "www.hmtest. 300 IN A 192.0.2.10" in out
    assert ";; SERVER: " in out and "via DoQ" in out

    assert main(["dns", "query", "nope.hmtest", "A", *pin, "--doh", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rcode"] == "NXDOMAIN" and data["transport"] == "DoH3 POST"
    assert any(" SOA " in line for line in data["authority"])

    assert (
        main(["dns", "query", "www.hmtest", *pin[:2], "--identity", Identity.generate().node_id])
        == 2
    )
    assert "expected node" in capsys.readouterr().err


def test_hmctl_dns_query_names_unknown_nodes(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--state", str(tmp_path), "dns", "query", "x", "--via", "ghost"]) == 2
    assert "no state in" in capsys.readouterr().err
