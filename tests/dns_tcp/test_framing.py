"""DoT framing and the HTTP/2 side of DoH2 without sockets: bytes between a ``Doh2Connection``
and an ``h2`` client connection in memory, as aioquic's tests pass datagrams between two."""

from __future__ import annotations

import base64

import dns.message
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.dns.doh2 import Doh2Connection, Doh2Limits, HttpRequest, HttpResponse
from hypermesh.dns.dot import DotStream, frame

# -- DoT ---------------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(min_value=1, max_value=64))
def test_framed_messages_come_out_whole_whatever_the_pieces(
    messages: list[bytes], piece: int
) -> None:
    wire = b"".join(frame(message) for message in messages)
    stream, out = DotStream(), []
    for start in range(0, len(wire), piece):
        out += stream.feed(wire[start : start + piece])
    assert out == messages and stream.buffered == 0


def test_a_message_still_arriving_is_held_and_a_frame_is_at_most_65535_bytes() -> None:
    stream = DotStream()
    assert stream.feed(b"\x00\x05abc") == [] and stream.buffered == 5
    assert stream.feed(b"de\x00") == [b"abcde"] and stream.buffered == 1
    assert len(frame(b"x" * 0xFFFF)) == 0x10001
    with pytest.raises(ValueError, match="65535"):
        frame(b"x" * 0x10000)


# -- DoH2 --------------------------------------------------------------------------------------


class Pair:
    """A client connection and the server's, bytes passed by hand."""

    def __init__(self, limits: Doh2Limits | None = None, *, window: int | None = None) -> None:
        self.server = Doh2Connection(limits)
        self.server.start()
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        if window is not None:
            codes = h2.settings.SettingCodes
            self.client.local_settings = h2.settings.Settings(
                client=True, initial_values={codes.INITIAL_WINDOW_SIZE: window}
            )
        self.client.initiate_connection()
        self.events: list[h2.events.Event] = []

    def transfer(self) -> list[HttpRequest]:
        """Pass bytes both ways until neither side has more; the requests the server got."""
        requests: list[HttpRequest] = []
        while True:
            to_server, to_client = self.client.data_to_send(), self.server.data_to_send()
            if not to_server and not to_client:
                return requests
            if to_server:
                requests += self.server.receive(to_server)
            if to_client:
                self.events += self.client.receive_data(to_client)

    def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> int:
        stream_id = self.client.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "https")]
        fields += [(":authority", "node"), *headers.items()]
        self.client.send_headers(stream_id, fields, end_stream=not body)
        if body:
            self.client.send_data(stream_id, body, end_stream=True)
        return stream_id

    def response(self, stream_id: int) -> tuple[dict[bytes, bytes], bytes]:
        headers: dict[bytes, bytes] = {}
        body = b""
        for event in self.events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id:
                headers = {bytes(k): bytes(v) for k, v in event.headers or []}
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                body += event.data or b""
        return headers, body


QUERY = dns.message.make_query("www.hmtest.", "A").to_wire()


def test_get_and_post_arrive_whole_and_their_answers_go_back() -> None:
    pair = Pair()
    encoded = base64.urlsafe_b64encode(QUERY).rstrip(b"=").decode()
    get = pair.request("GET", f"/dns-query?dns={encoded}", accept="application/dns-message")
    post = pair.request("POST", "/dns-query", QUERY, **{"content-type": "application/dns-message"})
    requests = {request.stream_id: request for request in pair.transfer()}
    assert (requests[get].method, requests[get].path) == ("GET", "/dns-query")
    assert requests[get].query == f"dns={encoded}"
    assert requests[post].body == QUERY
    assert requests[post].header("content-type") == "application/dns-message"
    pair.server.respond(post, HttpResponse(200, b"answer", (("cache-control", "max-age=60"),)))
    pair.transfer()
    headers, body = pair.response(post)
    assert headers[b":status"] == b"200" and headers[b"cache-control"] == b"max-age=60"
    assert headers[b"content-length"] == b"6" and body == b"answer"


def test_a_body_past_the_limit_is_413_at_once_and_not_kept() -> None:
    pair = Pair(Doh2Limits(max_body=100))
    stream_id = pair.request("POST", "/dns-query", b"x" * 101)
    assert pair.transfer() == []
    headers, body = pair.response(stream_id)
    assert headers[b":status"] == b"413" and b"100" in body
    said = pair.request("POST", "/dns-query", b"", **{"content-length": "1000"})
    pair.transfer()
    assert pair.response(said)[0][b":status"] == b"413"


def test_requests_past_the_stream_limit_are_refused_not_queued() -> None:
    pair = Pair(Doh2Limits(max_streams=2))
    pair.transfer()  # the client acknowledges the server's SETTINGS
    first = [pair.request("GET", "/dns-query?dns=AA") for _ in range(2)]
    assert len(pair.transfer()) == 2
    remote = pair.client.remote_settings.max_concurrent_streams
    assert remote == 2, "the limit is told to the client"
    for stream_id in first:
        pair.server.respond(stream_id, HttpResponse(204))
    pair.transfer()
    assert len([pair.request("GET", "/dns-query?dns=AA") for _ in range(2)]) == 2
    assert len(pair.transfer()) == 2


def test_an_answer_larger_than_the_clients_window_waits_for_it_to_open() -> None:
    pair = Pair(window=1000)
    stream_id = pair.request("GET", "/dns-query?dns=AA")
    [request] = pair.transfer()
    pair.server.respond(request.stream_id, HttpResponse(200, b"y" * 5000))
    pair.transfer()
    assert len(pair.response(stream_id)[1]) == 1000
    for _ in range(10):  # the client reads, and says so
        pair.client.acknowledge_received_data(1000, stream_id)
        pair.transfer()
    assert pair.response(stream_id)[1] == b"y" * 5000


def test_bytes_that_break_http2_end_the_connection_with_goaway() -> None:
    server = Doh2Connection()
    server.start()
    server.data_to_send()
    assert server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []
    assert server.closed and server.receive(b"more") == []
    pair = Pair()
    pair.transfer()
    data_on_stream_0 = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    assert pair.server.receive(data_on_stream_0) == [] and pair.server.closed
    pair.transfer()
    [ended] = [e for e in pair.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_a_frame_announcing_more_than_16_kib_ends_the_connection_before_its_payload() -> None:
    pair = Pair()
    pair.transfer()
    header = (16385).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"  # DATA on stream 1
    assert pair.server.receive(header[:4]) == [] and not pair.server.closed
    assert pair.server.receive(header[4:]) == [] and pair.server.closed
    pair.transfer()
    [ended] = [e for e in pair.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended.error_code == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
