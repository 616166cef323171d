"""The pinned HTTP/3 client against a real node process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator

import pytest

from hypermesh.errors import IdentityMismatch, TransportError
from hypermesh.transport.client import connect_h3, fetch_status, h3_get, h3_get_json
from hypermesh.transport.identity import Identity
from tests.harness.node_process import RunningNode


@pytest.fixture
def silent_address() -> Iterator[str]:
    """A UDP port that is bound but never answers: what a dead QUIC peer looks like."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_status_with_the_pinned_identity(shared_node: RunningNode) -> None:
    status = asyncio.run(
        h3_get_json(shared_node.address, "/status", expected_id=shared_node.identity, identity=None)
    )
    assert status["name"] == "shared"
    assert status["network"] == "demo"
    assert status["identity"] == shared_node.identity
    assert status["pid"] == shared_node.proc.pid
    assert status["address"] == shared_node.address
    assert status["interfaces"] == ["public"] and status["roles"] == ["mirror"]
    assert status["tags"] == ["test"] and status["generation"] == 1
    assert status["uptime_seconds"] >= 0
    assert status["started_at"] == shared_node.runtime["started_at"]
    assert (
        fetch_status(shared_node.address, shared_node.identity, identity=None)["pid"]
        == shared_node.proc.pid
    )


def test_healthz_404_and_405(shared_node: RunningNode) -> None:
    address, identity = shared_node.address, shared_node.identity
    assert asyncio.run(h3_get_json(address, "/healthz", expected_id=identity, identity=None)) == {
        "ok": True
    }
    status, headers, body = asyncio.run(
        h3_get(address, "/no/such", expected_id=identity, identity=None)
    )
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert "error" in json.loads(body)
    with pytest.raises(TransportError, match="404"):
        asyncio.run(h3_get_json(address, "/no/such", expected_id=identity, identity=None))

    async def post() -> int:
        async with (
            asyncio.timeout(5),
            connect_h3(address, expected_id=identity, identity=None) as h3,
        ):
            status, _, _ = await h3.request("POST", "/status", body=b"{}")
            again, _, _ = await h3.request("GET", "/healthz")  # same connection, warm
            assert again == 200
            return status

    assert asyncio.run(post()) == 405


def test_a_wrong_identity_is_refused(shared_node: RunningNode) -> None:
    other = Identity.generate().node_id
    with pytest.raises(IdentityMismatch, match=shared_node.address):
        asyncio.run(h3_get_json(shared_node.address, "/status", expected_id=other, identity=None))


def test_no_pin_is_allowed_for_diagnostics(shared_node: RunningNode) -> None:
    status = asyncio.run(
        h3_get_json(shared_node.address, "/status", expected_id=None, identity=None)
    )
    assert status["identity"] == shared_node.identity


def test_a_malformed_pin_is_the_callers_mistake(shared_node: RunningNode) -> None:
    with pytest.raises(ValueError):
        asyncio.run(
            h3_get_json(shared_node.address, "/status", expected_id="hm1nope", identity=None)
        )


def test_a_dead_address_is_a_transport_error(silent_address: str) -> None:
    identity = Identity.generate().node_id
    with pytest.raises(TransportError, match=silent_address) as caught:
        asyncio.run(
            h3_get_json(silent_address, "/status", expected_id=identity, timeout=0.5, identity=None)
        )
    assert not isinstance(caught.value, IdentityMismatch)
    assert "no QUIC handshake within 0.5s" in str(caught.value)


def test_a_closed_port_and_bad_addresses_are_transport_errors() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        fetch_status(f"127.0.0.1:{port}", None, timeout=0.3, identity=None)
    for bad, why in (
        ("nowhere", "has no port"),
        ("::1:80", "put an IPv6 host in brackets"),
        ("127.0.0.1:99999", "out of range"),
        (" 127.0.0.1:80", "is not a host name"),
    ):
        with pytest.raises(TransportError, match=why):
            fetch_status(bad, None, timeout=0.3, identity=None)
    with pytest.raises(TransportError, match="cannot resolve"):
        fetch_status(f"no-such-host-{os.getpid()}.invalid:443", None, timeout=2, identity=None)
