"""DNS over HTTPS on HTTP/2 (RFC 8484 over TLS on TCP), on the ``h2`` library's state machine.

``Doh2Connection`` is the HTTP/2 side of one connection without I/O: bytes in, whole requests
(``HttpRequest``) out, responses (``HttpResponse``) in, bytes to send out. It knows nothing
of DNS: what answers a request is the caller's (the node answers ``/dns-query`` with the same
route, ``dns.doh.handle_doh`` behind it, as over HTTP/3, so the answers, status codes and
``cache-control: max-age`` are the same). ``serve_doh2`` serves one TLS connection with it
(the node's TLS listener hands it the connections that negotiated ALPN ``h2``).

Bounds (``Doh2Limits``), each told to the client in the server's SETTINGS where HTTP/2 has
one: at most ``max_streams`` requests at once (SETTINGS_MAX_CONCURRENT_STREAMS; a request past
it, before the client has acknowledged the setting, is refused with REFUSED_STREAM); a header
section of at most ``max_header_list`` bytes (SETTINGS_MAX_HEADER_LIST_SIZE); a body of at
most ``max_body`` bytes (a larger one, or a ``content-length`` that says so, is answered 413
at once and the rest of the body dropped as it comes, its stream reset past a MiB); the
connection closes (GOAWAY) after ``idle_timeout`` seconds without a byte and no request being
answered. A frame that breaks HTTP/2 (a request without ``:method`` or ``:path`` among them)
ends the connection with the GOAWAY the state machine chooses (PROTOCOL_ERROR,
FRAME_SIZE_ERROR, …), never a traceback; a frame announcing more than 16 KiB
(SETTINGS_MAX_FRAME_SIZE) ends it as soon as its header comes, before its payload is held. A
request whose ``:path`` does not start with ``/`` is answered 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from hypermesh.dns.answers import MAX_MESSAGE

log = logging.getLogger(__name__)

H2_ALPN = "h2"
"""The ALPN token of HTTP/2 over TLS."""
READ_SIZE = 65536
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What an HTTP/2 client sends first (RFC 9113 §3.4)."""
MAX_FRAME = 16384
"""The largest frame payload a client may send (SETTINGS_MAX_FRAME_SIZE left at its default)."""
DROP_AT_MOST = 1 << 20
"""Bytes of a body answered 413 dropped as they come before its stream is reset (CANCEL)."""


