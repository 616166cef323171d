"""Node processes started from a config: real ``python -m hypermesh.node`` children on
127.0.0.1, as the controller starts them (shared by the node, DNS and end-to-end tests).

Every wait is bounded; every process a test starts is stopped at teardown whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hypermesh.node.config import NodeConfig
from hypermesh.transport.identity import read_node_id

START_TIMEOUT = 30.0
"""A node starts in well under a second alone; CI runs three test processes on two cores, beside
the lab's tests starting a dozen nodes at once (a 10 s bound was missed there once)."""
STOP_TIMEOUT = 5.0


def write_config(
    base: Path,
    name: str = "alpha",
    *,
    listen: str = "127.0.0.1:0",
    prefer_port: int | None = None,
    generation: int = 1,
) -> Path:
    """Write a node config as the controller does; the node's files go to ``base/name``."""
    node_dir = base / name
    node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = NodeConfig(
        name=name,
        network="demo",
        listen=listen,
        prefer_port=prefer_port,
        interfaces=("public",),
        roles=("mirror",),
        tags=("test",),
        generation=generation,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        log_level="debug",
    )
    path = node_dir / "config.json"
    path.write_text(config.to_json())
    return path


def spawn(config_path: Path) -> subprocess.Popen[bytes]:
    """Start a node detached, output appended to its log file, as the controller does."""
    config = NodeConfig.load(config_path)
    with Path(config.log_file).open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hypermesh.node", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=config.node_dir,
        )


def read_runtime(node_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((node_dir / "runtime.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wait_runtime(
    node_dir: Path, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> dict[str, Any]:
    """Wait until the node publishes runtime.json for this very process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = node_dir / "node.log"
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"node exited with {proc.returncode} before serving:\n{text}")
        runtime = read_runtime(node_dir)
        if runtime is not None and runtime.get("pid") == proc.pid:
            return runtime
        time.sleep(0.02)
    log = node_dir / "node.log"
    tail = "\n".join(log.read_text().splitlines()[-20:]) if log.exists() else "(no log)"
    pytest.fail(f"no runtime.json in {node_dir} within {timeout}s; the log's end:\n{tail}")


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, bounded wait, SIGKILL as a last resort; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


@dataclass
class RunningNode:
    """A started node process and what it published."""

    proc: subprocess.Popen[bytes]
    config_path: Path
    node_dir: Path
    runtime: dict[str, Any]

    @property
    def address(self) -> str:
        return str(self.runtime["address"])

    @property
    def identity(self) -> str:
        node_id = read_node_id(self.node_dir)
        assert node_id is not None
        return node_id

    @property
    def log_file(self) -> Path:
        return self.node_dir / "node.log"


class NodeStarter:
    """Starts nodes and remembers them, so teardown can stop every one."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, config_path: Path) -> subprocess.Popen[bytes]:
        proc = spawn(config_path)
        self.procs.append(proc)
        return proc

    def start(self, name: str = "alpha", **options: Any) -> RunningNode:
        config_path = write_config(self.base, name, **options)
        return self.restart(config_path)

    def restart(self, config_path: Path) -> RunningNode:
        proc = self.spawn(config_path)
        node_dir = config_path.parent
        return RunningNode(proc, config_path, node_dir, wait_runtime(node_dir, proc))

    def stop_all(self) -> None:
        for proc in self.procs:
            stop(proc)
