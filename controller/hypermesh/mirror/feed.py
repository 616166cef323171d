"""Change feeds streamed as NDJSON: every subscriber hears of every change at once.

``Feed`` is the fan-out: a first line (a snapshot of the current state), then each notice as it
is published, and an empty object ``{}`` as a heartbeat when the feed has been idle for
``heartbeat`` seconds (so an idle QUIC connection is not dropped; nothing else runs while
nothing changes). A subscriber that falls more than ``BACKLOG`` notices behind is sent a fresh
snapshot instead of the notices it missed, so a slow reader costs bounded memory. The chain
head feed (``GET /chain/v1/watch``, ``hypermesh.node.chain_api``) is one; the registry's change
feed below is another.

``GET /registry/v1/watch`` streams ``ZoneFeed``, one object a line:

    {"serials": {"acme.": 7, "shop.": 3}}     first: every zone served and its serial
    {"zone": "acme.", "serial": 8}            a zone changed (or appeared)
    {"zone": "shop.", "serial": null}          a zone is no longer served
    {"revoked": "<node ID>"}                   a key was revoked: fetch the anchors again
    {}                                         a heartbeat, every ``HEARTBEAT`` seconds
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Mapping

HEARTBEAT = 10.0
"""Seconds between heartbeats on an idle zone feed. They bound how soon a mirror notices a
registry that was killed or restarted (it sends nothing; a heartbeat ``transport.feeds.LATE``
late gets a PING that goes unanswered: about 18 s, where the chain head feed's 25 s
heartbeats give 33), keep the connection within QUIC's 60 s idle timeout, and keep the UDP NAT
mapping (the mirror's ACK refreshes it). A heartbeat costs the registry and each mirror a few
tenths of a millisecond: 0.03 ms of CPU a second."""
BACKLOG = 1024
"""Notices queued for one subscriber before it is resynchronised with a snapshot."""


def _line(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


class Feed:
    """Fan-out of notices to subscribers; ``snapshot()`` is each subscription's first line."""

    def __init__(self, snapshot: Callable[[], object], heartbeat: float) -> None:
        self._snapshot = snapshot
        self._heartbeat = heartbeat
        self._queues: set[asyncio.Queue[bytes | None]] = set()

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open now."""
        return len(self._queues)

    def publish(self, notice: object) -> None:
        """Send ``notice`` (a JSON object) to every subscriber."""
        if self._queues:
            self._send(_line(notice))

    def _send(self, line: bytes) -> None:
        for queue in self._queues:
            if queue.qsize() >= BACKLOG:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # the reader sends a fresh snapshot instead
            else:
                queue.put_nowait(line)

    async def watch(self) -> AsyncGenerator[bytes, None]:
        """One subscription: the snapshot, then notices and heartbeats, until closed."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield _line(self._snapshot())
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), self._heartbeat)
                except TimeoutError:
                    line = b"{}\n"
                yield _line(self._snapshot()) if line is None else line
        finally:
            self._queues.discard(queue)


class ZoneFeed(Feed):
    """Fan-out of zone serials to subscribers; ``serials`` gives the current ones."""

    def __init__(self, serials: Callable[[], Mapping[str, int]], heartbeat: float = HEARTBEAT):
        super().__init__(lambda: {"serials": dict(serials())}, heartbeat)

    def notify(self, zone: str, serial: int | None) -> None:
        """Tell every subscriber that ``zone`` is at ``serial`` now (None: withdrawn)."""
        self.publish({"zone": zone, "serial": serial})

    def revoked(self, node_id: str) -> None:
        """Tell every subscriber that the key ``node_id`` was revoked."""
        self.publish({"revoked": node_id})
