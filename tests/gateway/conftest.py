"""One network and one gateway for the gateway's tests (module scope): the registry-and-names
example applied by `hmctl`, plus names made to fail — ``nokey.acme`` (an HTTPS record pointing at
a UDP socket the test holds, and no TLSA record) and ``badkey.acme`` (alpha's endpoint, and a
TLSA record pinning a key alpha does not hold) — and ``reg.acme``, the registry node, whose own
page (``/registry/``) is what the browser opens. The gateway runs as ``hmctl gateway run`` with
HOME in the test's directory, where ``hmctl gateway trust`` made the CA and its NSS database."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import EXAMPLES, Hmctl
from tests.harness.proc import free_udp_port

START_TIMEOUT = 30.0


def _record(name: str, owner: str, type_: str, value: str) -> str:
    return (
        "---\napiVersion: hypermesh.online/v1alpha1\nkind: Record\n"
        f"metadata: {{name: {name}}}\n"
        f"spec: {{tld: acme, name: '{owner}', type: {type_}, ttl: 60, values: ['{value}']}}\n"
    )


def _failing_names(alpha_port: int, decoy_port: int) -> str:
    """``nokey.acme`` (no TLSA, endpoint the decoy) and ``badkey.acme`` (alpha, a wrong key)."""
    wrong = Ed25519PrivateKey.generate().public_key()
    spki = wrong.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo).hex()
    hint = "ipv4hint=127.0.0.1"
    return (
        _record("nokey-https.acme", "nokey", "HTTPS", f"1 . alpn=h3 port={decoy_port} {hint}")
        + _record("badkey-https.acme", "badkey", "HTTPS", f"1 . alpn=h3 port={alpha_port} {hint}")
        + _record("badkey-tlsa.acme", f"_{alpha_port}._udp.badkey", "TLSA", f"3 1 0 {spki}")
        + "---\napiVersion: hypermesh.online/v1alpha1\nkind: Record\n"
        "metadata: {name: reg.acme}\nspec: {tld: acme, target: {node: registry}}\n"
    )


@dataclass(frozen=True, slots=True)
class Lab:
    """The running network and gateway."""

    hmctl: Hmctl
    home: Path
    """HOME of the gateway's user: the CA under .local/share, the NSS database in .pki."""
    proxy: str
    """The gateway's HOST:PORT."""
    ca_pem: Path
    decoy: socket.socket
    """The UDP socket ``nokey.acme`` points at; nothing may ever arrive there."""


def _start_gateway(hmctl: Hmctl) -> tuple[subprocess.Popen[str], str]:
    process = hmctl.popen("gateway", "run", "--listen", "127.0.0.1:0", "--timeout", "10s")
    assert process.stdout is not None
    line = process.stdout.readline()  # the first line names the address (or is the error)
    if not line.startswith("gateway on "):
        process.kill()
        raise AssertionError(f"the gateway did not start: {line}{process.stdout.read()}")
    process.stdout.readline()
    return process, line.split()[2]


@contextlib.contextmanager
def running_lab(base: Path) -> Iterator[Lab]:
    """The network applied and the gateway started under ``base``; everything stopped after."""
    home = base / "home"
    home.mkdir()
    hmctl = Hmctl(base / "state", base)
    hmctl.env = {**hmctl.env, "HOME": str(home)}
    hmctl.env.pop("XDG_DATA_HOME", None)
    folder = base / "example"
    shutil.copytree(EXAMPLES / "registry-and-names", folder)
    alpha_port = free_udp_port()
    network = (folder / "network.yaml").read_text()
    marker = "  name: alpha\nspec:\n  network: acme\n  listen: 127.0.0.1:0\n"
    assert marker in network
    (folder / "network.yaml").write_text(
        network.replace(marker, marker.replace("127.0.0.1:0", f"127.0.0.1:{alpha_port}"))
    )
    decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    decoy.bind(("127.0.0.1", 0))
    decoy.setblocking(False)
    (folder / "failing.yaml").write_text(_failing_names(alpha_port, decoy.getsockname()[1]))
    process = None
    try:
        applied = hmctl("apply", "-f", str(folder), "--timeout", "60s")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        trusted = hmctl("gateway", "trust", "--tld", "acme")
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        process, proxy = _start_gateway(hmctl)
        ca = home / ".local/share/hypermesh/gateway/ca.pem"
        yield Lab(hmctl, home, proxy, ca, decoy)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        hmctl("down", timeout=120)
        decoy.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("gateway")) as running:
        yield running


def curl(lab: Lab, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """curl through the gateway, trusting only the gateway's CA (no proxy from the environment)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        ["curl", "-sS", "--max-time", "30", "--proxy", f"http://{lab.proxy}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
