"""The relay over TLS on TCP, for nodes whose network lets no UDP through.

A relay-role node serves relay attachments on its TLS listener (``node.tls_tcp``) under ALPN
``hm-relay``, beside DNS over TLS and over HTTP/2: ``relay_stream`` is that service. The
relay authenticates the client with the relay protocol's challenge (``transport.relaywire``),
so no client certificate is asked for; a client authenticates the relay by comparing the
certificate's key with the node ID it pinned. Each connection is one stream served by
``RelayHub.serve_stream``.

Bounds: at most ``max_connections`` relay connections are open at once (more are closed at
once, before any byte is read), besides the listener's own bound on all connections.
``open_tcp_listener`` is a listener that serves the relay alone (tests and tools).
"""

from __future__ import annotations

import asyncio
import logging

from hypermesh.node.relay_hub import RelayHub
from hypermesh.node.tls_tcp import (
    StreamHandler,
    TlsLimits,
    TlsListener,
    TlsService,
    observed,
    open_tls_listener,
)
from hypermesh.transport.identity import Identity
from hypermesh.transport.relaywire import RELAY_ALPN

log = logging.getLogger("hypermesh.relay")

HANDSHAKE_TIMEOUT = TlsLimits().handshake_timeout


def relay_stream(hub: RelayHub, max_connections: int | None = None) -> StreamHandler:
    """The relay's service on a TLS listener: each connection one ``hub.serve_stream``.

    ``max_connections`` defaults to twice the hub's reservations (room for nodes re-attaching
    while their old stream closes, and for streams still authenticating).
    """
    most = max_connections if max_connections is not None else hub.limits.max_reservations * 2
    open_count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_count
        if open_count >= most:
            log.info("relay: %s refused over TCP: %d connections open", observed(writer), most)
            return
        open_count += 1
        try:
            await hub.serve_stream(
                reader,
                writer.write,
                writer.close,
                observed(writer),
                buffered=writer.transport.get_write_buffer_size,
            )
        finally:
            open_count -= 1

    return serve


def relay_service(hub: RelayHub, max_connections: int | None = None) -> TlsService:
    """The relay on the node's TLS listener: required (a relay that cannot listen on TCP
    does not start)."""
    return TlsService(RELAY_ALPN, relay_stream(hub, max_connections), required=True)


async def open_tcp_listener(
    hub: RelayHub,
    host: str,
    port: int,
    identity: Identity,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    max_connections: int | None = None,
) -> asyncio.Server:
    """Listen for relay connections alone over TLS on ``host:port`` (port 0: any free one)."""
    listener = TlsListener(
        [relay_service(hub, max_connections)],
        limits=TlsLimits(handshake_timeout=handshake_timeout),
    )
    return await open_tls_listener(host, port, identity, listener)
