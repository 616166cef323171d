"""The fork server: a node forked from it is a process of its own, as a spawned one is.

Real node processes from real configs (``tests.harness.node_process.write_config``): the node
reaches ``runtime.json``, runs in its own session with its own log, shows the command line of
a node, outlives the server, stops on SIGTERM with its exit code known; without the server the
driver falls back to the plain spawn. The server's warm-up runs to its end and leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hypermesh.drivers.forkserver import ForkedChild, ForkServer
from hypermesh.drivers.processes import NodeProcessDriver
from hypermesh.node.lockfile import pid_alive
from hypermesh.node.runtime import read_runtime
from tests.harness.node_process import START_TIMEOUT, write_config

STOP_TIMEOUT = 10.0


def wait(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout:g}s"
        time.sleep(0.05)


@pytest.fixture
def server() -> Iterator[ForkServer]:
    forks = ForkServer(sys.executable)
    yield forks
    forks.close()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[int]]:
    """Pids to kill at teardown, whatever the test did."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_forked_node_is_a_node_process_of_its_own(
    server: ForkServer, started: list[int], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    node_dir = config.parent
    assert server.available()
    child = server.spawn(config, node_dir, node_dir / "node.log")
    started.append(child.pid)
    wait(lambda: (r := read_runtime(node_dir)) is not None and r.pid == child.pid, START_TIMEOUT,
         "the node publishes runtime.json")  # fmt: skip

    assert child.poll() is None and pid_alive(child.pid)
    assert os.getsid(child.pid) == child.pid  # its own session, as start_new_session gives
    argv = Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:5] == [b"-m", b"hypermesh.node", b"--config", str(config).encode()]
    assert Path(f"/proc/{child.pid}/cwd").resolve() == node_dir.resolve()
    assert os.readlink(f"/proc/{child.pid}/fd/1") == str(node_dir / "node.log")
    assert b"node started" in (node_dir / "node.log").read_bytes()

    server.close()  # the controller exits: the node lives on
    time.sleep(0.2)
    assert pid_alive(child.pid)
    os.kill(child.pid, signal.SIGTERM)
    wait(lambda: not pid_alive(child.pid), STOP_TIMEOUT, "the node stops on SIGTERM")


def test_the_server_reports_a_nodes_exit_code(
    server: ForkServer, started: list[int], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    child = server.spawn(config, config.parent, config.parent / "node.log")
    started.append(child.pid)
    wait(lambda: read_runtime(config.parent) is not None, START_TIMEOUT, "the node starts")
    os.kill(child.pid, signal.SIGTERM)
    wait(lambda: child.poll() is not None, STOP_TIMEOUT, "the server reports the exit")
    assert child.poll() == 0
    assert not pid_alive(child.pid)  # collected: no zombie left

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    failed = server.spawn(bad, tmp_path, tmp_path / "bad.log")
    wait(lambda: failed.poll() is not None, START_TIMEOUT, "a bad config exits")
    assert failed.poll() == 2  # EXIT_BAD_CONFIG, as from python -m hypermesh.node
    assert b"bad config" in (tmp_path / "bad.log").read_bytes()


def test_without_a_fork_server_the_driver_spawns_nodes_plainly(
    monkeypatch: pytest.MonkeyPatch, started: list[int], tmp_path: Path
) -> None:
    monkeypatch.setenv("HM_FORKSERVER", "0")
    driver = NodeProcessDriver(tmp_path / "state")
    config = write_config(tmp_path)
    child = driver._spawn(config.parent)
    started.append(child.pid)
    assert not isinstance(child, ForkedChild)
    wait(lambda: read_runtime(config.parent) is not None, START_TIMEOUT, "the node starts")

    monkeypatch.setenv("HM_FORKSERVER", "1")
    broken = ForkServer("/nonexistent/python")
    assert not broken.available()  # the server cannot start: the plain spawn it is
    driver._forks = broken
    config2 = write_config(tmp_path, "beta")
    child2 = driver._spawn(config2.parent)
    started.append(child2.pid)
    assert not isinstance(child2, ForkedChild)
    wait(lambda: read_runtime(config2.parent) is not None, START_TIMEOUT, "the node starts")


WARM_PROBE = """
import json, os, tempfile, threading
from pathlib import Path
from hypermesh.node.forkserver import warm_up
def held():
    return sorted(os.listdir("/proc/self/fd")), threading.active_count(), sorted(
        os.listdir(tempfile.gettempdir()))
before = held()
status = warm_up()
print(json.dumps({"status": status.decode(), "before": before, "after": held()}))
"""


def test_the_warm_up_answers_in_memory_and_leaves_nothing_behind() -> None:
    """The fork server's warm-up (``preload`` runs it with its failures ignored) runs to its
    end: a real QUIC handshake and HTTP/3 answer between a node's configurations, with no
    descriptor, thread or temporary file left."""
    out = subprocess.run(
        [sys.executable, "-c", WARM_PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["status"] == "200"
    before_fds, before_threads, before_tmp = found["before"]
    after_fds, after_threads, after_tmp = found["after"]
    assert after_fds == before_fds
    assert after_threads == before_threads
    assert not [name for name in after_tmp if name.startswith("hm-") and name not in before_tmp]
