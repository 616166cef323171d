"""The node's config file: round trip and refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hypermesh.node import config as config_module
from hypermesh.node.config import NodeConfig, Upstream
from hypermesh.node.runtime import RuntimeInfo, remove_runtime, write_runtime
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import load_or_create_identity

GOOD = {
    "name": "alpha",
    "network": "demo",
    "listen": "[::1]:0",
    "prefer_port": 4433,
    "interfaces": ["public", "private"],
    "roles": ["mirror"],
    "tags": ["eu"],
    "generation": 3,
    "node_dir": "/tmp/alpha",
    "log_file": "/tmp/alpha/node.log",
}


def test_round_trip() -> None:
    config = NodeConfig.from_json(json.dumps(GOOD))
    assert config.interfaces == ("public", "private")
    assert (config.host, config.port) == ("::1", 0)
    assert config.log_level == "info"
    assert NodeConfig.from_json(config.to_json()) == config
    assert replace(config, log_level="debug").log_level == "debug"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"listen": "nowhere"}, "has no port"),
        ({"listen": "::1:80"}, "brackets"),
        ({"prefer_port": 70000}, "prefer_port"),
        ({"prefer_port": True}, "prefer_port"),
        ({"interfaces": "public"}, "interfaces"),
        ({"roles": [1]}, "roles"),
        ({"generation": -1}, "generation"),
        ({"name": ""}, "name"),
        ({"log_level": "loud"}, "log_level"),
    ],
)
def test_bad_values_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig.from_json(json.dumps({**GOOD, **change}))


def test_missing_fields_are_named() -> None:
    data = {k: v for k, v in GOOD.items() if k not in ("network", "tags")}
    with pytest.raises(ValueError, match="network, tags"):
        NodeConfig.from_json(json.dumps(data))
    with pytest.raises(ValueError, match="JSON"):
        NodeConfig.from_json("{")


NODE_ID = "hm1vl6i67ugvkxr4abg7em5bkgjpr674ddzijip464ahatw4ldj6wua"


def test_an_upstream_is_a_peer_ref_or_a_node_dir_and_is_written_as_before() -> None:
    peer = Upstream(PeerRef("[::1]:4433", NODE_ID))
    local = Upstream(node_dir="/tmp/registry")
    config = replace(NodeConfig.from_json(json.dumps(GOOD)), registry=peer, peers=(local,))
    data = json.loads(config.to_json())
    assert data["registry"] == {"address": "[::1]:4433", "identity": NODE_ID}
    assert data["peers"] == [{"node_dir": "/tmp/registry"}]
    assert NodeConfig.from_json(config.to_json()) == config
    assert peer.now() == PeerRef("[::1]:4433", NODE_ID)
    assert local.now() is None  # no node runs there


def test_a_local_upstream_follows_its_node_as_it_starts_moves_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = config_module.read_runtime
    monkeypatch.setattr(config_module, "read_runtime", lambda d: reads.append(d) or real(d))
    local = Upstream(node_dir=str(tmp_path))
    assert local.now() is None

    def started(port: int) -> None:
        info = RuntimeInfo(1, f"127.0.0.1:{port}", "hm1", "2026-12-04T00:00:00Z", "0", 1)
        write_runtime(tmp_path, info)

    started(4433)  # its key is not written yet
    assert local.now() == PeerRef("127.0.0.1:4433", None)
    identity = load_or_create_identity(tmp_path)
    assert local.now() == PeerRef("127.0.0.1:4433", identity.node_id)
    read = len(reads)
    assert local.now() == PeerRef("127.0.0.1:4433", identity.node_id)
    assert len(reads) == read  # unchanged files are not read again
    started(4434)  # restarted on another port: a new file in the old one's place
    assert local.now() == PeerRef("127.0.0.1:4434", identity.node_id)
    remove_runtime(tmp_path)
    assert local.now() is None


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ({"address": "[::1]:4433"}, "identity is missing"),
        ({"identity": NODE_ID}, "needs address and identity, or node_dir"),
        ({"address": "::1:4433", "identity": NODE_ID}, "brackets"),
        ({"address": "[::1]:4433", "identity": NODE_ID, "node_dir": "/x"}, "or a node_dir"),
    ],
)
def test_a_bad_upstream_is_refused_saying_why(upstream: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig.from_json(json.dumps({**GOOD, "registry": upstream}))
