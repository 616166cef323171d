"""The journal's retention: each zone keeps the increments of its last ``journal_keep`` serials
(pruned in the transactions of its changes), on SQLite and PostgreSQL; a mirror further behind
takes the whole zone, and a real follower over QUIC converges that way, then follows by
increments again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from hypermesh.dns import StaticZones
from hypermesh.mirror.feed import ZoneFeed
from hypermesh.mirror.follower import Follower
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.registry_api import add_registry_routes
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.errors import RegistryError
from hypermesh.registry.service import PRUNE_EVERY, Change, Registry
from hypermesh.registry.tables import JournalRow
from hypermesh.registry.zones import zone_records
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from tests.registry.conftest import ADMIN, NOW, OWNER


def _change(n: int) -> Change:
    return Change(f"host{n % 7}", "A", "REPLACE", 300, (f"192.0.2.{n % 250}",))


def _journal_rows(registry: Registry, tld: str) -> int:
    with registry.transaction() as session:
        query = select(func.count()).select_from(JournalRow).where(col(JournalRow.tld) == tld)
        return int(session.exec(query).one())


def test_the_journal_keeps_its_retention_and_no_more(where: str) -> None:
    keep = 20
    registry = Registry.open(where, admin=ADMIN.node_id, clock=lambda: NOW, journal_keep=keep)
    try:
        registry.register("acme", OWNER.node_id, "demo")
        for n in range(3 * keep):
            registry.patch("acme", [_change(n)], signer=OWNER.node_id)
        serial = registry.get_tld("acme").serial
        assert serial == 1 + 3 * keep
        assert keep <= _journal_rows(registry, "acme") < keep + PRUNE_EVERY
        entries = registry.journal_since("acme", serial - keep)
        assert entries is not None and len(entries) == keep
        assert [e.to_serial for e in entries] == list(range(serial - keep + 1, serial + 1))
        assert registry.journal_since("acme", 1) is None  # behind the horizon: a whole zone
    finally:
        registry.close()


@pytest.mark.parametrize("bad", [0, -3, True, "10"])
def test_a_bad_retention_is_refused_naming_it(tmp_path: Path, bad: object) -> None:
    with pytest.raises(RegistryError, match="journal_keep"):
        Registry.open(tmp_path / "r.db", journal_keep=bad)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _live(registry: Registry) -> AsyncIterator[tuple[PeerRef, StaticZones]]:
    """The registry served as a registry node serves it: its API and the mirrors' feed."""
    identity = Identity.generate()
    zones = StaticZones()
    feed: ZoneFeed = zone_feed(zones)
    router = Router()
    add_registry_routes(router, registry, zones, on_revocation=feed.revoked)
    add_feed_routes(router, registry, zones, feed, identity, "demo")
    endpoint = await bind_endpoint(
        "127.0.0.1", 0, configuration=server_configuration(identity), router=router
    )
    try:
        yield PeerRef(endpoint.address, identity.node_id), zones
    finally:
        endpoint.close()


async def _until(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        await asyncio.sleep(0.02)


def test_a_mirror_behind_the_horizon_converges_by_a_whole_copy(tmp_path: Path) -> None:
    keep = 4
    registry = Registry.open(tmp_path / "registry.db", admin=ADMIN.node_id, journal_keep=keep)

    async def patch(n: int) -> int:
        return await registry.worker.run(registry.patch, "acme", [_change(n)], signer=OWNER.node_id)

    async def scenario() -> None:
        async with _live(registry) as (peer, served):
            info = await registry.worker.run(registry.register, "acme", OWNER.node_id, "demo")
            served.set(await registry.worker.run(registry.zone, info.name))
            follower = Follower(StaticZones(), lambda: peer, identity=None)
            copies = follower.state.copies

            def caught_up(serial: int) -> Callable[[], bool]:
                return lambda: "acme." in copies and copies["acme."].serial == serial

            async def publish(n: int) -> int:
                serial = await patch(n)
                served.set(await registry.worker.run(registry.zone, "acme"))
                return serial

            task = asyncio.create_task(follower.run())
            try:
                await _until(caught_up(1), "the first copy")
                await _until(caught_up(await publish(0)), "the first increment")
                assert follower.transfers.incremental == 1
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            held = copies["acme."].serial
            for n in range(1, 4 * PRUNE_EVERY):  # the mirror away: far past the horizon
                serial = await publish(n)
            assert await registry.worker.run(registry.journal_since, "acme", held) is None
            full = follower.transfers.full_by_zone.get("acme.", 0)
            task = asyncio.create_task(follower.run())
            try:
                await _until(caught_up(serial), "the whole copy")
                assert follower.transfers.full_by_zone["acme."] == full + 1
                expected = await registry.worker.run(registry.zone, "acme")
                assert zone_records(copies["acme."].zone) == zone_records(expected)
                incremental = follower.transfers.incremental
                await _until(caught_up(await publish(999)), "an increment again")
                assert follower.transfers.incremental == incremental + 1
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        registry.close()
