"""Errors of the registry, each with the HTTP status and the machine code its API answers."""

from __future__ import annotations

from hypermesh.errors import HyperMeshError


class RegistryError(HyperMeshError):
    """A request the registry will not carry out."""

    status = 400
    code = "bad_request"


class PolicyError(RegistryError):
    """The registry's rules forbid it (a reserved, IANA or special-use name, an invalid label)."""

    status = 403
    code = "policy"


class AuthError(RegistryError):
    """The request is not signed as it must be; nothing was stored."""

    status = 401
    code = "unauthorized"


class Forbidden(RegistryError):
    """The signer may not do this (not the owner, or the TLD is not active)."""

    status = 403
    code = "forbidden"


class NotFound(RegistryError):
    status = 404
    code = "not_found"


class Conflict(RegistryError):
    """Already exists, or a concurrent write won."""

    status = 409
    code = "conflict"


class QuotaExceeded(Forbidden):
    """A governance limit would be passed (TLDs per owner key)."""

    code = "quota"


class ZoneUnservable(RegistryError):
    """The stored data of a TLD does not build into a zone (data written by an older release,
    or edited by hand): the zone is not served, and the registry reports it."""

    status = 503
    code = "zone_unservable"


class TokenRefused(Forbidden):
    """A join token that is unknown, wrong, expired, used or revoked; nothing was stored."""

    code = "token_refused"


class NameTaken(Conflict):
    """Another key is already a member under this name."""

    code = "name_taken"


class Stale(Conflict):
    """A node record no newer than the one stored (its ``seq``)."""

    code = "stale"
