"""The ephemeral interface's HTTP/3 API: a third QUIC endpoint that serves tunnels and nothing
else.

    GET  /tunnel/v1/key     the node's tunnel key card (X25519, signed by the node key)
    POST /tunnel/v1/open    an open message (``hypermesh.tunnel.onion``); answers 200 with
                            the confirmation sealed by this hop
    POST /tunnel/v1/relay   circuit ID || layer; answers 200 with the answer sealed by this hop

At the destination, a request that arrives through a tunnel is answered by the node's own API
(the same router as its public interface), as an anonymous caller: the ephemeral
InterfacePolicy, when declared, decides each request by its operation before any handler
runs. Streamed answers (subscriptions) do not pass through tunnels (501).
"""

from __future__ import annotations

from hypermesh.node.interfaces import operation_of
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.server import Gate
from hypermesh.tunnel.client import KEY_PATH
from hypermesh.tunnel.onion import BadTunnel, decode_request, encode_response
from hypermesh.tunnel.relay import OPEN_PATH, RELAY_PATH, Deliver, TunnelError, TunnelService

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
            closing = getattr(response.stream, "aclose", None)
            if closing is not None:
                await closing()
            response = RouteResponse.error(501, "streamed answers do not pass through tunnels")
        return encode_response(
            response.status, response.content_type, response.headers, response.body
        )

    return deliver


def add_tunnel_routes(router: Router, service: TunnelService) -> Router:
    """Route the tunnel API for ``service`` on ``router`` (the ephemeral endpoint's)."""

    async def key(_: Request) -> RouteResponse:
        return RouteResponse.json(service.card())

    async def run(step: str, request: Request) -> RouteResponse:
        try:
            answer = await (service.open if step == "open" else service.relay)(request.body)
        except TunnelError as exc:
            return RouteResponse.error(exc.status, str(exc))
        except BadTunnel as exc:
            return RouteResponse.error(400, str(exc))
        return RouteResponse(200, answer, BINARY)

    async def open_(request: Request) -> RouteResponse:
        return await run("open", request)

    async def relay(request: Request) -> RouteResponse:
        return await run("relay", request)

    router.add(KEY_PATH, key)
    router.add(OPEN_PATH, open_, methods=("POST",))
    router.add(RELAY_PATH, relay, methods=("POST",))
    return router
