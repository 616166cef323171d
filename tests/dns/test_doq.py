"""The DoQ stream handler without sockets: QUIC events in, stream operations out.

A recording stand-in for aioquic's ``QuicConnection`` takes the place of the network; the
property tests throw arbitrary stream data at the handler and check that every finished stream
is either answered (framed, with FIN) or reset with DOQ_PROTOCOL_ERROR, and nothing raises.
"""

from __future__ import annotations

from typing import cast

import dns.message
import dns.rcode
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.dns import DOQ_PROTOCOL_ERROR, DnsEngine, DoqConnection, StaticZones, handle_doh
from tests.harness.dns_server import make_zone

ANSWERER = DnsEngine(StaticZones([make_zone()]))


class RecordingQuic:
    """What the handler asked of the connection, stream by stream."""

    def __init__(self) -> None:
        self.sent: dict[int, tuple[bytes, bool]] = {}
        self.resets: dict[int, int] = {}
        self.stops: dict[int, int] = {}

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        assert stream_id not in self.sent, "one answer per stream"
        self.sent[stream_id] = (data, end_stream)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.resets[stream_id] = error_code

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.stops[stream_id] = error_code


def handler() -> tuple[DoqConnection, RecordingQuic]:
    quic = RecordingQuic()
    return DoqConnection(cast(QuicConnection, quic), ANSWERER.answer), quic


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def query(name: str = "www.hmtest.") -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = 0
    return message.to_wire()


def test_a_query_in_pieces_is_answered_on_its_stream() -> None:
    doq, quic = handler()
    data = framed(query())
    assert not doq.handle_event(StreamDataReceived(data=data[:5], end_stream=False, stream_id=4))
    assert doq.handle_event(StreamDataReceived(data=data[5:], end_stream=True, stream_id=4))
    answer, fin = quic.sent[4]
    assert fin and int.from_bytes(answer[:2], "big") == len(answer) - 2
    response = dns.message.from_wire(answer[2:])
    assert response.id == 0 and response.rcode() == dns.rcode.NOERROR


def test_bad_streams_are_reset_and_others_still_answered() -> None:
    doq, quic = handler()
    doq.handle_event(StreamDataReceived(data=b"\x00\x10abc", end_stream=True, stream_id=0))
    doq.handle_event(
        StreamDataReceived(data=framed(b"\1\1" + query()[2:]), end_stream=True, stream_id=8)
    )
    doq.handle_event(StreamDataReceived(data=b"\xff" * 70000, end_stream=False, stream_id=12))
    doq.handle_event(StreamDataReceived(data=b"late", end_stream=True, stream_id=12))
    doq.handle_event(StreamDataReceived(data=b"uni", end_stream=False, stream_id=2))
    doq.handle_event(StreamDataReceived(data=framed(query()), end_stream=True, stream_id=16))
    assert quic.resets == {0: DOQ_PROTOCOL_ERROR, 8: DOQ_PROTOCOL_ERROR, 12: DOQ_PROTOCOL_ERROR}
    assert quic.stops == {12: DOQ_PROTOCOL_ERROR, 2: DOQ_PROTOCOL_ERROR}
    assert list(quic.sent) == [16]


def test_a_reset_or_a_closed_connection_forgets_the_stream() -> None:
    doq, quic = handler()
    doq.handle_event(StreamDataReceived(data=b"\x00", end_stream=False, stream_id=0))
    doq.handle_event(StreamReset(error_code=0, stream_id=0))
    doq.handle_event(StreamDataReceived(data=b"\x00", end_stream=False, stream_id=4))
    doq.handle_event(ConnectionTerminated(error_code=0, frame_type=None, reason_phrase=""))
    assert quic.sent == {} and quic.resets == {}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 4, 8, 2, 1, 3]),
            st.one_of(
                st.binary(max_size=80),
                st.builds(framed, st.binary(max_size=80)),
                st.just(framed(query())),
            ),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_any_stream_data_is_answered_or_reset(events: list[tuple[int, bytes, bool]]) -> None:
    doq, quic = handler()
    finished: set[int] = set()
    for stream_id, data, end in events:
        if stream_id in finished:
            continue  # QUIC delivers nothing after FIN
        doq.handle_event(StreamDataReceived(data=data, end_stream=end, stream_id=stream_id))
        if end:
            finished.add(stream_id)
    for stream_id in finished:
        if stream_id & 0x3 != 0:
            assert stream_id not in quic.sent
            continue
        if stream_id in quic.sent:
            answer, fin = quic.sent[stream_id]
            assert fin and int.from_bytes(answer[:2], "big") == len(answer) - 2
            assert answer[2:4] == b"\0\0"
            dns.message.from_wire(answer[2:])
        else:
            assert quic.resets.get(stream_id) == DOQ_PROTOCOL_ERROR


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST"]),
    query_string=st.text(max_size=120),
    content_type=st.one_of(st.none(), st.text(max_size=40), st.just("application/dns-message")),
    body=st.binary(max_size=200),
)
def test_any_doh_request_gets_a_defined_status(
    method: str, query_string: str, content_type: str | None, body: bytes
) -> None:
    result = handle_doh(ANSWERER, method, query_string, content_type, body)
    assert result.status in {200, 400, 413, 415}
    if result.status == 200:
        dns.message.from_wire(result.message)
    else:
        assert result.error
