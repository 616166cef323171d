"""Requests only the node itself may make (its own key signs them): appends to its chain,
sending and reading its messages."""

from __future__ import annotations

from collections.abc import Callable

from hypermesh.node.router import Request
from hypermesh.registry.errors import AuthError
from hypermesh.registry.signing import NonceCache, verify_request


class NotTheOwner(AuthError):
    status = 403


def check_owner(
    request: Request, owner: str, nonces: NonceCache, clock: Callable[[], float]
) -> None:
    """Verify the request's signature (``registry.signing``) and that it is ``owner``'s;
    ``AuthError`` (401) or ``NotTheOwner`` (403) otherwise."""
    full = request.path + (f"?{request.query}" if request.query else "")
    signed = verify_request(
        request.method, full, request.body, dict(request.headers), now=clock(), seen=nonces
    )
    if signed.signer != owner:
        raise NotTheOwner(f"only the node itself ({owner}) may do this")
