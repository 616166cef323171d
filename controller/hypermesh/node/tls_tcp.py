"""The node's one TLS listener on TCP: each connection served by the protocol its ALPN names.

It listens on the public interface's host and on the same port number as the node's UDP
port, with the node's own Ed25519 key in a self-signed certificate
(``transport.certificates``), as its QUIC endpoint does, TLS 1.3 only. A client pins the key
(the node ID, or the SHA-256 of the certificate's SubjectPublicKeyInfo); no client
certificate is asked for. What it serves is a list of ``TlsService``: DNS over TLS (``dot``)
and DNS over HTTPS on HTTP/2 (``h2``) on every node, the relay (``hm-relay``) on a relay-role
node. A client that offers no ALPN at all is served by ``without_alpn`` (DNS over TLS: most
DoT clients send none). One that negotiates ``http/1.1`` is closed at once; Python's ``ssl``
cannot tell a client that offered only unknown protocols from one that offered none, so such
a client is served as one that offered none.

Bounds (``TlsLimits``): the TLS handshake must end within ``handshake_timeout``; at most
``max_connections`` connections are open at once (more are closed at once, before any byte
is read). Each service bounds what it holds itself (idle timeouts, queries in flight).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from hypermesh.transport.address import format_address
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.identity import Identity, public_key_from_node_id

log = logging.getLogger("hypermesh.tls")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""Serves one TLS connection until it ends; the listener closes the writer afterwards."""

HTTP1_ALPN = "http/1.1"
"""Offered by the listener only to close the connections that pick it (no HTTP/1 here)."""


@dataclass(frozen=True, slots=True)
class TlsService:
    """One protocol the listener serves, by the ALPN a client negotiates."""

    alpn: str
    """The ALPN token (``dot``, ``h2``, ``hm-relay``)."""
    serve: StreamHandler
    """Serves one connection that negotiated ``alpn``."""
    required: bool = False
    """Whether the node must not start without it (the relay's): when the port is taken, the
    node fails to start rather than run without the service."""


@dataclass(frozen=True, slots=True)
class TlsLimits:
    """What the listener bounds before a service takes a connection."""

    handshake_timeout: float = 10.0
    """Seconds a TLS handshake (and a closing one) may take."""
    max_connections: int = 1024
    """Connections open at once; more are closed at once, before any byte is read."""


def tls_context(identity: Identity, alpns: Sequence[str]) -> ssl.SSLContext:
    """A TLS 1.3 server context with ``identity``'s self-signed certificate and ``alpns`` (in
    the server's order of preference).

    The ssl module loads keys only from files: the key is written encrypted with a one-time
    password to a private temporary directory, loaded, and the directory removed at once.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols(list(alpns))
    certificate = self_signed_certificate(identity)
    password = secrets.token_bytes(32)
    key_pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="hm-tls-") as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key_pem)
        context.load_cert_chain(cert_file, key_file, password=password)
    return context


def observed(writer: asyncio.StreamWriter) -> str:
    """The client's ``host:port`` as this end sees it (``unknown:0`` when the socket says
    nothing)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address(str(peer[0]), int(peer[1]))
    return "unknown:0"


class TlsListener:
    """Dispatches each connection to the service of its ALPN; counts and closes them."""

    def __init__(
        self,
        services: Sequence[TlsService],
        *,
        without_alpn: str | None = None,
        limits: TlsLimits | None = None,
    ) -> None:
        self.services = {service.alpn: service for service in services}
        if len(self.services) != len(services):
            raise ValueError("two services with one ALPN")
        if without_alpn is not None and without_alpn not in self.services:
            raise ValueError(f"no service for {without_alpn!r} to serve clients without ALPN")
        self.without_alpn = without_alpn
        self.limits = limits or TlsLimits()
        self.open: set[asyncio.StreamWriter] = set()
        """The connections being served now."""
        self.refused = 0
        """Connections closed because ``max_connections`` were open."""

    @property
    def alpns(self) -> list[str]:
        """What the listener offers, in its order of preference."""
        return [*self.services, HTTP1_ALPN]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one accepted connection to its end (``asyncio.start_server``'s callback)."""
        if len(self.open) >= self.limits.max_connections:
            self.refused += 1
            log.info("TLS: %s refused: %d connections open", observed(writer), len(self.open))
            writer.close()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = None if ssl_object is None else ssl_object.selected_alpn_protocol()
        service = self.services.get(alpn if alpn is not None else self.without_alpn or "")
        if ssl_object is None or service is None:
            writer.close()
            return
        self.open.add(writer)
        try:
            await service.serve(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("TLS: %s ended: %s", observed(writer), exc)
        except asyncio.CancelledError:
            # The loop is ending. asyncio (3.11) asks a cancelled client_connected_cb task for
            # its exception and logs the CancelledError as an unhandled one: end quietly.
            writer.transport.abort()
            return
        finally:
            self.open.discard(writer)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.limits.handshake_timeout)

    def close_all(self) -> None:
        """Drop every connection being served (the node is stopping): their services see the
        connection lost at once and end."""
        for writer in list(self.open):
            writer.transport.abort()


async def open_tls_listener(
    host: str,
    port: int,
    identity: Identity,
    listener: TlsListener,
) -> asyncio.Server:
    """Listen on ``host:port`` over TCP (port 0: any free one), serving ``listener``'s
    services; raises ``OSError`` when the address is taken."""
    limits = listener.limits
    return await asyncio.start_server(
        listener.serve,
        host,
        port,
        ssl=tls_context(identity, listener.alpns),
        ssl_handshake_timeout=limits.handshake_timeout,
        ssl_shutdown_timeout=limits.handshake_timeout,
        reuse_address=True,
    )


_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""DER of an Ed25519 SubjectPublicKeyInfo up to its 32-byte key (RFC 8410)."""


def spki_pin(node_id: str) -> str:
    """The key pin of a node's TLS certificate (RFC 7858 §4.2, ``kdig +tls-pin``, Android and
    stubby's ``tls_pubkey_pinset``): base64 of the SHA-256 of its SubjectPublicKeyInfo, made
    from the node ID alone. ``ValueError`` for a malformed node ID."""
    raw = public_key_from_node_id(node_id)
    return base64.b64encode(hashlib.sha256(_ED25519_SPKI_PREFIX + raw).digest()).decode("ascii")
