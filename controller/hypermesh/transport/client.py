"""An HTTP/3 client on aioquic that pins the peer's node ID and proves its own.

``connect_h3`` opens one authenticated connection that can carry many requests (keep
connections warm: a handshake costs as much as 10-15 requests); ``h3_get`` and ``h3_get_json``
make a single request on a fresh connection; ``fetch_status`` is the synchronous form for the
command line. Every failure surfaces as ``TransportError`` (``IdentityMismatch`` when the peer
holds another key, ``AccessDenied`` when it refuses us) with a message naming the address.

**Who calls is never left to chance.** Every way to connect takes ``identity``, with no default:
the key the client proves in the TLS handshake (a client certificate), so that the peer's
gates know which node (or administrator) asks and its InterfacePolicy's ``from`` rules match.
A client holding a node or administrator key passes it; ``None`` is an anonymous client, chosen
on purpose (a stranger's view, DNS for anyone, tunnels).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aioquic.asyncio.protocol import QuicConnectionProtocol, QuicStreamHandler
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StreamReset
from aioquic.tls import AlertDescription
from cryptography import x509

from hypermesh import __version__
from hypermesh.errors import NotReady, TransportError
from hypermesh.transport.address import parse_address
from hypermesh.transport.certificates import DNS_SUFFIX, self_signed_certificate
from hypermesh.transport.identity import Identity, public_key_from_node_id
from hypermesh.transport.pinning import check_peer
from hypermesh.transport.recovery import cap_backoff
from hypermesh.transport.udp import tune_datagram_transport

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""A response body larger than this is refused (a peer must not exhaust our memory)."""
USER_AGENT = f"hypermesh/{__version__}"

Headers = dict[str, str]

REFUSING_STATUSES = frozenset({403, 429})
"""HTTP statuses by which a peer refuses the caller (its gate, a rate limit), not the request."""
_CRYPTO_ERROR = 0x100
"""QUIC carries a TLS alert as CRYPTO_ERROR 0x100 + the alert (RFC 9001 §4.8)."""
REFUSING_ALERTS = frozenset(
    _CRYPTO_ERROR + alert
    for alert in (
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_revoked,
        AlertDescription.certificate_expired,
        AlertDescription.certificate_unknown,
        AlertDescription.access_denied,
        AlertDescription.decrypt_error,
        AlertDescription.certificate_required,
    )
)
"""QUIC error codes by which a peer refuses the client's certificate (its key) in the
handshake."""


class AccessDenied(TransportError):
    """The peer answered, and will not serve this caller: 403 or 429 from its gate, or a TLS
    alert refusing the client's certificate (``status`` 0)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def status_error(address: str, what: str, status: int, body: bytes) -> TransportError:
    """The error for an answer to ``what`` (``GET /path``) that is not the one wanted:
    ``AccessDenied`` for a refusal of the caller (403, 429), ``NotReady`` for 503 (the peer
    cannot answer yet), else ``TransportError``."""
    message = f"{address}: {what} answered {status}: {_error_text(body)}"
    if status in REFUSING_STATUSES:
        return AccessDenied(message, status)
    if status == 503:
        return NotReady(message)
    return TransportError(message)


def closed_error(address: str, event: ConnectionTerminated | None, fallback: str) -> TransportError:
    """The error for a connection the peer ended: ``AccessDenied`` when it refused the
    client's certificate, else ``TransportError``."""
    if event is None:
        return TransportError(f"{address}: {fallback}")
    message = f"{address}: {fallback}: {_describe_close(event)}"
    if event.error_code in REFUSING_ALERTS:
        return AccessDenied(message, 0)
    return TransportError(message)


class _Exchange:
    """One request in flight: what has arrived so far and who waits for it. A streamed
    exchange settles its future on the headers and queues the body's pieces (None: the end;
    an exception: the connection failed)."""

    __slots__ = ("body", "future", "headers", "pieces")

    def __init__(
        self, future: asyncio.Future[tuple[int, Headers, bytes]], *, streamed: bool = False
    ) -> None:
        self.future = future
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.pieces: asyncio.Queue[bytes | Exception | None] | None = (
            asyncio.Queue() if streamed else None
        )


