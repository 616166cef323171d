"""The proxy's pure parts: what a request target asks for, which headers pass on, the PAC file,
and error pages that escape what they quote."""

from __future__ import annotations

import pytest

from hypermesh.gateway.authority import AuthorityError
from hypermesh.gateway.http import forwardable
from hypermesh.gateway.pac import pac_file
from hypermesh.gateway.pages import error_page
from hypermesh.gateway.targets import Forward, Local, Refusal, Tunnel, classify, inner_target

TLDS = ("acme", "beta")


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        (b"CONNECT", b"www.acme:443", Tunnel("www.acme", 443)),
        (b"CONNECT", b"WWW.Acme.:8443", Tunnel("www.acme", 8443)),
        (b"GET", b"http://www.beta/a?b=c", Forward("www.beta", None, "/a?b=c")),
        (b"GET", b"http://www.acme:8080", Forward("www.acme", 8080, "/")),
        (b"GET", b"/proxy.pac?x", Local("/proxy.pac")),
    ],
)
def test_what_a_request_asks_for(method: bytes, target: bytes, expected: object) -> None:
    assert classify(method, target, TLDS) == expected


@pytest.mark.parametrize(
    ("method", "target", "status", "says"),
    [
        (b"CONNECT", b"example.com:443", 403, "example.com is not a HyperMesh name"),
        (b"CONNECT", b"acme:443", 403, "not a HyperMesh name"),
        (b"CONNECT", b"www.acme", 400, "CONNECT takes HOST:PORT"),
        (b"CONNECT", b"www.acme:0", 400, "CONNECT takes HOST:PORT"),
        (b"CONNECT", b"-x.acme:443", 403, "not a HyperMesh name"),
        (b"GET", b"http://example.com/", 403, "only serves names under .acme, .beta"),
        (b"GET", b"https://www.acme/", 400, "goes through CONNECT"),
        (b"GET", b"ftp://www.acme/", 400, "not a request target"),
        (b"GET", b"http://www.acme:99999/", 400, "port"),
        (b"GET", b"/\xff", 400, "not ASCII"),
        (b"GET", b"/" + b"a" * 9000, 414, "too long"),
    ],
)
def test_what_is_refused(method: bytes, target: bytes, status: int, says: str) -> None:
    refusal = classify(method, target, TLDS)
    assert isinstance(refusal, Refusal) and refusal.status == status and says in refusal.reason


def test_requests_inside_a_tunnel_stay_with_its_host() -> None:
    assert inner_target(b"/x?y", "www.acme", 443) == Forward("www.acme", 443, "/x?y")
    assert inner_target(b"https://www.acme/z", "www.acme", 443) == Forward("www.acme", 443, "/z")
    refused = inner_target(b"https://other.acme/", "www.acme", 443)
    assert isinstance(refused, Refusal) and refused.status == 400


def test_only_end_to_end_headers_pass_on() -> None:
    headers = [
        ("Accept", "text/html"),
        ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "hop"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic abc"),
        ("Host", "www.acme"),
        ("Content-Length", "3"),
        ("Bad Name", "x"),
        ("Cookie", "a=b"),
    ]
    assert forwardable(headers) == [("accept", "text/html"), ("cookie", "a=b")]


def test_the_pac_file_sends_only_the_tlds_to_the_gateway() -> None:
    text = pac_file(("beta", "acme"), "127.0.0.1:7443")
    assert 'if (dnsDomainIs(host, ".acme") ||\n        dnsDomainIs(host, ".beta")) {' in text
    assert '"acme"' not in text  # a bare TLD names no host: DIRECT
    assert text.count('return "PROXY 127.0.0.1:7443";') == 1 and 'return "DIRECT";' in text
    with pytest.raises(AuthorityError):
        pac_file(('acme") || true || ("',), "127.0.0.1:7443")


def test_error_pages_escape_what_they_quote() -> None:
    page = error_page(502, "Did not verify", "<script>alert(1)</script>", "<b>.acme")
    body = page.body.decode()
    assert page.status == 502 and page.content_type.startswith("text/html")
    assert "<script>" not in body and "&lt;script&gt;" in body and "&lt;b&gt;.acme" in body
