"""The node's TLS listener on TCP: DNS over TLS and DNS over HTTPS on HTTP/2 on every node, and
the relay on a relay-role node, on the public interface's host and UDP port number.

ALPN ``dot``, or none, is DNS over TLS (RFC 7858, ``dns.dot``) answered by the node's DNS
handler (the same as over QUIC, a mirror's forwarding included); ``h2`` is DNS over HTTPS
(RFC 8484, ``dns.doh2``) answered by the node's own ``/dns-query`` route, so the answers,
status codes and ``cache-control`` are those of HTTP/3; other paths are 404. Both are behind
the public gate, as over QUIC: a client over TCP presents no key, so it is judged by its
address (operation ``dns.query``). What the features before it offer over TLS (the relay's
``hm-relay``) is served beside them.

The port number is the UDP port's, on TCP. When something else holds it, or the node's own
HTTP/1.1 listener asks for it (``spec.web.listen`` on the same port number), a node that only
serves DNS here starts without it, with a warning in its log; a node with a service that
requires the listener (a relay) fails to start, as it always has. Its address is left on
``node.addresses.tls`` (None when it is not open).

With ``spec.tls`` (``NodeConfig.tls``) a second listener serves DNS over TLS and HTTP/2 (not
the relay) with the operator's certificate chain, on ``spec.tls.listen`` (by default the
public host, port 853), TLS 1.2 or 1.3, behind the same gate. It was asked for by name: a
certificate or key that fails its checks, or an address that is taken, fails the start with
the field and the file named. The files are watched: a renewed certificate is served to new
connections without a restart (``node.tls_tcp.watch_certified``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from hypermesh.dns.doh import DOH_PATH
from hypermesh.dns.doh2 import H2_ALPN, Doh2Limits, HttpRequest, HttpResponse, serve_doh2
from hypermesh.dns.doq import DnsHandler
from hypermesh.dns.dot import DOT_ALPN, serve_dot
from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig, TlsConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import Gate
from hypermesh.node.tls_tcp import (
    CertifiedContexts,
    StreamHandler,
    TlsListener,
    TlsService,
    observed,
    open_tls_listener,
    read_certified,
    watch_certified,
)
from hypermesh.timefmt import rfc3339
from hypermesh.transport.address import format_address, parse_address

log = logging.getLogger("hypermesh.tls")

DOH2_LIMITS = Doh2Limits()
"""The bounds of one HTTP/2 connection (100 streams, 16 KiB of headers, 30 s idle)."""


class TlsTcpFeature:
    """Every node listens on TCP; opens after the public interface (whose host and port
    number it shares), the DNS feature and the relay."""

    name = "tls"

    def enabled(self, config: NodeConfig) -> bool:
        return True

    async def open(self, node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
        if node.addresses.public is None:
            raise RuntimeError("the TLS listener opens after the public interface")
        await _open_self_signed(node, stack)
        if node.config.tls is not None:
            await _open_certified(node, stack, node.config.tls)


async def _open_self_signed(node: NodeContext, stack: contextlib.AsyncExitStack) -> None:
    """The listener with the node's own key, on the public port's number."""
    assert node.addresses.public is not None
    host, port = parse_address(node.addresses.public)
    services = list(node.tls_services.values())
    if node.dns_handler_for is not None:
        gate = node.public_gate()
        services.append(TlsService(DOT_ALPN, dot_service(node.dns_handler_for("dot"), gate)))
        services.append(TlsService(H2_ALPN, doh2_service(node.router, gate)))
    if not services:
        return
    required = [service.alpn for service in services if service.required]
    address = format_address(host, port)
    if not required and _web_takes(node.config.web_listen, port):
        log.warning("DNS over TLS and HTTP/2 are off: the web listener takes TCP %s", address)
        return
    listener = TlsListener(
        services, without_alpn=DOT_ALPN if node.dns_handler_for is not None else None
    )
    try:
        server = await open_tls_listener(host, port, node.identity, listener)
    except OSError as exc:
        if required:
            raise OSError(
                exc.errno,
                f"{', '.join(required)} cannot listen on TCP {address}: {exc.strerror}",
            ) from exc
        log.warning(
            "DNS over TLS and HTTP/2 are off: cannot listen on TCP %s: %s",
            address,
            exc.strerror,
        )
        return

    async def close() -> None:
        server.close()
        listener.close_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), listener.limits.handshake_timeout)

    stack.push_async_callback(close)
    node.addresses.tls = address


async def _open_certified(
    node: NodeContext, stack: contextlib.AsyncExitStack, tls: TlsConfig
) -> None:
    """The listener with the operator's certificate (``spec.tls``): DNS over TLS and HTTP/2
    only, its files watched for renewals. Fails the start when it cannot serve."""
    assert node.addresses.public is not None
    if node.dns_handler_for is None:
        raise HyperMeshError("spec.tls: this node serves no DNS to serve over TLS")
    gate = node.public_gate()
    listener = TlsListener(
        [
            TlsService(DOT_ALPN, dot_service(node.dns_handler_for("dot"), gate)),
            TlsService(H2_ALPN, doh2_service(node.router, gate)),
        ],
        without_alpn=DOT_ALPN,
    )
    contexts = CertifiedContexts(tls, listener.alpns, read_certified(tls))
    host, port = parse_address(tls.listen_on(parse_address(node.addresses.public)[0]))
    try:
        server = await open_tls_listener(host, port, contexts.front, listener)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"spec.tls.listen: cannot listen on TCP {format_address(host, port)}: {exc.strerror}",
        ) from exc
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_certified(contexts, stop), name="tls-certificate-watch")

    async def close() -> None:
        stop.set()
        server.close()
        listener.close_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), listener.limits.handshake_timeout)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(watcher, listener.limits.handshake_timeout)

    stack.push_async_callback(close)
    bound = server.sockets[0].getsockname()
    certified = contexts.certified
    log.info(
        "DNS over TLS and HTTP/2 with %s (serial %x, expires %s) on TCP %s",
        certified.subject,
        certified.serial,
        rfc3339(certified.not_after),
        format_address(str(bound[0]), int(bound[1])),
    )


def _web_takes(web_listen: str | None, port: int) -> bool:
    """Whether the node's HTTP/1.1 listener (``spec.web.listen``, opened later) asks for the
    same TCP port number: it was asked for by name, so it keeps it (QUIC and HTTP/1.1 on one
    port number, as web servers announce with ``alt-svc``)."""
    return web_listen is not None and parse_address(web_listen)[1] == port


def dot_service(handler: DnsHandler, gate: Gate | None) -> StreamHandler:
    """DNS over TLS with ``handler``'s answers; a query the gate refuses closes the
    connection unanswered (as its DoQ stream is reset)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if gate is None:
            await serve_dot(reader, writer, handler)
            return
        peer = observed(writer)

        def gated(query: bytes) -> bytes | Awaitable[bytes | None] | None:
            return handler(query) if gate(None, peer, "dns.query")[0] == 0 else None

        await serve_dot(reader, writer, gated)

    return serve


def doh2_service(router: Router, gate: Gate | None) -> StreamHandler:
    """DNS over HTTPS on HTTP/2, answered by ``router``'s ``/dns-query`` route."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = observed(writer)

        async def respond(request: HttpRequest) -> HttpResponse:
            if request.path != DOH_PATH:
                routed = RouteResponse.error(404, f"no such path: {request.path}")
            elif gate is not None and (verdict := gate(None, peer, "dns.query"))[0]:
                routed = RouteResponse.error(*verdict)
            else:
                routed = await router.dispatch(_request(request, peer))
            headers = (("content-type", routed.content_type), *routed.headers)
            return HttpResponse(routed.status, routed.body, headers)

        await serve_doh2(reader, writer, respond, DOH2_LIMITS)

    return serve


def _request(request: HttpRequest, peer: str) -> Request:
    return Request(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        body=request.body,
        peer=peer,
        peer_id=None,
    )
