"""Heartbeats wake only their reader (issue 19): a zone feed heartbeat confirms a mirror's
fresh copies without waking its stale marker, which stays armed for the nearest expiry; a copy
served stale is fresh again at once. And the feeds' silence bounds follow their heartbeats."""

from __future__ import annotations

import asyncio

import dns.name
import dns.zone

from hypermesh.chain.wire import WATCH_HEARTBEAT, WATCH_SILENCE
from hypermesh.mirror.feed import HEARTBEAT
from hypermesh.mirror.follower import SILENCE
from hypermesh.mirror.zonecopy import ZoneCopy
from hypermesh.node.server import IDLE_TIMEOUT
from tests.footprint.test_timers import ZONE, counted_follower

EXPIRE = 0.6
"""The mirror's ``expire``: a copy not confirmed for this long is served stale."""


def test_a_heartbeat_does_not_wake_the_stale_marker_until_a_copy_was_stale() -> None:
    follower, zones, looks = counted_follower(EXPIRE)
    demo = dns.name.from_text("demo.")

    async def scenario() -> None:
        follower.state.copies["demo."] = ZoneCopy(dns.zone.from_text(ZONE, "demo."), ())
        follower._fresh(["demo."])  # a copy taken: fresh, the marker told
        task = asyncio.create_task(follower.keep_marking_stale())
        await asyncio.sleep(0.05)
        before = len(looks)
        for _ in range(5):  # heartbeats, well inside the expiry
            follower._fresh(["demo."])
            await asyncio.sleep(0.02)
        assert len(looks) == before  # none woke the marker
        await asyncio.sleep(EXPIRE + 0.3)
        assert zones.stale == {demo}  # the marker armed at the first copy still came
        follower._fresh(["demo."])  # the registry heard again
        assert zones.stale == frozenset()  # fresh at once, not at the marker's next wake
        task.cancel()

    asyncio.run(scenario())


def test_each_feed_is_taken_for_dead_after_three_missed_heartbeats() -> None:
    assert SILENCE == 3 * HEARTBEAT and WATCH_SILENCE == 3 * WATCH_HEARTBEAT
    # two heartbeats within QUIC's idle timeout, and within a NAT's 30 s for a UDP mapping
    assert 2 * HEARTBEAT <= IDLE_TIMEOUT and HEARTBEAT <= 25.0
    assert 2 * WATCH_HEARTBEAT <= IDLE_TIMEOUT and WATCH_HEARTBEAT <= 25.0
