"""The gateway's local certificate authority: a root made once per user, name-constrained to the
HyperMesh TLDs it was made for, and the short-lived leaf certificates it issues per host name.

Pure: keys and certificates in, certificates out, time passed in as ``now``. Reading and
writing the CA's files is ``AuthorityFiles``; installing it in trust stores is ``truststores``.

The root (ECDSA P-256, what browsers accept for TLS) carries a **critical** NameConstraints
extension that permits only the DNS names under its TLDs and excludes every IP address, so even
a stolen key cannot make a certificate a browser accepts for ``example.com`` or ``10.0.0.1``.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hypermesh.errors import HyperMeshError

CA_VALID_FOR = datetime.timedelta(days=3650)
"""The root lasts ten years (as mkcert's does); ``untrust`` ends it sooner."""
LEAF_VALID_FOR = datetime.timedelta(hours=24)
"""Leaves live a day and are made again on the fly; they are never written to disk."""
BACKDATE = datetime.timedelta(minutes=5)
"""Certificates start this much before ``now``, for clocks a little behind."""
_TLD = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AuthorityError(HyperMeshError):
    """The CA cannot be made, read or used as asked (the message says what and where)."""


def check_tlds(tlds: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The TLDs sorted, each checked to be one DNS label (``AuthorityError`` naming a bad
    one); at least one."""
    cleaned = sorted({t.strip().lower().rstrip(".") for t in tlds})
    if not cleaned:
        raise AuthorityError("the CA needs at least one HyperMesh TLD to be constrained to")
    for tld in cleaned:
        if not _TLD.match(tld):
            raise AuthorityError(f"{tld[:80]!r} is not a TLD (one DNS label: a-z, 0-9, '-')")
    return tuple(cleaned)


def host_under(host: str, tlds: tuple[str, ...]) -> bool:
    """Whether ``host`` is a well-formed DNS name under one of ``tlds`` (not a TLD itself)."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) < 2 or len(host) > 253:
        return False
    return labels[-1] in tlds and all(_LABEL.match(label) for label in labels)


@dataclass(frozen=True, slots=True)
class Authority:
    """The root certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def tlds(self) -> tuple[str, ...]:
        """The TLDs the root is constrained to."""
        return permitted_tlds(self.certificate)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the root's DER, as browsers show it (``AB:CD:…``)."""
        return fingerprint(self.certificate)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def fingerprint(certificate: x509.Certificate) -> str:
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def create_authority(tlds: tuple[str, ...], owner: str, now: datetime.datetime) -> Authority:
    """A fresh root for ``owner`` (``user@host``, in its subject) permitting only ``tlds``."""
    tlds = check_tlds(tlds)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HyperMesh local CA"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, owner[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, f"HyperMesh gateway CA {owner}"[:64]),
        ]
    )
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName(tld) for tld in tlds],
        excluded_subtrees=[
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        ],
    )
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(constraints, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate, key)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def permitted_tlds(certificate: x509.Certificate) -> tuple[str, ...]:
    """The DNS names a root permits; ``AuthorityError`` when it is not name-constrained, the
    constraint is not critical, or it permits anything but DNS names."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        raise AuthorityError("the CA is not name-constrained: it could sign for any name") from None
    if not extension.critical:
        raise AuthorityError("the CA's NameConstraints extension is not critical")
    permitted = extension.value.permitted_subtrees or []
    if not permitted or not all(isinstance(n, x509.DNSName) for n in permitted):
        raise AuthorityError("the CA's NameConstraints must permit DNS names only")
    return check_tlds([str(n.value) for n in permitted])


def issue_leaf(
    authority: Authority,
    host: str,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> x509.Certificate:
    """A server certificate for ``host`` (which must be under the root's TLDs) with ``key``'s
    public half, valid for ``LEAF_VALID_FOR``."""
    host = host.lower().rstrip(".")
    if not host_under(host, authority.tlds):
        raise AuthorityError(f"{host[:253]!r} is not a name under {', '.join(authority.tlds)}")
    public = key.public_key()
    issuer = authority.certificate.subject
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + LEAF_VALID_FOR)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
        .sign(authority.key, hashes.SHA256())
    )


def load_authority(certificate_pem: bytes, key_pem: bytes) -> Authority:
    """The root and key from their PEM files' bytes, checked to belong together and to be
    name-constrained (``AuthorityError`` otherwise)."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise AuthorityError(f"the CA's files cannot be read: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise AuthorityError("the CA's key is not an ECDSA key")
    if key.public_key() != certificate.public_key():
        raise AuthorityError("the CA's key does not belong to its certificate")
    permitted_tlds(certificate)
    return Authority(certificate, key)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
