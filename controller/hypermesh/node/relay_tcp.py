"""The relay over TLS on TCP, for nodes whose network lets no UDP through.

The listener speaks TLS 1.3 with the node's own Ed25519 key in a self-signed certificate
(``transport.certificates``), as its QUIC endpoint does: a client authenticates the relay by
comparing the certificate's key with the node ID it pinned, and the relay authenticates the
client with the relay protocol's challenge (``transport.relaywire``), so no client certificate
is asked for. ALPN is ``hm-relay``; a connection that negotiates anything else is closed. Each
connection is one stream served by ``RelayHub.serve_stream``.

Bounds: the TLS handshake must end within ``handshake_timeout``; at most ``max_connections``
connections are open at once (more are closed at once, before any byte is read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from hypermesh.node.relay_hub import RelayHub
from hypermesh.transport.address import format_address
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.identity import Identity
from hypermesh.transport.relaywire import RELAY_ALPN

log = logging.getLogger("hypermesh.relay")

HANDSHAKE_TIMEOUT = 10.0


def tls_context(identity: Identity) -> ssl.SSLContext:
    """A TLS 1.3 server context with ``identity``'s self-signed certificate and ALPN ``hm-relay``.

    The ssl module loads keys only from files: the key is written encrypted with a one-time
    password to a private temporary directory, loaded, and the directory removed at once.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_alpn_protocols([RELAY_ALPN])
    certificate = self_signed_certificate(identity)
    password = secrets.token_bytes(32)
    key_pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="hm-relay-") as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key_pem)
        context.load_cert_chain(cert_file, key_file, password=password)
    return context


def _observed(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_address(str(peer[0]), int(peer[1]))
    return "unknown:0"


async def open_tcp_listener(
    hub: RelayHub,
    host: str,
    port: int,
    identity: Identity,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    max_connections: int | None = None,
) -> asyncio.Server:
    """Listen for relay connections over TLS on ``host:port`` (port 0: any free one).

    ``max_connections`` defaults to twice the hub's reservations (room for nodes re-attaching
    while their old stream closes, and for streams still authenticating).
    """
    most = max_connections if max_connections is not None else hub.limits.max_reservations * 2
    open_count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_count
        if open_count >= most:
            log.info("relay: %s refused over TCP: %d connections open", _observed(writer), most)
            writer.close()
            return
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != RELAY_ALPN:
            writer.close()
            return
        open_count += 1
        transport = writer.transport
        try:
            await hub.serve_stream(
                reader,
                writer.write,
                writer.close,
                _observed(writer),
                buffered=transport.get_write_buffer_size,
            )
        finally:
            open_count -= 1
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), handshake_timeout)

    return await asyncio.start_server(
        serve,
        host,
        port,
        ssl=tls_context(identity),
        ssl_handshake_timeout=handshake_timeout,
        ssl_shutdown_timeout=handshake_timeout,
        reuse_address=True,
    )
