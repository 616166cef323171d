"""DNS over HTTPS (RFC 8484), without the HTTP: a request's parts in, a ``DohResult`` out.

``GET /dns-query?dns=<base64url>`` and ``POST /dns-query`` with ``content-type:
application/dns-message`` carry one DNS query; the answer comes back as
``application/dns-message`` with ``cache-control: max-age=<smallest TTL in the answer>``.
A missing or undecodable ``dns`` parameter, or a body that is not a DNS query, is 400; a POST
with another content type is 415; a query over 65,535 bytes is 413. The node's router turns
the result into an HTTP/3 response (``hypermesh.node.routes``). A GET whose URL is past the
endpoint's header section limit never gets here: the endpoint answers it 414 before decoding
its headers (``hypermesh.node.http3``), so a query that long must come by POST.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass

from hypermesh.dns.answers import MAX_MESSAGE, DnsEngine

DNS_MESSAGE = "application/dns-message"
"""The media type of a DNS message in a DoH request or response."""
DOH_PATH = "/dns-query"
"""Where the node serves DoH."""

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*=*")
_MAX_ENCODED = (MAX_MESSAGE * 4 + 2) // 3 + 2
"""Characters of unpadded base64url that could still decode to at most ``MAX_MESSAGE``."""


@dataclass(frozen=True, slots=True)
class DohResult:
    """What to send back for one DoH request."""

    status: int
    """200, or 400, 413 or 415."""
    message: bytes = b""
    """The DNS answer (with status 200)."""
    max_age: int = 0
    """Seconds the answer may be cached: its smallest TTL (0 when it carries none)."""
    error: str = ""
    """Why the request was refused (status other than 200)."""

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The headers of a 200 answer besides ``content-type``."""
        return (("cache-control", f"max-age={self.max_age}"),)


def handle_doh(
    answerer: DnsEngine,
    method: str,
    query_string: str,
    content_type: str | None,
    body: bytes,
) -> DohResult:
    """Answer one DoH request; ``method`` is GET or POST (others are the router's 405)."""
    if method == "POST":
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != DNS_MESSAGE:
            return DohResult(415, error=f"content-type must be {DNS_MESSAGE}")
        wire = body
    else:
        decoded = _dns_parameter(query_string)
        if isinstance(decoded, DohResult):
            return decoded
        wire = decoded
    if len(wire) > MAX_MESSAGE:
        return DohResult(413, error=f"a DNS message has at most {MAX_MESSAGE} bytes")
    answered = answerer.answer_with_ttl(wire)
    if answered is None:
        return DohResult(400, error="not a DNS query")
    message, ttl = answered
    return DohResult(200, message=message, max_age=ttl)


def doh_query_bytes(query_string: str) -> bytes:
    """The DNS query of a GET request's ``dns`` parameter (empty when it has none)."""
    decoded = _dns_parameter(query_string)
    return b"" if isinstance(decoded, DohResult) else decoded


def _dns_parameter(query_string: str) -> bytes | DohResult:
    values = urllib.parse.parse_qs(query_string, keep_blank_values=True).get("dns")
    if not values or not values[0]:
        return DohResult(400, error="missing the dns parameter")
    text = values[0].encode("ascii", "replace")
    if len(text) > _MAX_ENCODED:
        return DohResult(413, error=f"a DNS message has at most {MAX_MESSAGE} bytes")
    if not _BASE64URL.fullmatch(text):
        return DohResult(400, error="the dns parameter is not base64url")
    unpadded = text.rstrip(b"=")
    try:
        return base64.urlsafe_b64decode(unpadded + b"=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        return DohResult(400, error="the dns parameter is not base64url")
