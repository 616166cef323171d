"""Self-signed X.509 certificates that carry a node's Ed25519 key, and reading the ID back.

No public CA vouches for a node: the certificate only carries the key, and a peer is
authenticated by comparing the key's node ID with the one it pinned. Certificates are made at
process start and never stored.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from hypermesh.transport.identity import Identity, node_id_from_public_key

DNS_SUFFIX = ".hypermesh"
VALID_BEFORE = datetime.timedelta(hours=1)
VALID_FOR = datetime.timedelta(days=30)


def self_signed_certificate(
    identity: Identity, *, now: datetime.datetime | None = None
) -> x509.Certificate:
    """A certificate for ``identity``: CN = node ID, SAN ``<node ID>.hypermesh``, 127.0.0.1, ::1,
    valid from ``now`` - 1 h to ``now`` + 30 days, signed by the identity itself."""
    when = now or datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id)])
    alternatives: list[x509.GeneralName] = [
        x509.DNSName(identity.node_id + DNS_SUFFIX),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(identity.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - VALID_BEFORE)
        .not_valid_after(when + VALID_FOR)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(identity.private_key, None)


def node_id_from_certificate(certificate: bytes | x509.Certificate) -> str:
    """The node ID of the Ed25519 key in a certificate (DER bytes or parsed).

    Raises ``ValueError`` when the certificate cannot be parsed or its key is not Ed25519.
    """
    if isinstance(certificate, bytes | bytearray):
        certificate = x509.load_der_x509_certificate(bytes(certificate))
    key = certificate.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"the certificate carries a {type(key).__name__}, not an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return node_id_from_public_key(raw)
