"""The one mapping from refusals to HTTP answers, for every route of the node.

A handler refuses by raising; ``Router.dispatch`` answers the error by its type (``answer``):
the status is the type's (``BadInput`` 400, ``AuthError`` 401, ``NotTheOwner`` and
``KeyRevoked`` 403, ``NoSuchBlock`` 404, ``Refused`` and ``TunnelError`` their own, …) and the
body is ``{"error": message}``, the message naming the field or the rule, with the registry's
machine ``code`` for a ``RegistryError`` and the size a witness ``held`` for a
``WitnessRefusal``. Errors are never told apart by their text. Any other error a handler raises
is a bug: the router answers 500 and logs it.
"""

from __future__ import annotations

from hypermesh.chain.block import Unverified
from hypermesh.chain.store import ChainError
from hypermesh.chain.witness import WitnessRefusal
from hypermesh.errors import HyperMeshError
from hypermesh.inputs import BadInput
from hypermesh.messaging.envelope import BadMessage
from hypermesh.registry.errors import RegistryError
from hypermesh.revocation import KeyRevoked
from hypermesh.tunnel.onion import BadTunnel
from hypermesh.tunnel.relay import TunnelError


class Refused(HyperMeshError):
    """A refusal with its own status (413 for a body too large, 404 for a feature off, …)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Answer = tuple[int, dict[str, object]]
"""An HTTP status and the JSON body to send with it."""


def answer(exc: HyperMeshError) -> Answer | None:
    """The answer to ``exc`` when it is a refusal; None when it is not (a bug: 500)."""
    error: dict[str, object] = {"error": str(exc)}
    match exc:
        case RegistryError():
            return exc.status, {**error, "code": exc.code}
        case WitnessRefusal():
            return exc.status, {**error, "held": exc.held}
        case Refused() | TunnelError() | ChainError() | KeyRevoked() | BadInput():
            return exc.status, error
        case Unverified() | BadMessage() | BadTunnel():
            return 400, error  # data that does not check out
    return None
