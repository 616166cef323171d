"""``hmctl ping``: a node reached by its key, by ID, local name or member name, with its path
and round trips; exit 1 with a clear message when it cannot be reached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypermesh.transport.identity import Identity
from tests.conftest import Hmctl

NETWORK = """\
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: acme}
spec:
  mode: private
  registry: {node: registry}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: registry}
spec: {network: acme, listen: "127.0.0.1:0", roles: [registry]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: alpha}
spec: {network: acme, listen: "127.0.0.1:0", roles: [mirror]}
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: gamma}
spec: {network: acme, listen: "127.0.0.1:0", roles: [mirror]}
"""


@pytest.fixture
def applied(hmctl: Hmctl, tmp_path: Path) -> Hmctl:
    (tmp_path / "network.yaml").write_text(NETWORK)
    result = hmctl("apply", "-f", str(tmp_path / "network.yaml"), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    return hmctl


def _status(hmctl: Hmctl, name: str) -> dict[str, str]:
    result = hmctl("get", "node", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    item = data["items"][0] if "items" in data else data
    return dict(item["status"])


def test_ping_by_id_by_name_and_via_a_node(applied: Hmctl) -> None:
    gamma = _status(applied, "gamma")
    node_id, address = gamma["identity"], gamma["address"]
    # by ID, through the node directory (the record gamma published at the registry)
    result = applied("ping", node_id, "-c", "2", "--timeout", "20s")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"gamma ({node_id[:12]}…): direct {address}  rtt min/avg/max ")
    assert line.count("/") >= 4 and " ms" in line
    # by local name (this state knows it), proving alpha's key; JSON
    result = applied("ping", "gamma", "--via", "alpha", "-c", "3", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["node"], data["address"], data["path"]) == (node_id, address, "direct")
    assert len(data["rttMs"]) == 3


def test_an_unknown_node_is_unreachable_with_exit_1(applied: Hmctl) -> None:
    stranger = Identity.generate().node_id
    result = applied("ping", stranger, "--timeout", "5s")
    assert result.returncode == 1
    assert f"{stranger} is unreachable" in result.stderr
    assert "no node record" in result.stderr
    result = applied("ping", "gamma", "-c", "0")
    assert result.returncode == 2 and "--count" in result.stderr
