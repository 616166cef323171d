"""Defence in depth: rows no release of this code would store, written straight into the
registry's SQLite file, never keep the registry from starting. It serves every other zone,
reports the bad one (health, the metric callback, a log line, the API's 503), never deletes or
rewrites a row by itself, and its owner can repair it through the API."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from hypermesh.dns import StaticZones
from hypermesh.node.registry_api import load_zones
from hypermesh.registry.errors import RegistryError, ZoneUnservable
from hypermesh.registry.service import Change, Registry
from tests.registry.conftest import ADMIN, NOW, OWNER

POISON: dict[str, tuple[str, str, list[str]]] = {
    "outside the zone": ("evil.example.", "A", ["192.0.2.66"]),
    "a CNAME at the apex": ("@", "CNAME", ["elsewhere.example."]),
    "a CNAME beside other data": ("www", "CNAME", ["elsewhere.example."]),
    "a NUL in the name": ("a\x00b", "A", ["192.0.2.66"]),
    "a space in the name": ("a b", "A", ["192.0.2.66"]),
    "zone-file syntax in a value": ("t", "TXT", ['"x"\n$INCLUDE /etc/passwd']),
    "a second record in a value": ("t2", "A", ["192.0.2.1\nevil 60 IN A 192.0.2.66"]),
    "an unparsable value": ("u", "A", ["not-an-address"]),
    "two spellings of one set": ("Www", "A", ["192.0.2.67"]),
}


def store_rows(path: Path, tld: str, rows: list[tuple[str, str, list[str]]]) -> None:
    """Rows written to the database directly, as an older release or a hand edit might."""
    registry = Registry.open(path)
    with registry.engine.begin() as conn:
        for name, kind, values in rows:
            conn.execute(
                text(
                    'INSERT INTO registry_rrsets (tld, name, type, ttl, "values") '
                    "VALUES (:tld, :name, :type, 300, :values)"
                ),
                {"tld": tld, "name": name, "type": kind, "values": json.dumps(values)},
            )
        # as in the attack: the zone in memory could not be written out on close
        conn.execute(text("DELETE FROM registry_signed_zones WHERE tld = :tld"), {"tld": tld})
    registry.engine.dispose()


def dump(registry: Registry) -> dict[str, list[Any]]:
    with registry.engine.connect() as conn:
        return {
            table: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {table}"))), key=repr)
            for table in ("registry_tlds", "registry_rrsets")
        }


def setup(path: Path, poison: tuple[str, str, list[str]]) -> None:
    registry = Registry.open(path, admin=ADMIN.node_id, clock=lambda: NOW)
    for tld in ("good", "evil", "also"):
        registry.register(tld, OWNER.node_id, "demo")
    www = Change("www", "A", "REPLACE", 300, ("192.0.2.1",))
    registry.patch("good", [www], signer=OWNER.node_id)
    registry.patch("evil", [www], signer=OWNER.node_id)
    registry.close()
    store_rows(path, "evil", [poison])


@pytest.mark.parametrize("what", sorted(POISON))
def test_a_poisoned_zone_never_keeps_the_registry_from_serving_the_others(
    tmp_path: Path, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry.db"
    setup(path, POISON[what])
    for _ in range(2):  # and again after a restart
        registry = Registry.open(path, clock=lambda: NOW)
        before = dump(registry)
        zones = StaticZones()
        problems: dict[str, str | None] = {}
        with caplog.at_level(logging.ERROR, logger="hypermesh.registry"):
            unservable = load_zones(registry, zones, on_problem=problems.__setitem__)
        assert unservable == ["evil"]
        assert sorted(o.to_text() for o in zones.zones()) == ["also.", "good."]
        assert problems["good"] is None and problems["evil"]
        assert "stored data does not build" in caplog.text
        health = registry.health()
        assert health["conditions"][0]["status"] == "False"
        assert list(health["unservable"]) == ["evil"]
        assert registry.get_tld("evil").problem
        with pytest.raises(ZoneUnservable):
            registry.zone("evil")
        registry.close()  # saves the good zones, keeps every row
        again = Registry.open(path, clock=lambda: NOW)
        assert dump(again) == before
        again.close()


def test_the_owner_repairs_a_poisoned_zone_through_the_api(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    setup(path, POISON["a NUL in the name"])
    store_rows(path, "evil", [POISON["two spellings of one set"], POISON["outside the zone"]])
    registry = Registry.open(path, clock=lambda: NOW)
    load_zones(registry, StaticZones())
    # a change that leaves the bad rows is refused, naming one, and stores nothing
    before = dump(registry)
    new = Change("new", "A", "REPLACE", 60, ("192.0.2.9",))
    with pytest.raises(RegistryError, match=r"given twice|outside the zone|control"):
        registry.patch("evil", [new], signer=OWNER.node_id)
    assert dump(registry) == before
    # deleting each bad set, named as stored where the rule refuses the name, repairs it
    serial = registry.patch(
        "evil",
        [
            Change("a\x00b", "A", "DELETE"),
            Change("evil.example.", "A", "DELETE"),
            Change("WWW", "A", "DELETE"),  # both spellings of www A go
        ],
        signer=OWNER.node_id,
    )
    assert registry.health()["conditions"][0]["status"] == "True"
    assert registry.rrsets("evil") == []
    zone = registry.zone("evil")
    assert zone.get_node("www") is None
    assert serial == registry.get_tld("evil").serial
    assert registry.journal_since("evil", serial - 1) is None  # no entry from an unbuilt zone
    registry.close()


def test_a_tld_stored_under_a_bad_name_is_reported_and_its_owner_may_delete_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.db"
    setup(path, POISON["an unparsable value"])
    registry = Registry.open(path, clock=lambda: NOW)
    with registry.engine.begin() as conn:
        conn.execute(text("UPDATE registry_tlds SET name = 'also\n' WHERE name = 'also'"))
    zones = StaticZones()
    assert sorted(load_zones(registry, zones)) == ["also\n", "evil"]
    assert [o.to_text() for o in zones.zones()] == ["good."]
    registry.delete("also\n", signer=OWNER.node_id)
    assert [t.name for t in registry.list_tlds()] == ["evil", "good"]
    registry.close()
