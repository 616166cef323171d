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


def ask_for_client_certificates(quic: QuicConnection) -> None:
    """Make a server connection ask the client for its certificate (TLS CertificateRequest),
    so that a client holding a node key proves it in the handshake. A client without one
    answers with an empty Certificate and stays anonymous.

    aioquic 1.7 has the switch on its TLS context only (``_request_client_certificate``), and
    makes that context when the first Initial packet arrives: wrap that step.
    """
    initialize = quic._initialize

    def initialize_and_ask(peer_cid: bytes) -> None:
        initialize(peer_cid)
        quic.tls._request_client_certificate = True

    quic._initialize = initialize_and_ask  # type: ignore[method-assign]


def client_node_id(quic: QuicConnection) -> str | None:
    """The node ID a client proved in the handshake, or None for an anonymous client."""
    tls = getattr(quic, "tls", None)
    if tls is None or tls._peer_certificate is None:
        return None
    try:
        return node_id_from_certificate(tls._peer_certificate)
    except ValueError:
        return None
