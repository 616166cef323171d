"""Reading a node's NDJSON feed (``transport.feeds.feed_lines``): lines split wherever the pieces
break, heartbeats only when asked for, a silent feed ended at its bound, and a late heartbeat
answered by a PING on the connection: a peer that acknowledges it is waited for, one that does
not (it restarted, and knows the connection no more) ends the feed long before the silence bound.

The clocks are shortened (module settings, read at each use); the pieces come from a queue the
test fills, and the probe stands for the connection's QUIC PING (tested on a real connection in
``test_client_ping``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hypermesh.errors import TransportError
from hypermesh.transport import feeds


async def pieces_of(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()


async def collect(lines: AsyncIterator[dict[str, Any]], out: list[dict[str, Any]]) -> None:
    async for line in lines:
        out.append(line)


def test_lines_are_split_where_they_end_and_heartbeats_kept_when_asked() -> None:
    async def scenario() -> list[dict[str, Any]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for piece in (b'{"zone": "a."', b', "serial": 2}\n{}\n', b"not json\n", b'{"x": 1}\n'):
            queue.put_nowait(piece)
        out: list[dict[str, Any]] = []
        with pytest.raises(TransportError, match=r"silent for 0\.3s"):
            await collect(feeds.feed_lines(pieces_of(queue), 0.3, heartbeats=True), out)
        return out

    assert asyncio.run(scenario()) == [{"zone": "a.", "serial": 2}, {}, {"x": 1}]


@pytest.fixture
def short_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feeds, "LATE", 0.1)
    monkeypatch.setattr(feeds, "PROBE_TIMEOUT", 0.2)


def test_a_late_heartbeat_on_a_dead_connection_ends_the_feed_at_once(short_clocks: None) -> None:
    """silence 3 s (heartbeats every second): a peer that does not acknowledge the PING is
    given up for that (after 1 + 0.1 + 0.2 s), not for the silence."""

    async def scenario() -> list[int]:
        probes: list[int] = []

        async def unanswered() -> None:
            probes.append(1)
            await asyncio.sleep(60)

        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queue.put_nowait(b"{}\n")
        with pytest.raises(TransportError, match="a PING went unanswered"):
            async for _ in feeds.feed_lines(pieces_of(queue), 3.0, probe=unanswered):
                pass
        return probes

    assert asyncio.run(scenario()) == [1]


def test_a_late_heartbeat_on_a_live_connection_is_waited_for(short_clocks: None) -> None:
    async def scenario() -> int:
        probes = 0

        async def answered() -> None:
            nonlocal probes
            probes += 1

        queue: asyncio.Queue[bytes] = asyncio.Queue()
        out: list[dict[str, Any]] = []
        reading = asyncio.ensure_future(
            collect(feeds.feed_lines(pieces_of(queue), 0.9, probe=answered), out)
        )
        await asyncio.sleep(0.6)  # late (0.3 + 0.1), probed and acknowledged: still reading
        assert not reading.done()
        queue.put_nowait(b'{"zone": "b."}\n')
        await asyncio.sleep(0.05)
        assert out == [{"zone": "b."}]
        with pytest.raises(TransportError):  # and the silence bound still holds after that
            await asyncio.wait_for(reading, 5)
        return probes

    assert asyncio.run(scenario()) >= 1
