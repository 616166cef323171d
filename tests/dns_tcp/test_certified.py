"""A node with ``spec.tls``: DNS over TLS and over HTTPS on HTTP/2 with a certificate from a
(test) CA for a host name, on a port of its own, beside the self-signed listener. Clients that
verify the chain and the name (kdig, dnspython) get the answers DoQ gives; without the CA they
refuse the node; a key readable by others, a key of another certificate, an expired
certificate refuse the start; a renewed certificate is served without a restart."""

from __future__ import annotations

import datetime
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hypermesh.dns.source import StaticZones
from hypermesh.drivers.nodeconfig import tls_of
from hypermesh.errors import HyperMeshError
from hypermesh.model.loader import load_text
from hypermesh.model.validate import build
from hypermesh.node.config import NodeConfig, TlsConfig
from hypermesh.node.tls_tcp import CertificateError, check_certified, read_certified, spki_pin
from hypermesh.transport.address import parse_address
from tests.dns_tcp.conftest import NodeThread, node_config
from tests.harness.dns_server import SignedZone, make_zone, sign
from tests.harness.kdig import answer_lines, rr_lines, run_kdig

TIMEOUT = 5.0
NAME = "dns.hmtest.example"
NAMES = [("www.hmtest.", "A"), ("alias.hmtest.", "AAAA"), ("nothing.hmtest.", "A")]
NOW = datetime.datetime.now(datetime.UTC)


# -- a test CA ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def make(cls) -> Ca:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HyperMesh test CA")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(hours=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue(
        self, key: ec.EllipticCurvePrivateKey, *, days: float = 7, serial: int | None = None
    ) -> x509.Certificate:
        """A server certificate for ``NAME`` (``days`` < 0: expired that long ago)."""
        start = NOW - datetime.timedelta(days=max(0.0, -days) + 1)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_pair(
    folder: Path, ca: Ca, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> TlsConfig:
    """The chain (server, then CA) and key in ``folder``, each replaced in one rename, as
    certbot and a Secret's volume do."""
    folder.mkdir(parents=True, exist_ok=True)
    chain = certificate.public_bytes(serialization.Encoding.PEM) + ca.pem()
    for name, data, mode in (("key.pem", key_pem(key), 0o600), ("chain.pem", chain, 0o644)):
        temporary = folder / f".{name}.new"
        temporary.write_bytes(data)
        temporary.chmod(mode)
        temporary.replace(folder / name)
    return TlsConfig(str(folder / "chain.pem"), str(folder / "key.pem"))


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the node ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertifiedNode:
    port: int
    """The certified listener's TCP port."""
    public_port: int
    """The node's own port: DoQ over UDP, the self-signed listener over TCP."""
    pin: str
    ca_file: Path
    ca: Ca
    tls: TlsConfig
    signed: SignedZone


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertifiedNode]:
    base = tmp_path_factory.mktemp("dns-tls-certified")
    ca = Ca.make()
    (base / "ca.pem").write_bytes(ca.pem())
    key = ec.generate_private_key(ec.SECP256R1())
    port = free_tcp_port()
    tls = replace(write_pair(base / "tls", ca, ca.issue(key), key), listen=f"127.0.0.1:{port}")
    signed = sign(make_zone())
    config = replace(node_config(base, "certified"), tls=tls)
    thread = NodeThread(config, StaticZones([signed.zone]))
    try:
        node = thread.start()
        assert node.addresses.public is not None and node.addresses.tls is not None
        yield CertifiedNode(
            port,
            parse_address(node.addresses.public)[1],
            spki_pin(node.identity.node_id),
            base / "ca.pem",
            ca,
            tls,
            signed,
        )
    finally:
        thread.stop()


def doq(node: CertifiedNode, query: dns.message.Message) -> dns.message.Message:
    return dns.query.quic(query, "127.0.0.1", port=node.public_port, verify=False, timeout=TIMEOUT)


