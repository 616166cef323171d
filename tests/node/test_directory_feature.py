"""The directory feature: the node's record, its addresses and seq, published to the registry."""

from __future__ import annotations

from pathlib import Path

from hypermesh.node.features.directory import expand_wildcard, is_wildcard, next_seq

HOST = ["127.0.0.1", "192.0.2.2", "fd00::2", "fe80::1", "::1", "198.18.1.3"]


def test_a_wildcard_host_stands_for_the_hosts_non_loopback_addresses() -> None:
    assert expand_wildcard("0.0.0.0:4433", lambda: HOST) == ["192.0.2.2:4433", "198.18.1.3:4433"]
    assert expand_wildcard("[::]:4433", lambda: HOST) == [
        "192.0.2.2:4433",
        "198.18.1.3:4433",
        "[fd00::2]:4433",
    ]
    # a concrete host is published as it is bound
    assert expand_wildcard("127.0.0.1:4433", lambda: HOST) == ["127.0.0.1:4433"]
    assert expand_wildcard("[::1]:9", lambda: HOST) == ["[::1]:9"]
    # loopback only when the host has nothing else (link-local addresses are not dialable)
    assert expand_wildcard("0.0.0.0:1", lambda: ["127.0.0.1", "fe80::1"]) == ["127.0.0.1:1"]
    assert expand_wildcard("[::]:1", lambda: ["::1"]) == ["[::1]:1"]
    assert is_wildcard("::") and is_wildcard("0.0.0.0") and not is_wildcard("node.example")


def test_seq_only_grows_across_restarts_and_clock_steps(tmp_path: Path) -> None:
    first = next_seq(tmp_path, 1000.0)
    assert first == 1_000_000
    assert next_seq(tmp_path, 1000.0) == first + 1  # same millisecond
    assert next_seq(tmp_path, 10.0) == first + 2  # the clock stepped back
    assert (tmp_path / "record.seq").read_text().strip() == str(first + 2)
    assert next_seq(tmp_path, 2000.0) == 2_000_000
