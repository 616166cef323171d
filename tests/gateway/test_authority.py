"""The local CA: name-constrained (critically, to exactly its TLDs, no IP address), its leaves
accepted by an independent verifier for its names only, a CA without constraints refused, the
key 0600 and never printed, and `hmctl gateway trust`/`untrust` on real NSS databases made by
certutil (Chromium's and a Firefox profile's) in a temporary HOME."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from hypermesh.gateway.authority import (
    AuthorityError,
    create_authority,
    issue_leaf,
    key_pem,
    load_authority,
    permitted_tlds,
)

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _verify(root: x509.Certificate, leaf: x509.Certificate, host: str) -> None:
    store = Store([root])
    verifier = PolicyBuilder().store(store).time(NOW).build_server_verifier(x509.DNSName(host))
    verifier.verify(leaf, [])


def test_the_ca_is_critically_constrained_to_exactly_its_tlds() -> None:
    authority = create_authority(("beta", "acme", "acme"), "ana@laptop", NOW)
    certificate = authority.certificate
    extension = certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert extension.critical
    assert extension.value.permitted_subtrees == [x509.DNSName("acme"), x509.DNSName("beta")]
    assert extension.value.excluded_subtrees == [
        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.ip_network("::/0")),
    ]
    assert authority.tlds == ("acme", "beta")
    basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    assert isinstance(authority.key.curve, ec.SECP256R1)


def test_leaves_verify_for_its_names_and_nothing_else() -> None:
    authority = create_authority(("acme",), "ana@laptop", NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_leaf(authority, "www.acme", key, NOW)
    _verify(authority.certificate, leaf, "www.acme")
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= datetime.timedelta(days=2)
    with pytest.raises(VerificationError):
        _verify(authority.certificate, leaf, "www.example")
    with pytest.raises(AuthorityError, match="not a name under acme"):
        issue_leaf(authority, "www.example", key, NOW)
    with pytest.raises(AuthorityError):
        issue_leaf(authority, "acme", key, NOW)  # the TLD itself is no host

    # Even with the CA's key in hand, a certificate for another name does not verify: the
    # constraint is in the root, and verifiers enforce it.
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.example")]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()), False
        )
        .sign(authority.key, hashes.SHA256())
    )
    with pytest.raises(VerificationError, match="no permitted name constraints matched"):
        _verify(authority.certificate, forged, "bank.example")


def _unconstrained(critical: bool | None) -> tuple[bytes, bytes]:
    """A CA certificate and key with no NameConstraints (``None``) or non-critical ones."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anything goes")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    )
    if critical is not None:
        builder = builder.add_extension(
            x509.NameConstraints([x509.DNSName("acme")], None), critical
        )
    certificate = builder.sign(key, hashes.SHA256())
    return certificate.public_bytes(Encoding.PEM), key_pem(key)


def test_a_ca_that_is_not_name_constrained_is_refused() -> None:
    pem, key = _unconstrained(None)
    with pytest.raises(AuthorityError, match="not name-constrained"):
        load_authority(pem, key)
    pem, key = _unconstrained(False)
    with pytest.raises(AuthorityError, match="not critical"):
        load_authority(pem, key)
    ours = create_authority(("acme",), "ana@laptop", NOW)
    assert permitted_tlds(ours.certificate) == ("acme",)
    with pytest.raises(AuthorityError, match="does not belong"):
        load_authority(ours.pem, _unconstrained(None)[1])


def _hmctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "NO_COLOR": "1"}
    env.pop("XDG_DATA_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "hypermesh.cli.main", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _certutil(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["certutil", "-d", f"sql:{database}", *args], capture_output=True, text=True, timeout=30
    )


def _nicknames(database: Path) -> str:
    listed = _certutil(database, "-L")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def test_trust_and_untrust_on_real_nss_databases(tmp_path: Path) -> None:
    home = tmp_path / "home"
    firefox = home / ".mozilla/firefox/abcd.default-release"
    firefox.mkdir(parents=True)
    assert _certutil(firefox, "-N", "--empty-password").returncode == 0
    # Someone else's CA in the same database stays where it is.
    other = tmp_path / "other.pem"
    other.write_bytes(create_authority(("other",), "x@y", NOW).pem)
    assert (
        _certutil(firefox, "-A", "-t", "C,,", "-n", "someone else", "-i", str(other)).returncode
        == 0
    )

    trusted = _hmctl(home, "trust", "--tld", "acme")
    assert trusted.returncode == 0, trusted.stderr
    directory = home / ".local/share/hypermesh/gateway"
    key = directory / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    secret = key.read_text().splitlines()[1]
    assert secret not in trusted.stdout + trusted.stderr
    chromium = home / ".pki/nssdb"
    for database in (chromium, firefox):
        assert "HyperMesh gateway CA" in _nicknames(database)
        assert str(database) in trusted.stdout

    again = _hmctl(home, "trust", "--tld", "acme")  # idempotent: kept, installed once
    assert again.returncode == 0 and again.stdout.startswith("kept the CA")
    assert _nicknames(chromium).count("HyperMesh gateway CA") == 1
    wider = _hmctl(home, "trust", "--tld", "other")
    assert wider.returncode == 2 and "constraints never change" in wider.stderr

    removed = _hmctl(home, "untrust")
    assert removed.returncode == 0, removed.stderr
    for database in (chromium, firefox):
        assert "HyperMesh gateway CA" not in _nicknames(database)
    assert "someone else" in _nicknames(firefox)
    assert not directory.exists()
    assert _hmctl(home, "status").returncode == 2  # no CA any more: says to trust first
