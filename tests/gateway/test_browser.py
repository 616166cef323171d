"""The gateway end to end: a HyperMesh node's page in headless Chromium through the PAC file with
a certificate it trusts from its NSS database (and refuses without it), curl through the proxy,
names that fail verification answered with an error page and never a request to a node, other
names refused, malformed and oversized requests answered 400/413/431, and the status."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway.conftest import Lab, curl

CHROMIUM_TIMEOUT = 90


def _chromium(lab: Lab, home: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with HOME ``home`` (its NSS database) and the gateway's PAC file."""
    program = shutil.which("chromium") or shutil.which("chromium-browser")
    if program is None:
        pytest.fail("chromium is missing: apt-get install chromium (.ci/run does)")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [
            program,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--proxy-pac-url=http://{lab.proxy}/proxy.pac",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT,
        env={**env, "HOME": str(home)},
    )


def test_a_nodes_page_opens_in_chromium_with_a_valid_certificate(lab: Lab, tmp_path: Path) -> None:
    url = "https://reg.acme/registry/"
    dom = _chromium(lab, lab.home, tmp_path / "profile", "--dump-dom", url).stdout
    assert "<title>HyperMesh registry</title>" in dom
    row = dom.split('<tr id="tld-acme">', 1)[1].split("</tr>", 1)[0]
    assert "acme" in row and ">active<" in row

    shot = tmp_path / "registry.png"
    taken = _chromium(
        lab, lab.home, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1024,700", url
    )
    assert shot.exists(), taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000

    # The same browser without the CA in its NSS database does not show the page: the
    # certificate really is checked (no --ignore-certificate-errors anywhere).
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    refused = _chromium(lab, stranger, tmp_path / "profile2", "--dump-dom", url).stdout
    assert "<title>HyperMesh registry</title>" not in refused


def test_curl_through_the_gateway(lab: Lab) -> None:
    secure = curl(lab, "-i", "--cacert", str(lab.ca_pem), "https://www.acme/status")
    assert secure.returncode == 0, secure.stderr
    head, body = secure.stdout.split("\n\n", 2)[1:]
    assert head.startswith("HTTP/1.1 200 OK")
    assert json.loads(body)["name"] == "alpha"

    plain = curl(lab, "http://www.acme/status")
    assert plain.returncode == 0 and json.loads(plain.stdout)["name"] == "alpha"

    # Without the gateway's CA, curl refuses the leaf (exit 60: certificate problem).
    assert curl(lab, "https://www.acme/status").returncode == 60


def test_other_names_are_refused(lab: Lab) -> None:
    tunnel = curl(lab, "--cacert", str(lab.ca_pem), "https://example.com/")
    assert tunnel.returncode == 56 and "CONNECT tunnel failed, response 403" in tunnel.stderr
    plain = curl(lab, "-i", "http://example.com/")
    assert plain.stdout.startswith("HTTP/1.1 403 Forbidden")
    assert "example.com is not a HyperMesh name" in plain.stdout


def _nothing_arrived(decoy: socket.socket) -> bool:
    try:
        decoy.recv(2048)
    except BlockingIOError:
        return True
    return False


def test_names_that_fail_verification_get_an_error_page_and_no_request(lab: Lab) -> None:
    before = _status(lab)["gateway"]["counters"]["verification_failures"]

    # No TLSA record: nothing is sent to the address the HTTPS record names.
    nokey = curl(lab, "-i", "--cacert", str(lab.ca_pem), "https://nokey.acme/")
    assert "HTTP/1.1 502 Bad Gateway" in nokey.stdout
    assert "x-hypermesh-failure: verify" in nokey.stdout
    assert "no TLSA 3 1 0 record" in nokey.stdout
    assert _nothing_arrived(lab.decoy)

    # A TLSA key the node does not hold: the handshake stops at the key, no request is sent,
    # and the browser sees the gateway's page, never the node's.
    badkey = curl(lab, "-i", "--cacert", str(lab.ca_pem), "https://badkey.acme/status")
    assert "HTTP/1.1 502 Bad Gateway" in badkey.stdout
    assert "x-hypermesh-failure: key" in badkey.stdout
    assert "did not prove the key the TLSA record pins" in badkey.stdout
    assert '"name":"alpha"' not in badkey.stdout

    after = _status(lab)["gateway"]["counters"]["verification_failures"]
    assert after == before + 2


