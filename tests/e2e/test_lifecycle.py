"""End to end with real processes and real QUIC sockets on 127.0.0.1: apply a network, read each
node's status over HTTP/3 at the address hmctl reports, kill a node and watch the controller bring
it back, edit the manifest, diff, apply, prune, down."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from hypermesh.transport.client import h3_get_json
from tests.conftest import Hmctl, documents, network, node, node_processes, wait_for


def nodes(hmctl: Hmctl) -> dict[str, dict[str, Any]]:
    result = hmctl("get", "nodes", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {item["metadata"]["name"]: item for item in json.loads(result.stdout)["items"]}


def ready(item: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in item["status"].get("conditions", [])
    )


def write(path: Path, *names: str) -> None:
    path.write_text(documents(network("demo"), *(node(n) for n in names)))


def test_apply_observe_kill_restart_edit_prune_down(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "net.yaml"
    write(manifest, "alpha", "beta", "gamma")

    applied = hmctl("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "converged: 4 resources ready" in applied.stdout

    # Every node answers over HTTP/3 at the address hmctl reports, with the pinned identity.
    first = nodes(hmctl)
    assert sorted(first) == ["alpha", "beta", "gamma"]
    for name, item in first.items():
        status = item["status"]
        assert ready(item)
        assert status["identity"].startswith("hm1") and len(status["identity"]) == 55
        answer = asyncio.run(
            h3_get_json(status["address"], "/status", expected_id=status["identity"], identity=None)
        )
        assert answer["name"] == name
        assert answer["pid"] == status["pid"]
        assert answer["identity"] == status["identity"]
        assert answer["network"] == "demo"
    assert node_processes(hmctl.state) == {item["status"]["pid"] for item in first.values()}

    # A running controller restarts a node killed with SIGKILL.
    controller = hmctl.popen("controller", "run", "-f", str(manifest), "--interval", "0.3s")
    try:
        assert controller.stdout is not None
        wait_for(lambda: "reconciling every" in controller.stdout.readline(), timeout=60)
        victim = first["alpha"]["status"]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            item = nodes(hmctl)["alpha"]
            return ready(item) and item["status"].get("pid") not in (None, victim)

        wait_for(restarted, timeout=60)
        again = nodes(hmctl)["alpha"]["status"]
        assert again["identity"] == first["alpha"]["status"]["identity"]  # same key
        assert again["address"] == first["alpha"]["status"]["address"]  # same port, preferred

        # The controller follows the files: a node added to the manifest is started.
        write(manifest, "alpha", "beta", "gamma", "delta")
        wait_for(lambda: ready(nodes(hmctl).get("delta", {"status": {}})), timeout=60)
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=30)
    assert controller.returncode == 0
    # Stopping the controller leaves the nodes running.
    assert len(node_processes(hmctl.state)) == 4

    # Edit; diff shows exactly the change and exits 1; apply; diff is clean.
    manifest.write_text(
        documents(
            network("demo"),
            node("alpha"),
            node("beta", interfaces="[public, private]"),
            node("gamma"),
            node("delta"),
        )
    )
    diff = hmctl("diff", "-f", str(manifest))
    assert diff.returncode == 1, diff.stderr
    assert "~ update Node/beta" in diff.stdout
    assert "+  - private" in diff.stdout
    assert "Plan: 0 to create, 1 to update, 0 to delete, 4 unchanged." in diff.stdout
    as_json = json.loads(hmctl("diff", "-f", str(manifest), "-o", "json").stdout)
    (change,) = [i for i in as_json["items"] if i["action"] != "noop"]
    assert change["diff"] == [
        {"op": "change", "field": "interfaces", "old": ["public"], "new": ["public", "private"]}
    ]
    assert hmctl("apply", "-f", str(manifest)).returncode == 0
    assert hmctl("diff", "-f", str(manifest)).returncode == 0

    # --prune removes a node no longer declared; without it the node stays.
    beta_pid = nodes(hmctl)["beta"]["status"]["pid"]
    write(manifest, "alpha", "gamma", "delta")
    assert hmctl("apply", "-f", str(manifest)).returncode == 0
    assert beta_pid in node_processes(hmctl.state)
    pruned = hmctl("apply", "-f", str(manifest), "--prune")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert beta_pid not in node_processes(hmctl.state)
    assert "beta" not in nodes(hmctl)

    # down leaves no process behind.
    down = hmctl("down")
    assert down.returncode == 0, down.stderr
    assert "stopped 3 node(s)" in down.stdout
    assert node_processes(hmctl.state) == set()


def test_prune_guard(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "net.yaml"
    write(manifest, "a", "b", "c")
    assert hmctl("apply", "-f", str(manifest)).returncode == 0

    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    refused = hmctl("apply", "-f", str(empty), "--prune")
    assert refused.returncode == 2
    assert "refusing to prune: the given files declare nothing" in refused.stderr
    assert len(node_processes(hmctl.state)) == 3

    write(manifest, "a")
    refused = hmctl("apply", "-f", str(manifest), "--prune")
    assert refused.returncode == 2
    assert "refusing to prune 2 of 3 resources in the inventory (more than half)" in refused.stderr
    assert len(node_processes(hmctl.state)) == 3

    forced = hmctl("apply", "-f", str(manifest), "--prune", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert len(node_processes(hmctl.state)) == 1


def test_an_apply_while_a_loop_runs_is_handed_to_it_or_told_what_to_do(
    hmctl: Hmctl, tmp_path: Path
) -> None:
    manifest, other = tmp_path / "net.yaml", tmp_path / "other.yaml"
    write(manifest, "a")
    write(other, "a")
    controller = hmctl.popen("controller", "run", "-f", str(manifest), "--interval", "30s")
    try:
        assert controller.stdout is not None
        wait_for(lambda: "reconciling every" in controller.stdout.readline(), timeout=60)
        same = hmctl("apply", "-f", str(manifest))
        assert same.returncode == 0, same.stdout + same.stderr
        assert f"hmctl controller run (pid {controller.pid}) already applied" in same.stdout
        # An edit of the files the loop applies: applied by the loop, which sees it at once
        # (not in 30 s); the apply waits for it (cli.handover's own tests: the waiting) or
        # finds it applied already.
        write(manifest, "a", "b")
        handed = hmctl("apply", "-f", str(manifest), "--timeout", "60s")
        assert handed.returncode == 0, handed.stdout + handed.stderr
        assert f"hmctl controller run (pid {controller.pid})" in handed.stdout
        assert "converged: 3 resources ready" in handed.stdout
        assert len(node_processes(hmctl.state)) == 2
        # Other files: not the loop's to apply; the error says what it applies and what to do.
        refused = hmctl("apply", "-f", str(other))
        assert refused.returncode == 3
        assert (
            f"hmctl controller run (pid {controller.pid}) holds this state and applies "
            f"{manifest.resolve()}: edit those files" in refused.stderr
        ), refused.stderr
        assert "hmctl down" in refused.stderr
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(timeout=30)


def test_down_stops_a_running_up(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "net.yaml"
    write(manifest, "a", "b")
    up = hmctl.popen("up", "-f", str(manifest), "--interval", "1s")
    try:
        assert up.stdout is not None
        wait_for(lambda: "reconciling every" in up.stdout.readline(), timeout=60)
        assert len(node_processes(hmctl.state)) == 2
        down = hmctl("down")
        assert down.returncode == 0, down.stderr
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert node_processes(hmctl.state) == set()


@pytest.mark.parametrize("stdin", [True, False])
def test_manifest_from_stdin(hmctl: Hmctl, tmp_path: Path, stdin: bool) -> None:
    text = documents(network("demo"), node("solo"))
    if stdin:
        result = hmctl("validate", "-f", "-", input=text.encode())
    else:
        (tmp_path / "m.yaml").write_text(text)
        result = hmctl("validate", "-f", str(tmp_path / "m.yaml"))
    assert result.returncode == 0, result.stderr
    assert "valid: 2 resources" in result.stdout


def test_crash_of_apply_leaves_no_duplicate_or_orphan(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "big.yaml"
    write(manifest, *(f"n{i:02d}" for i in range(30)))
    apply = hmctl.popen("apply", "-f", str(manifest), "--parallelism", "4")
    nodes_dir = hmctl.state / "nodes"

    def some_started() -> bool:
        return nodes_dir.exists() and len(list(nodes_dir.glob("*/runtime.json"))) >= 6

    try:
        wait_for(some_started, timeout=120, interval=0.02)
    finally:
        apply.kill()  # SIGKILL, in the middle of the apply
        apply.wait()
    survivors = node_processes(hmctl.state)
    assert 0 < len(survivors) < 30

    second = hmctl("apply", "-f", str(manifest))
    assert second.returncode == 0, second.stdout + second.stderr
    listed = nodes(hmctl)
    assert len(listed) == 30 and all(ready(item) for item in listed.values())
    running = node_processes(hmctl.state)
    # Exactly one process per node, and every process is one hmctl knows: no duplicate, no orphan.
    assert running == {item["status"]["pid"] for item in listed.values()}
    assert len(running) == 30
    assert hmctl("down").returncode == 0
    assert node_processes(hmctl.state) == set()


def test_get_yaml_applies_back_and_delete(hmctl: Hmctl, tmp_path: Path) -> None:
    manifest = tmp_path / "net.yaml"
    write(manifest, "a", "b")
    assert hmctl("apply", "-f", str(manifest)).returncode == 0

    # What `get -o yaml` prints is a manifest: applying it back changes nothing.
    listed = hmctl("get", "all", "-o", "yaml")
    assert listed.returncode == 0, listed.stderr
    back = tmp_path / "back.yaml"
    back.write_text(listed.stdout)
    same = hmctl("diff", "-f", str(back))
    assert same.returncode == 0, same.stdout + same.stderr

    b_pid = nodes(hmctl)["b"]["status"]["pid"]
    deleted = hmctl("delete", "node", "b")
    assert deleted.returncode == 0, deleted.stderr
    assert "node/b deleted" in deleted.stdout
    assert b_pid not in node_processes(hmctl.state)
    assert sorted(nodes(hmctl)) == ["a"]
    # Still declared, so the next apply would create it again, and diff says so.
    again = hmctl("diff", "-f", str(manifest))
    assert again.returncode == 1
    assert "+ create Node/b" in again.stdout
    missing = hmctl("delete", "node", "nope")
    assert missing.returncode == 2
    assert "not found: Node/nope" in missing.stderr
