"""Node records published in the same turn of the event loop are stored as one batch: one new
serial of the ``_nodes.`` zone for all of them, and each request its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypermesh.registry.batching import PublishBatcher
from hypermesh.registry.directory import ZONE, Directory
from hypermesh.registry.errors import RegistryError, Stale
from hypermesh.registry.service import Registry
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord
from tests.registry.conftest import ADMIN

NOW = 1_800_000_000.0


def signed(key: Identity, seq: int, network: str = "acme") -> dict[str, str]:
    return NodeRecord.issue(
        key,
        network=network,
        name=f"n-{key.node_id[3:12]}",
        interfaces={"public": ["192.0.2.7:4433"]},
        issued_at=NOW,
        lifetime=60.0,
        seq=seq,
    ).to_json()


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    registry = Registry.open(str(tmp_path / "registry.db"), admin=ADMIN.node_id, clock=lambda: NOW)
    yield Directory(registry, "acme", public=True)
    registry.close()


def test_records_of_one_turn_are_one_batch_each_with_its_outcome(directory: Directory) -> None:
    keys = [Identity.generate() for _ in range(10)]
    held = Identity.generate()
    directory.publish(signed(held, seq=5))
    before = directory.registry.get_tld(ZONE).serial
    batcher = PublishBatcher(directory.publish_many)

    async def all_at_once() -> list[NodeRecord | BaseException]:
        requests = [batcher.publish(signed(key, seq=1)) for key in keys]
        requests.append(batcher.publish(signed(held, seq=4)))  # older than the one held
        requests.append(batcher.publish(signed(Identity.generate(), 1, network="other")))
        return await asyncio.gather(*requests, return_exceptions=True)

    outcomes = asyncio.run(all_at_once())
    assert batcher.batches == 1
    assert directory.registry.get_tld(ZONE).serial == before + 1  # one signing for ten records
    assert [o.node_id for o in outcomes[:10] if isinstance(o, NodeRecord)] == [
        k.node_id for k in keys
    ]
    assert isinstance(outcomes[10], Stale)
    assert isinstance(outcomes[11], RegistryError) and "network" in str(outcomes[11])
    for key in keys:
        assert directory.get(key.node_id).seq == 1
    assert directory.get(held.node_id).seq == 5  # the stale one changed nothing


def test_a_lone_record_is_stored_at_once_and_turns_make_separate_batches(
    directory: Directory,
) -> None:
    batcher = PublishBatcher(directory.publish_many)
    before = directory.registry.get_tld(ZONE).serial

    async def one_after_another() -> None:
        for seq in (1, 2, 3):
            record = await batcher.publish(signed(ADMIN, seq))
            assert record.seq == seq

    asyncio.run(one_after_another())
    assert batcher.batches == 3
    assert directory.registry.get_tld(ZONE).serial == before + 3


def test_on_the_writer_the_records_that_arrive_during_a_batch_make_the_next(
    directory: Directory,
) -> None:
    """With the batches stored on the registry's writer thread (as the node does), the loop
    takes requests while one batch is stored, and they are stored together next: 1 + 8
    records in 2 batches, not 9."""
    registry = directory.registry
    keys = [Identity.generate() for _ in range(8)]
    before = registry.get_tld(ZONE).serial

    async def first_then_eight() -> list[NodeRecord]:
        storing = asyncio.Event()

        async def on_the_writer(call: Any, batch: Any) -> Any:
            storing.set()
            return await registry.worker.run(call, batch)

        batcher = PublishBatcher(directory.publish_many, run=on_the_writer)
        first = asyncio.ensure_future(batcher.publish(signed(ADMIN, seq=1)))
        await asyncio.wait_for(storing.wait(), 30)  # the first batch is on the writer
        rest = [batcher.publish(signed(key, seq=1)) for key in keys]
        outcomes = await asyncio.wait_for(asyncio.gather(first, *rest), 30)
        assert batcher.batches == 2
        return outcomes

    outcomes = asyncio.run(first_then_eight())
    assert [o.node_id for o in outcomes] == [ADMIN.node_id] + [k.node_id for k in keys]
    assert registry.get_tld(ZONE).serial == before + 2
