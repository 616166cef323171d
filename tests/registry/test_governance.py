"""The registry's administrator and policy: approval, rejection, reserved names, terms and
expiry, and schema upgrades, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from hypermesh.registry.errors import NotFound, PolicyError, RegistryError
from hypermesh.registry.service import Change, Conflict, Forbidden, Policy, Registry
from hypermesh.registry.tables import SCHEMA_VERSION
from tests.registry.conftest import ADMIN, NOW, OTHER, OWNER

A = ADMIN.node_id
O = OWNER.node_id  # noqa: E741


def _record() -> list[Change]:
    return [Change("www", "A", "REPLACE", 60, ("192.0.2.1",))]


def test_the_administrator_is_recorded_once_and_the_policy_persists(where: str) -> None:
    first = Registry.open(where, admin=A, clock=lambda: NOW)
    assert first.admin == A
    first.set_policy({"approval": "manual", "termDays": 30, "maxTldsPerOwner": 3}, signer=A)
    first.reserve("beta", signer=A)
    first.close()

    again = Registry.open(where, clock=lambda: NOW)  # no admin given: the stored one holds
    assert again.admin == A
    assert again.policy.governance() == {
        "approval": "manual",
        "termDays": 30,
        "maxTldsPerOwner": 3,
        "reserved": ["beta"],
    }
    again.close()
    with pytest.raises(RegistryError, match="administrator is"):
        Registry.open(where, admin=OTHER.node_id)


def test_only_the_administrator_governs(registry: Registry) -> None:
    registry.register("acme", O, "demo")
    refused: list[Callable[[], object]] = [
        lambda: registry.set_policy({"approval": "manual"}, signer=O),
        lambda: registry.reserve("beta", signer=O),
        lambda: registry.expire("acme", signer=O),
        lambda: registry.approve("acme", signer=O),
        lambda: registry.reject("acme", "no", signer=O),
    ]
    for attempt in refused:
        with pytest.raises(Forbidden, match="only the registry's administrator"):
            attempt()
    assert registry.policy.governance() == Policy().governance()
    assert registry.get_tld("acme").status == "active"


def test_manual_approval_keeps_new_tlds_pending_until_approved(registry: Registry) -> None:
    registry.set_policy({"approval": "manual"}, signer=A)
    assert registry.register("acme", O, "demo").status == "pending"
    with pytest.raises(Forbidden, match="pending"):
        registry.patch("acme", _record(), signer=O)
    assert registry.approve("acme", signer=A).status == "active"
    with pytest.raises(Conflict, match="not pending"):
        registry.approve("acme", signer=A)
    assert registry.patch("acme", _record(), signer=O) == 2


def test_a_rejected_tld_stays_rejected_until_its_owner_deletes_it(registry: Registry) -> None:
    registry.set_policy({"approval": "manual"}, signer=A)
    registry.register("acme", O, "demo")
    info = registry.reject("acme", "trademark dispute", signer=A)
    assert (info.status, info.note) == ("rejected", "trademark dispute")
    with pytest.raises(Forbidden):
        registry.renew("acme", signer=O)
    with pytest.raises(Conflict, match="already registered"):
        registry.register("acme", OTHER.node_id, "demo")
    registry.delete("acme", signer=O)
    assert registry.register("acme", OTHER.node_id, "demo").status == "pending"


def test_reserved_names(registry: Registry) -> None:
    registry.reserve("beta", signer=A)
    with pytest.raises(PolicyError, match="reserved by this registry"):
        registry.register("beta", O, "demo")
    registry.register("acme", O, "demo")
    with pytest.raises(Conflict, match="registered to"):
        registry.reserve("acme", signer=A)
    with pytest.raises(PolicyError, match="not a valid TLD"):
        registry.reserve("Not Valid", signer=A)
    registry.unreserve("beta", signer=A)
    with pytest.raises(NotFound):
        registry.unreserve("beta", signer=A)
    assert registry.register("beta", O, "demo").status == "active"


def test_bad_policy_changes_are_refused_and_change_nothing(registry: Registry) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"approval": "sometimes"}, "approval must be"),
        ({"termDays": 0}, "termDays"),
        ({"termDays": True}, "termDays"),
        ({"maxTldsPerOwner": -1}, "maxTldsPerOwner"),
        ({"maxTldsPerOwner": "10"}, "maxTldsPerOwner"),
        ({"reserved": ["x"]}, "unknown policy field"),
    ]
    for bad, message in cases:
        with pytest.raises(RegistryError, match=message):
            registry.set_policy(bad, signer=A)
    assert registry.policy.governance() == Policy().governance()


def test_terms_run_out_and_renewal_brings_a_tld_back(where: str) -> None:
    now = [NOW]
    registry = Registry.open(where, admin=A, clock=lambda: now[0])
    registry.set_policy({"termDays": 10}, signer=A)
    start = datetime.fromtimestamp(NOW, UTC)
    assert registry.register("acme", O, "demo").expires_at == start + timedelta(days=10)
    registry.register("beta", O, "demo")
    registry.renew("beta", signer=O)  # 20 days

    now[0] = NOW + 11 * 86400
    assert registry.expire_due() == ["acme"]
    assert registry.expire_due() == []
    expired = registry.get_tld("acme")
    assert (expired.status, expired.note) == ("expired", "the registration term ran out; renew it")
    with pytest.raises(Forbidden, match="expired"):
        registry.patch("acme", _record(), signer=O)
    with pytest.raises(Forbidden, match="belongs to"):
        registry.renew("acme", signer=OTHER.node_id)

    renewed = registry.renew("acme", signer=O)
    assert renewed.status == "active" and renewed.note == ""
    assert renewed.expires_at == datetime.fromtimestamp(now[0], UTC) + timedelta(days=10)

    ended = registry.expire("beta", "abuse report 17", signer=A)
    assert (ended.status, ended.note) == ("expired", "abuse report 17")
    assert ended.expires_at == datetime.fromtimestamp(now[0], UTC)
    registry.close()


def test_transfers_need_an_active_tld_and_a_real_new_owner(registry: Registry) -> None:
    registry.register("acme", O, "demo")
    with pytest.raises(RegistryError, match="not a node ID"):
        registry.transfer("acme", "nobody", signer=O, cosigner="nobody")
    registry.expire("acme", signer=A)
    new = OTHER.node_id
    with pytest.raises(Forbidden, match="only an active TLD"):
        registry.transfer("acme", new, signer=O, cosigner=new)
    registry.renew("acme", signer=O)
    assert registry.transfer("acme", new, signer=O, cosigner=new).owner == new


def test_an_older_schema_is_upgraded_keeping_the_data(where: str) -> None:
    registry = Registry.open(where, admin=A, clock=lambda: NOW)
    registry.register("acme", O, "demo")
    registry.patch("acme", _record(), signer=O)
    url = str(registry.engine.url.render_as_string(hide_password=False))
    registry.close()

    engine = create_engine(url)  # make it a version-1 database, as the first release wrote it
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE registry_tlds DROP COLUMN note"))
        conn.execute(text("UPDATE registry_meta SET value = '1' WHERE key = 'schema_version'"))
    assert "note" not in {c["name"] for c in inspect(engine).get_columns("registry_tlds")}
    engine.dispose()

    upgraded = Registry.open(where, clock=lambda: NOW)
    info = upgraded.get_tld("acme")
    assert (info.owner, info.serial, info.note) == (O, 2, "")
    assert [(r.name, r.values) for r in upgraded.rrsets("acme")] == [("www", ("192.0.2.1",))]
    with upgraded.engine.connect() as conn:
        version = conn.execute(
            text("SELECT value FROM registry_meta WHERE key = 'schema_version'")
        ).scalar_one()
    assert version == str(SCHEMA_VERSION)
    assert upgraded.expire("acme", "upgraded fine", signer=A).note == "upgraded fine"
    upgraded.close()


def test_revocations_refuse_bad_input_and_persist(where: str) -> None:
    registry = Registry.open(where, admin=A, clock=lambda: NOW)
    try:
        with pytest.raises(RegistryError, match="not a node ID"):
            registry.revoke("hm1nope", signer=A)
        with pytest.raises(RegistryError, match="not another node ID"):
            registry.revoke(O, signer=O, replaced_by=O)
        with pytest.raises(RegistryError, match="not another node ID"):
            registry.revoke(O, signer=O, replaced_by="someone")
        with pytest.raises(RegistryError, match="at most 256"):
            registry.revoke(O, signer=O, reason="x" * 257)
        with pytest.raises(Forbidden, match="administrator"):
            registry.revoke(O, signer=OTHER.node_id)  # neither the admin nor the key itself
        assert registry.revocations() == {}  # nothing of the refused requests was stored
        first = registry.revoke(O, signer=O, reason="lost", replaced_by=OTHER.node_id)
        again = registry.revoke(O, signer=A, reason="other words")
        assert again == first and registry.is_revoked(O)  # revoking again changes nothing
    finally:
        registry.close()
    reopened = Registry.open(where, admin=A, clock=lambda: NOW)
    try:
        assert reopened.is_revoked(O) and not reopened.is_revoked(A)
        assert reopened.revocations()[O].replaced_by == OTHER.node_id
    finally:
        reopened.close()
