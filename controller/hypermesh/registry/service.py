"""The registry as a service over its database: register TLDs, change their records in atomic
batches, and keep each zone signed with a journal of its changes.

SQLModel over SQLite (a file, created 0600) or PostgreSQL (a URL). Every operation is one
transaction: a batch whose any change is invalid changes nothing (no record, serial or journal
entry). Callers check signatures first (``signing.verify_request``) and pass the verified signer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.zone
from sqlalchemy import delete, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, create_engine, select

from hypermesh.registry.errors import Conflict, Forbidden, NotFound, PolicyError, RegistryError
from hypermesh.registry.names import check_label, check_tld
from hypermesh.registry.tables import (
    MIGRATIONS,
    SCHEMA_VERSION,
    JournalRow,
    NonceRow,
    RegistryBase,
    RegistryMetaRow,
    RevocationRow,
    RRsetRow,
    SignedZoneRow,
    TldRow,
)
from hypermesh.registry.zones import (
    RESIGN_AFTER,
    JournalEntry,
    NodeDigests,
    RecordSet,
    ZoneKeys,
    ZoneSpec,
    build_zone,
    diff_zones,
    ds_records,
    update_zone,
)
from hypermesh.transport.identity import is_node_id

log = logging.getLogger("hypermesh.registry")


@dataclass(frozen=True, slots=True)
class Policy:
    """The registry's governance, set by its administrator."""

    reserved: frozenset[str] = frozenset()
    approval: Literal["automatic", "manual"] = "automatic"
    """manual: new TLDs wait as ``pending`` until an administrator approves them."""
    term_days: int = 365
    """How long a registration lasts before it must be renewed."""
    nameservers: tuple[str, ...] = ("ns1",)
    glue: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def governance(self) -> dict[str, Any]:
        """The part an administrator sets, as stored and as the API shows it."""
        return {
            "approval": self.approval,
            "termDays": self.term_days,
            "reserved": sorted(self.reserved),
        }

    def governed(self, data: dict[str, Any]) -> Policy:
        """This policy with the governance in ``data`` (keys as ``governance()`` writes them)."""
        approval = data.get("approval", self.approval)
        if approval not in ("automatic", "manual"):
            raise RegistryError(f"approval must be automatic or manual, not {approval!r}")
        term = data.get("termDays", self.term_days)
        if not isinstance(term, int) or isinstance(term, bool) or not 1 <= term <= 36500:
            raise RegistryError(f"termDays must be whole days from 1 to 36500, not {term!r}")
        reserved = data.get("reserved", sorted(self.reserved))
        if not isinstance(reserved, list) or not all(isinstance(n, str) for n in reserved):
            raise RegistryError("reserved must be a list of names")
        return replace(self, approval=approval, term_days=term, reserved=frozenset(reserved))


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a batch, as PowerDNS's rrset PATCH: REPLACE a name+type, or DELETE it."""

    name: str
    type: str
    changetype: Literal["REPLACE", "DELETE"]
    ttl: int | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TldInfo:
    name: str
    network: str
    owner: str
    status: str
    serial: int
    expires_at: datetime
    dnssec: bool
    ds: tuple[str, ...]
    note: str = ""
    """Why the TLD is rejected or expired."""


