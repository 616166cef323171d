"""Who a caller is for counting (rate limits, what it may make the endpoint hold): a member by
its name, anyone else by its source — IPv4 by address, IPv6 by /64, IPv4-mapped IPv6 as IPv4;
and the endpoint limits as the node's config carries them."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.node.config import NodeConfig
from hypermesh.node.interfaces import PublicGate, source_key
from hypermesh.node.limits import EndpointLimits
from hypermesh.transport.address import format_address

TWO_AN_HOUR = {
    "default": "deny",
    "rules": [
        {"name": "dns", "operations": ["dns.query"], "rateLimit": {"requests": 2, "per": "1h"}}
    ],
}


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ("198.51.100.7:5000", "198.51.100.7"),
        ("[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1", "2001:db8:1:2::/64"),
        ("[2001:db8:1:3::1]:443", "2001:db8:1:3::/64"),
        ("[::ffff:198.51.100.7]:53", "198.51.100.7"),
        ("[fe80::1%eth0]:53", "fe80::/64"),
        ("[::1]:4433", "::/64"),
        ("tunnel", "tunnel"),
        ("x:1", "x"),
    ],
)
def test_sources_are_counted_by_address_or_slash_64(source: str, key: str) -> None:
    assert source_key(source) == key


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.integers(0, 2**64 - 1),
    one=st.integers(0, 2**64 - 1),
    other=st.integers(0, 2**64 - 1),
    port=st.integers(1, 65535),
)
def test_every_address_of_a_slash_64_is_one_source(
    prefix: int, one: int, other: int, port: int
) -> None:
    first = ipaddress.IPv6Address(prefix << 64 | one)
    second = ipaddress.IPv6Address(prefix << 64 | other)
    if first.ipv4_mapped is not None:
        return
    assert source_key(format_address(str(first), port)) == source_key(
        format_address(str(second), 1)
    )
    neighbour = ipaddress.IPv6Address(((prefix + 1) % 2**64) << 64 | one)
    if neighbour.ipv4_mapped is None:
        assert source_key(format_address(str(neighbour), port)) != source_key(
            format_address(str(first), port)
        )


def test_the_public_rate_limit_counts_an_ipv6_slash_64_once() -> None:
    gate = PublicGate.of("alpha", {}, TWO_AN_HOUR)
    assert gate.check(None, "[2001:db8:1:2::1]:5000", "dns.query") == (0, "")
    assert gate.check(None, "[2001:db8:1:2::99]:5000", "dns.query") == (0, "")
    status, why = gate.check(None, "[2001:db8:1:2:dead::beef]:7", "dns.query")
    assert status == 429 and "2 per 1h" in why  # a third address, the same /64
    assert gate.check(None, "[2001:db8:1:3::1]:5000", "dns.query") == (0, "")  # the next /64
    assert gate.check(None, "198.51.100.7:1", "dns.query") == (0, "")
    assert gate.check(None, "[::ffff:198.51.100.7]:2", "dns.query") == (0, "")
    assert gate.check(None, "198.51.100.7:3", "dns.query")[0] == 429  # mapped = the same IPv4


def test_members_are_named_and_unknown_keys_are_their_source() -> None:
    directory = {"beta": {"kind": "Node", "identity": "hm1beta"}}
    gate = PublicGate.of("alpha", directory, None, federated={"hm1p": "partners/p"}.get)
    assert gate.who("hm1beta", "[2001:db8::1]:1") == "beta"
    assert gate.who("hm1p", "10.0.0.1:1") == "partners/p"
    assert gate.who("hm1minted", "[2001:db8::1]:1") == "2001:db8::/64"
    assert gate.who(None, "10.0.0.1:1") == "10.0.0.1"


# -- the limits in the node's config ------------------------------------------------------


def _config(tmp_path: Path, **more: object) -> dict[str, object]:
    return {
        "name": "alpha",
        "network": "demo",
        "listen": "127.0.0.1:0",
        "interfaces": ["public"],
        "roles": [],
        "tags": [],
        "generation": 1,
        "node_dir": str(tmp_path),
        "log_file": str(tmp_path / "node.log"),
        **more,
    }


def test_limits_default_without_config_and_round_trip(tmp_path: Path) -> None:
    assert NodeConfig.from_dict(_config(tmp_path)).limits == EndpointLimits()
    config = NodeConfig.from_dict(
        _config(tmp_path, limits={"max_request_body": 2048, "request_timeout": 1.5})
    )
    assert config.limits.max_request_body == 2048 and config.limits.request_timeout == 1.5
    assert config.limits.max_peer_buffered == EndpointLimits().max_peer_buffered
    assert NodeConfig.from_json(config.to_json()) == config
    written = json.loads(config.to_json())["limits"]
    assert written == {"max_request_body": 2048, "request_timeout": 1.5}  # defaults left out
    plain = NodeConfig.from_dict(_config(tmp_path))
    assert "limits" not in json.loads(plain.to_json())
    assert NodeConfig.from_json(plain.to_json()) == plain


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"max_request_body": 0}, "limits.max_request_body must be a positive integer"),
        ({"max_streams": "100"}, "limits.max_streams must be a positive integer"),
        ({"max_buffered": True}, "limits.max_buffered must be a positive integer"),
        ({"request_timeout": -1}, "limits.request_timeout must be a positive number"),
        ({"max_field_section_size": 2**21}, "at most 1048576"),
        ({"qpack_table_capacity": 100_000}, "must not exceed max_field_section_size"),
        ({"max_bodies": 1}, "unknown field(s) max_bodies"),
        ([], "limits must be an object"),
    ],
)
def test_bad_limits_name_the_field(tmp_path: Path, limits: object, words: str) -> None:
    with pytest.raises(ValueError, match="limits") as raised:
        NodeConfig.from_dict(_config(tmp_path, limits=limits))
    assert words in str(raised.value)
