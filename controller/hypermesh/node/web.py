"""The node's read-only pages over HTTP/1.1 on TCP, for browsers and Prometheus.

Everything a node serves is on its QUIC endpoint; browsers only reach HTTP/3 after they have
been told about it over TCP, and Prometheus scrapes over TCP. So a node can also listen on TCP
and answer ``GET`` and ``HEAD`` for a few read-only paths (``WEB_PATHS``) through the same
router as HTTP/3. Writes, DNS and anything else are not served here. Every response carries
``alt-svc`` naming the node's HTTP/3 port.

h11 does the HTTP/1.1 parsing (keep-alive, pipelining rules, limits); connections are bounded
in number, request size and idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import h11

from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.transport.address import format_address, parse_address

log = logging.getLogger(__name__)

WEB_PATHS = ("/registry/", "/metrics", "/status", "/healthz", "/dashboard/")
"""Paths (and, for those ending in ``/``, everything under them) served over TCP."""

MAX_CONNECTIONS = 256
MAX_REQUEST_BYTES = 16 * 1024
IDLE_TIMEOUT = 30.0


def served_over_tcp(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in WEB_PATHS)


@dataclass(slots=True)
class WebServer:
    """A bound listener; ``close()`` stops it and its connections."""

    server: asyncio.Server
    address: str

    def close(self) -> None:
        self.server.close()


async def start_web(listen: str, router: Router, *, h3_port: int) -> WebServer:
    """Listen on ``listen`` (``host:port``; port 0 picks one) and serve ``router``'s
    read-only paths. Raises ``OSError`` when the address cannot be bound."""
    host, port = parse_address(listen)
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    alt_svc = f'h3=":{h3_port}"; ma=86400'

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if slots.locked():
            writer.close()
            return
        async with slots:
            try:
                await _serve_connection(reader, writer, router, alt_svc)
            except (ConnectionError, TimeoutError, h11.ProtocolError):
                pass
            except Exception:
                log.exception("web connection failed")
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()

    server = await asyncio.start_server(on_connection, host, port, reuse_address=True)
    bound = server.sockets[0].getsockname()
    return WebServer(server, format_address(bound[0], bound[1]))


async def _serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    router: Router,
    alt_svc: str,
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    peer = writer.get_extra_info("peername")
    peer_text = format_address(peer[0], peer[1]) if peer else ""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            _refuse(conn, writer, exc)
            return
        if event is h11.NEED_DATA:
            async with asyncio.timeout(IDLE_TIMEOUT):
                data = await reader.read(MAX_REQUEST_BYTES)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return
        if not isinstance(event, h11.Request):
            continue
        method = event.method.decode("ascii", "replace").upper()
        target = event.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        response = await _respond(router, method, path, query, peer_text, event.headers)
        if response.stream is not None:
            if method == "HEAD":
                await response.stream.aclose()
            else:
                await _send_stream(conn, reader, writer, response, alt_svc)
                return
        body = b"" if method == "HEAD" else response.body
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("alt-svc", alt_svc),
            *response.headers,
        ]
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)) if body else b"")
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        # the request body (if any) is read and dropped before the next request
        while conn.their_state is h11.SEND_BODY:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    conn.receive_data(await reader.read(MAX_REQUEST_BYTES))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


async def _send_stream(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    response: RouteResponse,
    alt_svc: str,
) -> None:
    """A body sent piece by piece as the route produces it (server-sent events), until the
    route ends it or the client goes (then the connection closes)."""
    assert response.stream is not None
    stream = response.stream
    headers = [("content-type", response.content_type), ("alt-svc", alt_svc), *response.headers]
    gone = asyncio.ensure_future(reader.read(1))  # anything more, or the end, ends the stream
    piece: asyncio.Future[bytes] | None = None
    try:
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers)))
        if response.body:
            writer.write(conn.send(h11.Data(data=response.body)))
        while True:
            piece = asyncio.ensure_future(stream.__anext__())
            await asyncio.wait((piece, gone), return_when=asyncio.FIRST_COMPLETED)
            if not piece.done():
                return
            try:
                data = piece.result()
            except StopAsyncIteration:
                break
            writer.write(conn.send(h11.Data(data=data)))
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
    finally:
        gone.cancel()
        if piece is not None and not piece.done():
            piece.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await piece
        await stream.aclose()


def _refuse(conn: h11.Connection, writer: asyncio.StreamWriter, exc: h11.ProtocolError) -> None:
    """Answer a malformed request with its 4xx (h11 says which) before closing, if we still can."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = f"bad request: {exc}\n".encode()
    headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
    with contextlib.suppress(h11.LocalProtocolError):
        writer.write(conn.send(h11.Response(status_code=exc.error_status_hint, headers=headers)))
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))


async def _respond(
    router: Router,
    method: str,
    path: str,
    query: str,
    peer: str,
    raw_headers: Iterable[tuple[bytes, bytes]],
) -> RouteResponse:
    if not served_over_tcp(path):
        return RouteResponse.error(404, f"{path} is not served over TCP; use HTTP/3")
    if method not in ("GET", "HEAD"):
        return RouteResponse.error(
            405, f"{method} is not allowed over TCP; it is read-only", (("allow", "GET, HEAD"),)
        )
    headers = tuple(
        (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw_headers
    )
    request = Request("GET", path, query, headers, b"", peer)
    return await router.dispatch(request)