STATUSES = ("active", "pending", "rejected", "expired")


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked node key."""

    node_id: str
    revoked_at: float
    reason: str
    signer: str
    replaced_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "revokedAt": self.revoked_at,
            "reason": self.reason,
            "signer": self.signer,
            "replacedBy": self.replaced_by,
        }


def _revocation(row: RevocationRow) -> Revocation:
    return Revocation(row.node_id, row.revoked_at, row.reason, row.signer, row.replaced_by)


class Registry:
    """Open with ``Registry.open(path_or_url, admin=NODE_ID, policy=...)``.

    The administrator is a key (a node ID) recorded in the database when it is created: only
    requests it signs may approve, reject, reserve, expire or change the policy. The policy
    (approval mode, term, reserved names) lives in the database too, so it survives restarts.
    """

    def __init__(self, engine: Engine, policy: Policy, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.admin: str | None = None
        self._revoked: dict[str, Revocation] = {}
        self._zones: dict[str, _Signed] = {}
        """Signed zones by TLD, with the serial they are at and when they were last signed in
        full (changes since then are signed incrementally, sharing the older signatures)."""

    @classmethod
    def open(
        cls,
        where: str | Path,
        *,
        policy: Policy | None = None,
        admin: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Registry:
        """Open (creating when new) the registry at a file path or database URL.

        ``policy`` is the starting policy of a new registry; once stored, the stored governance
        wins. ``admin`` is recorded when the database has no administrator yet; a different
        admin given later is refused (hand it over with ``set_admin``).
        """
        url = str(where)
        if "://" not in url:
            path = Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            url = f"sqlite:///{path}"
        try:
            engine = create_engine(url)
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
            RegistryBase.metadata.create_all(engine)
            registry = cls(engine, policy or Policy(), clock)
            registry._check_schema()
            registry._load_governance(admin)
            registry._load_revocations()
        except SQLAlchemyError as exc:
            raise RegistryError(f"cannot open the registry database {url}: {exc}") from exc
        return registry

    def close(self) -> None:
        """Save the signed zones as served (``SignedZoneRow``), then close the database."""
        try:
            self.save_signed()
        except RegistryError as exc:
            log.warning("signed zones not saved", extra={"error": str(exc)})
        self.engine.dispose()

    def save_signed(self) -> int:
        """Keep each cached signed zone that is still current, so a restart serves the same
        bytes at the same serial; returns how many were saved."""
        saved = 0
        with self._transaction() as session:
            for tld, signed in self._zones.items():
                row = session.get(TldRow, tld)
                if row is None or row.serial != signed.serial:
                    continue
                session.merge(
                    SignedZoneRow(
                        tld=tld,
                        serial=signed.serial,
                        signed_at=signed.signed_at,
                        text=signed.zone.to_text(),
                    )
                )
                saved += 1
        return saved

    def _check_schema(self) -> None:
        """Record the version of a new database; upgrade an older one in one transaction."""
        with Session(self.engine) as session:
            meta = session.get(RegistryMetaRow, "schema_version")
            if meta is None:
                session.add(RegistryMetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
                session.commit()
                return
            version = int(meta.value)
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"the registry database has schema version {meta.value}, newer than this "
                    f"code ({SCHEMA_VERSION}); upgrade HyperMesh"
                )
            if version == SCHEMA_VERSION:
                return
        with self.engine.begin() as connection:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(step, ()):
                    connection.execute(text(statement))
            connection.execute(
                text("UPDATE registry_meta SET value = :v WHERE key = 'schema_version'"),
                {"v": str(SCHEMA_VERSION)},
            )

    def _load_governance(self, admin: str | None) -> None:
        with self._transaction() as session:
            stored_admin = session.get(RegistryMetaRow, "admin")
            if stored_admin is None and admin is not None:
                if not is_node_id(admin):
                    raise RegistryError(f"the administrator {admin!r} is not a node ID")
                session.add(RegistryMetaRow(key="admin", value=admin))
                self.admin = admin
            elif stored_admin is not None:
                if admin is not None and admin != stored_admin.value:
                    raise RegistryError(
                        f"this registry's administrator is {stored_admin.value}, not {admin}"
                    )
                self.admin = stored_admin.value
            stored = session.get(RegistryMetaRow, "policy")
            if stored is None:
                session.add(
                    RegistryMetaRow(key="policy", value=json.dumps(self.policy.governance()))
                )
            else:
                self.policy = self.policy.governed(json.loads(stored.value))

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with Session(self.engine) as session:
                yield session
                session.commit()
        except IntegrityError as exc:
            raise Conflict(f"conflicting write: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise RegistryError(f"registry database: {exc}") from exc

    # -- TLDs -------------------------------------------------------------------------------

    def register(
        self, tld: str, owner: str, network: str, *, dnssec: bool = True, default_ttl: int = 3600
    ) -> TldInfo:
        """Register ``tld`` for ``owner`` (a verified signer). Policy is checked first."""
        check_tld(tld, self.policy.reserved)
        if not is_node_id(owner):
            raise RegistryError(f"owner {owner!r} is not a node ID")
        keys = ZoneKeys.generate()
        ksk, zsk = keys.to_pem()
        now = datetime.fromtimestamp(self.clock(), UTC)
        status = "active" if self.policy.approval == "automatic" else "pending"
        with self._transaction() as session:
            if session.get(TldRow, tld) is not None:
                raise Conflict(f"{tld!r} is already registered")
            row = TldRow(
                name=tld,
                network=network,
                owner=owner,
                status=status,
                created_at=now,
                expires_at=now + timedelta(days=self.policy.term_days),
                dnssec=dnssec,
                default_ttl=default_ttl,
                serial=1,
                ksk_pem=ksk.decode(),
                zsk_pem=zsk.decode(),
            )
            session.add(row)
            zone = self._build(row, [])  # the empty zone must build before it is stored
            info = self._info(row)
        self._zones[tld] = _Signed(1, zone, self.clock())
        return info

    def get_tld(self, tld: str) -> TldInfo:
        with self._transaction() as session:
            return self._info(self._tld(session, tld))

    def list_tlds(self) -> list[TldInfo]:
        with self._transaction() as session:
            rows = session.exec(select(TldRow).order_by(TldRow.name)).all()
            return [self._info(r) for r in rows]

    def renew(self, tld: str, *, signer: str) -> TldInfo:
        """Extend the registration by one term from its expiry (or from now, once expired);
        an expired TLD becomes active again and its zone is served once more."""
        with self._transaction() as session:
            row = self._owned(session, tld, signer)
            if row.status not in ("active", "expired"):
                raise Forbidden(f"{tld!r} is {row.status}; only an active or expired TLD renews")
            base = max(_aware(row.expires_at), datetime.fromtimestamp(self.clock(), UTC))
            row.expires_at = base + timedelta(days=self.policy.term_days)
            row.status, row.note = "active", ""
            session.add(row)
            return self._info(row)

    def transfer(self, tld: str, new_owner: str, *, signer: str, cosigner: str | None) -> TldInfo:
        """Hand ``tld`` to ``new_owner``: signed by the owner and cosigned by the new owner."""
        if not is_node_id(new_owner):
            raise RegistryError(f"the new owner {new_owner!r} is not a node ID")
        if cosigner != new_owner:
            raise Forbidden(f"a transfer of {tld!r} must be cosigned by the new owner")
        with self._transaction() as session:
            row = self._owned(session, tld, signer)
            if row.status != "active":
                raise Forbidden(f"{tld!r} is {row.status}; only an active TLD can be transferred")
            row.owner = new_owner
            session.add(row)
            return self._info(row)

    def delete(self, tld: str, *, signer: str) -> None:
        with self._transaction() as session:
            row = self._owned(session, tld, signer)
            for table in (RRsetRow, JournalRow):
                session.exec(delete(table).where(col(table.tld) == tld))
            session.delete(row)
        self._zones.pop(tld, None)

    # -- administration (signed by the administrator's key) ---------------------------------

    def approve(self, tld: str, *, signer: str) -> TldInfo:
        """Activate a pending TLD (manual approval mode)."""
        self._check_admin(signer)
        with self._transaction() as session:
            row = self._tld(session, tld)
            if row.status != "pending":
                raise Conflict(f"{tld!r} is {row.status}, not pending")
            row.status, row.note = "active", ""
            session.add(row)
            return self._info(row)

    def reject(self, tld: str, reason: str, *, signer: str) -> TldInfo:
        """Refuse a pending TLD. It stays, marked rejected with the reason, until its owner
        deletes it, so the owner learns why and nobody else takes the name meanwhile."""
        self._check_admin(signer)
        with self._transaction() as session:
            row = self._tld(session, tld)
            if row.status != "pending":
                raise Conflict(f"{tld!r} is {row.status}, not pending")
            row.status, row.note = "rejected", reason[:500] or "rejected by the administrator"
            session.add(row)
            return self._info(row)

    def expire(self, tld: str, reason: str = "", *, signer: str) -> TldInfo:
        """End a registration now: the zone is no longer served; the owner may renew."""
        self._check_admin(signer)
        with self._transaction() as session:
            row = self._tld(session, tld)
            if row.status != "active":
                raise Conflict(f"{tld!r} is {row.status}, not active")
            row.status = "expired"
            row.note = reason[:500] or "expired by the administrator"
            row.expires_at = datetime.fromtimestamp(self.clock(), UTC)
            session.add(row)
            return self._info(row)

    def expire_due(self) -> list[str]:
        """Mark every active TLD whose term has run out as expired; returns their names."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        with self._transaction() as session:
            rows = session.exec(select(TldRow).where(TldRow.status == "active")).all()
            due = [row for row in rows if _aware(row.expires_at) <= now]
            for row in due:
                row.status, row.note = "expired", "the registration term ran out; renew it"
                session.add(row)
            return [row.name for row in due]

    def reserve(self, name: str, *, signer: str) -> Policy:
        """Add ``name`` to the reserved names (refused while it is registered)."""
        self._check_admin(signer)
        check_label(name)
        with self._transaction() as session:
            row = session.get(TldRow, name)
            if row is not None:
                raise Conflict(f"{name!r} is registered to {row.owner}; expire or delete it first")
        return self._store_policy(replace(self.policy, reserved=self.policy.reserved | {name}))

    def unreserve(self, name: str, *, signer: str) -> Policy:
        self._check_admin(signer)
        if name not in self.policy.reserved:
            raise NotFound(f"{name!r} is not reserved")
        return self._store_policy(replace(self.policy, reserved=self.policy.reserved - {name}))

    def set_policy(self, changes: dict[str, Any], *, signer: str) -> Policy:
        """Change the approval mode or the term (``{"approval"?, "termDays"?}``)."""
        self._check_admin(signer)
        unknown = sorted(set(changes) - {"approval", "termDays"})
        if unknown:
            raise RegistryError(
                f"unknown policy field(s) {', '.join(unknown)}: approval and termDays can be set "
                "(reserved names change with reserve and unreserve)"
            )
        return self._store_policy(self.policy.governed(changes))

    def _check_admin(self, signer: str) -> None:
        if self.admin is None:
            raise Forbidden("this registry has no administrator key")
        if signer != self.admin:
            raise Forbidden(f"only the registry's administrator may do this, not {signer}")

    def _store_policy(self, policy: Policy) -> Policy:
        with self._transaction() as session:
            row = session.get(RegistryMetaRow, "policy") or RegistryMetaRow(key="policy", value="")
            row.value = json.dumps(policy.governance())
            session.add(row)
        self.policy = policy
        return policy

    # -- revoked keys -----------------------------------------------------------------------

    def revoke(
        self, node_id: str, *, signer: str, reason: str = "", replaced_by: str | None = None
    ) -> Revocation:
        """Revoke the node key ``node_id``: by the administrator, or by the key itself (a key
        that was rotated, or that its holder knows is lost). Revoking again changes nothing."""
        if not is_node_id(node_id):
            raise RegistryError(f"{node_id!r} is not a node ID")
        if replaced_by is not None and (not is_node_id(replaced_by) or replaced_by == node_id):
            raise RegistryError(f"replacedBy {replaced_by!r} is not another node ID")
        if signer != node_id:
            self._check_admin(signer)
        if len(reason) > 256:
            raise RegistryError("a revocation's reason has at most 256 characters")
        with self._transaction() as session:
            row = session.get(RevocationRow, node_id)
            if row is None:
                row = RevocationRow(
                    node_id=node_id,
                    revoked_at=self.clock(),
                    reason=reason,
                    signer=signer,
                    replaced_by=replaced_by,
                )
                session.add(row)
            revocation = _revocation(row)
        self._revoked[node_id] = revocation
        return revocation

    def revocations(self) -> dict[str, Revocation]:
        """Every revoked key, by node ID."""
        return dict(self._revoked)

    def is_revoked(self, node_id: str) -> bool:
        return node_id in self._revoked

    def _load_revocations(self) -> None:
        with self._transaction() as session:
            rows = session.exec(select(RevocationRow)).all()
            self._revoked = {row.node_id: _revocation(row) for row in rows}

    # -- records ----------------------------------------------------------------------------

    def rrsets(self, tld: str) -> list[RecordSet]:
        with self._transaction() as session:
            self._tld(session, tld)
            return [_rrset(r) for r in self._rows(session, tld)]

    def patch(self, tld: str, changes: Iterable[Change], *, signer: str) -> int:
        """Apply a batch of changes, all or nothing; returns the new serial.

        The zone is signed incrementally (only what the batch touched; ``update_zone``) when
        the signed zone at the current serial is at hand and its last full signing is recent;
        otherwise in full.
        """
        batch = list(changes)
        if not batch:
            raise RegistryError("an empty batch changes nothing")
        touched = {(c.name, c.type.upper()) for c in batch}
        with self._transaction() as session:
            row = self._owned(session, tld, signer)
            if row.status != "active":
                raise Forbidden(f"{tld!r} is {row.status}; records can change once it is active")
            now = self.clock()
            cached = self._zones.get(tld)
            new_zone = None
            if (
                cached is not None
                and cached.serial == row.serial
                and now - cached.signed_at < RESIGN_AFTER
            ):
                current = self._touched_rows(session, tld, touched)
                after = _applied(batch, current, row.default_ttl)
                old_zone, signed_at, digests = cached.zone, cached.signed_at, cached.digests
                new_zone = update_zone(
                    old_zone,
                    self._spec(row, row.serial + 1),
                    {key: after.get(key) for key in touched},
                    self._keys(row),
                    now=int(now),
                    digests=digests,
                )
            if new_zone is None:  # in full
                current = {(r.name, r.type): r for r in self._rows(session, tld)}
                after = _applied(batch, current, row.default_ttl)
                old_zone = self._current_zone(row, [_rrset(r) for r in current.values()])
                new_zone = self._build(row, list(after.values()), row.serial + 1)
                signed_at, digests = now, NodeDigests()
            # either way, any bad value has raised by now and nothing is stored
            row.serial += 1
            entry = diff_zones(old_zone, new_zone)
            for key in touched:
                existing = current.get(key)
                rrset = after.get(key)
                if rrset is None:
                    if existing is not None:
                        session.delete(existing)
                    continue
                stored = existing or RRsetRow(tld=tld, name=key[0], type=key[1], ttl=0, values="")
                stored.ttl, stored.values = rrset.ttl, json.dumps(list(rrset.values))
                session.add(stored)
            session.add(_journal_row(tld, entry))
            session.add(row)
            serial = row.serial
        self._zones[tld] = _Signed(serial, new_zone, signed_at, digests)
        return serial

    def resign_due(self) -> list[str]:
        """Sign again, in full and under a new serial, every served zone whose last full
        signing is ``RESIGN_AFTER`` old, so its signatures never near their expiry (changes
        in between are signed incrementally and share the older signatures). Returns the TLDs
        re-signed; their new zones come from ``zone()``."""
        now = self.clock()
        due = [t for t, s in self._zones.items() if now - s.signed_at >= RESIGN_AFTER]
        done = []
        for tld in due:
            with self._transaction() as session:
                row = session.get(TldRow, tld)
                if row is None or row.status != "active" or not row.dnssec:
                    self._zones.pop(tld, None)
                    continue
                rrsets = [_rrset(r) for r in self._rows(session, tld)]
                old_zone = self._current_zone(row, rrsets)
                row.serial += 1
                new_zone = self._build(row, rrsets)
                session.add(_journal_row(tld, diff_zones(old_zone, new_zone)))
                session.add(row)
                serial = row.serial
            self._zones[tld] = _Signed(serial, new_zone, now)
            done.append(tld)
        return done

    def zone(self, tld: str) -> dns.zone.Zone:
        """The signed zone at its current serial (rebuilt only when the serial moved)."""
        with self._transaction() as session:
            row = self._tld(session, tld)
            return self._current_zone(row, None, session)

    def journal_since(self, tld: str, serial: int) -> list[JournalEntry] | None:
        """The increments from ``serial`` to now, or None when the journal does not reach back."""
        with self._transaction() as session:
            row = self._tld(session, tld)
            rows = session.exec(
                select(JournalRow)
                .where(JournalRow.tld == tld, JournalRow.from_serial >= serial)
                .order_by(col(JournalRow.from_serial))
            ).all()
            if serial == row.serial:
                return []
            if not rows or rows[0].from_serial != serial:
                return None
            return [
                JournalEntry(
                    f"{tld}.",
                    r.from_serial,
                    r.to_serial,
                    tuple(json.loads(r.removed)),
                    tuple(json.loads(r.added)),
                )
                for r in rows
            ]

    # -- helpers ----------------------------------------------------------------------------

    def _tld(self, session: Session, tld: str) -> TldRow:
        row = session.get(TldRow, tld)
        if row is None:
            raise NotFound(f"{tld!r} is not registered here")
        return row

    def _owned(self, session: Session, tld: str, signer: str) -> TldRow:
        row = self._tld(session, tld)
        if row.owner != signer:
            raise Forbidden(f"{tld!r} belongs to {row.owner}, not to the signer {signer}")
        return row

    @staticmethod
    def _touched_rows(
        session: Session, tld: str, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], RRsetRow]:
        names = {name for name, _ in keys}
        rows = session.exec(
            select(RRsetRow).where(RRsetRow.tld == tld, col(RRsetRow.name).in_(names))
        ).all()
        return {(r.name, r.type): r for r in rows if (r.name, r.type) in keys}

    @staticmethod
    def _rows(session: Session, tld: str) -> list[RRsetRow]:
        return list(
            session.exec(
                select(RRsetRow).where(RRsetRow.tld == tld).order_by(RRsetRow.name, RRsetRow.type)
            ).all()
        )

    def _current_zone(
        self, row: TldRow, rrsets: list[RecordSet] | None, session: Session | None = None
    ) -> dns.zone.Zone:
        """The zone at ``row.serial``: the cached one, or built (and cached) from ``rrsets``
        (read through ``session`` when None)."""
        cached = self._zones.get(row.name)
        if cached is not None and cached.serial == row.serial:
            return cached.zone
        saved = self._saved_zone(row, session)
        if saved is not None:
            self._zones[row.name] = saved
            return saved.zone
        if rrsets is None:
            assert session is not None
            rrsets = [_rrset(r) for r in self._rows(session, row.name)]
        zone = self._build(row, rrsets)
        self._zones[row.name] = _Signed(row.serial, zone, self.clock())
        return zone

    def _saved_zone(self, row: TldRow, session: Session | None) -> _Signed | None:
        """The zone saved at the last close, if it is still at ``row.serial`` and its
        signatures are not due to be renewed."""
        if session is None:
            with self._transaction() as own:
                return self._saved_zone(row, own)
        saved = session.get(SignedZoneRow, row.name)
        if (
            saved is None
            or saved.serial != row.serial
            or self.clock() - saved.signed_at >= RESIGN_AFTER
        ):
            return None
        try:
            zone = dns.zone.from_text(
                saved.text, origin=f"{row.name}.", relativize=True, check_origin=True
            )
        except dns.exception.DNSException as exc:
            log.warning("saved zone unreadable", extra={"tld": row.name, "error": str(exc)})
            return None
        return _Signed(row.serial, zone, saved.signed_at)

    def _spec(self, row: TldRow, serial: int | None = None) -> ZoneSpec:
        return ZoneSpec(
            row.name,
            row.serial if serial is None else serial,
            self.policy.nameservers,
            self.policy.glue,
            default_ttl=row.default_ttl,
            dnssec=row.dnssec,
        )

    @staticmethod
    def _keys(row: TldRow) -> ZoneKeys:
        return ZoneKeys.from_pem(row.ksk_pem.encode(), row.zsk_pem.encode())

    def _build(
        self, row: TldRow, rrsets: list[RecordSet], serial: int | None = None
    ) -> dns.zone.Zone:
        spec = self._spec(row, serial)
        return build_zone(spec, rrsets, self._keys(row), now=int(self.clock()))

    def _info(self, row: TldRow) -> TldInfo:
        keys = ZoneKeys.from_pem(row.ksk_pem.encode(), row.zsk_pem.encode())
        return TldInfo(
            row.name,
            row.network,
            row.owner,
            row.status,
            row.serial,
            _aware(row.expires_at),
            row.dnssec,
            tuple(ds_records(keys, f"{row.name}.")) if row.dnssec else (),
            row.note,
        )