class H3ClientProtocol(QuicConnectionProtocol):
    """A QUIC connection speaking HTTP/3 as a client; ``request`` sends one request."""

    def __init__(self, quic: QuicConnection, stream_handler: QuicStreamHandler | None = None):
        super().__init__(quic, stream_handler)
        cap_backoff(quic)
        self.address = "?"
        """The peer's ``host:port``, for messages."""
        self._http: H3Connection | None = None
        self._exchanges: dict[int, _Exchange] = {}
        self.close_reason: str | None = None
        """Why the connection ended, once it has."""
        self.close_event: ConnectionTerminated | None = None

    @property
    def quic(self) -> QuicConnection:
        """The underlying QUIC connection (for pinning and diagnostics)."""
        return self._quic

    async def ping(self) -> None:
        """A QUIC PING, answered when the peer acknowledges it; ``ConnectionError`` if the
        connection ends first. Unlike aioquic's (which shields its waiter), a wait cut short by
        a timeout takes its waiter away: the connection's end later fails no orphaned future
        ("Future exception was never retrieved" in the log)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        uid = id(waiter)
        self._ping_waiters[uid] = waiter
        self._quic.send_ping(uid)
        self.transmit()
        try:
            await waiter
        finally:
            self._ping_waiters.pop(uid, None)

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> tuple[int, Headers, bytes]:
        """Send one request and wait for the whole response: ``(status, headers, body)``."""
        stream_id, exchange = self._send_request(method, path, headers, body, streamed=False)
        try:
            return await exchange.future
        finally:
            self._exchanges.pop(stream_id, None)

    @asynccontextmanager
    async def subscribe(
        self, method: str, path: str, *, headers: Iterable[tuple[str, str]] = ()
    ) -> AsyncIterator[tuple[int, Headers, AsyncIterator[bytes]]]:
        """Send one request whose response body keeps coming (a subscription): yields
        ``(status, headers, pieces)`` once the headers arrive; ``pieces`` gives the body as it
        arrives, ends with the stream and raises ``TransportError`` if the connection fails."""
        stream_id, exchange = self._send_request(method, path, headers, b"", streamed=True)
        try:
            status, answered, _ = await exchange.future
            yield status, answered, _pieces(exchange)
        finally:
            self._exchanges.pop(stream_id, None)

    def _send_request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        streamed: bool,
    ) -> tuple[int, _Exchange]:
        if self._http is None:
            raise TransportError(f"{self.address}: HTTP/3 was not negotiated")
        if self.close_reason is not None:
            raise closed_error(self.address, self.close_event, "connection closed")
        stream_id = self._quic.get_next_available_stream_id()
        exchange = _Exchange(self._loop.create_future(), streamed=streamed)
        self._exchanges[stream_id] = exchange
        request_headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", self.address.encode()),
            (b":path", path.encode()),
            (b"user-agent", USER_AGENT.encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers),
        ]
        self._http.send_headers(stream_id, request_headers, end_stream=not body)
        if body:
            self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()
        return stream_id, exchange

    # -- events ---------------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        """Feed QUIC events to HTTP/3 and settle the requests they complete."""
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._http = H3Connection(self._quic)
        elif isinstance(event, ConnectionTerminated):
            self.close_reason = _describe_close(event)
            self.close_event = event
            for exchange in self._exchanges.values():
                _fail(exchange, closed_error(self.address, event, "connection closed"))
        elif isinstance(event, StreamReset) and event.stream_id in self._exchanges:
            _fail(
                self._exchanges[event.stream_id],
                TransportError(
                    f"{self.address}: the peer reset the request (error {event.error_code})"
                ),
            )
        if self._http is not None:
            for h3_event in self._http.handle_event(event):
                self._h3_event_received(h3_event)

    def _h3_event_received(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        exchange = self._exchanges.get(event.stream_id)
        if exchange is None:
            return
        if exchange.pieces is not None:
            self._streamed(exchange, event)
            return
        if exchange.future.done():
            return
        if isinstance(event, HeadersReceived):
            if not exchange.headers:  # later HEADERS frames are trailers
                exchange.headers = list(event.headers)
        else:
            exchange.body += event.data
            if len(exchange.body) > MAX_RESPONSE_BYTES:
                _fail(
                    exchange,
                    TransportError(
                        f"{self.address}: response larger than {MAX_RESPONSE_BYTES} bytes"
                    ),
                )
                return
        if event.stream_ended:
            _settle(exchange, self.address)

    def _streamed(self, exchange: _Exchange, event: HeadersReceived | DataReceived) -> None:
        assert exchange.pieces is not None
        if isinstance(event, HeadersReceived):
            if not exchange.future.done():
                exchange.headers = list(event.headers)
                _settle(exchange, self.address)
        elif event.data:
            exchange.pieces.put_nowait(event.data)
        if event.stream_ended:
            if not exchange.future.done():
                _settle(exchange, self.address)
            exchange.pieces.put_nowait(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the QUIC timer once the socket is gone (nothing more can be sent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _settle(exchange: _Exchange, address: str) -> None:
    headers: Headers = {}
    status: int | None = None
    for name, value in exchange.headers:
        key = name.decode("ascii", "replace")
        text = value.decode("utf-8", "replace")
        if key == ":status":
            status = int(text) if text.isascii() and text.isdigit() else None
        elif not key.startswith(":"):
            headers[key] = text
    if status is None:
        _fail(exchange, TransportError(f"{address}: the response had no valid :status"))
        return
    exchange.future.set_result((status, headers, bytes(exchange.body)))


def _fail(exchange: _Exchange, error: TransportError) -> None:
    if not exchange.future.done():
        exchange.future.set_exception(error)
    if exchange.pieces is not None:
        exchange.pieces.put_nowait(error)


async def _pieces(exchange: _Exchange) -> AsyncIterator[bytes]:
    assert exchange.pieces is not None
    while True:
        piece = await exchange.pieces.get()
        if piece is None:
            return
        if isinstance(piece, Exception):
            raise piece
        yield piece


def _describe_close(event: ConnectionTerminated) -> str:
    reason = event.reason_phrase or "no reason given"
    return f"{reason} (QUIC error 0x{event.error_code:x})"


def client_configuration(
    expected_id: str | None, alpn: str = "h3", *, identity: Identity | None
) -> QuicConfiguration:
    """A client configuration that accepts any certificate; the caller pins the node ID. With
    ``identity``, the client presents a certificate for its key when the server asks, and so
    proves to the server which node it is (mutual authentication); ``None``: anonymous."""
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=[alpn],
        verify_mode=ssl.CERT_NONE,
        server_name=expected_id + DNS_SUFFIX if expected_id else None,
    )
    if identity is not None:
        configuration.certificate = _client_certificate(identity)
        configuration.private_key = identity.private_key
    return configuration


_CERTIFICATES: dict[str, tuple[float, x509.Certificate]] = {}
CERTIFICATE_REUSE = 24 * 3600.0
"""Seconds a client certificate is reused for (it is valid for 30 days)."""


def _client_certificate(identity: Identity) -> x509.Certificate:
    """The client certificate for ``identity``, made once a day rather than per connection
    (0.14 ms each: a tenth of what a private handshake costs the client more than a public one)."""
    now = time.monotonic()
    held = _CERTIFICATES.get(identity.node_id)
    if held is None or now - held[0] > CERTIFICATE_REUSE:
        if len(_CERTIFICATES) > 1024:
            _CERTIFICATES.clear()
        held = _CERTIFICATES[identity.node_id] = (now, self_signed_certificate(identity))
    return held[1]


@asynccontextmanager
async def connect_h3(
    address: str, *, expected_id: str | None, identity: Identity | None
) -> AsyncIterator[H3ClientProtocol]:
    """Open an HTTP/3 connection to ``address`` and check the peer is ``expected_id``, proving
    ``identity``'s key in the handshake (``None``: an anonymous client).

    Bound the wait with ``asyncio.timeout()`` around this: a QUIC peer that is not there only
    ever shows as silence. Raises ``TransportError``, or ``IdentityMismatch`` before any
    request is sent; ``ValueError`` when ``expected_id`` is not a well-formed node ID.
    """
    async with connect_pinned(
        address, expected_id=expected_id, protocol=H3ClientProtocol, identity=identity
    ) as h3:
        yield h3


P = TypeVar("P", bound=QuicConnectionProtocol)


@asynccontextmanager
async def connect_pinned(
    address: str,
    *,
    expected_id: str | None,
    identity: Identity | None,
    protocol: Callable[[QuicConnection], P],
    alpn: str = "h3",
) -> AsyncIterator[P]:
    """A QUIC connection to ``address`` speaking ``alpn``, whose peer is checked to be
    ``expected_id`` before the caller gets it, the client proving ``identity`` (see
    ``connect_h3``). ``AccessDenied`` when the peer refuses the client's certificate."""
    if expected_id is not None:
        public_key_from_node_id(expected_id)
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise TransportError(str(exc)) from exc
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise TransportError(f"{address}: cannot resolve {host!r}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    configuration = client_configuration(expected_id, alpn, identity=identity)
    if configuration.server_name is None:
        configuration.server_name = host
    quic = QuicConnection(configuration=configuration)
    try:
        transport, client = await loop.create_datagram_endpoint(
            lambda: protocol(quic), family=family
        )
    except OSError as exc:
        raise TransportError(f"{address}: cannot open a UDP socket: {exc}") from exc
    tune_datagram_transport(transport)
    client.address = address  # type: ignore[attr-defined]
    try:
        client.connect(sockaddr)
        try:
            await client.wait_connected()
        except ConnectionError as exc:
            raise closed_error(address, quic._close_event, f"QUIC handshake failed: {exc}") from exc
        except OSError as exc:
            raise TransportError(f"{address}: {exc}") from exc
        check_peer(client._quic, expected_id, address)
        yield client
    finally:
        client.close()  # sends CONNECTION_CLOSE at once; no need to wait for the drain
        transport.close()


async def h3_get(
    address: str,
    path: str,
    *,
    expected_id: str | None,
    identity: Identity | None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the contract; the message names the limit
) -> tuple[int, Headers, bytes]:
    """GET ``path`` from the node at ``address`` over a fresh pinned connection, proving
    ``identity`` (``None``: anonymous).

    Returns ``(status, headers, body)`` whatever the status; raises ``TransportError`` when no
    answer arrives within ``timeout`` seconds or the exchange fails.
    """
    connected = False
    try:
        async with (
            asyncio.timeout(timeout),
            connect_h3(address, expected_id=expected_id, identity=identity) as h3,
        ):
            connected = True
            return await h3.request("GET", path, headers=[("accept", "application/json")])
    except TimeoutError:
        if connected:
            raise TransportError(
                f"{address}: no response to GET {path} within {timeout:g}s"
            ) from None
        raise TransportError(
            f"{address}: no QUIC handshake within {timeout:g}s (is a node listening there?)"
        ) from None
    except OSError as exc:
        raise TransportError(f"{address}: {exc}") from exc


async def h3_get_json(
    address: str,
    path: str,
    *,
    expected_id: str | None,
    identity: Identity | None,
    timeout: float = 5.0,  # noqa: ASYNC109 - as h3_get
) -> dict[str, Any]:
    """GET ``path`` and decode a JSON object, proving ``identity`` (``None``: anonymous); any
    status but 200 is a ``TransportError`` (``AccessDenied`` for 403 and 429)."""
    status, _, body = await h3_get(
        address, path, expected_id=expected_id, timeout=timeout, identity=identity
    )
    return json_object(address, path, status, body)


async def get_json(h3: H3ClientProtocol, path: str, *, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """GET ``path`` on an open connection and decode a JSON object (``json_object``)."""
    async with asyncio.timeout(timeout):
        status, _, body = await h3.request("GET", path, headers=[("accept", "application/json")])
    return json_object(h3.address, path, status, body)


def json_object(address: str, path: str, status: int, body: bytes) -> dict[str, Any]:
    """The JSON object a ``GET path`` answered; ``TransportError`` (``AccessDenied`` for 403
    and 429) for any status but 200, a body that is not JSON, or JSON that is no object."""
    if status != 200:
        raise status_error(address, f"GET {path}", status, body)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise TransportError(f"{address}: GET {path} returned invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TransportError(f"{address}: GET {path} returned {type(data).__name__}, not object")
    return data


async def h3_post(
    address: str,
    path: str,
    body: bytes,
    *,
    expected_id: str | None,
    identity: Identity | None,
    content_type: str = "application/json",
    timeout: float = 10.0,  # noqa: ASYNC109 - as h3_get
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` over a fresh pinned connection, proving ``identity`` (``None``:
    anonymous); returns the status and the answer as a JSON object (``{}`` when it is not
    one). ``TransportError`` when no answer comes in time."""
    try:
        async with (
            asyncio.timeout(timeout),
            connect_h3(address, expected_id=expected_id, identity=identity) as h3,
        ):
            status, _, answer = await h3.request(
                "POST", path, headers=[("content-type", content_type)], body=body
            )
    except TimeoutError:
        raise TransportError(f"{address}: no answer to POST {path} within {timeout:g}s") from None
    return status, json_answer(answer)


def json_answer(body: bytes) -> dict[str, Any]:
    """An answer's body as a JSON object; ``{}`` when it is empty, not JSON or no object (an
    error's status still says what happened)."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def fetch_status(
    address: str, expected_id: str | None, *, identity: Identity | None, timeout: float = 5.0
) -> dict[str, Any]:
    """``GET /status`` from a node, synchronously (for the command line; not inside a loop)."""
    return asyncio.run(
        h3_get_json(address, "/status", expected_id=expected_id, identity=identity, timeout=timeout)
    )


def _error_text(body: bytes) -> str:
    """The ``error`` field of a JSON error body, or the start of the body."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        return error
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "(empty body)"
