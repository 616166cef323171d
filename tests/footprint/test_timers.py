"""Timers that wake only when something is due (issue 19): a mirror's stale marker sleeps
until the next copy comes to its expiry, or until a copy is taken or refreshed."""

from __future__ import annotations

import asyncio
import time

import dns.name
import dns.zone

from hypermesh.dns.source import StaticZones
from hypermesh.mirror.follower import STALE_LOOK_MOST, Follower
from hypermesh.mirror.zonecopy import ZoneCopy

ZONE = """\
@ 3600 IN SOA ns.demo. admin.demo. 1 3600 600 86400 60
@ 3600 IN NS ns.demo.
ns 3600 IN A 192.0.2.1
"""
EXPIRE = 0.4
"""The mirror's ``expire``: a copy not refreshed for this long is served stale."""


def counted_follower(expire: float = EXPIRE) -> tuple[Follower, StaticZones, list[float]]:
    """A mirror's follower (no registry) whose stale marker's every look is counted."""
    zones = StaticZones()
    follower = Follower(zones, lambda: None, identity=None, expire=expire)
    looks: list[float] = []
    mark = follower._mark

    def counted() -> None:
        looks.append(time.monotonic())
        mark()

    follower._mark = counted  # type: ignore[method-assign]
    return follower, zones, looks


def test_with_no_copy_the_stale_marker_sleeps_until_a_copy_comes() -> None:
    follower, zones, looks = counted_follower()

    async def scenario() -> None:
        task = asyncio.create_task(follower.keep_marking_stale())
        await asyncio.sleep(0.5)
        assert follower.next_expiry() == STALE_LOOK_MOST
        assert len(looks) == 1  # once at the start, and not again: nothing is due
        follower.state.copies["demo."] = ZoneCopy(dns.zone.from_text(ZONE, "demo."), ())
        follower.state.fresh_at["demo."] = time.time()
        follower.mark_stale()  # a copy taken: the marker waits for its expiry now
        await asyncio.sleep(EXPIRE / 2)
        assert zones.stale == frozenset()
        await asyncio.sleep(EXPIRE)
        assert zones.stale == {dns.name.from_text("demo.")}  # woken at the expiry
        count = len(looks)
        await asyncio.sleep(0.5)
        assert len(looks) == count  # stale, nothing more due: no wake
        follower.state.fresh_at["demo."] = time.time()
        follower.mark_stale()  # refreshed: fresh at once
        assert zones.stale == frozenset()
        task.cancel()

    asyncio.run(scenario())


def test_the_next_wake_is_the_nearest_expiry() -> None:
    follower, _, _ = counted_follower()
    now = time.time()
    for name, age in (("a.", 0.1), ("b.", 0.3), ("c.", 5.0)):  # c. is stale already
        follower.state.copies[name] = ZoneCopy(dns.zone.from_text(ZONE, name), ())
        follower.state.fresh_at[name] = now - age
    assert EXPIRE - 0.3 < follower.next_expiry() <= EXPIRE - 0.3 + 0.1  # b., not a.
