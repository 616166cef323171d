"""The node's DNS server: an authoritative answering engine and its QUIC and HTTPS faces.

- ``ZoneSource`` / ``StaticZones`` (``source.py``): where zones come from;
- ``DnsEngine`` (``answers.py``): the pure engine, DNS wire bytes in and out, cached;
- ``DoqConnection`` (``doq.py``): DNS over QUIC (RFC 9250) on an aioquic connection, sans I/O;
- ``handle_doh`` (``doh.py``): DNS over HTTPS (RFC 8484) without the HTTP.

The node (``hypermesh.node``) wires them to its one UDP port; see ``docs/protocols.md``.
"""

from hypermesh.dns.answers import MAX_MESSAGE, DnsEngine
from hypermesh.dns.doh import DNS_MESSAGE, DOH_PATH, DohResult, handle_doh
from hypermesh.dns.doq import DOQ_ALPN, DOQ_PROTOCOL_ERROR, DoqConnection
from hypermesh.dns.source import StaticZones, ZoneSource

__all__ = [
    "DNS_MESSAGE",
    "DOH_PATH",
    "DOQ_ALPN",
    "DOQ_PROTOCOL_ERROR",
    "MAX_MESSAGE",
    "DnsEngine",
    "DohResult",
    "DoqConnection",
    "StaticZones",
    "ZoneSource",
    "handle_doh",
]
