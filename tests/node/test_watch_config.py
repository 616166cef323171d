"""A node with ``watch_config`` (a node in a pod) reloads its config when the file's content
changes, the way the kubelet updates a mounted ConfigMap: a new ``..TIMESTAMP`` directory, the
``..data`` symlink swapped to it atomically, ``config.json`` a symlink through ``..data``. A real
node process on loopback; no SIGHUP is sent."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from hypermesh.node.config import NodeConfig
from hypermesh.node.reload import config_digest
from hypermesh.transport.client import fetch_status
from tests.conftest import wait_for as poll
from tests.harness.node_process import NodeStarter, RunningNode, wait_runtime, write_config

WAIT = 30.0
"""Bound of a wait for the node to act on a swap (it acts within about a second alone)."""


def configmap_volume(node_dir: Path, text: str) -> Path:
    """A ConfigMap volume holding ``text`` as ``config.json``, as the kubelet lays it out;
    the path the node is started with."""
    volume = node_dir / "config-volume"
    volume.mkdir()
    swap(volume, text, "..2026_12_04_15_00_00.000000001")
    (volume / "config.json").symlink_to("..data/config.json")
    return volume / "config.json"


def swap(volume: Path, text: str, stamp: str) -> None:
    """Update the volume as the kubelet's atomic writer does: write a new timestamped
    directory, point a temporary symlink at it, rename it over ``..data``, drop the old one."""
    data = volume / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    (volume / stamp).mkdir()
    (volume / stamp / "config.json").write_text(text)
    (volume / "..data_tmp").symlink_to(stamp)
    os.replace(volume / "..data_tmp", data)
    if old is not None:
        for child in (volume / old).iterdir():
            child.unlink()
        (volume / old).rmdir()


def started(nodes: NodeStarter, name: str) -> tuple[RunningNode, NodeConfig]:
    """A node with ``watch_config`` and a private interface (members), its config read from a
    ConfigMap-like volume."""
    plain = NodeConfig.load(write_config(nodes.base, name))
    config = dataclasses.replace(
        plain,
        interfaces=("public", "private"),
        private_listen="127.0.0.1:0",
        directory={name: {"kind": "Node", "identity": "hm1self", "tags": []}},
        watch_config=True,
    )
    return run(nodes, config), config


def run(nodes: NodeStarter, config: NodeConfig) -> RunningNode:
    """``config``'s node started from a ConfigMap-like volume in its directory."""
    node_dir = Path(config.node_dir)
    path = configmap_volume(node_dir, config.to_json())
    proc = nodes.spawn(path)
    return RunningNode(proc, path, node_dir, wait_runtime(node_dir, proc))


def status(node: RunningNode) -> dict[str, Any]:
    return fetch_status(node.address, node.identity, identity=None)


def wait_for(node: RunningNode, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = status(node)
        if check(found):
            return found
        time.sleep(0.1)
    log = node.log_file.read_text()[-3000:]
    raise AssertionError(f"no {what} within {WAIT:.0f}s; the log's end:\n{log}")


def log_records(node: RunningNode) -> list[dict[str, Any]]:
    return [json.loads(line) for line in node.log_file.read_text().splitlines() if line]


def test_a_swapped_configmap_reloads_in_place_and_a_bad_one_is_refused(
    nodes: NodeStarter,
) -> None:
    node, config = started(nodes, "alpha")
    volume = node.config_path.parent
    first = status(node)
    assert first["configDigest"] == config_digest(config.to_json())
    pid = node.proc.pid

    # a new member, as the operator writes it when a Node joins the network
    members = {**config.directory, "beta": {"kind": "Node", "identity": "hm1beta", "tags": []}}
    grown = dataclasses.replace(config, directory=members).to_json()
    swap(volume, grown, "..2026_12_04_15_01_00.000000002")
    now = wait_for(node, lambda s: s["configDigest"] == config_digest(grown), "reload")
    assert now["pid"] == pid == node.proc.pid and node.proc.poll() is None
    assert "reloadRefused" not in now
    assert any(r["msg"] == "config reloaded" and r.get("members") == 2 for r in log_records(node))

    # a file that does not parse: refused, the node keeps the config it runs
    swap(volume, '{"name": "alpha", ', "..2026_12_04_15_02_00.000000003")
    bad = wait_for(node, lambda s: "reloadRefused" in s, "refusal")
    assert bad["configDigest"] == config_digest(grown) and bad["pid"] == pid
    assert bad["reloadRefused"]["digest"] == config_digest('{"name": "alpha", ')
    assert "not valid JSON" in bad["reloadRefused"]["error"]

    # a change only a restart applies: refused too (the operator rolls the pod for it)
    moved = dataclasses.replace(config, directory=members, tags=("moved",)).to_json()
    swap(volume, moved, "..2026_12_04_15_03_00.000000004")
    refused = wait_for(
        node,
        lambda s: (s.get("reloadRefused") or {}).get("digest") == config_digest(moved),
        "refusal of a change of tags",
    )
    assert "tags" in refused["reloadRefused"]["error"]
    assert refused["configDigest"] == config_digest(grown) and node.proc.poll() is None
    messages = [r["msg"] for r in log_records(node)]
    assert messages.count("config reload refused; the node keeps its config") == 2


def inotify_descriptors(pid: int) -> int:
    """How many inotify instances process ``pid`` holds open (a descriptor closed between the
    listing and its read, a socket the node just finished with, is not counted)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except FileNotFoundError:
            continue
    return count


def test_only_a_node_with_the_option_watches(nodes: NodeStarter) -> None:
    """A standalone node (``watch_config`` false: its controller sends SIGHUP) holds no inotify
    watch; a node with the option holds one (on its event loop: no thread wakes for it)."""
    plain = NodeConfig.load(write_config(nodes.base, "plain"))
    assert '"watch_config"' not in plain.to_json()  # the standalone file's bytes are as before
    node = run(nodes, plain)
    watching, _ = started(nodes, "watching")
    # the watch starts as a task beside the node's start: its descriptor may come just after
    poll(lambda: inotify_descriptors(watching.proc.pid) == 1, timeout=WAIT)
    assert inotify_descriptors(node.proc.pid) == 0
