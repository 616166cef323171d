"""``hmctl resolver``: ``run`` as its own process, asked by dnspython; ``status`` as a table
and as JSON; ``setup --print`` for NetworkManager checked by a real dnsmasq forwarding to the
stub, for systemd-resolved read back by ``systemd-analyze cat-config``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import pytest

from hypermesh.cli.main import main
from tests.harness.nodes import NodeProc, answer_values, wait_for
from tests.resolver.conftest import UPSTREAM_ADDRESS, FakeUpstream, free_port


def ask(port: int, name: str, timeout: float = 5) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=0)
    query.flags |= dns.flags.AD
    return dns.query.udp(query, "127.0.0.1", timeout=timeout, port=port)


@pytest.fixture(scope="module")
def running(
    mesh: dict[str, NodeProc], upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path, subprocess.Popen[str]]]:
    status = tmp_path_factory.mktemp("stub") / "status.json"
    m1, registry = mesh["m1"], mesh["registry"]
    command = [
        sys.executable, "-m", "hypermesh.cli.main", "resolver", "run",
        "--listen", "127.0.0.1:0",
        "--address", m1.address, "--identity", m1.identity,
        "--registry-id", registry.identity,
        "--upstream", upstream.address,
        "--status-file", str(status),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line + (process.stderr.read() if process.poll() is not None else "")  # type: ignore[union-attr]
        yield int(found.group(1)), status, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)


def test_run_serves_and_status_counts(
    running: tuple[int, Path, subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    port, status, _ = running
    assert answer_values(ask(port, "www.acme.")) == {"192.0.2.1"}
    assert answer_values(ask(port, "www.acme.")) == {"192.0.2.1"}  # from its cache
    assert answer_values(ask(port, "x.example.test.")) == {UPSTREAM_ADDRESS}

    def counted() -> dict[str, object] | None:
        body = json.loads(status.read_text())
        return body if body["counts"]["forwarded"] == 1 else None

    body = wait_for(counted, timeout=10, what="the status file to count")
    assert body["counts"]["verified"] == 2 and body["counts"]["cacheHits"] == 1
    assert body["zones"] == ["_nodes.", "acme."] and body["listen"] == f"127.0.0.1:{port}"

    assert main(["resolver", "status", "--status-file", str(status), "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)["items"][0]
    assert shown["state"] == "running" and shown["counts"]["forwarded"] == 1
    assert main(["resolver", "status", "--status-file", str(status)]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["RESOLVER", "LISTEN", "ASKS"]
    assert f"127.0.0.1:{port}" in row and "_nodes. acme." in row


def test_status_without_a_resolver_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["resolver", "status", "--status-file", str(tmp_path / "none.json")]) == 2
    assert "no resolver status" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["resolver", "status", "--status-file", str(tmp_path / "bad.json")]) == 2
    assert "not a resolver status file" in capsys.readouterr().err
    assert main(["resolver", "run", "--address", "127.0.0.1:1", "--listen", "nowhere"]) == 2
    assert "--listen" in capsys.readouterr().err


def test_networkmanager_s_dnsmasq_lines_send_mesh_names_to_the_stub(
    running: tuple[int, Path, subprocess.Popen[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if shutil.which("dnsmasq") is None:
        pytest.fail("dnsmasq is missing: apt-get install dnsmasq-base (.ci/run does)")
    port = running[0]
    setup = ["resolver", "setup", "--print", "networkmanager", "--domain", "acme"]
    code = main([*setup, "--listen", f"127.0.0.1:{port}"])
    snippet = capsys.readouterr().out
    assert code == 0 and f"server=/acme/127.0.0.1#{port}" in snippet
    servers = [line for line in snippet.splitlines() if line.startswith("server=")]
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text("\n".join(servers) + "\n")
    listen = free_port()
    dnsmasq = subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
         "--user=root", f"--conf-file={conf}", "--listen-address=127.0.0.1",
         "--bind-interfaces", f"--port={listen}", "--cache-size=0",
         f"--pid-file={tmp_path / 'pid'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        answer = wait_for(lambda: ask(listen, "www.acme.", 1), timeout=10, what="dnsmasq")
        assert answer_values(answer) == {"192.0.2.1"}
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)


def test_the_resolved_drop_in_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = ["resolver", "setup", "--domain", "acme", "--domain", "_nodes"]
    assert main([*setup, "--print", "resolved", "--listen", "127.0.0.2:53"]) == 0
    snippet = capsys.readouterr().out
    drop_in = tmp_path / "etc/systemd/resolved.conf.d/hypermesh.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text(snippet)
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    done = subprocess.run(
        ["systemd-analyze", f"--root={tmp_path}", "cat-config", "systemd/resolved.conf"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Resolve]", "DNS=127.0.0.2:53", "Domains=~acme ~_nodes"]
    assert main([*setup, "--print", "resolv.conf", "--listen", "127.0.0.1:5353"]) == 2
    assert "port 53" in capsys.readouterr().err


def test_run_stops_on_sigterm_and_removes_its_status(
    running: tuple[int, Path, subprocess.Popen[str]],
) -> None:
    _, status, process = running
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    deadline = time.monotonic() + 5
    while status.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not status.exists()
