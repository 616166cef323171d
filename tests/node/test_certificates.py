"""Self-signed certificates carry the node's key and name."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hypermesh.transport.certificates import node_id_from_certificate, self_signed_certificate
from hypermesh.transport.identity import Identity


def test_certificate_carries_the_node_id() -> None:
    identity = Identity.generate()
    certificate = self_signed_certificate(identity)
    assert node_id_from_certificate(certificate) == identity.node_id
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert node_id_from_certificate(der) == identity.node_id


def test_certificate_names_and_validity() -> None:
    identity = Identity.generate()
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    certificate = self_signed_certificate(identity, now=now)
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == identity.node_id
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [identity.node_id + ".hypermesh"]
    assert certificate.not_valid_before_utc == now - datetime.timedelta(hours=1)
    assert certificate.not_valid_after_utc == now + datetime.timedelta(days=30)


def test_a_certificate_without_an_ed25519_key_has_no_node_id() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        node_id_from_certificate(certificate)
