"""The lab's NAT-PMP server without sockets (``tests.lab.natpmp_router.Gateway``): requests in,
answers read back with the node's own codec (``hypermesh.transport.portmap``), mappings,
their rules and their events. The server on a real router is ``test_portmap.py``'s."""

from __future__ import annotations

import struct

import pytest

from hypermesh.transport.portmap import (
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Result,
    parse_response,
)
from tests.lab.natpmp_router import MAX_LIFETIME, MAX_MAPPINGS, Gateway, main

EXTERNAL, LAN, HOST, OTHER = "198.18.55.6", "198.18.101.0/30", "198.18.101.2", "198.18.101.1"


def gateway() -> Gateway:
    return Gateway(EXTERNAL, LAN, started=100.0)


def ask(g: Gateway, request: bytes, now: float = 110.0, client: str = HOST) -> MapResponse:
    answer, _ = g.handle(request, client, now)
    assert answer is not None
    response = parse_response(answer)
    assert isinstance(response, MapResponse)
    return response


def test_the_external_address_and_the_epoch() -> None:
    answer, events = gateway().handle(ExternalAddressRequest().to_wire(), HOST, 112.7)
    assert answer is not None and events == []
    assert parse_response(answer) == ExternalAddressResponse(Result.SUCCESS, 12, EXTERNAL)


def test_a_mapping_is_added_renewed_at_its_port_and_deleted_at_request() -> None:
    g = gateway()
    added = ask(g, MapRequest("udp", 4433, 4433, 600).to_wire())
    assert (added.result, added.internal_port, added.external_port, added.lifetime) == (
        Result.SUCCESS,
        4433,
        4433,
        600,
    )
    assert 'udp dport 4433 dnat to 198.18.101.2:4433 comment "nat-pmp udp' in g.rules()
    assert f"ip daddr {EXTERNAL}" in g.rules()
    _, events = g.handle(MapRequest("udp", 4433, 9999, 900).to_wire(), HOST, 120.0)
    assert [(e.event, e.mapping.external_port, e.mapping.lifetime) for e in events] == [
        ("renew", 4433, 900)
    ]
    _, events = g.handle(MapRequest("udp", 4433, 0, 0).to_wire(), HOST, 130.0)
    assert [(e.event, e.reason) for e in events] == [("delete", "request")]
    assert "dnat" not in g.rules() and g.mappings == {}
    again = ask(g, MapRequest("udp", 4433, 0, 0).to_wire())  # not held: success all the same
    assert (again.result, again.external_port, again.lifetime) == (Result.SUCCESS, 0, 0)


def test_ports_are_shared_out_lifetimes_capped_and_mappings_expire() -> None:
    g = gateway()
    first = ask(g, MapRequest("udp", 5000, 6000, 10**6).to_wire())
    assert (first.external_port, first.lifetime) == (6000, MAX_LIFETIME)
    taken = ask(g, MapRequest("udp", 5001, 6000, 30).to_wire())
    assert taken.external_port == 5001  # the suggested port is taken: the internal one
    low = ask(g, MapRequest("tcp", 80, 80, 30).to_wire())
    assert low.external_port == 1024  # below 1024: the lowest free port
    assert g.next_expiry() == 140.0
    gone = g.expire(140.0)
    assert sorted((e.mapping.internal_port, e.reason) for e in gone) == [
        (80, "expired"),
        (5001, "expired"),
    ]
    assert [m.internal_port for m in g.mappings.values()] == [5000]
    assert [(e.event, e.reason) for e in g.stop()] == [("delete", "stopped")]


def test_port_zero_deletes_every_mapping_of_the_host_and_protocol() -> None:
    g = gateway()
    for port in (5000, 5001):
        ask(g, MapRequest("udp", port, port, 60).to_wire())
    ask(g, MapRequest("tcp", 5000, 5000, 60).to_wire())
    answer, events = g.handle(struct.pack("!BBHHHI", 0, 1, 0, 0, 0, 0), HOST, 111.0)
    assert answer is not None and len(events) == 2
    assert [m.protocol for m in g.mappings.values()] == ["tcp"]


def test_at_most_max_mappings() -> None:
    g = gateway()
    for port in range(2000, 2000 + MAX_MAPPINGS):
        assert ask(g, MapRequest("udp", port, port, 60).to_wire()).result is Result.SUCCESS
    refused = ask(g, MapRequest("udp", 9000, 9000, 60).to_wire())
    assert (refused.result, refused.external_port) == (Result.OUT_OF_RESOURCES, 0)
    assert len(g.mappings) == MAX_MAPPINGS


@pytest.mark.parametrize(
    ("request_bytes", "result"),
    [
        (bytes((1, 0)), Result.UNSUPPORTED_VERSION),
        (bytes((0, 3)), Result.UNSUPPORTED_OPCODE),
        (bytes((0, 127)) + bytes(10), Result.UNSUPPORTED_OPCODE),
    ],
)
def test_refusals_name_their_result(request_bytes: bytes, result: Result) -> None:
    answer, events = gateway().handle(request_bytes, HOST, 105.0)
    assert events == [] and answer is not None
    assert struct.unpack("!BBHI", answer) == (0, 128 + request_bytes[1], result, 5)


def test_a_stranger_is_not_authorised() -> None:
    g = gateway()
    refused = ask(g, MapRequest("udp", 4433, 4433, 60).to_wire(), client="198.18.55.2")
    assert refused.result is Result.NOT_AUTHORIZED and g.mappings == {}
    answer, _ = g.handle(ExternalAddressRequest().to_wire(), "198.18.55.2", 101.0)
    assert answer is not None
    assert parse_response(answer) == ExternalAddressResponse(Result.NOT_AUTHORIZED, 1)
    assert ask(g, MapRequest("udp", 4433, 4433, 60).to_wire(), client=OTHER).result == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"",
        b"\x00",
        bytes((0, 128)) + bytes(10),  # a response
        bytes((0, 0, 0)),  # opcode 0, one byte too many
        MapRequest("udp", 4433, 4433, 60).to_wire()[:11],
        MapRequest("udp", 4433, 4433, 60).to_wire() + b"\x00",
        struct.pack("!BBHHHI", 0, 1, 0, 0, 0, 60),  # port 0 with a lifetime
    ],
)
def test_malformed_requests_are_ignored(request_bytes: bytes) -> None:
    g = gateway()
    assert g.handle(request_bytes, HOST, 101.0) == (None, [])
    assert g.mappings == {}


def test_the_command_says_how_and_refuses_bad_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "example:" in capsys.readouterr().out
    argv = ["--listen", "nowhere", "--lan", LAN, "--external", EXTERNAL, "--log", "/dev/null"]
    assert main(argv) == 1
    assert "nowhere" in capsys.readouterr().err
