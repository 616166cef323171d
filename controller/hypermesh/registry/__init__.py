"""The registry: the authority for a network's TLDs. Which TLD names may be registered
(``names``), signed requests (``signing``) and their bodies (``requests``), the service over its
database (``service``, ``tables``), signed zones and their journals (``zones``), and the client
of its HTTP/3 API (``client``); the node serves that API."""

from hypermesh.registry.errors import AuthError, PolicyError, RegistryError
from hypermesh.registry.names import check_tld, root_zone_tlds, special_use
from hypermesh.registry.signing import (
    MemoryNonceCache,
    NonceCache,
    Signed,
    cosign,
    sign_request,
    verify_request,
)

__all__ = [
    "AuthError",
    "MemoryNonceCache",
    "NonceCache",
    "PolicyError",
    "RegistryError",
    "Signed",
    "check_tld",
    "cosign",
    "root_zone_tlds",
    "sign_request",
    "special_use",
    "verify_request",
]