@dataclass(frozen=True, slots=True)
class Doh2Limits:
    """What one HTTP/2 connection may hold."""

    max_streams: int = 100
    """Requests open at once (SETTINGS_MAX_CONCURRENT_STREAMS)."""
    max_header_list: int = 16384
    """Bytes of one request's header section, decoded (SETTINGS_MAX_HEADER_LIST_SIZE)."""
    max_body: int = MAX_MESSAGE
    """Bytes of one request's body: a DNS message."""
    idle_timeout: float = 30.0
    """Seconds without a byte from the client, and no request being answered, before the
    connection closes."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One whole request."""

    stream_id: int
    method: str
    path: str
    """Without the query string."""
    query: str
    """After ``?``; empty when none."""
    headers: tuple[tuple[str, str], ...]
    """Regular headers (no pseudo-headers), lowercased names, in arrival order."""
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lowercase)."""
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One response to send."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    """``content-type`` and the rest (``content-length`` is added)."""


@dataclass(slots=True)
class _Incoming:
    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytearray = field(default_factory=bytearray)


class Doh2Connection:
    """The server side of one HTTP/2 connection."""

    def __init__(self, limits: Doh2Limits | None = None) -> None:
        self.limits = limits or Doh2Limits()
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=config)
        self._incoming: dict[int, _Incoming] = {}
        self._answering: set[int] = set()
        self._outgoing: dict[int, bytes] = {}
        self._dropping: dict[int, int] = {}
        self._frames = _FrameLengths(MAX_FRAME)
        """Bytes dropped of the bodies of requests answered 413 while still arriving."""
        """Body bytes of responses waiting for the client's flow-control window."""
        self.closed = False
        """The connection ended (GOAWAY sent or received): send what is queued and close."""

    def start(self) -> None:
        """Queue the server's connection preface (its SETTINGS)."""
        codes = h2.settings.SettingCodes
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: self.limits.max_streams,
                codes.MAX_HEADER_LIST_SIZE: self.limits.max_header_list,
                codes.ENABLE_PUSH: 0,
            },
        )
        self._h2.initiate_connection()

    def data_to_send(self) -> bytes:
        """What to write to the client now."""
        return self._h2.data_to_send()

    def close(self) -> None:
        """End the connection (GOAWAY, NO_ERROR): the client may open no more requests."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection(h2.errors.ErrorCodes.NO_ERROR)

    def receive(self, data: bytes) -> list[HttpRequest]:
        """The requests ``data`` completes (answer each with ``respond``)."""
        if self.closed:
            return []
        if not self._frames.check(data):
            log.debug("DoH2: connection ended: a frame over %d bytes", MAX_FRAME)
            self.closed = True
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
            return []
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:  # the GOAWAY is queued
            log.debug("DoH2: connection ended: %s", exc)
            self.closed = True
            return []
        requests: list[HttpRequest] = []
        for event in events:
            done = self._event(event)
            if done is not None:
                requests.append(done)
        return requests

    def _event(self, event: h2.events.Event) -> HttpRequest | None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None
            self._headers(event.stream_id, list(event.headers or []))
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self._data(event.stream_id, event.data or b"")
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self._incoming:
                return self._complete(event.stream_id)
            self._dropping.pop(event.stream_id or 0, None)
        elif isinstance(event, h2.events.StreamReset):
            self._forget(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id:
                self._flush(event.stream_id)
            else:
                self._flush_all()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True
        return None

    def _headers(self, stream_id: int, fields: list[tuple[object, object]]) -> None:
        pseudo: dict[str, str] = {}
        regular: list[tuple[str, str]] = []
        for raw_name, raw_value in fields:
            name, value = _text(raw_name), _text(raw_value)
            if name.startswith(":"):
                pseudo.setdefault(name, value)
            else:
                regular.append((name.lower(), value))
        if len(self._incoming) + len(self._answering) >= self.limits.max_streams:
            self._reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        method, target = pseudo.get(":method", ""), pseudo.get(":path", "")
        if not method or not target.startswith("/"):
            self.respond(stream_id, _error(400, "missing :method or :path"))
            self._reset(stream_id, h2.errors.ErrorCodes.NO_ERROR)
            return
        length = next((value for name, value in regular if name == "content-length"), "")
        if length.isascii() and length.isdigit() and int(length) > self.limits.max_body:
            self._too_large(stream_id)
            return
        path, _, query = target.partition("?")
        self._incoming[stream_id] = _Incoming(method, path, query, tuple(regular))

    def _data(self, stream_id: int, data: bytes) -> None:
        incoming = self._incoming.get(stream_id)
        if incoming is None:  # answered already (413): its bytes are acknowledged and dropped
            dropped = self._dropping.get(stream_id, 0) + len(data)
            if dropped > DROP_AT_MOST:
                self._reset(stream_id, h2.errors.ErrorCodes.CANCEL)
            elif stream_id in self._dropping:
                self._dropping[stream_id] = dropped
            return
        if len(incoming.body) + len(data) > self.limits.max_body:
            del self._incoming[stream_id]
            self._too_large(stream_id)
            return
        incoming.body += data

    def _too_large(self, stream_id: int) -> None:
        """Answer 413 at once; the rest of the body is dropped as it comes (clients do not all
        take a reset of a stream they are still sending on), up to ``DROP_AT_MOST`` bytes."""
        self.respond(stream_id, _error(413, f"a request body has at most {self.limits.max_body}"))
        self._dropping[stream_id] = 0

    def _complete(self, stream_id: int) -> HttpRequest:
        incoming = self._incoming.pop(stream_id)
        self._answering.add(stream_id)
        return HttpRequest(
            stream_id,
            incoming.method,
            incoming.path,
            incoming.query,
            incoming.headers,
            bytes(incoming.body),
        )

    def respond(self, stream_id: int, response: HttpResponse) -> None:
        """Send ``response`` on ``stream_id`` (as far as the client's window lets; the rest
        when it opens). A stream the client reset meanwhile is let go quietly."""
        self._answering.discard(stream_id)
        headers = [
            (b":status", str(response.status).encode()),
            *((name.encode(), value.encode()) for name, value in response.headers),
            (b"content-length", str(len(response.body)).encode()),
        ]
        try:
            self._h2.send_headers(stream_id, headers, end_stream=not response.body)
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as exc:
            log.debug("DoH2: response not sent: %s", exc)
            return
        if response.body:
            self._outgoing[stream_id] = response.body
            self._flush(stream_id)

    def _flush(self, stream_id: int) -> None:
        body = self._outgoing.get(stream_id)
        if body is None:
            return
        try:
            while body:
                window = self._h2.local_flow_control_window(stream_id)
                size = min(window, self._h2.max_outbound_frame_size, len(body))
                if size <= 0:
                    break
                self._h2.send_data(stream_id, body[:size], end_stream=size == len(body))
                body = body[size:]
        except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as exc:
            log.debug("DoH2: response not sent: %s", exc)
            body = b""
        if body:
            self._outgoing[stream_id] = body
        else:
            del self._outgoing[stream_id]

    def _flush_all(self) -> None:
        for stream_id in list(self._outgoing):
            self._flush(stream_id)

    def _forget(self, stream_id: int | None) -> None:
        if stream_id is not None:
            self._incoming.pop(stream_id, None)
            self._outgoing.pop(stream_id, None)
            self._answering.discard(stream_id)
            self._dropping.pop(stream_id, None)

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        self._forget(stream_id)
        with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, code)


class _FrameLengths:
    """Reads the length of every frame as its header arrives, so that one announcing more than
    ``limit`` bytes ends the connection at once: the ``h2`` state machine would keep its bytes
    until the whole frame had come (up to 16 MiB) before refusing it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._skip = len(PREFACE)
        self._header = bytearray()

    def check(self, data: bytes) -> bool:
        """False when ``data`` holds a frame header announcing more than ``limit`` bytes."""
        at = 0
        while at < len(data):
            if self._skip:
                taken = min(self._skip, len(data) - at)
                self._skip -= taken
                at += taken
                continue
            taken = min(9 - len(self._header), len(data) - at)
            self._header += data[at : at + taken]
            at += taken
            if len(self._header) == 9:
                length = int.from_bytes(self._header[:3], "big")
                if length > self.limit:
                    return False
                self._skip = length
                self._header.clear()
        return True


