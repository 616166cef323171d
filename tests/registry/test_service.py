"""The registry service on a real SQLite file and on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from hypermesh.registry.errors import PolicyError, RegistryError
from hypermesh.registry.service import (
    Change,
    Conflict,
    DatabaseNonceCache,
    Forbidden,
    Registry,
)
from hypermesh.registry.zones import (
    RESIGN_AFTER,
    SIGNATURE_LIFETIME,
    apply_journal,
    serial_of,
    verify_zone,
    zone_records,
)
from tests.registry import conftest as _c

NOW = _c.NOW
OWNER = _c.OWNER.node_id
OTHER = _c.OTHER.node_id


def test_register_patch_and_serve_a_signed_zone(registry: Registry) -> None:
    info = registry.register("acme", OWNER, "demo")
    assert (info.status, info.serial, info.owner) == ("active", 1, OWNER)
    assert info.ds and info.ds[0].split()[1] == "15"  # algorithm 15: Ed25519
    serial = registry.patch(
        "acme",
        [
            Change("www", "A", "REPLACE", 300, ("192.0.2.10",)),
            Change("@", "TXT", "REPLACE", None, ('"hello"',)),
        ],
        signer=OWNER,
    )
    assert serial == 2
    zone = registry.zone("acme")
    verify_zone(zone, info.ds, now=NOW)
    assert zone.get_rdataset("www", "A") is not None
    assert {(r.name, r.type) for r in registry.rrsets("acme")} == {("www", "A"), ("@", "TXT")}


def test_a_bad_batch_changes_nothing(registry: Registry) -> None:
    registry.register("acme", OWNER, "demo")
    registry.patch("acme", [Change("www", "A", "REPLACE", 300, ("192.0.2.10",))], signer=OWNER)
    before = (
        registry.get_tld("acme").serial,
        registry.rrsets("acme"),
        registry.journal_since("acme", 1),
    )
    with pytest.raises(RegistryError, match="not-an-address"):
        registry.patch(
            "acme",
            [
                Change("api", "A", "REPLACE", 300, ("192.0.2.20",)),
                Change("bad", "A", "REPLACE", 300, ("not-an-address",)),
            ],
            signer=OWNER,
        )
    after = (
        registry.get_tld("acme").serial,
        registry.rrsets("acme"),
        registry.journal_since("acme", 1),
    )
    assert after == before


def test_only_the_owner_writes(registry: Registry) -> None:
    registry.register("acme", OWNER, "demo")
    with pytest.raises(Forbidden, match="belongs to"):
        registry.patch("acme", [Change("www", "A", "REPLACE", 300, ("192.0.2.1",))], signer=OTHER)
    assert registry.rrsets("acme") == []
    with pytest.raises(Forbidden, match="cosigned by the new owner"):
        registry.transfer("acme", OTHER, signer=OWNER, cosigner=None)
    assert registry.transfer("acme", OTHER, signer=OWNER, cosigner=OTHER).owner == OTHER


def test_policy_and_conflicts(registry: Registry) -> None:
    with pytest.raises(PolicyError, match="IANA root zone"):
        registry.register("com", OWNER, "demo")
    registry.register("acme", OWNER, "demo")
    with pytest.raises(Conflict, match="already registered"):
        registry.register("acme", OTHER, "demo")
    assert [t.name for t in registry.list_tlds()] == ["acme"]


def test_journal_reaches_back_and_replays(registry: Registry) -> None:
    registry.register("acme", OWNER, "demo")
    first = registry.zone("acme")
    for i in range(3):
        registry.patch(
            "acme", [Change(f"h{i}", "A", "REPLACE", 60, (f"192.0.2.{i + 1}",))], signer=OWNER
        )
    entries = registry.journal_since("acme", 1)
    assert entries is not None and [(e.from_serial, e.to_serial) for e in entries] == [
        (1, 2),
        (2, 3),
        (3, 4),
    ]
    zone = first
    for entry in entries:
        zone = apply_journal(zone, entry)
    assert zone_records(zone) == zone_records(registry.zone("acme"))
    assert registry.journal_since("acme", 4) == []
    assert registry.journal_since("acme", 0) is None  # the journal does not reach back


def test_database_nonces_catch_replays_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    first = Registry.open(path)
    assert DatabaseNonceCache(first).add(OWNER, "n" * 22, NOW)
    first.close()
    again = Registry.open(path)
    assert not DatabaseNonceCache(again).add(OWNER, "n" * 22, NOW + 1)
    assert DatabaseNonceCache(again).add(OWNER, "m" * 22, NOW + 1)
    again.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "r.db")
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE registry_meta SET value = '9' WHERE key = 'schema_version'"))
    registry.close()
    with pytest.raises(RegistryError, match="schema version 9"):
        Registry.open(tmp_path / "r.db")


def test_zones_are_signed_again_in_full_before_their_signatures_expire(where: str) -> None:
    """Changes are signed incrementally and share older signatures; the sweep (and the first
    change after ``RESIGN_AFTER``) signs the whole zone again under a new serial."""
    clock = [_c.NOW]
    registry = Registry.open(where, admin=_c.ADMIN.node_id, clock=lambda: clock[0])
    try:
        info = registry.register("acme", OWNER, "demo")
        www = Change("www", "A", "REPLACE", 60, ("192.0.2.1",))
        registry.patch("acme", [www], signer=OWNER)
        assert registry.resign_due() == []
        before = registry.zone("acme")
        clock[0] += RESIGN_AFTER
        assert registry.resign_due() == ["acme"]
        after = registry.zone("acme")
        assert serial_of(after) == serial_of(before) + 1
        journal = registry.journal_since("acme", serial_of(before))
        assert journal is not None and len(journal) == 1
        assert zone_records(apply_journal(before, journal[0])) == zone_records(after)
        later = clock[0] + SIGNATURE_LIFETIME - RESIGN_AFTER + 60  # the old ones expired
        verify_zone(after, info.ds, now=later)
        with pytest.raises(RegistryError, match="no RRSIGs validated"):  # expired
            verify_zone(before, info.ds, now=later)
        assert registry.resign_due() == []

        clock[0] += RESIGN_AFTER  # a change that comes due is signed in full
        registry.patch("acme", [www], signer=OWNER)
        verify_zone(registry.zone("acme"), info.ds, now=clock[0] + SIGNATURE_LIFETIME - 3600)
        assert registry.resign_due() == []
    finally:
        registry.close()


def test_a_restart_serves_the_same_signed_bytes_at_the_same_serial(where: str) -> None:
    """Mirrors hold the signed zone; after a clean restart the registry serves exactly it, so
    their increments still apply. A crash (no close) signs anew, still valid."""
    clock = [_c.NOW]
    registry = Registry.open(where, admin=_c.ADMIN.node_id, clock=lambda: clock[0])
    info = registry.register("acme", OWNER, "demo")
    registry.patch("acme", [Change("www", "A", "REPLACE", 60, ("192.0.2.1",))], signer=OWNER)
    served = registry.zone("acme")
    registry.close()

    clock[0] += 3600  # a rebuild now would carry other signature times
    reopened = Registry.open(where, clock=lambda: clock[0])
    try:
        again = reopened.zone("acme")
        assert again.to_text() == served.to_text()
        serial = reopened.patch(
            "acme", [Change("www", "A", "REPLACE", 60, ("192.0.2.2",))], signer=OWNER
        )
        (entry,) = reopened.journal_since("acme", serial_of(served)) or []
        assert entry.to_serial == serial
        assert zone_records(apply_journal(served, entry)) == zone_records(reopened.zone("acme"))
        verify_zone(reopened.zone("acme"), info.ds, now=clock[0])
    finally:
        reopened.engine.dispose()  # a crash: nothing saved

    clock[0] += 3600
    crashed = Registry.open(where, clock=lambda: clock[0])
    try:
        rebuilt = crashed.zone("acme")
        assert serial_of(rebuilt) == serial
        assert rebuilt.to_text() != served.to_text()
        verify_zone(rebuilt, info.ds, now=clock[0])
    finally:
        crashed.close()
