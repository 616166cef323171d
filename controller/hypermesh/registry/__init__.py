"""The registry: the authority for a network's TLDs (issue 3). What is here so far: which TLD
names may be registered, and signed requests. Zones, storage and the HTTP/3 API follow."""

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