def _journal_row(tld: str, entry: JournalEntry) -> JournalRow:
    return JournalRow(
        tld=tld,
        from_serial=entry.from_serial,
        to_serial=entry.to_serial,
        removed=json.dumps(entry.removed),
        added=json.dumps(entry.added),
    )


def _applied(
    batch: list[Change], current: dict[tuple[str, str], RRsetRow], default_ttl: int
) -> dict[tuple[str, str], RecordSet]:
    """The record sets of ``current`` with ``batch`` applied in order."""
    after = {key: _rrset(r) for key, r in current.items()}
    for change in batch:
        key = (change.name, change.type.upper())
        if change.changetype == "DELETE":
            after.pop(key, None)
        elif change.changetype == "REPLACE":
            ttl = change.ttl if change.ttl is not None else default_ttl
            after[key] = RecordSet(change.name, key[1], ttl, tuple(change.values))
        else:
            raise RegistryError(f"unknown changetype {change.changetype!r}")
    return after


@dataclass(frozen=True, slots=True)
class _Signed:
    serial: int
    zone: dns.zone.Zone
    signed_at: float
    digests: NodeDigests = field(default_factory=NodeDigests)


class DatabaseNonceCache:
    """Nonces kept in the registry's database, so a replay is caught across restarts."""

    def __init__(self, registry: Registry, max_skew: float = 300) -> None:
        self.registry = registry
        self.ttl = 2 * max_skew

    def add(self, signer: str, nonce: str, now: float) -> bool:
        try:
            with self.registry._transaction() as session:
                session.exec(delete(NonceRow).where(col(NonceRow.seen_at) < now - self.ttl))
                session.add(NonceRow(signer=signer, nonce=nonce, seen_at=now))
        except Conflict:
            return False
        return True


def _rrset(row: RRsetRow) -> RecordSet:
    return RecordSet(row.name, row.type, row.ttl, tuple(json.loads(row.values)))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


__all__ = [
    "Change",
    "Conflict",
    "DatabaseNonceCache",
    "Forbidden",
    "NotFound",
    "Policy",
    "PolicyError",
    "Registry",
    "TldInfo",
]