def _text(part: object) -> str:
    if isinstance(part, bytes):
        return part.decode("latin-1")
    return str(part)


def _error(status: int, message: str) -> HttpResponse:
    body = ('{"error":"' + message.replace('"', "'") + '"}\n').encode()
    return HttpResponse(status, body, (("content-type", "application/json"),))


Respond = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""Answers one request (never raises: a failure is a 500 it chooses itself)."""


async def serve_doh2(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    respond: Respond,
    limits: Doh2Limits | None = None,
) -> None:
    """Serve one HTTP/2 connection until the client ends it or it stays idle; the caller
    closes the writer."""
    connection = Doh2Connection(limits)
    connection.start()
    writer.write(connection.data_to_send())
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: HttpRequest) -> None:
        try:
            response = await respond(request)
        except Exception:
            log.exception("DoH2 request not answered")
            response = _error(500, "internal error")
        connection.respond(request.stream_id, response)
        if not writer.is_closing():
            writer.write(connection.data_to_send())

    try:
        while not connection.closed and not writer.is_closing():
            try:
                data = await asyncio.wait_for(
                    reader.read(READ_SIZE), connection.limits.idle_timeout
                )
            except TimeoutError:
                if tasks:  # the client waits for answers: it is not idle
                    await asyncio.wait(tasks, timeout=connection.limits.idle_timeout)
                    continue
                connection.close()
                break
            if not data:
                break
            for request in connection.receive(data):
                task = asyncio.ensure_future(answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            writer.write(connection.data_to_send())
            await writer.drain()
        if tasks and not writer.is_closing():
            await asyncio.wait(tasks, timeout=connection.limits.idle_timeout)
        writer.write(connection.data_to_send())
        await writer.drain()
    finally:
        for task in tasks:
            task.cancel()