def _raw(lab: Lab, data: bytes) -> bytes:
    host, port = lab.proxy.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while not answer.endswith(b"</html>\n") and len(answer) < 65536:
            part = conn.recv(65536)
            if not part:
                break
            answer += part
    return answer


def test_malformed_and_oversized_requests(lab: Lab) -> None:
    assert _raw(lab, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET http://www.acme/ HTTP/1.1\r\nHost: www.acme\r\nX-Big: " + b"a" * 20000
    assert _raw(lab, huge + b"\r\n\r\n").startswith(b"HTTP/1.1 431 ")
    body = b"POST http://www.acme/ HTTP/1.1\r\nHost: www.acme\r\nContent-Length: 99999999\r\n\r\n"
    assert _raw(lab, body).startswith(b"HTTP/1.1 413 ")
    bad_connect = b"CONNECT www.acme HTTP/1.1\r\nHost: www.acme\r\n\r\n"
    assert _raw(lab, bad_connect).startswith(b"HTTP/1.1 400 ")


def _status(lab: Lab) -> dict[str, object]:
    shown = lab.hmctl("gateway", "status", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert isinstance(data, dict)
    return data


def test_pac_file_and_status(lab: Lab) -> None:
    served = curl(lab, "--noproxy", "*", f"http://{lab.proxy}/proxy.pac")
    printed = lab.hmctl("gateway", "pac", "--proxy", lab.proxy)
    assert printed.returncode == 0 and served.stdout == printed.stdout
    assert 'dnsDomainIs(host, ".acme")' in served.stdout
    assert f'return "PROXY {lab.proxy}";' in served.stdout and 'return "DIRECT";' in served.stdout

    status = _status(lab)
    ca = status["ca"]
    assert isinstance(ca, dict) and ca["permitted"] == ["acme"]
    assert ca["installed"] == [{"store": "nss", "path": str(lab.home / ".pki/nssdb")}]
    gateway = status["gateway"]
    assert isinstance(gateway, dict) and gateway["listen"] == lab.proxy
    text = lab.hmctl("gateway", "status").stdout
    assert "may sign    *.acme (no IP addresses)" in text
    assert "COUNTER" in text and "verification_failures" in text and "may sign" in text
    assert (lab.home / ".local/share/hypermesh/gateway/ca.key").read_text() not in text


def test_a_gateway_with_no_state_reaches_names_through_the_registry(
    lab: Lab, tmp_path: Path
) -> None:
    listed = lab.hmctl("get", "nodes", "-o", "json")
    (registry,) = [
        i for i in json.loads(listed.stdout)["items"] if i["metadata"]["name"] == "registry"
    ]
    address, identity = registry["status"]["address"], registry["status"]["identity"]
    env = {**lab.hmctl.env, "HM_STATE": str(tmp_path / "none")}
    process = subprocess.Popen(
        [sys.executable, "-m", "hypermesh.cli.main", "gateway", "run", "--listen", "127.0.0.1:0",
         "--registry", address, "--registry-id", identity],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("gateway on "), line + process.stdout.read()
        laptop = Lab(lab.hmctl, lab.home, line.split()[2], lab.ca_pem, lab.decoy)
        page = curl(laptop, "--cacert", str(lab.ca_pem), "https://www.acme/status")
        assert page.returncode == 0 and json.loads(page.stdout)["name"] == "alpha"
    finally:
        process.terminate()
        process.wait(10)


def test_trust_reads_the_tlds_from_the_registry(lab: Lab, tmp_path: Path) -> None:
    made = lab.hmctl("gateway", "trust", "--no-nss", "--ca-dir", str(tmp_path / "ca"))
    assert made.returncode == 0, made.stderr
    assert "may sign    *.acme (no IP addresses)" in made.stdout
