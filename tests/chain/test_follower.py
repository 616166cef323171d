"""A node follows every chain its own chain links to, whichever way the linking block was
appended: through the API, by a message's receipt (the group appender), on taking back its own
blocks from a peer, or before the follower existed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypermesh.chain.block import Link
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.transport.identity import Identity

ME = Identity.generate()


def link_to(tmp_path: Path, name: str) -> tuple[bytes, Link]:
    other = ChainStore.open(tmp_path / f"{name}.db", Identity.generate())
    block = other.append(1, name.encode())
    other.close()
    return block.author, Link(block.author, block.seq, block.hash)


def test_every_append_path_notes_the_links(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", ME)
    before, early = link_to(tmp_path, "before")
    store.append(2, b"", [early])  # before the follower: found when it starts
    follower = ChainFollower(store, Replicas.open(tmp_path / "r.db"), lambda: [])
    assert follower.followed == {before}

    direct, link = link_to(tmp_path, "direct")
    store.append(2, b"", [link])
    grouped, receipt = link_to(tmp_path, "grouped")  # how a message's receipt is appended

    async def appended() -> None:
        await GroupAppender(store).append(3, b"receipt", [receipt])

    asyncio.run(appended())
    assert follower.followed == {before, direct, grouped}

    # A block taken back from a peer's copy (lost here) is noted too.
    copy = ChainStore.open(tmp_path / "copy.db", ME)
    copy.restore([(b, store.payload(b)) for b in store.blocks()])
    restored, lost = link_to(tmp_path, "restored")
    made = copy.append(2, b"", [lost])
    store.restore([(made, copy.payload(made))])
    assert restored in follower.followed
    store.append(1, b"", [Link(ME.public_key_bytes, 0, store.block(0).hash)])
    assert ME.public_key_bytes not in follower.followed  # never its own chain
