"""Signed registry requests: every write carries the Ed25519 signature of its author.

The signed bytes are a domain-separated canonical string, never re-serialised JSON::

    hypermesh-request-v1
    METHOD
    /path?query
    hex(sha256(body))
    timestamp
    nonce

sent in the headers ``hm-signer`` (node ID), ``hm-timestamp`` (unix seconds), ``hm-nonce``
(base64url of 16 random bytes) and ``hm-signature`` (base64url, no padding). A transfer adds
``hm-cosigner`` and ``hm-cosignature``: the new owner's signature over the same string. A
request is refused, before anything is stored, when a header is missing or malformed, the
signature does not verify (strictly: see ``transport.identity.verify_signature``), the
timestamp is more than ``max_skew`` seconds away from ``now``, or the nonce was seen before.
Pure: time comes in as ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from hypermesh.registry.errors import AuthError
from hypermesh.transport.identity import Identity, is_node_id, verify_signature

DOMAIN = b"hypermesh-request-v1"
MAX_SKEW = 300
"""Seconds a request's timestamp may be away from the registry's clock."""
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
"""Whole unix seconds: ASCII digits only (``str.isdigit`` would take "١٢٣" or "²")."""
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
"""base64url, 16 to 64 characters."""


@dataclass(frozen=True, slots=True)
class Signed:
    """Who signed a verified request."""

    signer: str
    cosigner: str | None = None


class NonceCache(Protocol):
    """Remembers nonces long enough that a replay inside the time window is caught."""

    def add(self, signer: str, nonce: str, now: float) -> bool:
        """Record ``nonce``; False if ``signer`` used it before (a replay)."""
        ...


class MemoryNonceCache:
    """Nonces in memory, forgotten after ``2 * max_skew`` seconds (a request older than that is
    refused as stale anyway), at most ``limit`` of them."""

    def __init__(self, max_skew: float = MAX_SKEW, limit: int = 1_000_000) -> None:
        self.ttl = 2 * max_skew
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, signer: str, nonce: str, now: float) -> bool:
        while self._seen and (
            next(iter(self._seen.values())) < now - self.ttl or len(self._seen) >= self.limit
        ):
            self._seen.popitem(last=False)
        key = (signer, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


def canonical(method: str, path: str, body: bytes, timestamp: str, nonce: str) -> bytes:
    """The exact bytes a request's signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    parts = [DOMAIN, method.upper().encode(), path.encode(), digest.encode()]
    return b"\n".join([*parts, timestamp.encode(), nonce.encode()])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_request(
    identity: Identity,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request as ``identity``."""
    timestamp = str(int(now))
    nonce = nonce or _b64(secrets.token_bytes(16))
    signature = identity.sign(canonical(method, path, body, timestamp, nonce))
    return {
        "hm-signer": identity.node_id,
        "hm-timestamp": timestamp,
        "hm-nonce": nonce,
        "hm-signature": _b64(signature),
    }


def cosign(
    identity: Identity, headers: Mapping[str, str], method: str, path: str, body: bytes
) -> dict[str, str]:
    """``headers`` plus the cosignature of ``identity`` (a transfer's new owner)."""
    signed = canonical(method, path, body, headers["hm-timestamp"], headers["hm-nonce"])
    return {
        **headers,
        "hm-cosigner": identity.node_id,
        "hm-cosignature": _b64(identity.sign(signed)),
    }


def verify_request(
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    seen: NonceCache,
    max_skew: float = MAX_SKEW,
    require_cosigner: bool = False,
) -> Signed:
    """Check a request's signature(s); returns who signed, or raises ``AuthError``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    names = ["hm-signer", "hm-timestamp", "hm-nonce", "hm-signature"]
    if require_cosigner:
        names += ["hm-cosigner", "hm-cosignature"]
    missing = [n for n in names if not lowered.get(n)]
    if missing:
        raise AuthError(f"unsigned request: missing header {', '.join(missing)}")
    timestamp, nonce = lowered["hm-timestamp"], lowered["hm-nonce"]
    if not _TIMESTAMP.fullmatch(timestamp):
        raise AuthError("hm-timestamp must be whole unix seconds: 1 to 12 ASCII digits")
    if abs(int(timestamp) - now) > max_skew:
        raise AuthError(
            f"stale or future request: hm-timestamp is {int(timestamp) - now:+.0f}s from the "
            f"registry's clock (at most ±{max_skew:g}s)"
        )
    if not _NONCE.fullmatch(nonce):
        raise AuthError("hm-nonce must be 16 to 64 base64url characters")
    message = canonical(method, path, body, timestamp, nonce)
    signer = _check(lowered["hm-signer"], lowered["hm-signature"], message, "signature")
    cosigner = None
    if require_cosigner:
        cosigner = _check(lowered["hm-cosigner"], lowered["hm-cosignature"], message, "cosignature")
    if not seen.add(signer, nonce, now):
        raise AuthError("replayed request: this nonce was used before")
    return Signed(signer, cosigner)


def _check(node_id: str, encoded: str, message: bytes, what: str) -> str:
    if not is_node_id(node_id):
        raise AuthError(f"the {what}'s signer {node_id[:60]!r} is not a node ID")
    try:
        signature = _unb64(encoded)
    except (binascii.Error, ValueError):
        raise AuthError(f"the {what} is not base64url") from None
    if not verify_signature(node_id, message, signature):
        raise AuthError(f"the {what} does not verify for {node_id}")
    return node_id
