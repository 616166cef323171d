"""The registry's change feed: every subscriber hears of every new serial at once.

``GET /registry/v1/watch`` streams it as NDJSON, one object a line:

    {"serials": {"acme.": 7, "shop.": 3}}     first: every zone served and its serial
    {"zone": "acme.", "serial": 8}            a zone changed (or appeared)
    {"zone": "shop.", "serial": null}          a zone is no longer served
    {"revoked": "<node ID>"}                   a key was revoked: fetch the anchors again
    {}                                         a heartbeat, every ``HEARTBEAT`` seconds

A subscriber that falls more than ``BACKLOG`` notices behind is sent a fresh ``serials`` line
instead of the notices it missed, so a slow reader costs bounded memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Mapping

HEARTBEAT = 5.0
"""Seconds between heartbeats on an idle feed (well inside QUIC's idle timeout)."""
BACKLOG = 1024
"""Notices queued for one subscriber before it is resynchronised with a ``serials`` line."""


def _line(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


class ZoneFeed:
    """Fan-out of zone serials to subscribers; ``serials`` gives the current ones."""

    def __init__(self, serials: Callable[[], Mapping[str, int]], heartbeat: float = HEARTBEAT):
        self._serials = serials
        self._heartbeat = heartbeat
        self._queues: set[asyncio.Queue[bytes | None]] = set()

    def notify(self, zone: str, serial: int | None) -> None:
        """Tell every subscriber that ``zone`` is at ``serial`` now (None: withdrawn)."""
        self._send(_line({"zone": zone, "serial": serial}))

    def revoked(self, node_id: str) -> None:
        """Tell every subscriber that the key ``node_id`` was revoked."""
        self._send(_line({"revoked": node_id}))

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
            yield _line({"serials": dict(self._serials())})
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), self._heartbeat)
                except TimeoutError:
                    line = b"{}\n"
                yield _line({"serials": dict(self._serials())}) if line is None else line
        finally:
            self._queues.discard(queue)
