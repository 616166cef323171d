"""Authenticating a peer by its node ID instead of a certificate authority.

TLS runs with ``verify_mode = CERT_NONE`` (no CA can vouch for a node), but aioquic still checks
the handshake's CertificateVerify signature, so the peer proves it holds the key in its
certificate. After the handshake, and before any request, the key's node ID must equal the ID
the caller pinned.
"""

from __future__ import annotations

from aioquic.quic.connection import QuicConnection

from hypermesh.errors import IdentityMismatch, TransportError
from hypermesh.transport.certificates import node_id_from_certificate
from hypermesh.transport.identity import short_id


def peer_node_id(quic: QuicConnection) -> str:
    """The node ID of the certificate the peer presented in a completed handshake."""
    # aioquic 1.7 keeps the parsed leaf certificate on its TLS context; there is no public API.
    certificate = quic.tls._peer_certificate
    if certificate is None:
        raise TransportError("the peer presented no certificate")
    try:
        return node_id_from_certificate(certificate)
    except ValueError as exc:
        raise IdentityMismatch(f"the peer's certificate has no node identity: {exc}") from exc


def check_peer(quic: QuicConnection, expected_id: str | None, address: str) -> str:
    """Return the peer's node ID; raise ``IdentityMismatch`` when it is not ``expected_id``.

    ``expected_id`` None skips the comparison (diagnostics and tests only).
    """
    try:
        actual = peer_node_id(quic)
    except IdentityMismatch as exc:
        raise IdentityMismatch(f"{address}: {exc}") from exc
    except TransportError as exc:
        raise TransportError(f"{address}: {exc}") from exc
    if expected_id is not None and actual != expected_id:
        raise IdentityMismatch(
            f"{address}: expected node {short_id(expected_id)}… ({expected_id}) but the peer "
            f"is {short_id(actual)}… ({actual})"
        )
    return actual