def verifying(ca_file: Path | None) -> ssl.SSLContext:
    """A client context that checks the chain (against ``ca_file``, or the system's CAs) and
    the host name."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.set_alpn_protocols(["dot"])
    return context


def served_serial(port: int, ca_file: Path) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw,
        verifying(ca_file).wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# -- verifying clients -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rdtype"), NAMES)
def test_kdig_verifying_the_chain_and_name_gets_the_doq_answer(
    certified: CertifiedNode, name: str, rdtype: str
) -> None:
    expected = doq(certified, dns.message.make_query(name, rdtype))
    verify = [f"+tls-ca={certified.ca_file}", f"+tls-hostname={NAME}"]
    for transport in (["+tls"], ["+https"], ["+https", "+https-get"]):
        result = run_kdig(certified.port, name, rdtype, *transport, *verify)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"status: {dns.rcode.to_text(expected.rcode())}" in result.stdout
        assert answer_lines(result.stdout) == rr_lines(expected.answer), transport


def test_kdig_without_the_ca_or_with_another_name_refuses_the_node(
    certified: CertifiedNode,
) -> None:
    for options in (
        ["+tls", "+tls-ca", f"+tls-hostname={NAME}"],  # the system's CAs
        ["+https", "+tls-ca", f"+tls-hostname={NAME}"],
        ["+tls", f"+tls-ca={certified.ca_file}", "+tls-hostname=other.hmtest.example"],
    ):
        result = run_kdig(certified.port, "www.hmtest.", "A", *options)
        assert "ANSWER SECTION" not in result.stdout, options
        assert "certificate" in (result.stdout + result.stderr).lower(), options


@pytest.mark.parametrize(("name", "rdtype"), NAMES)
def test_dnspython_verifying_the_chain_and_name_gets_the_doq_answer(
    certified: CertifiedNode, name: str, rdtype: str
) -> None:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    expected = doq(certified, query)
    context = verifying(certified.ca_file)
    answers = [
        dns.query.tls(
            query,
            "127.0.0.1",
            port=certified.port,
            ssl_context=context,
            server_hostname=NAME,
            timeout=TIMEOUT,
        ),
        *(
            dns.query.https(
                query,
                f"https://{NAME}:{certified.port}/dns-query",
                bootstrap_address="127.0.0.1",
                verify=ssl.create_default_context(cafile=str(certified.ca_file)),
                post=post,
                http_version=dns.query.HTTPVersion.H2,
                timeout=TIMEOUT,
            )
            for post in (False, True)
        ),
    ]
    for response in answers:
        assert response.rcode() == expected.rcode()
        assert response.answer == expected.answer
        assert response.authority == expected.authority


def test_dnspython_without_the_ca_refuses_the_node(certified: CertifiedNode) -> None:
    query = dns.message.make_query("www.hmtest.", "A")
    with pytest.raises(ssl.SSLCertVerificationError):
        dns.query.tls(
            query,
            "127.0.0.1",
            port=certified.port,
            ssl_context=verifying(None),
            server_hostname=NAME,
            timeout=TIMEOUT,
        )
    with pytest.raises(Exception, match=r"(?i)certificate"):
        dns.query.https(
            query,
            f"https://{NAME}:{certified.port}/dns-query",
            bootstrap_address="127.0.0.1",
            http_version=dns.query.HTTPVersion.H2,
            timeout=TIMEOUT,
        )


def test_tls_1_2_is_served_and_the_relay_is_not(certified: CertifiedNode) -> None:
    context = verifying(certified.ca_file)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["hm-relay", "dot"])
    with (
        socket.create_connection(("127.0.0.1", certified.port), TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        assert tls.version() == "TLSv1.2"
        assert tls.selected_alpn_protocol() == "dot"


def test_the_self_signed_listener_still_answers_with_the_pin(certified: CertifiedNode) -> None:
    expected = doq(certified, dns.message.make_query("www.hmtest.", "A"))
    result = run_kdig(
        certified.public_port, "www.hmtest.", "A", "+tls", f"+tls-pin={certified.pin}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert answer_lines(result.stdout) == rr_lines(expected.answer)
    assert "TLS1.3" in result.stdout


def test_a_renewed_certificate_is_served_without_a_restart(certified: CertifiedNode) -> None:
    folder = Path(certified.tls.certificate).parent
    before = served_serial(certified.port, certified.ca_file)
    key = ec.generate_private_key(ec.SECP256R1())  # certbot makes a new key by default
    renewed = certified.ca.issue(key, days=60)
    write_pair(folder, certified.ca, renewed, key)
    deadline = time.monotonic() + 10
    serial = before
    while serial != renewed.serial_number and time.monotonic() < deadline:
        time.sleep(0.1)
        serial = served_serial(certified.port, certified.ca_file)
    assert serial == renewed.serial_number != before
    # a renewal half written (the new chain, the old key) leaves the one being served
    (folder / "chain.pem").write_bytes(
        certified.ca.issue(ec.generate_private_key(ec.SECP256R1())).public_bytes(
            serialization.Encoding.PEM
        )
    )
    time.sleep(0.5)
    assert served_serial(certified.port, certified.ca_file) == renewed.serial_number
    result = run_kdig(
        certified.port,
        "www.hmtest.",
        "A",
        "+tls",
        f"+tls-ca={certified.ca_file}",
        f"+tls-hostname={NAME}",
    )
    assert result.returncode == 0 and "ANSWER SECTION" in result.stdout


# -- refusals at start -------------------------------------------------------------------------


def test_a_key_readable_by_others_refuses_the_node_process(tmp_path: Path) -> None:
    ca = Ca.make()
    key = ec.generate_private_key(ec.SECP256R1())
    tls = write_pair(tmp_path / "tls", ca, ca.issue(key), key)
    Path(tls.key).chmod(0o644)
    config = replace(
        node_config(tmp_path, "open-key"), tls=replace(tls, listen=f"127.0.0.1:{free_tcp_port()}")
    )
    (tmp_path / "node.json").write_text(config.to_json())
    result = subprocess.run(
        [sys.executable, "-m", "hypermesh.node", "--config", str(tmp_path / "node.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode != 0
    assert f"spec.tls.key {tls.key}: permissions 0644 are too open" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_of_another_certificate_refuses_the_start(tmp_path: Path) -> None:
    ca = Ca.make()
    key = ec.generate_private_key(ec.SECP256R1())
    tls = write_pair(tmp_path / "tls", ca, ca.issue(ec.generate_private_key(ec.SECP256R1())), key)
    config = replace(
        node_config(tmp_path, "mismatch"), tls=replace(tls, listen=f"127.0.0.1:{free_tcp_port()}")
    )
    signed = sign(make_zone())
    thread = NodeThread(config, StaticZones([signed.zone]))
    try:
        thread.start()
    except HyperMeshError as exc:  # the thread has ended with its loop
        assert re.match(rf"spec\.tls\.key {re.escape(tls.key)}: does not match the first", str(exc))
    else:
        thread.stop()
        pytest.fail("the node started with a key of another certificate")


def test_the_checks_name_the_field_and_the_file(tmp_path: Path) -> None:
    ca = Ca.make()
    key = ec.generate_private_key(ec.SECP256R1())
    tls = write_pair(tmp_path, ca, ca.issue(key), key)
    good = Path(tls.certificate).read_bytes()
    cases = {
        "spec.tls.certificate .*: expired on": (
            ca.issue(key, days=-1).public_bytes(serialization.Encoding.PEM),
            key_pem(key),
        ),
        "spec.tls.certificate .*: no PEM certificate": (b"not a certificate", key_pem(key)),
        "spec.tls.key .*: not a PEM private key": (good, b"-----BEGIN PRIVATE KEY-----\n"),
        "spec.tls.key .*: the key is encrypted": (
            good,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
        ),
    }
    for message, (chain, private) in cases.items():
        with pytest.raises(CertificateError, match=message):
            check_certified(chain, private, NOW, tls)
    assert check_certified(good, key_pem(key), NOW, tls).subject == f"CN={NAME}"
    missing = replace(tls, certificate=str(tmp_path / "nowhere.pem"))
    with pytest.raises(CertificateError, match=r"spec.tls.certificate .*nowhere.pem: cannot read"):
        read_certified(missing)
    (tmp_path / "huge.pem").write_bytes(b"x" * (2 << 20))
    with pytest.raises(CertificateError, match="larger than"):
        read_certified(replace(tls, certificate=str(tmp_path / "huge.pem")))


# -- the manifest to the config ----------------------------------------------------------------


def test_spec_tls_is_carried_into_the_node_config_and_back(tmp_path: Path) -> None:
    tls = tls_of({"tls": {"certificate": "/etc/tls/chain.pem", "key": "/etc/tls/key.pem"}})
    assert tls == TlsConfig("/etc/tls/chain.pem", "/etc/tls/key.pem", None)
    assert tls.listen_on("192.0.2.1") == "192.0.2.1:853"
    assert tls_of({}) is None
    config = replace(node_config(tmp_path, "a"), tls=replace(tls, listen="[::]:853"))
    assert NodeConfig.from_json(config.to_json()) == config
    assert '"tls"' not in node_config(tmp_path, "b").to_json()
    for bad, message in (
        ({"certificate": "chain.pem", "key": "/k"}, "tls.certificate must be an absolute path"),
        ({"certificate": "/c"}, "tls: missing field"),
        ({"certificate": "/c", "key": "/k", "listen": "nowhere"}, "tls.listen"),
    ):
        with pytest.raises(ValueError, match=message):
            TlsConfig.from_dict(bad)


def test_the_manifest_takes_spec_tls_and_refuses_a_relative_path() -> None:
    head = "apiVersion: hypermesh.online/v1alpha1\nkind: Node\nmetadata: {name: a}\n"
    good = (
        head + "spec:\n  network: acme\n  tls:\n    certificate: /etc/tls/tls.crt\n"
        "    key: /etc/tls/tls.key\n    listen: 0.0.0.0:853\n"
    )
    resources, problems = build(load_text(good, "m.yaml"))
    assert [p for p in problems if not p.unresolved] == [] and tls_of(
        next(iter(resources.of_kind("Node"))).spec
    ) == TlsConfig("/etc/tls/tls.crt", "/etc/tls/tls.key", "0.0.0.0:853")
    bad = head + "spec:\n  network: acme\n  tls:\n    certificate: tls.crt\n"
    _, problems = build(load_text(bad, "m.yaml"))
    assert {p.path for p in problems} >= {"spec.tls.certificate", "spec.tls.key"}
