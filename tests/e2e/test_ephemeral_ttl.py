"""An ephemeral network with a short TTL, end to end with real node processes on 127.0.0.1: a
registry node, another node, a TLD and a record. Past its expiry a pass of the controller tears
all of it down — processes, node directories and keys, store rows — and keeps it down while the
files are unchanged; an apply creates it anew with a fresh TTL and fresh keys, and an apply that
finds it expired tears it down the same way."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hypermesh.store import StateStore
from tests.conftest import HEADER, Hmctl, documents, manifest, node, node_processes, wait_for
from tests.e2e.conftest import items, ready

TTL = 15
"""Seconds: longer than an apply of this network and the checks after it take (about 3 s and
5 s here, more on a loaded machine), short enough to wait for."""

NODES = ("registry", "alpha")


def ephemeral_network() -> str:
    return documents(
        HEADER
        + manifest(
            f"""
            kind: Network
            metadata: {{name: demo}}
            spec: {{mode: ephemeral, ttl: {TTL}s, registry: {{node: registry}}}}
            """
        ),
        node("registry", roles="[registry]"),
        node("alpha", roles="[mirror]"),
        HEADER
        + manifest(
            """
            kind: TLD
            metadata: {name: scratch}
            spec: {network: demo, owner: {node: alpha}}
            """
        ),
        HEADER
        + manifest(
            """
            kind: Record
            metadata: {name: www.scratch}
            spec: {tld: scratch, target: {node: alpha}}
            """
        ),
    )


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(") ", 1)[-1][:1] not in ("Z", "X")


def running(hmctl: Hmctl) -> dict[str, Any]:
    """The network's live facts after an apply: its status, and each node's pid and ID."""
    listed = hmctl("get", "all", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    found = {(i["kind"], i["metadata"]["name"]): i for i in json.loads(listed.stdout)["items"]}
    want = [("Network", "demo"), ("TLD", "scratch"), ("Record", "www.scratch")]
    want += [("Node", name) for name in NODES]
    assert sorted(found) == sorted(want)
    assert all(ready(item) == ("True", "Converged") for item in found.values())
    for name in NODES:
        assert (hmctl.state / "nodes" / name / "identity.key").exists()
    nodes = [found["Node", name]["status"] for name in NODES]
    return {
        "status": found["Network", "demo"]["status"],
        "pids": {n["pid"] for n in nodes},
        "ids": {n["identity"] for n in nodes},
    }


def wait_until_expired(status: dict[str, Any]) -> None:
    """Sleep (bounded) until the network's expiresAt has passed."""
    left = moment(status["expiresAt"]) - time.time()
    assert left <= TTL
    time.sleep(max(0.0, left) + 0.5)


def assert_torn_down(hmctl: Hmctl, before: dict[str, Any]) -> None:
    """No process, directory, key or store row of the network is left; `get` shows only the
    Network, as Expired."""
    wait_for(lambda: not any(alive(pid) for pid in before["pids"]), timeout=30)
    assert node_processes(hmctl.state) == set()
    for name in NODES:
        assert not (hmctl.state / "nodes" / name).exists()
    assert list(hmctl.state.rglob("identity.key")) == []
    assert list(hmctl.state.rglob("*.db")) == [hmctl.state / "state.db"]

    store = StateStore.open(hmctl.state)
    try:
        rows = store.records()
    finally:
        store.close()
    # The Network stays only as a tombstone: declared, but no inventory, no last-applied spec,
    # no creation or expiry time of the old network.
    assert [str(r.key) for r in rows] == ["Network/demo"]
    (stone,) = rows
    assert stone.applied is None and not stone.managed
    assert "createdAt" not in stone.status and "expiresAt" not in stone.status

    for kind in ("nodes", "tlds", "records", "interfacepolicies"):
        assert items(hmctl, kind) == {}
    everything = json.loads(hmctl("get", "all", "-o", "json").stdout)["items"]
    assert [(i["kind"], i["metadata"]["name"]) for i in everything] == [("Network", "demo")]
    demo = everything[0]
    assert ready(demo) == ("False", "Expired")
    assert demo["status"]["expiredAt"] == before["status"]["expiresAt"]
    assert demo["status"]["managed"] is False


def test_ephemeral_network_is_torn_down_when_its_ttl_runs_out(hmctl: Hmctl, tmp_path: Path) -> None:
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "demo.yaml").write_text(ephemeral_network())

    applied = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    first = running(hmctl)
    status = first["status"]
    assert moment(status["expiresAt"]) - moment(status["createdAt"]) == TTL
    assert abs(moment(status["createdAt"]) - time.time()) < 60
    wide = hmctl("get", "networks", "-o", "wide")
    assert "EXPIRES" in wide.stdout and status["expiresAt"] in wide.stdout

    # A running controller tears it down at its first pass past expiry (the expiry recorded by
    # the apply, kept in the store), and keeps it down.
    controller = hmctl.popen("controller", "run", "-f", str(folder), "--interval", "0.3s")
    lines: list[str] = []

    def said(text: str) -> bool:
        assert controller.stdout is not None
        lines.append(controller.stdout.readline())
        if not lines[-1] and controller.poll() is not None:  # it ended: say what it said
            raise AssertionError(f"the controller exited {controller.returncode}: {lines}")
        return text in lines[-1]

    try:
        wait_for(lambda: said("reconciling every"), timeout=60)
        wait_until_expired(status)
        wait_for(
            lambda: ready(items(hmctl, "networks")["demo"]) == ("False", "Expired"), timeout=60
        )
        assert_torn_down(hmctl, first)
        time.sleep(1.5)  # several more passes over the unchanged files
        assert_torn_down(hmctl, first)
    finally:
        controller.send_signal(signal.SIGTERM)
        rest, _ = controller.communicate(timeout=30)
    output = "".join(lines) + rest
    assert controller.returncode == 0, output
    assert (
        f"network/demo expired at {status['expiresAt']}: torn down 2 node(s), 1 TLD(s) "
        "and 1 record(s)"
    ) in output
    assert "created" not in rest  # nothing came back
    log = (hmctl.state / "logs" / "controller.log").read_text()
    assert f"network demo expired at {status['expiresAt']}: torn down 2 node(s)" in log

    # Applying the same files again creates it anew: a fresh TTL, new processes, new keys.
    anew = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    assert anew.returncode == 0, anew.stdout + anew.stderr
    second = running(hmctl)
    fresh = second["status"]
    assert moment(fresh["createdAt"]) > moment(status["expiresAt"])
    assert moment(fresh["expiresAt"]) - moment(fresh["createdAt"]) == TTL
    assert second["ids"].isdisjoint(first["ids"])

    # diff says what a pass past expiry will do; an apply that finds it expired tears it down
    # the same way, says so, and exits 1.
    wait_until_expired(fresh)
    diff = hmctl("diff", "-f", str(folder))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert f"5 to tear down (network demo expired at {fresh['expiresAt']})" in diff.stdout
    late = hmctl("apply", "-f", str(folder), "--timeout", "60s")
    assert late.returncode == 1, late.stdout + late.stderr
    assert f"network/demo expired at {fresh['expiresAt']}: torn down 2 node(s)" in late.stdout
    assert "Network/demo   Expired" in late.stdout
    assert_torn_down(hmctl, second)
