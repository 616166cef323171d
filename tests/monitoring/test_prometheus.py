"""Debian's real Prometheus scrapes a network the real controller started, from the targets
``hmctl prometheus sd`` wrote, and its HTTP API answers with the nodes."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEADER, Hmctl
from tests.monitoring.names import SYNTHETIC, copy_shipped, exported_names, series_names, tool

NETWORK = (
    HEADER
    + """kind: Network
metadata: {name: watched}
spec: {mode: private, registry: {node: registry}}
---
"""
    + HEADER
    + """kind: Node
metadata: {name: registry}
spec: {network: watched, listen: "127.0.0.1:0", roles: [registry], host: box,
       web: {listen: "127.0.0.1:0"}}
---
"""
    + HEADER
    + """kind: Node
metadata: {name: alpha}
spec: {network: watched, listen: "127.0.0.1:0", roles: [mirror], host: box,
       web: {listen: "127.0.0.1:0"}}
---
"""
    + HEADER
    + """kind: Node
metadata: {name: quiet}
spec: {network: watched, listen: "127.0.0.1:0", host: box}
"""
)
SCRAPED = {"registry", "alpha"}
WAIT = 90.0
"""Seconds Prometheus gets to scrape both nodes (it scrapes every second; a loaded machine)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def network(hmctl: Hmctl, tmp_path: Path) -> Hmctl:
    hmctl.env["HM_HOST"] = "box"  # this controller runs the Nodes placed on host box
    folder = tmp_path / "net"
    folder.mkdir()
    (folder / "network.yaml").write_text(NETWORK)
    result = hmctl("apply", "-f", str(folder), "--timeout", "90s")
    assert result.returncode == 0, result.stdout + result.stderr
    return hmctl


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Our own Prometheus (never the Debian service), on a free port, reading the shipped
    configuration and rules from ``tmp_path/prom``; stopped at teardown."""
    binary = tool("prometheus")
    folder = tmp_path / "prom"
    folder.mkdir()
    copy_shipped(folder)
    config = (folder / "prometheus.yml").read_text()
    config = config.replace("scrape_interval: 15s", "scrape_interval: 1s")
    (folder / "prometheus.yml").write_text(
        config.replace("refresh_interval: 1m", "refresh_interval: 1s")
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def wait_for_nodes(base: str, promql: str) -> list[dict[str, Any]]:
    """The series ``promql`` answers once every scraped node is in it with value 1."""
    deadline = time.monotonic() + WAIT
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            result = query(base, promql)
        except OSError:
            result = []  # Prometheus not listening yet
        if {r["metric"].get("node") for r in result if r["value"][1] == "1"} >= SCRAPED:
            return result
        time.sleep(0.5)
    pytest.fail(f"Prometheus did not see {sorted(SCRAPED)} within {WAIT:.0f}s: {result}")


def test_sd_targets_are_scraped_by_prometheus(
    network: Hmctl, prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    base, folder = prometheus
    result = network("prometheus", "sd", "-o", str(folder / "hypermesh-targets.json"))
    assert result.returncode == 0, result.stderr
    # The node without a web listener is named, with what to set.
    assert "quiet" in result.stderr and "spec.web.listen" in result.stderr
    groups = json.loads((folder / "hypermesh-targets.json").read_text())
    by_node = {g["labels"]["node"]: g for g in groups}
    assert set(by_node) == SCRAPED
    assert by_node["registry"]["labels"] == {
        "network": "watched",
        "node": "registry",
        "host": "box",
        "roles": "registry",
    }
    assert by_node["alpha"]["labels"]["roles"] == "mirror"
    for group in groups:
        (target,) = group["targets"]
        assert target.startswith("127.0.0.1:") and not target.endswith(":0")

    up = wait_for_nodes(base, 'up{job="hypermesh"}')
    assert {r["metric"]["network"] for r in up} == {"watched"}
    assert {r["metric"]["host"] for r in up} == {"box"}
    ready = wait_for_nodes(base, "hypermesh_node_ready")
    assert len(ready) == 2
    # The shipped rules are loaded and evaluated; a healthy network fires none of them.
    rules = get_json(f"{base}/api/v1/rules")["data"]["groups"]
    assert sum(len(g["rules"]) for g in rules) == 11
    assert query(base, 'ALERTS{alertstate="firing"}') == []

    # What the live nodes export is what the name check in test_rules knows of.
    exported = exported_names() | SYNTHETIC
    for group in groups:
        with urllib.request.urlopen(f"http://{group['targets'][0]}/metrics", timeout=10) as page:
            live = series_names(page.read().decode())
        assert "hypermesh_node_ready" in live
        assert live <= exported, sorted(live - exported)


def test_sd_to_stdout_and_by_network(network: Hmctl) -> None:
    result = network("prometheus", "sd", "--network", "watched")
    assert result.returncode == 0, result.stderr
    assert {g["labels"]["node"] for g in json.loads(result.stdout)} == SCRAPED
    other = network("prometheus", "sd", "--network", "elsewhere")
    assert other.returncode != 0
    assert "--network" in other.stderr and "elsewhere" in other.stderr


def test_sd_without_state(hmctl: Hmctl) -> None:
    result = hmctl("prometheus", "sd")
    assert result.returncode != 0
    assert "apply a network first" in result.stderr
