"""The ephemeral interface's HTTP/3 API: a third QUIC endpoint that serves tunnels and nothing
else.

    GET  /tunnel/v1/key     the node's tunnel key card (X25519, signed by the node key)
    POST /tunnel/v1/open    an open message (``hypermesh.tunnel.onion``); answers 200 with
                            the confirmation sealed by this hop
    POST /tunnel/v1/relay   circuit ID || layer; answers 200 with the answer sealed by this hop
    POST /tunnel/v2/relay   circuit ID || records (``tunnel.records``), read and passed on as
                            they arrive; answers 200 with the answer's records, each sealed
                            by this hop, as they come back

At the destination, a request that arrives through a tunnel is answered by the node's own API
(the same router as its public interface), as an anonymous caller: the ephemeral
InterfacePolicy, when declared, decides each request by its operation before any handler
runs. Streamed answers (subscriptions) do not pass through tunnels (501).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hypermesh.node.interfaces import operation_of
from hypermesh.node.router import (
    BodyAborted,
    Request,
    Route,
    Router,
    RouteResponse,
    get,
    post,
    post_streamed,
)
from hypermesh.node.server import Gate
from hypermesh.tunnel.client import KEY_PATH
from hypermesh.tunnel.onion import decode_request, encode_response
from hypermesh.tunnel.records import RECORD_DATA
from hypermesh.tunnel.relay import (
    OPEN_PATH,
    RELAY_PATH,
    RELAY_STREAM_PATH,
    Deliver,
    TunnelService,
)

BINARY = "application/octet-stream"
TUNNEL_PEER = "tunnel"
"""What a request that came through a tunnel has for its peer address: nobody in particular."""


def deliver_to(router: Router, gate: Gate | None) -> Deliver:
    """The destination's services for tunnel requests: ``router``, behind ``gate``."""

    async def deliver(padded: bytes) -> bytes:
        method, target, headers, body = decode_request(padded)
        path, _, query = target.partition("?")
        request = Request(method, path, query, headers, body, TUNNEL_PEER, None)
        verdict = gate(None, TUNNEL_PEER, operation_of(method, path)) if gate else (0, "")
        if verdict[0]:
            response = RouteResponse.error(*verdict)
        else:
            response = await router.dispatch(request)
        if response.stream is not None:
            await response.stream.aclose()
            response = RouteResponse.error(501, "streamed answers do not pass through tunnels")
        return encode_response(
            response.status, response.content_type, response.headers, response.body
        )

    return deliver


def add_tunnel_routes(router: Router, service: TunnelService) -> Router:
    """Route the tunnel API for ``service`` on ``router`` (the ephemeral endpoint's). A
    refusal (``TunnelError``, ``BadTunnel``) is answered by the router, by its type."""
    return router.add_all(TunnelApi(service).routes())


class TunnelApi:
    """The tunnel API's handlers, one a route."""

    def __init__(self, service: TunnelService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        """Each path, its handler and its methods."""
        return [
            get(KEY_PATH, self.key),
            post(OPEN_PATH, self.open),
            post(RELAY_PATH, self.relay),
            post_streamed(RELAY_STREAM_PATH, self.relay_stream),
        ]

    async def key(self, _: Request) -> RouteResponse:
        return RouteResponse.json(self.service.card())

    async def open(self, request: Request) -> RouteResponse:
        return RouteResponse(200, await self.service.open(request.body), BINARY)

    async def relay(self, request: Request) -> RouteResponse:
        return RouteResponse(200, await self.service.relay(request.body), BINARY)

    async def relay_stream(self, request: Request) -> RouteResponse:
        if request.stream is not None:
            request.stream.batch = RECORD_DATA  # woken about once a record, not once a packet
        try:
            answer = await self.service.relay_stream(request.stream or _once(request.body))
        except BodyAborted as exc:  # nobody is left to read the answer
            return RouteResponse.error(400, str(exc))
        if isinstance(answer, bytes):
            return RouteResponse(200, answer, BINARY)
        return RouteResponse(200, b"", BINARY, stream=answer)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
