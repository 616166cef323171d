"""One mapping from refusals to HTTP answers, for the node's own APIs (chains, messages).

A handler raises; the error's type says the status (``status`` on the class: ``BadInput`` 400,
``AuthError`` 401 and ``NotTheOwner`` 403, ``KeyRevoked`` 403, ``NoSuchBlock`` 404, …), and the
message, which names the field or the rule, is the answer's ``error``. Errors are never told
apart by their text. Anything else a handler raises is a bug: the router answers 500 and logs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hypermesh.chain.block import Unverified
from hypermesh.chain.store import ChainError
from hypermesh.errors import HyperMeshError
from hypermesh.inputs import BadInput
from hypermesh.messaging.envelope import BadMessage
from hypermesh.node.router import Request, RouteResponse
from hypermesh.registry.errors import AuthError
from hypermesh.revocation import KeyRevoked


class Refused(HyperMeshError):
    """A refusal with its own status (413 for a body too large, 404 for a feature off, …)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


REFUSALS = (Refused, BadInput, Unverified, BadMessage, ChainError, AuthError, KeyRevoked)
"""The errors that are answers, not bugs."""


def status_of(exc: HyperMeshError) -> int:
    """The status its type carries, else 400 (data that does not check out)."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else 400


Route = Callable[[Request], RouteResponse | dict[str, Any] | Awaitable[RouteResponse]]
"""A handler returning a response, a JSON object (200), or an awaitable of a response."""


def guarded(run: Route) -> Callable[[Request], Awaitable[RouteResponse]]:
    """An async handler that answers every refusal by its type."""

    async def handler(request: Request) -> RouteResponse:
        try:
            result = run(request)
            if not isinstance(result, RouteResponse | dict):
                result = await result
        except REFUSALS as exc:
            return RouteResponse.error(status_of(exc), str(exc))
        return result if isinstance(result, RouteResponse) else RouteResponse.json(result)

    return handler
