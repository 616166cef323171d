"""The node's config file: round trip and refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hypermesh.node.config import NodeConfig

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
        ({"listen": "nowhere"}, "HOST:PORT"),
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
