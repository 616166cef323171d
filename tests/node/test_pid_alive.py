"""``pid_alive``: the one answer to "does this pid run" that the node, drivers and CLI share."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hypermesh.node.lockfile import pid_alive


def test_this_process_runs() -> None:
    assert pid_alive(os.getpid())


def test_a_process_of_another_user_runs() -> None:
    assert pid_alive(1)


def test_a_zombie_does_not_run() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_a_collected_process_does_not_run() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


@pytest.mark.parametrize("pid", [None, "1", 0, -1, True, 1.0])
def test_what_is_not_a_pid_is_no_process(pid: object) -> None:
    assert not pid_alive(pid)


def test_no_other_module_asks_whether_a_pid_runs() -> None:
    """A second answer drifted before (one counted zombies, one did not): there is one."""
    root = Path(__file__).resolve().parents[2]
    probe = re.compile(r"os\.kill\(\w+, 0\)|/proc/\{\w+\}/stat\b|def _alive\(")
    found = [
        str(path.relative_to(root))
        for folder in ("controller", "operator")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "lockfile.py" and probe.search(path.read_text())
    ]
    assert found == []
