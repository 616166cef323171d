"""The controller gives every node of a network its relay-role Nodes to attach to: a network
applied with ``hmctl apply`` has its nodes attached to the relay, which their records name."""

from __future__ import annotations

import json
from pathlib import Path

from hypermesh.node.config import NodeConfig
from tests.conftest import Hmctl
from tests.harness.nodes import wait_for

NETWORK = """\
apiVersion: hypermesh.online/v1alpha1
kind: Network
metadata: {name: acme}
spec: {mode: private, registry: {node: registry}}
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
"""
RELAY = """\
---
apiVersion: hypermesh.online/v1alpha1
kind: Node
metadata: {name: relay}
spec: {network: acme, listen: "127.0.0.1:0", roles: [relay]}
"""


def test_nodes_attach_to_the_networks_relay(hmctl: Hmctl, tmp_path: Path) -> None:
    (tmp_path / "network.yaml").write_text(NETWORK + RELAY)
    result = hmctl("apply", "-f", str(tmp_path / "network.yaml"), "--timeout", "60s")
    assert result.returncode == 0, result.stdout + result.stderr
    config = NodeConfig.load(hmctl.state / "nodes" / "alpha" / "config.json")
    assert [r.node_dir for r in config.relays] == [str(hmctl.state / "nodes" / "relay")]
    relay_config = NodeConfig.load(hmctl.state / "nodes" / "relay" / "config.json")
    assert relay_config.relays == ()  # a relay is nobody's client
    relay_id = (hmctl.state / "nodes" / "relay" / "identity.pub").read_text().strip()

    def attached() -> dict[str, object] | None:
        result = hmctl("get", "paths", "alpha", "-o", "json")
        if result.returncode != 0:
            return None
        (item,) = json.loads(result.stdout)["items"]
        relay = item.get("relay")
        return relay if relay and relay.get("node") == relay_id else None

    relay = wait_for(attached, timeout=20, what="alpha attached to the relay")
    assert relay["transport"] == "udp"
