"""The NAT-PMP codec (RFC 6886): every message round-trips, and what is not a message this side
understands is refused saying why (wrong version, short packet, unknown result code or opcode)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.transport.portmap import (
    BadMessage,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Result,
    default_gateway,
    parse_request,
    parse_response,
    restarted,
)

ports = st.integers(1, 65535)
u32 = st.integers(0, 0xFFFFFFFF)


def test_the_external_address_request_is_two_bytes() -> None:
    assert ExternalAddressRequest().to_wire() == b"\x00\x00"
    assert parse_request(b"\x00\x00") == ExternalAddressRequest()


def test_a_udp_mapping_request_has_rfc_6886s_layout() -> None:
    wire = MapRequest("udp", 4433, 4433, 7200).to_wire()
    assert wire == bytes.fromhex("0001 0000 1151 1151 00001c20")


@given(st.sampled_from(["udp", "tcp"]), ports, st.integers(0, 65535), u32)
def test_mapping_requests_round_trip(
    protocol: str, internal: int, external: int, life: int
) -> None:
    request = MapRequest(protocol, internal, external, life)
    assert parse_request(request.to_wire()) == request


@given(st.sampled_from(list(Result)), u32, st.ip_addresses(v=4))
def test_external_address_responses_round_trip(result: Result, epoch: int, address: object) -> None:
    response = ExternalAddressResponse(result, epoch, str(address))
    assert parse_response(response.to_wire()) == response


@given(st.sampled_from(["udp", "tcp"]), st.sampled_from(list(Result)), u32, ports, ports, u32)
def test_mapping_responses_round_trip(
    protocol: str, result: Result, epoch: int, internal: int, external: int, life: int
) -> None:
    response = MapResponse(protocol, result, epoch, internal, external, life)
    assert parse_response(response.to_wire()) == response


def test_an_error_answer_may_stop_after_the_epoch() -> None:
    wire = struct.pack("!BBHI", 0, 129, 2, 77)
    assert parse_response(wire) == MapResponse("udp", Result.NOT_AUTHORIZED, 77)
    with pytest.raises(BadMessage, match="16 bytes"):
        parse_response(struct.pack("!BBHI", 0, 129, 0, 77))  # a success must be whole


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "at least 8 bytes"),
        (bytes.fromhex("0080 0000 0000"), "at least 8 bytes"),
        (bytes.fromhex("0280 0000 00000001 01020304"), "version 2"),
        (bytes.fromhex("0080 0009 00000001 01020304"), "result code 9"),
        (bytes.fromhex("0001 0000 00000001 01020304"), "is a request"),
        (bytes.fromhex("0083 0000 00000001 01020304"), "opcode 131"),
        (bytes.fromhex("0080 0000 00000001 0102030405"), "12 bytes"),
        (bytes.fromhex("0081 0000 00000001 1151 1151 00001c"), "16 bytes"),
    ],
)
def test_responses_that_are_not_refused_saying_why(wire: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        parse_response(wire)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x00", "at least 2 bytes"),
        (b"\x01\x00", "version 1"),
        (b"\x00\x00\x00", "2 bytes"),
        (bytes.fromhex("0007 0000 1151 1151 00001c20"), "opcode 7"),
        (bytes.fromhex("0001 0000 0000 1151 00001c20"), "internal port"),
        (bytes.fromhex("0001 0000 1151 1151"), "12 bytes"),
    ],
)
def test_requests_that_are_not_refused_saying_why(wire: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        parse_request(wire)


def test_a_request_with_impossible_values_is_not_made() -> None:
    with pytest.raises(ValueError, match="protocol"):
        MapRequest("sctp", 1, 1, 1)
    with pytest.raises(ValueError, match="internal port"):
        MapRequest("udp", 0, 1, 1)
    with pytest.raises(ValueError, match="lifetime"):
        MapRequest("udp", 1, 1, -1)


def test_the_epoch_says_when_the_gateway_restarted() -> None:
    assert not restarted(1000, 0.0, 1060, 60.0)  # on time
    assert not restarted(1000, 0.0, 1051, 60.0)  # within 7/8 less 2 s
    assert restarted(1000, 0.0, 1040, 60.0)  # too little time passed there
    assert restarted(1000, 0.0, 3, 60.0)  # went back


ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
wlan0\t00000000\t01FA13C6\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
garbage line
"""


def test_the_default_gateway_is_the_lowest_metric_default_route() -> None:
    assert default_gateway(ROUTES) == "198.19.250.1"
    assert default_gateway(ROUTES.splitlines()[0] + "\n") is None
    only_link = ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[3]
    assert default_gateway(only_link) is None
