"""The gateway's settings: one typed value, every default written down (docs/clients.md)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:7443"
"""Where ``hmctl gateway run`` listens unless told otherwise: loopback only, a fixed
unprivileged port, so the PAC file and browser settings can name it once."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """How the gateway listens and what it bounds."""

    listen: str = DEFAULT_LISTEN
    """``HOST:PORT`` the proxy listens on (port 0: any free port)."""
    max_connections: int = 128
    """Browser connections served at once; more are closed at once."""
    max_header_bytes: int = 16 * 1024
    """The request line and headers of one request; more is a 431."""
    max_body_bytes: int = 8 * 1024 * 1024
    """One request body; more is a 413."""
    max_response_bytes: int = 64 * 1024 * 1024
    """One node's response body; more is a 502."""
    idle_timeout: float = 30.0
    """Seconds a browser connection may wait between requests (or while sending one)."""
    tls_timeout: float = 10.0
    """Seconds for a browser's TLS handshake after CONNECT."""
    upstream_timeout: float = 15.0
    """Seconds for one node to be resolved, verified, reached and to answer."""
    route_ttl: float = 60.0
    """At most this many seconds a verified (address, key) is reused without resolving again
    (less when the records' TTL is shorter)."""
    max_leaves: int = 1024
    """Leaf certificates kept in memory (least recently used dropped first)."""
