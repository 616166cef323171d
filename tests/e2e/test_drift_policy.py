"""Drift policies end to end, with real node processes: a node killed under ``hmctl up --drift
detect`` stays dead and its status says Drifted (and ``hmctl controller status`` counts it);
under ``hmctl controller run --drift correct`` a killed node comes back and Drifted turns False."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Hmctl, node_processes, wait_for
from tests.e2e.test_lifecycle import nodes, ready, write


def drifted(item: dict[str, Any]) -> str | None:
    """The status of the node's Drifted condition, if it has one."""
    for cond in item["status"].get("conditions", []):
        if cond["type"] == "Drifted":
            return str(cond["status"])
    return None


def loop_status(hmctl: Hmctl) -> dict[str, Any]:
    result = hmctl("controller", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)["status"]
    return status


def started(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    stdout = process.stdout
    wait_for(lambda: "reconciling every" in stdout.readline(), timeout=90)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 0


def test_detect_leaves_a_killed_node_dead_and_correct_brings_it_back(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    manifest = tmp_path / "net.yaml"
    write(manifest, "alpha", "beta")

    up = hmctl.popen("up", "-f", str(manifest), "--interval", "0.3s", "--drift", "detect")
    try:
        started(up)
        victim = nodes(hmctl)["alpha"]["status"]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: drifted(nodes(hmctl)["alpha"]) == "True", timeout=60)
        alpha = nodes(hmctl)["alpha"]
        (cond,) = [c for c in alpha["status"]["conditions"] if c["type"] == "Drifted"]
        assert cond["message"] == "process not running"
        assert not ready(alpha)
        # More passes go by, and the node stays dead.
        seen = loop_status(hmctl)["lastPassAt"]
        wait_for(lambda: loop_status(hmctl)["lastPassAt"] != seen, timeout=30)
        status = loop_status(hmctl)
        assert status["drift"] == "detect"
        assert [d.split(" (")[0] for d in status["drifted"]] == ["Node/alpha"]
        assert len(node_processes(hmctl.state)) == 1
        assert "alpha" not in {n for n, i in nodes(hmctl).items() if ready(i)}
        text = hmctl("controller", "status").stdout
        assert "Drift:           detect, 1 drifted: Node/alpha" in text
        described = hmctl("describe", "node", "alpha")
        assert "left as it is: process not running" in described.stdout, described.stderr
    finally:
        stop(up)

    controller = hmctl.popen("controller", "run", "-f", str(manifest), "--interval", "0.3s")
    try:
        started(controller)  # the first apply is under correct: alpha is started again
        first = nodes(hmctl)["alpha"]["status"]["pid"]
        os.kill(first, signal.SIGKILL)

        def back() -> bool:
            item = nodes(hmctl)["alpha"]
            return ready(item) and item["status"].get("pid") not in (None, first)

        wait_for(back, timeout=60)
        assert drifted(nodes(hmctl)["alpha"]) == "False"
        assert loop_status(hmctl)["drifted"] == []
    finally:
        stop(controller)
