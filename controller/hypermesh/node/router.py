"""A small HTTP router: requests and responses as values, paths mapped to async handlers.

It knows nothing of QUIC; the server turns HTTP/3 frames into a ``Request`` and a ``RouteResponse``
back into frames. Adding an API is ``router.add("/path", handler)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hypermesh.errors import HyperMeshError
from hypermesh.node.refusals import answer

log = logging.getLogger(__name__)

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the server received it."""

    method: str
    """``GET``, ``POST``, …"""
    path: str
    """The path without the query string."""
    query: str = ""
    """The raw query string (after ``?``), empty when none."""
    headers: tuple[tuple[str, str], ...] = ()
    """Regular headers (no pseudo-headers), lowercased names, in arrival order."""
    body: bytes = b""
    """The request body."""
    peer: str = ""
    """The client's ``host:port``."""
    peer_id: str | None = None
    """The client's node ID when it presented a certificate, else None."""
    stream: BodyStream | None = field(default=None, compare=False)
    """The body as it arrives, for a route added with ``streams=True`` (``body`` is then
    empty); None for the others."""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), default)


@dataclass(frozen=True, slots=True)
class RouteResponse:
    """One HTTP response to send."""

    status: int
    """The status code."""
    body: bytes = b""
    """The body."""
    content_type: str = JSON
    """The ``content-type`` header."""
    headers: tuple[tuple[str, str], ...] = field(default=())
    """More headers to send."""
    stream: AsyncGenerator[bytes, None] | None = field(default=None, compare=False)
    """A body sent piece by piece as it is produced (``body`` first, if any), for as long as
    the iterator runs: a subscription. None: the body is all there is."""

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
    ) -> RouteResponse:
        """A JSON response (compact, UTF-8, newline-terminated). A string that UTF-8 cannot
        carry (a lone surrogate quoted back from a request) is sent as its JSON escape."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        try:
            body = text.encode() + b"\n"
        except UnicodeEncodeError:
            body = json.dumps(data, separators=(",", ":")).encode() + b"\n"
        return cls(status=status, body=body, headers=headers)

    @classmethod
    def error(
        cls, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> RouteResponse:
        """``{"error": message}`` with ``status``."""
        return cls.json({"error": message}, status=status, headers=headers)


class BodyAborted(HyperMeshError):
    """The request's body will not arrive whole (the client reset it, the connection ended,
    or the server refused it on the way)."""


class BodyStream:
    """A request's body read as it arrives: ``async for piece in request.stream``. The server
    feeds it; ``on_taken`` hears of each piece taken, so that the server gives the client
    credit for more only as the handler reads (the handler's pace is the client's). Each
    piece given is what has arrived since the last, once at least ``batch`` bytes have (or the
    body ended): a handler that works in units (records) is woken once a unit, not once a
    packet."""

    def __init__(self, on_taken: Callable[[int], None] | None = None) -> None:
        self._pieces: deque[bytes] = deque()
        self._ended = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_taken = on_taken
        self.pending = 0
        """Bytes arrived and not yet taken."""
        self.high_water = 0
        """The most bytes ever pending at once."""
        self.taken = 0
        """Bytes taken so far."""
        self.batch = 1
        """Bytes to wait for before giving a piece (the handler may set it)."""

    def feed(self, data: bytes, end: bool) -> None:
        """More of the body arrived (``end``: all of it has)."""
        if data:
            self._pieces.append(data)
            self.pending += len(data)
            self.high_water = max(self.high_water, self.pending)
        self._ended = self._ended or end
        if self.pending >= self.batch or self._ended:
            self._wake()

    def fail(self, error: Exception) -> None:
        """The body will not arrive whole: the reader gets ``error``."""
        if not self._ended:
            self._error = error
            self._wake()

    @property
    def ended(self) -> bool:
        """Whether the whole body has arrived (or failed)."""
        return self._ended or self._error is not None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while (self.pending < self.batch and not self._ended) or not self._pieces:
            if self._error is not None:
                raise self._error
            if self._ended and not self._pieces:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        pieces = self._pieces
        piece = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self.pending -= len(piece)
        self.taken += len(piece)
        if self._on_taken is not None:
            self._on_taken(len(piece))
        return piece


Handler = Callable[[Request], Awaitable[RouteResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """A path, the methods it accepts and its handler."""

    path: str
    handler: Handler
    methods: frozenset[str]
    streams: bool = False
    """Whether the handler reads the body as it arrives (``Request.stream``)."""


def get(path: str, handler: Handler) -> Route:
    """``GET path`` answered by ``handler``."""
    return Route(path, handler, frozenset({"GET"}))


def post(path: str, handler: Handler) -> Route:
    """``POST path`` answered by ``handler``."""
    return Route(path, handler, frozenset({"POST"}))


def post_streamed(path: str, handler: Handler) -> Route:
    """``POST path`` answered by ``handler``, which reads the body as it arrives: it is
    called once the headers are in (``Request.stream``), and the body is bounded by the
    handler, not by the server's request body limit."""
    return Route(path, handler, frozenset({"POST"}), streams=True)


class Router:
    """Exact-path routing: 404 for an unknown path, 405 (with ``allow``) for a wrong method, a
    refusal a handler raises answered by its type (``node.refusals``), and 500 (logged) for
    anything else it raises."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(
        self,
        path: str,
        handler: Handler,
        methods: Iterable[str] = ("GET",),
        *,
        streams: bool = False,
    ) -> None:
        """Route ``path`` to ``handler`` for ``methods``; a path is routed once. ``streams``:
        the handler reads the body as it arrives (``post_streamed``)."""
        if path in self._routes:
            raise ValueError(f"{path} is already routed")
        self._routes[path] = Route(
            path, handler, frozenset(m.upper() for m in methods), streams=streams
        )

    def add_all(self, routes: Iterable[Route]) -> Router:
        """Route each of ``routes`` (returned for chaining)."""
        for route in routes:
            self.add(route.path, route.handler, route.methods, streams=route.streams)
        return self

    def streams(self, method: str, path: str) -> bool:
        """Whether ``method path`` goes to a handler that reads the body as it arrives."""
        route = self._routes.get(path)
        return route is not None and route.streams and method in route.methods

    def paths(self) -> list[str]:
        """The routed paths, sorted."""
        return sorted(self._routes)

    async def dispatch(self, request: Request) -> RouteResponse:
        """The response to ``request``; never raises for a handler's failure."""
        route = self._routes.get(request.path)
        if route is None:
            return RouteResponse.error(404, f"no such path: {request.path}")
        if request.method not in route.methods:
            allow = ", ".join(sorted(route.methods))
            return RouteResponse.error(
                405, f"{request.method} is not allowed on {request.path}", (("allow", allow),)
            )
        try:
            return await route.handler(request)
        except HyperMeshError as exc:
            refused = answer(exc)
            if refused is not None:
                return RouteResponse.json(refused[1], status=refused[0])
            log.exception("handler failed", extra={"path": request.path})
        except Exception:
            log.exception("handler failed", extra={"path": request.path})
        return RouteResponse.error(500, "internal error")
