"""The locator of followed authors (``node.authors.DirectoryPeers``) runs when something is due,
never on a fixed interval (issue 19): when a location falls due (its record's expiry), when the
node's chain links to a new author (``wake``), and after a backoff while one is not found.

The directory is stood in for by ``lookup`` (what the registry answers is tested with real
nodes in ``test_chain_authors.py``); the loop and its clock are the real ones.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

from hypermesh.node.authors import DirectoryPeers
from hypermesh.node.feature import NodeContext
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord

ME, AUTHOR = Identity.generate(), Identity.generate()
REGISTRY = PeerRef("127.0.0.1:9", Identity.generate().node_id)


class Locator(DirectoryPeers):
    """Answers each lookup with a record of ``AUTHOR`` valid for ``lifetime`` seconds."""

    def __init__(self, followed: set[bytes], lifetime: float | None) -> None:
        node = SimpleNamespace(chain_peers=list, identity=ME)
        super().__init__(cast(NodeContext, node), lambda: followed, self._moved)
        self.lifetime = lifetime
        self.asked: list[float] = []
        self.moves = 0

    def _moved(self) -> None:
        self.moves += 1

    def registry(self) -> PeerRef | None:
        return REGISTRY

    async def lookup(self, registry: PeerRef, node_id: str) -> NodeRecord | None:
        self.asked.append(time.monotonic())
        if self.lifetime is None:
            return None  # not in the directory (yet)
        record: Any = SimpleNamespace(
            addresses=("127.0.0.1:4433",), expires_at=time.time() + self.lifetime
        )
        return cast(NodeRecord, record)


def run_for(locator: Locator, seconds: float, then: Any = None) -> None:
    async def main() -> None:
        task = asyncio.create_task(locator.run())
        await asyncio.sleep(seconds)
        if then is not None:
            then()
            await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_a_location_is_looked_up_again_when_its_record_expires_and_not_before() -> None:
    locator = Locator({AUTHOR.public_key_bytes}, lifetime=1.0)
    started = time.monotonic()
    run_for(locator, 2.5)
    gaps = [round(t - started, 2) for t in locator.asked]
    print(f"\nlookups at {gaps} s (record lifetime 1 s)")
    # At 0, at its expiry (1 s), at the next (2 s): never before a record expires, and soon
    # after (the former fixed interval of 2 s looked at 0, 2, 4 s). The upper bounds leave
    # room for a loaded machine.
    assert 2 <= len(locator.asked) <= 3, gaps
    assert all(0.9 <= b - a <= 1.8 for a, b in zip(locator.asked, locator.asked[1:], strict=False))
    assert locator.peers() == [PeerRef("127.0.0.1:4433", AUTHOR.node_id)]
    assert locator.moves == 1  # the follower was told once, when it was found


def test_nothing_to_locate_wakes_nothing_until_a_new_author_is_linked() -> None:
    followed: set[bytes] = set()
    locator = Locator(followed, lifetime=60.0)

    def link() -> None:
        followed.add(AUTHOR.public_key_bytes)
        locator.wake()

    run_for(locator, 2.0, then=link)
    assert locator.looks == 2  # at the start, and when woken by the link
    assert len(locator.asked) == 1  # the linked author, at once


def test_an_author_not_found_is_looked_for_again_after_a_backoff() -> None:
    locator = Locator({AUTHOR.public_key_bytes}, lifetime=None)
    run_for(locator, 3.5)
    assert len(locator.asked) == 2  # at 0 and after the first wait (2 s); the next after 5 s
    assert locator.peers() == []
