"""HTTP/1.1 with a browser over one stream (plain, or TLS after CONNECT), through h11: reading
requests with their bodies under the gateway's bounds, and writing responses."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

import h11

READ_SIZE = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "user-agent",
    }
)
"""Headers that describe one hop (or that the next hop writes itself): never passed on."""
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")


def _phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class TooBig(Exception):
    """A request's body is over the bound."""


class Closed(Exception):
    """The browser closed the connection, or went quiet for too long."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One whole request from the browser."""

    method: str
    target: bytes
    headers: tuple[tuple[str, str], ...]
    body: bytes


def forwardable(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers to pass on: lower-case names that are tokens, printable values, no
    hop-by-hop ones (nor those the ``connection`` header names)."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    kept = []
    for name, value in headers:
        lowered = name.lower()
        if (
            lowered in HOP_BY_HOP
            or lowered in named
            or lowered.startswith(":")
            or not _TOKEN.match(lowered)
        ):
            continue
        if "\r" in value or "\n" in value or "\0" in value:
            continue
        kept.append((lowered, value))
    return kept


class HttpStream:
    """h11 over an asyncio stream pair, server side."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_header_bytes: int,
        idle_timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_timeout = idle_timeout
        self.max_header_bytes = max_header_bytes
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)

    async def _event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(self.idle_timeout):
                    data = await self.reader.read(READ_SIZE)
            except (TimeoutError, OSError) as exc:
                raise Closed(str(exc) or "idle") from None
            self.conn.receive_data(data)

    async def request(self, max_body: int) -> Incoming | None:
        """The next whole request, None when the browser is done. ``h11.RemoteProtocolError``
        for a malformed one, ``TooBig`` for a body over ``max_body``."""
        event = await self._event()
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError("expected a request", error_status_hint=400)
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers)
        if len(event.target) + sum(len(n) + len(v) + 4 for n, v in headers) > self.max_header_bytes:
            # h11 bounds only what has not arrived whole; a request that came in one read is
            # bounded here.
            raise h11.RemoteProtocolError("the request's headers are too big", 431)
        declared = dict(headers).get("content-length", "0")
        if declared.isdigit() and int(declared) > max_body:  # h11 checked it is a number
            raise TooBig(f"the request body is over {max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            part = await self._event()
            if isinstance(part, h11.Data):
                size += len(part.data)
                if size > max_body:
                    raise TooBig(f"the request body is over {max_body} bytes")
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise h11.RemoteProtocolError("the request ended early", error_status_hint=400)
        return Incoming(
            event.method.decode("ascii"), bytes(event.target), headers, b"".join(chunks)
        )

    async def respond(
        self,
        status: int,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        head: bool = False,
        close: bool = False,
    ) -> None:
        """Send one whole response (no body on the wire for ``head``)."""
        fields = [*forwardable(headers), ("content-length", str(len(body)))]
        if close:
            fields.append(("connection", "close"))
        phrase = _phrase(status)
        out = self.conn.send(h11.Response(status_code=status, headers=fields, reason=phrase))
        if not head and body:
            out = (out or b"") + (self.conn.send(h11.Data(data=body)) or b"")
        out = (out or b"") + (self.conn.send(h11.EndOfMessage()) or b"")
        self.writer.write(out)
        await self.writer.drain()

    async def established(self) -> bool:
        """Answer a CONNECT with 200; whether the browser sent nothing early (it must wait)."""
        data = self.conn.send(
            h11.Response(status_code=200, headers=[], reason=b"Connection established")
        )
        self.writer.write(data or b"")
        await self.writer.drain()
        return self.conn.our_state is h11.SWITCHED_PROTOCOL and not self.conn.trailing_data[0]

    def next_cycle(self) -> bool:
        """Ready for the next request on this connection; False when it must close."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        return False

    def can_respond(self) -> bool:
        return self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)
