"""The node process end to end: start, runtime.json, single instance, signals, ports, logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

from hypermesh.node.lockfile import running_pid
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import fetch_status
from hypermesh.transport.identity import KEY_FILE
from tests.harness.node_process import NodeStarter, RunningNode, read_runtime, stop, write_config


def _port(address: str) -> int:
    return parse_address(address)[1]


def test_runtime_file_describes_the_process(shared_node: RunningNode) -> None:
    runtime = shared_node.runtime
    assert runtime["pid"] == shared_node.proc.pid
    assert runtime["identity"] == shared_node.identity
    assert runtime["address"].startswith("127.0.0.1:") and _port(runtime["address"]) > 0
    assert runtime["generation"] == 1 and runtime["version"]
    assert runtime["started_at"].endswith("Z")
    assert (shared_node.node_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_a_second_process_for_the_same_node_exits_3(shared_node: RunningNode) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "hypermesh.node", "--config", str(shared_node.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 3
    assert second.stderr.strip() == f"node shared already running (pid {shared_node.proc.pid})"
    assert read_runtime(shared_node.node_dir) == shared_node.runtime  # untouched


def test_sigterm_stops_cleanly(nodes: NodeStarter) -> None:
    node = nodes.start("alpha")
    assert running_pid(node.node_dir) == node.proc.pid
    fetch_status(node.address, node.identity, identity=None)
    assert stop(node.proc) == 0
    assert running_pid(node.node_dir) is None
    assert not (node.node_dir / "runtime.json").exists()


def test_log_is_json_lines_without_the_key(nodes: NodeStarter) -> None:
    node = nodes.start("alpha")
    fetch_status(node.address, node.identity, identity=None)
    stop(node.proc)
    key_pem = (node.node_dir / KEY_FILE).read_text()
    key_body = "".join(line for line in key_pem.splitlines() if not line.startswith("-----"))
    text = node.log_file.read_text()
    assert key_body not in text and "PRIVATE KEY" not in text
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in records)
    messages = [record["msg"] for record in records]
    assert messages[0] == "node started" and messages[-1] == "node stopped"
    started = records[0]
    assert started["address"] == node.address and started["identity"] == node.identity
    assert started["pid"] == node.proc.pid
    assert any(r["msg"] == "request" and r.get("path") == "/status" for r in records)


def test_a_restart_keeps_its_identity_and_preferred_port(nodes: NodeStarter) -> None:
    first = nodes.start("alpha")
    port = _port(first.address)
    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(10) == 0
    config = write_config(nodes.base, "alpha", prefer_port=port, generation=2)
    second = nodes.restart(config)
    assert second.address == first.address
    assert second.identity == first.identity
    status = fetch_status(second.address, first.identity, identity=None)
    assert status["generation"] == 2 and status["pid"] == second.proc.pid


def test_a_busy_preferred_port_falls_back_to_any(nodes: NodeStarter) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        node = nodes.start("alpha", prefer_port=busy)
        assert _port(node.address) not in (0, busy)
        assert fetch_status(node.address, node.identity, identity=None)["address"] == node.address


def test_a_killed_node_leaves_nothing_that_blocks_a_restart(nodes: NodeStarter) -> None:
    first = nodes.start("alpha")
    first.proc.kill()
    first.proc.wait(10)
    assert running_pid(first.node_dir) is None
    second = nodes.restart(first.config_path)  # the stale runtime.json is not mistaken for it
    assert second.runtime["pid"] == second.proc.pid


def test_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"name": "alpha", "listen": "127.0.0.1:0"}))
    result = subprocess.run(
        [sys.executable, "-m", "hypermesh.node", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing field(s)" in lines[0] and str(path) in lines[0]
