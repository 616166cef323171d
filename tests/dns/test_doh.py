"""DNS over HTTPS without the HTTP: ``handle_doh`` maps requests to answers or 4xx."""

from __future__ import annotations

import base64

import dns.message
import dns.rcode
import pytest

from hypermesh.dns import DNS_MESSAGE, DnsEngine, StaticZones, handle_doh
from tests.harness.dns_server import make_zone

ANSWERER = DnsEngine(StaticZones([make_zone()]))


def b64(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


def test_get_and_post_answer_the_same() -> None:
    query = dns.message.make_query("www.hmtest.", "TXT")
    query.id = 0
    wire = query.to_wire()
    got = handle_doh(ANSWERER, "GET", f"dns={b64(wire)}", None, b"")
    posted = handle_doh(ANSWERER, "POST", "", DNS_MESSAGE, wire)
    assert got.status == posted.status == 200
    assert got.message == posted.message
    assert got.max_age == 60  # the TXT's own TTL, the smallest in the answer
    assert got.headers == (("cache-control", "max-age=60"),)
    assert dns.message.from_wire(got.message).rcode() == dns.rcode.NOERROR


def test_negative_answers_are_cached_for_the_negative_ttl() -> None:
    wire = dns.message.make_query("nothing.hmtest.", "A").to_wire()
    result = handle_doh(ANSWERER, "POST", "", "application/dns-message; charset=x", wire)
    assert result.status == 200 and result.max_age == 120


def test_padding_in_the_parameter_is_tolerated() -> None:
    wire = dns.message.make_query("www.hmtest.", "A").to_wire()
    padded = base64.urlsafe_b64encode(wire).decode()
    assert handle_doh(ANSWERER, "GET", f"ct=x&dns={padded}", None, b"").status == 200


@pytest.mark.parametrize(
    "query_string",
    ["", "dns=", "other=1", "dns=!!!!", "dns=a", "dns=AAAA", "dns=+/+/"],
)
def test_bad_get_parameters_are_400(query_string: str) -> None:
    result = handle_doh(ANSWERER, "GET", query_string, None, b"")
    assert result.status == 400 and result.error


def test_a_wrong_content_type_is_415() -> None:
    wire = dns.message.make_query("www.hmtest.", "A").to_wire()
    for content_type in (None, "", "application/json", "application/dns-json"):
        assert handle_doh(ANSWERER, "POST", "", content_type, wire).status == 415


def test_too_large_is_413() -> None:
    big = b"\0" * 65536
    assert handle_doh(ANSWERER, "POST", "", DNS_MESSAGE, big).status == 413
    assert handle_doh(ANSWERER, "GET", f"dns={b64(big)}", None, b"").status == 413
    assert handle_doh(ANSWERER, "GET", "dns=" + "A" * 100000, None, b"").status == 413


def test_a_response_or_a_short_body_is_400() -> None:
    query = dns.message.make_query("www.hmtest.", "A")
    answer = ANSWERER.answer(query.to_wire())
    assert answer is not None
    assert handle_doh(ANSWERER, "POST", "", DNS_MESSAGE, answer).status == 400
    assert handle_doh(ANSWERER, "POST", "", DNS_MESSAGE, b"\0\0").status == 400


def test_garbage_with_a_header_is_formerr_not_400() -> None:
    result = handle_doh(ANSWERER, "POST", "", DNS_MESSAGE, b"\0\0\1\0" + b"\xff" * 20)
    assert result.status == 200
    assert dns.message.from_wire(result.message).rcode() == dns.rcode.FORMERR
    assert result.max_age == 0
