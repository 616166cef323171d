"""The registry as a service over its database: register TLDs, change their records in atomic
batches, and keep each zone signed with a journal of its changes.

SQLModel over SQLite (a file, created 0600) or PostgreSQL (a URL). Every operation is one
transaction: a batch whose any change is invalid changes nothing (no record, serial or journal
entry). Callers check signatures first (``signing.verify_request``) and pass the verified signer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.name
import dns.zone
from sqlalchemy import delete, event, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, create_engine, select

from hypermesh.registry.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PolicyError,
    QuotaExceeded,
    RegistryError,
    ZoneUnservable,
)
from hypermesh.registry.names import check_label, check_tld, look_alike
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
from hypermesh.registry.worker import Worker
from hypermesh.registry.zones import (
    RESIGN_AFTER,
    JournalEntry,
    NodeDigests,
    Parsed,
    RecordSet,
    ZoneKeys,
    ZoneSpec,
    apply_rdatasets,
    build_zone,
    diff_zones,
    ds_records,
    update_zone,
)
from hypermesh.transport.identity import is_node_id
from hypermesh.zonedata import (
    APEX,
    MAX_TTL,
    ZoneDataError,
    owner_name,
    record_type,
    tld_label,
    unicode_label,
)

log = logging.getLogger("hypermesh.registry")

JOURNAL_KEEP = 1000
"""Serials of each zone's journal kept by default for mirrors' increments: a mirror further
behind takes the whole zone (``journal_since`` answers None past the horizon)."""
PRUNE_EVERY = 16
"""The journal is pruned in the transaction of every ``PRUNE_EVERY``-th serial of a zone, so
a zone holds from ``journal_keep`` to ``journal_keep + PRUNE_EVERY - 1`` entries."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The registry's governance, set by its administrator."""

    reserved: frozenset[str] = frozenset()
    approval: Literal["automatic", "manual"] = "automatic"
    """manual: new TLDs wait as ``pending`` until an administrator approves them."""
    term_days: int = 365
    """How long a registration lasts before it must be renewed."""
    max_tlds_per_owner: int = 10
    """How many TLDs one owner key may hold (in any status); 0 refuses every registration."""
    nameservers: tuple[str, ...] = ("ns1",)
    glue: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def governance(self) -> dict[str, Any]:
        """The part an administrator sets, as stored and as the API shows it."""
        return {
            "approval": self.approval,
            "termDays": self.term_days,
            "maxTldsPerOwner": self.max_tlds_per_owner,
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
        most = data.get("maxTldsPerOwner", self.max_tlds_per_owner)
        if not isinstance(most, int) or isinstance(most, bool) or not 0 <= most <= 1_000_000:
            raise RegistryError(f"maxTldsPerOwner must be 0 to 1000000, not {most!r}")
        reserved = data.get("reserved", sorted(self.reserved))
        if not isinstance(reserved, list) or not all(isinstance(n, str) for n in reserved):
            raise RegistryError("reserved must be a list of names")
        return replace(
            self,
            approval=approval,
            term_days=term,
            max_tlds_per_owner=most,
            reserved=frozenset(reserved),
        )


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
    problem: str = ""
    """Why its zone is not served though it is active (stored data that does not build)."""


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

    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        clock: Callable[[], float],
        *,
        journal_keep: int = JOURNAL_KEEP,
        worker: Worker | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.journal_keep = journal_keep
        """Serials of each zone's journal kept (the horizon of mirrors' increments)."""
        self.worker = worker or Worker()
        """The one thread the node runs the registry's calls on (``await registry.worker.
        run(registry.patch, …)``), off its event loop."""
        self._lock = threading.RLock()
        """Held through every transaction (and the zone signing done in it): a call made on
        another thread than the writer waits for the writer's transaction to end rather than
        change the same signed zone at the same time. Calls belong on the writer all the
        same; this only keeps a stray one correct."""
        self.admin: str | None = None
        self._revoked: dict[str, Revocation] = {}
        self._zones: dict[str, _Signed] = {}
        """Signed zones by TLD, with the serial they are at and when they were last signed in
        full (changes since then are signed incrementally, sharing the older signatures)."""
        self._unservable: dict[str, str] = {}
        """TLDs whose stored data does not build into a zone, with why: not served, reported
        by ``health``, their rows kept as they are."""
        self._internal: dict[str, Callable[[Session], Parsed]] = {}
        """The registry's own zones (the node directory, ``_nodes``), by name, with what reads
        their record sets: built, signed, journalled and served like a TLD's, but outside the
        TLD rules (their name need not be a TLD) and left out of ``list_tlds``."""
        self._undigested: set[str] = set()
        """Internal zones built without ZONEMD (nobody copies them whole)."""
        self._unjournalled: set[str] = set()
        """Internal zones without a journal (no mirror applies their increments)."""

    @classmethod
    def open(
        cls,
        where: str | Path,
        *,
        policy: Policy | None = None,
        admin: str | None = None,
        clock: Callable[[], float] = time.time,
        journal_keep: int = JOURNAL_KEEP,
        worker: Worker | None = None,
    ) -> Registry:
        """Open (creating when new) the registry at a file path or database URL.

        ``policy`` is the starting policy of a new registry; once stored, the stored governance
        wins. ``admin`` is recorded when the database has no administrator yet; a different
        admin given later is refused (hand it over with ``set_admin``). ``journal_keep``: the
        serials of each zone's journal kept for mirrors (at least 1). ``worker``: the thread
        its calls run on (``Worker(inline=True)``: the caller's).
        """
        if isinstance(journal_keep, bool) or not isinstance(journal_keep, int) or journal_keep < 1:
            raise RegistryError(
                f"journal_keep must be a whole number of serials ≥ 1, not {journal_keep!r}"
            )
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
            registry = cls(
                engine, policy or Policy(), clock, journal_keep=journal_keep, worker=worker
            )
            registry._check_schema()
            registry._load_governance(admin)
            registry._load_revocations()
        except SQLAlchemyError as exc:
            raise RegistryError(f"cannot open the registry database {url}: {exc}") from exc
        return registry

    def close(self) -> None:
        """Finish the calls under way, save the signed zones as served (``SignedZoneRow``),
        then close the database."""
        self.worker.close()
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
                try:
                    text = signed.zone.to_text()
                except Exception as exc:  # one zone that cannot be written keeps no other back
                    log.error("signed zone not saved", extra={"tld": tld, "error": repr(exc)})
                    continue
                session.merge(
                    SignedZoneRow(
                        tld=tld, serial=signed.serial, signed_at=signed.signed_at, text=text
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

    def transaction(self) -> contextlib.AbstractContextManager[Session]:
        """One transaction over the registry's database, for the registry's own modules
        (``tokens``, ``directory``): committed when the block ends, rolled back when it raises
        (database errors become ``RegistryError``, a conflicting write ``Conflict``)."""
        return self._transaction()

    def check_admin(self, signer: str) -> None:
        """``Forbidden`` unless ``signer`` is the registry's administrator."""
        self._check_admin(signer)

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with self._lock, Session(self.engine) as session:
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
        """Register ``tld`` (canonical: lowercase, an IDN as its A-label) for ``owner`` (a
        verified signer). Policy is checked first: the name (``check_tld``, and not a look-alike
        of a TLD registered here), then the owner's quota."""
        tld = check_tld(tld, self.policy.reserved)
        if not is_node_id(owner):
            raise RegistryError(f"owner {owner!r} is not a node ID")
        if not isinstance(network, str) or not _NETWORK.fullmatch(network):
            raise RegistryError(f"network {network!r} is not a network's name (a DNS-1123 name)")
        if isinstance(default_ttl, bool) or not 1 <= default_ttl <= MAX_TTL:
            raise RegistryError(f"ttl {default_ttl!r} is not whole seconds 1 to {MAX_TTL}")
        keys = ZoneKeys.generate()
        ksk, zsk = keys.to_pem()
        now = datetime.fromtimestamp(self.clock(), UTC)
        status = "active" if self.policy.approval == "automatic" else "pending"
        with self._transaction() as session:
            if session.get(TldRow, tld) is not None:
                raise Conflict(f"{tld!r} is already registered")
            names = session.exec(select(TldRow.name)).all()
            twin = look_alike(tld, names)
            if twin is not None:
                raise PolicyError(
                    f"{tld!r} ({unicode_label(tld)}) looks like {twin!r} ({unicode_label(twin)}), "
                    "registered here (their Unicode TS #39 skeletons are equal)"
                )
            self._check_quota(session, owner)
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

    def list_tlds(self, *, internal: bool = False) -> list[TldInfo]:
        """Every TLD by name; with ``internal``, the registry's own zones too."""
        with self._transaction() as session:
            rows = session.exec(select(TldRow).order_by(TldRow.name)).all()
            return [self._info(r) for r in rows if internal or r.name not in self._internal]

    # -- the registry's own zones -------------------------------------------------------------

    def add_internal_zone(
        self,
        name: str,
        network: str,
        records: Callable[[Session], Parsed],
        *,
        copied: bool = True,
    ) -> None:
        """Serve the registry's own zone ``name`` (``_nodes``), whose record sets ``records``
        reads; made (empty, with its own keys) when the database has none. Nobody owns it:
        it changes only through ``change_internal``. ``copied``: mirrors copy the zone whole
        and follow its increments, so it carries a ZONEMD and a journal; a zone only looked up
        name by name (``copied=False``) has neither, and a change costs what it changes."""
        self._internal[name] = records
        for kept in (self._undigested, self._unjournalled):
            (kept.discard if copied else kept.add)(name)
        with self._transaction() as session:
            if session.get(TldRow, name) is None:
                ksk, zsk = ZoneKeys.generate().to_pem()
                now = datetime.fromtimestamp(self.clock(), UTC)
                session.add(
                    TldRow(
                        name=name,
                        network=network,
                        owner="",
                        expires_at=now + timedelta(days=365 * 100),
                        default_ttl=60,
                        ksk_pem=ksk.decode(),
                        zsk_pem=zsk.decode(),
                    )
                )

    def change_internal(self, session: Session, name: str, changes: Parsed) -> Callable[[], None]:
        """In ``session``, before the caller flushes its own row changes: sign ``changes`` into
        the internal zone ``name`` under the next serial, journalled. Returns what to call once
        the transaction committed (it serves the new zone from the cache)."""
        row = session.get(TldRow, name, with_for_update=True)
        if row is None or name not in self._internal:
            raise NotFound(f"{name!r} is not one of the registry's own zones")
        with session.no_autoflush:
            old = self._current_zone(row, None, session)
        cached = self._zones.get(name)
        digests = cached.digests if cached is not None and cached.zone is old else NodeDigests()
        signed_at = cached.signed_at if cached is not None else self.clock()
        changed: set[dns.name.Name] = set()
        new = apply_rdatasets(
            old,
            self._spec(row, row.serial + 1),
            changes,
            self._keys(row),
            now=int(self.clock()),
            digests=digests,
            changed=changed,
        )
        if name not in self._unjournalled:
            session.add(_journal_row(name, diff_zones(old, new, changed)))
        row.serial += 1
        session.add(row)
        serial = row.serial
        self._prune(session, name, serial)

        def install() -> None:
            self._zones[name] = _Signed(serial, new, signed_at, digests)

        return install

    def rebuild_internal(self, name: str) -> int:
        """Sign the internal zone ``name`` again in full from its rows, under the next serial
        (after a bulk load; no journal entry, so mirrors take the whole zone); the serial."""
        with self._transaction() as session:
            row = session.get(TldRow, name, with_for_update=True)
            if row is None or name not in self._internal:
                raise NotFound(f"{name!r} is not one of the registry's own zones")
            row.serial += 1
            zone = self._build(row, [], session=session)
            session.add(row)
            serial = row.serial
        self._zones[name] = _Signed(serial, zone, self.clock())
        return serial

    def prune_journal(self, name: str, keep: int) -> int:
        """Drop the journal entries of ``name`` older than its last ``keep`` serials (mirrors
        further behind take the whole zone); returns how many were dropped."""
        with self._transaction() as session:
            row = self._tld(session, name)
            done = session.exec(
                delete(JournalRow).where(
                    col(JournalRow.tld) == row.name, col(JournalRow.to_serial) <= row.serial - keep
                )
            )
            return int(done.rowcount)

    def _prune(self, session: Session, name: str, serial: int) -> None:
        """In the transaction that moved ``name`` to ``serial``: at every ``PRUNE_EVERY``-th
        serial, drop the journal entries older than the last ``journal_keep`` serials."""
        if serial % PRUNE_EVERY == 0:
            session.exec(
                delete(JournalRow).where(
                    col(JournalRow.tld) == name,
                    col(JournalRow.to_serial) <= serial - self.journal_keep,
                )
            )

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
            self._check_quota(session, new_owner)
            row.owner = new_owner
            session.add(row)
            return self._info(row)

    def delete(self, tld: str, *, signer: str) -> None:
        with self._transaction() as session:
            row = self._owned(session, tld, signer)
            name = row.name
            for table in (RRsetRow, JournalRow):
                session.exec(delete(table).where(col(table.tld) == name))
            session.delete(row)
        self._zones.pop(name, None)
        self._unservable.pop(name, None)

    # -- administration (signed by the administrator's key) ---------------------------------

    def approve(self, tld: str, *, signer: str) -> TldInfo:
        """Activate a pending TLD (manual approval mode)."""
        self._check_admin(signer)
        with self._transaction() as session:
            row = self._tld(session, tld, lock=True)
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
            row = self._tld(session, tld, lock=True)
            if row.status != "pending":
                raise Conflict(f"{tld!r} is {row.status}, not pending")
            row.status, row.note = "rejected", reason[:500] or "rejected by the administrator"
            session.add(row)
            return self._info(row)

    def expire(self, tld: str, reason: str = "", *, signer: str) -> TldInfo:
        """End a registration now: the zone is no longer served; the owner may renew."""
        self._check_admin(signer)
        with self._transaction() as session:
            row = self._tld(session, tld, lock=True)
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
        name = check_label(name)
        with self._transaction() as session:
            row = session.get(TldRow, name)
            if row is not None:
                raise Conflict(f"{name!r} is registered to {row.owner}; expire or delete it first")
        return self._store_policy(replace(self.policy, reserved=self.policy.reserved | {name}))

    def unreserve(self, name: str, *, signer: str) -> Policy:
        self._check_admin(signer)
        name = _lookup(name)
        if name not in self.policy.reserved:
            raise NotFound(f"{name!r} is not reserved")
        return self._store_policy(replace(self.policy, reserved=self.policy.reserved - {name}))

    def set_policy(self, changes: dict[str, Any], *, signer: str) -> Policy:
        """Change the approval mode, the term or the quota (``{"approval"?, "termDays"?,
        "maxTldsPerOwner"?}``)."""
        self._check_admin(signer)
        unknown = sorted(set(changes) - {"approval", "termDays", "maxTldsPerOwner"})
        if unknown:
            raise RegistryError(
                f"unknown policy field(s) {', '.join(unknown)}: approval, termDays and "
                "maxTldsPerOwner can be set (reserved names change with reserve and unreserve)"
            )
        return self._store_policy(self.policy.governed(changes))

    def _check_quota(self, session: Session, owner: str) -> None:
        """``QuotaExceeded`` when ``owner`` already holds ``max_tlds_per_owner`` TLDs."""
        most = self.policy.max_tlds_per_owner
        held = session.exec(
            select(func.count()).select_from(TldRow).where(TldRow.owner == owner)
        ).one()
        if held >= most:
            raise QuotaExceeded(
                f"the key {owner} holds {held} TLD(s); this registry allows at most {most} per "
                "owner key (the administrator's maxTldsPerOwner)"
            )

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

        Each change is checked against the one rule (``hypermesh.zonedata``) and made
        canonical before anything else: ``Alias`` and ``alias`` are one record set, and a
        record set the full build would refuse is refused here, naming the change
        (``rrsets[2].values[0]: …``). A DELETE may also name a stored record set exactly as it
        was stored, even one the rule refuses (written by an older release), to remove it.

        The zone is signed incrementally (only what the batch touched; ``update_zone``) when
        the signed zone at the current serial is at hand and its last full signing is recent;
        otherwise in full.
        """
        batch = list(changes)
        if not batch:
            raise RegistryError("an empty batch changes nothing")
        with self._transaction() as session:
            row = self._owned(session, tld, signer)
            if row.status != "active":
                raise Forbidden(f"{tld!r} is {row.status}; records can change once it is active")
            origin = f"{row.name}."
            wanted, legacy = _checked_batch(batch, origin, row.default_ttl)
            now = self.clock()
            cached = self._zones.get(row.name)
            new_zone: dns.zone.Zone | None = None
            old_zone: dns.zone.Zone | None = None
            changed: set[dns.name.Name] | None = set()
            if (
                not legacy
                and cached is not None
                and cached.serial == row.serial
                and now - cached.signed_at < RESIGN_AFTER
            ):
                stored = _grouped(self._rows_at(session, row.name, wanted), origin)
                old_zone, signed_at, digests = cached.zone, cached.signed_at, cached.digests
                new_zone = update_zone(
                    old_zone,
                    self._spec(row, row.serial + 1),
                    wanted,
                    self._keys(row),
                    now=int(now),
                    digests=digests,
                    changed=changed,
                )
            if new_zone is None:  # in full
                changed = None
                stored = _grouped(self._rows(session, row.name), origin)
                for key, error in legacy.items():
                    if key not in stored:
                        raise error
                kept = [_rrset(r) for key, rs in stored.items() if key not in wanted for r in rs]
                after = kept + [r for r in wanted.values() if r is not None]
                old_zone = self._old_zone(row, [_rrset(r) for rs in stored.values() for r in rs])
                new_zone = self._build(row, after, row.serial + 1)
                signed_at, digests = now, NodeDigests()
            # either way, any bad value has raised by now and nothing is stored
            row.serial += 1
            for key, rrset in wanted.items():
                _store(session, row.name, stored.get(key, []), rrset)
            if old_zone is not None:
                session.add(_journal_row(row.name, diff_zones(old_zone, new_zone, changed)))
            session.add(row)
            name, serial = row.name, row.serial
            self._prune(session, name, serial)
        self._zones[name] = _Signed(serial, new_zone, signed_at, digests)
        self._unservable.pop(name, None)
        return serial

    def next_due(self) -> float | None:
        """When (the registry's clock, seconds) ``expire_due`` or ``resign_due`` has work
        next: the earliest term of an active TLD running out, or a served zone's full signing
        coming to ``RESIGN_AFTER``; None when neither will."""
        with self._transaction() as session:
            term = session.exec(
                select(func.min(TldRow.expires_at)).where(TldRow.status == "active")
            ).one()
        due = [signed.signed_at + RESIGN_AFTER for signed in list(self._zones.values())]
        if term is not None:
            due.append(_aware(term).timestamp())
        return min(due, default=None)

    def resign_due(self) -> list[str]:
        """Sign again, in full and under a new serial, every served zone whose last full
        signing is ``RESIGN_AFTER`` old, so its signatures never near their expiry (changes
        in between are signed incrementally and share the older signatures). Returns the TLDs
        re-signed; their new zones come from ``zone()``."""
        now = self.clock()
        due = [t for t, s in list(self._zones.items()) if now - s.signed_at >= RESIGN_AFTER]
        done = []
        for tld in due:
            try:
                with self._transaction() as session:
                    row = session.get(TldRow, tld, with_for_update=True)
                    if row is None or row.status != "active" or not row.dnssec:
                        self._zones.pop(tld, None)
                        continue
                    rrsets = [_rrset(r) for r in self._rows(session, tld)]
                    old_zone = self._current_zone(row, rrsets, session)
                    row.serial += 1
                    new_zone = self._build(row, rrsets, session=session)
                    if tld not in self._unjournalled:
                        session.add(_journal_row(tld, diff_zones(old_zone, new_zone)))
                    session.add(row)
                    serial = row.serial
                    self._prune(session, tld, serial)
            except RegistryError as exc:  # one zone that no longer builds holds no other back
                self._zones.pop(tld, None)
                self._unservable_zone(tld, exc)
                continue
            self._zones[tld] = _Signed(serial, new_zone, now)
            done.append(tld)
        return done

    def cached_zone(self, tld: str) -> dns.zone.Zone | None:
        """The signed zone of ``tld`` as last made, without a database read (None: none made
        yet); what the event loop serves after the writer thread changed it."""
        cached = self._zones.get(tld)
        return None if cached is None else cached.zone

    def zone(self, tld: str) -> dns.zone.Zone:
        """The signed zone at its current serial (rebuilt only when the serial moved)."""
        with self._transaction() as session:
            row = self._tld(session, tld)
            return self._current_zone(row, None, session)

    def journal_since(self, tld: str, serial: int) -> list[JournalEntry] | None:
        """The increments from ``serial`` to now, or None when the journal does not reach back
        (or the zone keeps none)."""
        if tld in self._unjournalled:
            return None
        with self._transaction() as session:
            row = self._tld(session, tld)
            rows = session.exec(
                select(JournalRow)
                .where(JournalRow.tld == tld, JournalRow.from_serial >= serial)
                .order_by(col(JournalRow.from_serial))
            ).all()
            if serial == row.serial:
                return []
            if not rows or rows[0].from_serial != serial or rows[-1].to_serial != row.serial:
                return None
            if any(a.to_serial != b.from_serial for a, b in itertools.pairwise(rows)):
                return None  # a gap: a change made while the zone could not be built
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

    def _tld(self, session: Session, tld: str, *, lock: bool = False) -> TldRow:
        """The row of ``tld``; with ``lock``, locked until the transaction ends (``SELECT … FOR
        UPDATE`` on PostgreSQL, so two writers of one TLD take turns and neither loses the
        other's serial; SQLite lets one writer at a time anyway and ignores it)."""
        row = (
            session.get(TldRow, _lookup(tld), with_for_update=lock)
            if isinstance(tld, str)
            else None
        )
        if row is None:
            raise NotFound(f"{tld!r} is not registered here")
        return row

    def _owned(self, session: Session, tld: str, signer: str) -> TldRow:
        """The row of ``tld``, locked for a write, if ``signer`` owns it."""
        row = self._tld(session, tld, lock=True)
        if row.owner != signer:
            raise Forbidden(f"{tld!r} belongs to {row.owner}, not to the signer {signer}")
        return row

    @staticmethod
    def _rows_at(session: Session, tld: str, keys: Iterable[tuple[str, str]]) -> list[RRsetRow]:
        """The stored rows at the (canonical) owner names of ``keys``, also those stored in
        another spelling by an older release (``Alias``, ``www.acme.``)."""
        names: set[str] = set()
        for name, _ in keys:
            names |= {name, f"{name}.{tld}."} if name != APEX else {APEX, f"{tld}.", ""}
        return list(
            session.exec(
                select(RRsetRow).where(
                    RRsetRow.tld == tld,
                    func.lower(RRsetRow.name).in_(names),
                )
            ).all()
        )

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
        try:
            zone = self._build(row, rrsets, session=session)
        except RegistryError as exc:
            raise self._unservable_zone(row.name, exc) from None
        self._zones[row.name] = _Signed(row.serial, zone, self.clock())
        self._unservable.pop(row.name, None)
        return zone

    def _old_zone(self, row: TldRow, rrsets: list[RecordSet]) -> dns.zone.Zone | None:
        """The zone at ``row.serial`` before a change, or None when its stored data does not
        build (the change may be the one that repairs it; no journal entry then)."""
        try:
            return self._current_zone(row, rrsets)
        except ZoneUnservable:
            return None

    def _unservable_zone(self, tld: str, error: Exception) -> ZoneUnservable:
        """Note that ``tld``'s stored data does not build: logged, kept for ``health``."""
        reason = str(error)
        if self._unservable.get(tld) != reason:
            log.error(
                "zone not served: its stored data does not build",
                extra={"tld": tld, "error": reason},
            )
        self._unservable[tld] = reason
        return ZoneUnservable(
            f"{tld!r} is not served: its stored data does not build ({reason}); the owner can "
            "replace or delete the record set named, or delete the TLD"
        )

    def health(self) -> dict[str, Any]:
        """Whether every active TLD's zone is served: a ``ZonesServed`` condition, and the
        TLDs whose stored data does not build, with why."""
        with self._transaction() as session:
            active = set(session.exec(select(TldRow.name).where(TldRow.status == "active")))
        bad = {t: why for t, why in sorted(self._unservable.items()) if t in active}
        if bad:
            condition = {
                "type": "ZonesServed",
                "status": "False",
                "reason": "ZoneUnservable",
                "message": f"{len(bad)} zone(s) not served, their stored data does not build: "
                + ", ".join(bad),
            }
        else:
            condition = {
                "type": "ZonesServed",
                "status": "True",
                "reason": "AllServed",
                "message": f"every active TLD's zone is served ({len(active)})",
            }
        return {"conditions": [condition], "unservable": bad}

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
            zonemd=row.name not in self._undigested,
        )

    @staticmethod
    def _keys(row: TldRow) -> ZoneKeys:
        return ZoneKeys.from_pem(row.ksk_pem.encode(), row.zsk_pem.encode())

    def _build_internal(self, row: TldRow, spec: ZoneSpec, session: Session) -> dns.zone.Zone:
        """An internal zone in full: the signed apex, then every record set, signed."""
        keys, now = self._keys(row), int(self.clock())
        apex = build_zone(spec, [], keys, now=now)
        return apply_rdatasets(apex, spec, self._internal[row.name](session), keys, now=now)

    def _build(
        self,
        row: TldRow,
        rrsets: list[RecordSet],
        serial: int | None = None,
        session: Session | None = None,
    ) -> dns.zone.Zone:
        """The zone of ``row`` with ``rrsets``; ``RegistryError`` when they break the rule or
        anything stored (the TLD's name, its keys) is unusable."""
        try:
            spec = self._spec(row, serial)
            if row.name in self._internal:
                assert session is not None
                return self._build_internal(row, spec, session)
            if tld_label(row.name) != row.name:
                raise RegistryError(f"the TLD's name {row.name!r} is not canonical")
            return build_zone(spec, rrsets, self._keys(row), now=int(self.clock()))
        except RegistryError:
            raise
        except Exception as exc:  # stored data the rule never saw: refused, never a crash
            raise RegistryError(f"{row.name!r}: the zone does not build: {exc!r}") from None

    def _info(self, row: TldRow) -> TldInfo:
        try:
            keys: ZoneKeys | None = self._keys(row)
        except Exception:  # unreadable keys: shown without DS (the zone is unservable)
            keys = None
        return TldInfo(
            row.name,
            row.network,
            row.owner,
            row.status,
            row.serial,
            _aware(row.expires_at),
            row.dnssec,
            tuple(ds_records(keys, f"{row.name}.")) if row.dnssec and keys else (),
            row.note,
            self._unservable.get(row.name, ""),
        )


def _journal_row(tld: str, entry: JournalEntry) -> JournalRow:
    return JournalRow(
        tld=tld,
        from_serial=entry.from_serial,
        to_serial=entry.to_serial,
        removed=json.dumps(entry.removed),
        added=json.dumps(entry.added),
    )


def _checked_batch(
    batch: list[Change], origin: str, default_ttl: int
) -> tuple[dict[tuple[str, str], RecordSet | None], dict[tuple[str, str], RegistryError]]:
    """The batch as canonical keys and record sets, the last change of a key winning (None:
    delete). A DELETE of a name or type the rule refuses is kept under the key as given, with
    the error to raise if no stored record set has exactly that key."""
    wanted: dict[tuple[str, str], RecordSet | None] = {}
    legacy: dict[tuple[str, str], RegistryError] = {}
    for i, change in enumerate(batch):
        try:
            if change.changetype == "REPLACE":
                ttl = default_ttl if change.ttl is None else change.ttl
                rrset = RecordSet(change.name, change.type, ttl, tuple(change.values))
                canonical = rrset.canonical(origin)
                wanted[canonical.key] = canonical
            elif change.changetype == "DELETE":
                try:
                    key = (owner_name(change.name, origin), record_type(change.type))
                except ZoneDataError as exc:
                    key = (change.name, change.type)
                    legacy[key] = RegistryError(str(exc.at(f"rrsets[{i}]")))
                if key == (APEX, "NS"):
                    raise ZoneDataError("@ NS: the registry manages the apex SOA and NS", "type")
                wanted[key] = None
            else:
                raise ZoneDataError(f"unknown changetype {change.changetype!r}", "changetype")
        except ZoneDataError as exc:
            raise RegistryError(str(exc.at(f"rrsets[{i}]"))) from None
    return wanted, legacy


def _stored_key(row: RRsetRow, origin: str) -> tuple[str, str]:
    """The canonical key of a stored row; as stored when the rule refuses it."""
    try:
        return (owner_name(row.name, origin), record_type(row.type))
    except ZoneDataError:
        return (row.name, row.type)


def _grouped(rows: Iterable[RRsetRow], origin: str) -> dict[tuple[str, str], list[RRsetRow]]:
    """Stored rows by canonical key: more than one where an older release stored two
    spellings of one record set (``Alias`` and ``alias``)."""
    out: dict[tuple[str, str], list[RRsetRow]] = {}
    for row in rows:
        out.setdefault(_stored_key(row, origin), []).append(row)
    return out


def _store(session: Session, tld: str, rows: list[RRsetRow], rrset: RecordSet | None) -> None:
    """Make the stored rows of one key hold ``rrset`` (None: none), in canonical spelling."""
    keep = None
    if rrset is not None:
        keep = next((r for r in rows if (r.name, r.type) == rrset.key), rows[0] if rows else None)
    for row in rows:
        if row is not keep:
            session.delete(row)
    if rrset is None:
        return
    session.flush()  # the other spellings go before the kept row takes the canonical one
    stored = keep or RRsetRow(tld=tld, name=rrset.name, type=rrset.type, ttl=0, values="")
    stored.name, stored.type = rrset.name, rrset.type
    stored.ttl, stored.values = rrset.ttl, json.dumps(list(rrset.values))
    session.add(stored)


def _lookup(name: str) -> str:
    """The key under which a TLD is stored: its canonical label, or ``name`` as given when it
    is not one (a row an older release stored, which its owner may still delete)."""
    try:
        return tld_label(name)
    except ZoneDataError:
        return name


_NETWORK = re.compile(
    r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*"
)
"""A network's name: a DNS-1123 subdomain, as ``metadata.name`` (checked with fullmatch)."""


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
