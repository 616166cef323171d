"""The node config's directory fields (issue 16): defaults, round trip and refusals."""

from __future__ import annotations

import json

import pytest

from hypermesh.node.config import NodeConfig

GOOD = {
    "name": "alpha",
    "network": "demo",
    "listen": "[::1]:0",
    "interfaces": ["public"],
    "roles": [],
    "tags": [],
    "generation": 1,
    "node_dir": "/tmp/alpha",
    "log_file": "/tmp/alpha/node.log",
}


def test_the_directory_fields_default_and_round_trip() -> None:
    config = NodeConfig.from_json(json.dumps(GOOD))
    assert (config.host_name, config.advertise) == (None, ())
    assert (config.record_lifetime, config.network_mode) == (600.0, "private")
    data = {
        **GOOD,
        "host_name": "host-b",
        "advertise": ["198.18.1.3:4433", "[2001:db8::1]:4433"],
        "record_lifetime": 4,
        "network_mode": "public",
    }
    config = NodeConfig.from_json(json.dumps(data))
    assert config.advertise == ("198.18.1.3:4433", "[2001:db8::1]:4433")
    assert (config.host_name, config.record_lifetime, config.network_mode) == (
        "host-b",
        4,
        "public",
    )
    assert NodeConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host_name": "Host_B"}, "host_name must be null or a DNS label"),
        ({"host_name": "a" * 64}, "host_name"),
        ({"host_name": 3}, "host_name"),
        ({"advertise": "198.18.1.3:4433"}, "advertise must be a list"),
        ({"advertise": [1]}, "advertise must be a list"),
        ({"advertise": ["nowhere"]}, r"advertise\[0\]"),
        ({"advertise": ["198.18.1.3:0"]}, "non-zero port"),
        ({"advertise": [f"10.0.0.{i}:1" for i in range(17)]}, "at most 16"),
        ({"record_lifetime": 0.5}, "record_lifetime"),
        ({"record_lifetime": 86401}, "record_lifetime"),
        ({"record_lifetime": "600"}, "record_lifetime"),
        ({"record_lifetime": True}, "record_lifetime"),
        ({"network_mode": "open"}, "network_mode must be one of public, private, ephemeral"),
    ],
)
def test_bad_directory_fields_are_refused_saying_which(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        NodeConfig.from_json(json.dumps({**GOOD, **change}))
