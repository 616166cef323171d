"""Join tokens and the node directory over a real database (SQLite and PostgreSQL): tokens are
single-use unless reusable, expire, are revoked, and a refused join stores nothing; node records
are checked (signature, network, membership, revocation, seq) before anything is stored, looked
up by key and by name, paged, expire, and are withdrawn when their key is revoked. The ``_nodes``
zone follows every change, signed and journalled."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import dns.name
import dns.rdatatype
import pytest
from sqlalchemy import text

from hypermesh.registry.directory import ZONE, Directory
from hypermesh.registry.errors import (
    Forbidden,
    NameTaken,
    NotFound,
    RegistryError,
    Stale,
    TokenRefused,
)
from hypermesh.registry.service import Registry
from hypermesh.registry.tokens import JoinTokens
from hypermesh.registry.zones import verify_zone
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord
from tests.registry.conftest import ADMIN

TABLES = ("registry_join_tokens", "registry_members", "registry_node_records", "registry_journal")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def opened(where: str, clock: Clock) -> Iterator[Registry]:
    registry = Registry.open(where, admin=ADMIN.node_id, clock=clock)
    yield registry
    registry.close()


def snapshot(registry: Registry) -> dict[str, list[Any]]:
    """Every row of the tables a join or a publish may write."""
    with registry.engine.connect() as conn:
        return {
            t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}")).all()), key=repr)
            for t in TABLES
        }


def record(key: Identity, clock: Clock, seq: int = 1, **kw: Any) -> dict[str, str]:
    fields: dict[str, Any] = {
        "network": "acme",
        "name": "alpha",
        "interfaces": {"public": ["192.0.2.7:4433", "[2001:db8::7]:4433", "node.example:1"]},
        "issued_at": clock.now,
        "lifetime": 60.0,
        "seq": seq,
        **kw,
    }
    return NodeRecord.issue(key, **fields).to_json()


def test_join_tokens(opened: Registry, clock: Clock) -> None:
    tokens = JoinTokens(opened)
    single, info = tokens.create(ttl=600, signer=ADMIN.node_id, tags=("web",))
    assert single.startswith(f"hmjoin-{info.id}-") and len(single.split("-")[2]) == 52
    reusable, _ = tokens.create(ttl=600, signer=ADMIN.node_id, reusable=True, ephemeral=True)
    doomed, doomed_info = tokens.create(ttl=60, signer=ADMIN.node_id)
    with pytest.raises(Forbidden):
        tokens.create(ttl=600, signer=Identity.generate().node_id)
    a, b, c = (Identity.generate() for _ in range(3))

    member, made = tokens.join(single, "alpha", "host-b", signer=a.node_id)
    assert made and member.tags == ("web",) and member.host == "host-b"
    again, made = tokens.join(single, "alpha", None, signer=a.node_id)  # idempotent
    assert not made and again == member
    tokens.revoke(doomed_info.id, signer=ADMIN.node_id)
    before = snapshot(opened)
    secret = single.split("-")[2]
    wrong = f"hmjoin-{info.id}-{'a' * 52}"
    refusals = [
        (single, "beta", "already used"),
        (wrong, "beta", "not valid"),
        (f"hmjoin-000000000000-{secret}", "beta", "not valid"),
        ("hmjoin-garbage", "beta", "not valid"),
    ]
    for token, name, why in refusals:
        with pytest.raises(TokenRefused, match=why):
            tokens.join(token, name, None, signer=b.node_id)
    with pytest.raises(NameTaken):
        tokens.join(reusable, "alpha", None, signer=b.node_id)
    with pytest.raises(TokenRefused, match="revoked"):
        tokens.join(doomed, "beta", None, signer=b.node_id)
    clock.now += 601
    with pytest.raises(TokenRefused, match="expired at"):
        tokens.join(reusable, "beta", None, signer=b.node_id)
    assert snapshot(opened) == before  # nothing stored on any refusal
    clock.now -= 601
    for key, name in ((b, "beta"), (c, "gamma")):
        assert tokens.join(reusable, name, None, signer=key.node_id)[1]
    listed = {t.id: t for t in tokens.list(signer=ADMIN.node_id)}
    assert listed[info.id].uses == 1 and listed[doomed_info.id].revoked
    assert listed[info.id].tags == ("web",) and secret not in repr(listed)


def test_node_records(opened: Registry, clock: Clock) -> None:
    tokens = JoinTokens(opened)
    directory = Directory(opened, "acme")
    a, b, c, d = (Identity.generate() for _ in range(4))
    for key, name, ephemeral in ((a, "alpha", False), (b, "beta", True), (c, "gamma", False)):
        token, _ = tokens.create(ttl=600, signer=ADMIN.node_id, ephemeral=ephemeral)
        tokens.join(token, name, None, signer=key.node_id)

    # Node records: refused with nothing stored ...
    before = snapshot(opened)
    bad = dict(record(a, clock))
    bad["signature"] = base64.b64encode(bytes(64)).decode()
    for signed, error, why in [
        (bad, RegistryError, "not signed by"),
        (record(a, clock, network="other"), RegistryError, "network 'other'"),
        (record(d, clock), Forbidden, "not a member"),
        (record(a, clock, issued_at=clock.now - 120), RegistryError, "expired"),
    ]:
        with pytest.raises(error, match=why):
            directory.publish(signed)
    assert snapshot(opened) == before
    # ... stored, replaced only by a newer seq, served in the zone
    directory.publish(record(a, clock, seq=2))
    with pytest.raises(Stale):
        directory.publish(record(a, clock, seq=2))
    with pytest.raises(Stale):
        directory.publish(record(a, clock, seq=1))
    directory.publish(record(a, clock, seq=3, interfaces={"public": ["192.0.2.8:4433"]}))
    assert directory.get(a.node_id).seq == 3
    assert directory.by_name("alpha").node_id == a.node_id
    with pytest.raises(NotFound):
        directory.by_name("nobody")
    zone = opened.zone(ZONE)
    verify_zone(zone, now=clock.now)
    txt = zone.find_rdataset(dns.name.from_text(a.node_id, None), dns.rdatatype.TXT)
    strings = [s for r in txt for s in r.strings]
    assert NodeRecord.from_txt(strings, now=clock.now).seq == 3
    assert {r.to_text() for r in zone.find_rdataset(a.node_id, "A")} == {"192.0.2.8"}
    assert zone.get_rdataset(a.node_id, "AAAA") is None  # the newer record has no IPv6

    # paging, expiry (the ephemeral member's membership ends with it), revocation
    directory.publish(record(b, clock, name="beta", lifetime=4.0))
    directory.publish(record(c, clock, name="gamma"))
    ids = sorted(k.node_id for k in (a, b, c))
    first, following = directory.page(limit=2)
    assert [s.node_id for s in first] == ids[:2] and following == ids[1]
    rest, end = directory.page(after=following, limit=2)
    assert [s.node_id for s in rest] == ids[2:] and end is None
    clock.now += 5
    assert directory.sweep() == [b.node_id]
    with pytest.raises(NotFound):
        directory.get(b.node_id)
    assert not directory.is_member(b.node_id)  # ephemeral: gone with its record
    assert directory.is_member(c.node_id)
    opened.revoke(c.node_id, signer=ADMIN.node_id)
    assert directory.withdraw(c.node_id)
    with pytest.raises(NotFound):
        directory.get(c.node_id)
    assert not directory.is_member(c.node_id)
    assert set(directory.members()) == {"alpha"}
    zone = opened.zone(ZONE)
    verify_zone(zone, now=clock.now)
    names = {n.to_text() for n in zone.nodes}
    assert a.node_id in names and b.node_id not in names and c.node_id not in names
    journal = opened.journal_since(ZONE, 1)
    assert journal is not None and journal[-1].to_serial == opened.get_tld(ZONE).serial
    assert ZONE not in {t.name for t in opened.list_tlds()}


def test_a_revoked_key_cannot_join_or_publish(opened: Registry, clock: Clock) -> None:
    tokens = JoinTokens(opened)
    key = Identity.generate()
    directory = Directory(opened, "acme", static={"pinned": {"identity": key.node_id}})
    directory.publish(record(key, clock))  # a static member
    opened.revoke(key.node_id, signer=ADMIN.node_id)
    directory.withdraw(key.node_id)
    token, _ = tokens.create(ttl=600, signer=ADMIN.node_id)
    before = snapshot(opened)
    with pytest.raises(TokenRefused, match="revoked"):
        tokens.join(token, "x", None, signer=key.node_id)
    with pytest.raises(Forbidden, match="revoked"):
        directory.publish(record(key, clock, seq=2))
    assert snapshot(opened) == before


def test_open_registration_in_a_public_network(opened: Registry, clock: Clock) -> None:
    directory = Directory(opened, "acme", public=True)
    stranger = Identity.generate()
    directory.publish(record(stranger, clock, name="stranger"))
    assert directory.by_name("stranger").node_id == stranger.node_id


def test_the_zone_is_read_back_after_a_restart(where: str, clock: Clock) -> None:
    registry = Registry.open(where, admin=ADMIN.node_id, clock=clock)
    key = Identity.generate()  # a private directory: mirrors follow its journal
    Directory(registry, "acme", trusted=(key.node_id,)).publish(record(key, clock))
    serial = registry.get_tld(ZONE).serial
    registry.close()
    reopened = Registry.open(where, admin=ADMIN.node_id, clock=clock)
    try:
        directory = Directory(reopened, "acme", trusted=(key.node_id,))
        zone = reopened.zone(ZONE)
        verify_zone(zone, now=clock.now)
        assert zone.get_rdataset(key.node_id, "TXT") is not None
        assert reopened.get_tld(ZONE).serial == serial
        directory.publish(record(key, clock, seq=2))
        entries = reopened.journal_since(ZONE, serial)
        assert entries is not None and [e.to_serial for e in entries] == [serial + 1]
    finally:
        reopened.close()
