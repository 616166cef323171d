"""The node directory: the live node record of every member, kept by the registry and served in
its own DNS zone ``_nodes.`` (``hypermesh.transport.noderecord``).

A node publishes its signed record (``publish``); the directory checks the signature, the
expiry, the network, that the key is not revoked and is a member (static members from the
registry node's configuration, members that joined with a token; any key in a public network),
and that the record is newer (``seq``) than the one it holds. Each record is served as
``<node ID>._nodes. TXT`` (the signed record, in chunks) with A/AAAA for its public addresses
that are IP literals, TTL 60, in a zone signed like a TLD's. In a private network mirrors copy
that zone whole, so it carries a ZONEMD and is journalled (they follow it by increments); a
public network's zone is never copied (nodes look records up on demand, each checked with
DNSSEC), so it has neither and an update costs what it changes, not the whole zone. Expired
records leave at the next ``sweep`` (an ephemeral member's membership with them); a revoked
key's record leaves at once (``withdraw``).

Every change is one transaction: the record rows, the zone's serial and its journal entry
(private networks).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
from sqlalchemy import delete, func, insert
from sqlmodel import Session, col, select

from hypermesh.registry.errors import Forbidden, NotFound, RegistryError, Stale
from hypermesh.registry.service import Registry
from hypermesh.registry.tables import MemberRow, NodeRecordRow
from hypermesh.registry.tokens import Member, member_of
from hypermesh.registry.zones import Parsed
from hypermesh.transport.address import parse_address
from hypermesh.transport.identity import is_node_id
from hypermesh.transport.noderecord import DIRECTORY_ZONE, BadNodeRecord, NodeRecord

ZONE = DIRECTORY_ZONE.rstrip(".")
"""The directory zone's name in the registry's tables (``_nodes``)."""
TTL = 60
MAX_PAGE = 1000
_TYPES = (dns.rdatatype.TXT, dns.rdatatype.A, dns.rdatatype.AAAA)


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as stored: its node, name, expiry and the signed form."""

    node_id: str
    name: str
    seq: int
    expires_at: float
    signed: Mapping[str, str]


def _stored(row: NodeRecordRow) -> Stored:
    return Stored(row.node_id, row.name, row.seq, row.expires_at, json.loads(row.signed))


def record_rdatasets(signed: Mapping[str, str]) -> dict[dns.rdatatype.RdataType, Any]:
    """The TXT, A and AAAA record sets of one signed record (verified again: a row edited by
    hand is refused rather than served)."""
    try:
        record = NodeRecord.verify(signed)
    except BadNodeRecord as exc:
        raise RegistryError(f"a stored node record does not verify: {exc}") from None
    out: dict[dns.rdatatype.RdataType, Any] = {}
    txt = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.TXT, ttl=TTL)
    strings = record.txt_strings()
    txt.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings))
    out[dns.rdatatype.TXT] = txt
    for address in record.addresses:
        try:
            ip = ipaddress.ip_address(parse_address(address)[0])
        except ValueError:
            continue  # a name, not an IP literal: only in the TXT record
        kind = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
        rdata = dns.rdata.from_text(dns.rdataclass.IN, kind, str(ip))
        out.setdefault(kind, dns.rdataset.Rdataset(dns.rdataclass.IN, kind, ttl=TTL)).add(rdata)
    return out


def _row(row: NodeRecordRow | None, record: NodeRecord) -> NodeRecordRow:
    """``row`` (a new one when None) holding ``record``."""
    row = row or NodeRecordRow(
        node_id=record.node_id, name="", seq=0, issued_at=0, expires_at=0, signed=""
    )
    row.name, row.seq, row.issued_at = record.name, record.seq, record.issued_at
    row.expires_at, row.signed = record.expires_at, json.dumps(dict(record.signed))
    return row


def _call(listener: Callable[[], None]) -> None:
    listener()


def _changes(node_id: str, signed: Mapping[str, str] | None) -> Parsed:
    """The zone changes that make ``node_id``'s name hold ``signed`` (None: nothing)."""
    name = dns.name.Name([node_id.encode()])
    now = record_rdatasets(signed) if signed is not None else {}
    return {(name, kind): now.get(kind) for kind in _TYPES}


class Directory:
    """The node directory of ``registry``'s network. ``static`` are the members from the
    registry node's configuration (``{name: {"identity", "kind", "tags"}}``); ``public``:
    open registration (any key not revoked may publish)."""

    def __init__(
        self,
        registry: Registry,
        network: str,
        *,
        static: Mapping[str, Mapping[str, Any]] | None = None,
        public: bool = False,
        trusted: Iterable[str] = (),
    ) -> None:
        self.registry = registry
        self.network = network
        self.static = dict(static or {})
        self.public = public
        self.trusted = frozenset(trusted)
        """Keys that are members without being listed (the registry node's own)."""
        self.listeners: list[Callable[[], None]] = []
        """Told after every change of the zone (the node serves the new zone), through
        ``dispatch``."""
        self.dispatch: Callable[[Callable[[], None]], None] = _call
        """How each listener is called: at once, on the thread that changed the zone (the
        default); the node hands them to its event loop, since the change is made on the
        registry's writer thread (``Registry.worker``)."""
        registry.add_internal_zone(ZONE, network, self._all_rdatasets, copied=not public)
        registry.zone(ZONE)  # built (or read back) now, so each change is signed incrementally

    # -- membership -----------------------------------------------------------------------------

    def joined(self) -> list[Member]:
        with self.registry.transaction() as session:
            rows = session.exec(select(MemberRow).order_by(col(MemberRow.name))).all()
            return [member_of(r) for r in rows]

    def members(self) -> dict[str, dict[str, Any]]:
        """The static members and the joined ones, by name, as the anchors list them (a
        static name wins)."""
        out = {m.name: m.anchor_entry() for m in self.joined()}
        out.update({name: dict(entry) for name, entry in self.static.items()})
        return out

    def is_member(self, node_id: str) -> bool:
        if node_id in self.trusted or any(
            entry.get("identity") == node_id for entry in self.static.values()
        ):
            return True
        with self.registry.transaction() as session:
            return session.get(MemberRow, node_id) is not None

    # -- records --------------------------------------------------------------------------------

    def publish(self, signed: Any) -> NodeRecord:
        """Store the node record ``signed`` after every check (nothing stored on a refusal):
        ``RegistryError`` 400 (malformed, bad signature, expired, another network), 403 (key
        revoked or not a member), ``Stale`` 409 (not newer than the one held)."""
        [outcome] = self.publish_many([signed])
        if isinstance(outcome, RegistryError):
            raise outcome
        return outcome

    def publish_many(self, batch: Sequence[Any]) -> list[NodeRecord | RegistryError]:
        """Store each node record of ``batch`` as ``publish`` does, all in one transaction and
        one signing pass (one new serial): what a registry taking many updates a second does
        with the records that arrive within a few milliseconds of each other, so the commit,
        the SOA's signature (and in a private network the ZONEMD and the journal entry) are
        paid once per batch. Each item's outcome, in order: the record stored, or the error
        ``publish`` would raise for it (nothing stored for that item)."""
        out: list[NodeRecord | RegistryError] = []
        for signed in batch:
            try:
                out.append(self._admissible(signed))
            except RegistryError as exc:
                out.append(exc)
        ids = {item.node_id for item in out if isinstance(item, NodeRecord)}
        if not ids:
            return out
        with self.registry.transaction() as session:
            query = select(NodeRecordRow).where(col(NodeRecordRow.node_id).in_(ids))
            rows = {row.node_id: row for row in session.exec(query).all()}
            held = {node_id: (row.seq, row.issued_at) for node_id, row in rows.items()}
            latest: dict[str, NodeRecord] = {}
            for i, item in enumerate(out):
                if not isinstance(item, NodeRecord):
                    continue
                if item.node_id in held and held[item.node_id] >= (item.seq, item.issued_at):
                    out[i] = Stale(
                        f"the registry holds seq {held[item.node_id][0]} of {item.node_id}; a "
                        f"record replaces it only with a higher seq (this one has {item.seq})"
                    )
                    continue
                held[item.node_id] = (item.seq, item.issued_at)
                latest[item.node_id] = item
            if not latest:
                return out
            changes: dict[Any, Any] = {}
            for record in latest.values():
                changes.update(_changes(record.node_id, record.signed))
            install = self.registry.change_internal(session, ZONE, changes)
            for record in latest.values():
                session.add(_row(rows.get(record.node_id), record))
        self._installed(install)
        return out

    def _admissible(self, signed: Any) -> NodeRecord:
        """The verified record ``signed`` if this directory may hold it (all but the seq)."""
        now = self.registry.clock()
        try:
            record = NodeRecord.verify(signed, now=now)
        except BadNodeRecord as exc:
            raise RegistryError(f"node record: {exc}") from None
        if record.network != self.network:
            raise RegistryError(
                f"the node record is for network {record.network!r}; this registry serves "
                f"{self.network!r}"
            )
        if self.registry.is_revoked(record.node_id):
            raise Forbidden(f"the key {record.node_id} was revoked")
        if not self.public and not self.is_member(record.node_id):
            raise Forbidden(
                f"the key {record.node_id} is not a member of network {self.network!r}: pin it "
                "in the Node's spec.identity or join with a token"
            )
        return record

    def bulk_load(self, records: Iterable[NodeRecord], chunk: int = 5000) -> int:
        """Store many verified records at once (replacing none: for filling a new directory,
        as a benchmark does), then sign the zone once in full; how many were stored. The
        membership is not checked: the caller vouches for the keys."""
        batch: list[dict[str, Any]] = []
        stored = 0

        def flush() -> None:
            with self.registry.transaction() as session:
                session.execute(insert(NodeRecordRow), batch)
            batch.clear()

        for record in records:
            if record.network != self.network:
                raise RegistryError(f"{record.node_id}: a record of network {record.network!r}")
            batch.append(
                {
                    "node_id": record.node_id,
                    "name": record.name,
                    "seq": record.seq,
                    "issued_at": record.issued_at,
                    "expires_at": record.expires_at,
                    "signed": json.dumps(dict(record.signed)),
                }
            )
            stored += 1
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
        self.registry.rebuild_internal(ZONE)
        self._installed(lambda: None)
        return stored

    def get(self, node_id: str) -> Stored:
        """The live record of ``node_id``; ``NotFound`` when there is none."""
        with self.registry.transaction() as session:
            row = session.get(NodeRecordRow, node_id) if is_node_id(node_id) else None
            if row is None or row.expires_at <= self.registry.clock():
                raise NotFound(f"no live node record of {node_id!r} in the directory")
            return _stored(row)

    def by_name(self, name: str) -> Stored:
        """The live record of the member named ``name`` (its key from the membership, so a
        node cannot take another's name by writing it in its record)."""
        node_id = self.static.get(name, {}).get("identity")
        if node_id is None:
            with self.registry.transaction() as session:
                member = session.exec(select(MemberRow).where(MemberRow.name == name)).first()
                node_id = member.node_id if member is not None else None
        if node_id is None and self.public:
            with self.registry.transaction() as session:
                row = session.exec(select(NodeRecordRow).where(NodeRecordRow.name == name)).first()
                node_id = row.node_id if row is not None else None
        if not isinstance(node_id, str):
            raise NotFound(f"no member named {name!r} in network {self.network!r}")
        return self.get(node_id)

    def page(self, after: str | None = None, limit: int = 100) -> tuple[list[Stored], str | None]:
        """Live records by node ID after ``after``; with the ID to ask after next, or None."""
        if not 1 <= limit <= MAX_PAGE:
            raise RegistryError(f"limit must be 1 to {MAX_PAGE}, not {limit}")
        query = select(NodeRecordRow).where(NodeRecordRow.expires_at > self.registry.clock())
        if after is not None:
            query = query.where(col(NodeRecordRow.node_id) > after)
        query = query.order_by(col(NodeRecordRow.node_id)).limit(limit + 1)
        with self.registry.transaction() as session:
            rows = [_stored(r) for r in session.exec(query).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].node_id if more else None)

    def count(self) -> int:
        with self.registry.transaction() as session:
            return int(session.exec(select(func.count()).select_from(NodeRecordRow)).one())

    def next_expiry(self) -> float | None:
        """When the next stored record expires (None: no record)."""
        with self.registry.transaction() as session:
            return session.exec(select(func.min(NodeRecordRow.expires_at))).one()

    def sweep(self) -> list[str]:
        """Remove every expired record (and the membership of an ephemeral member whose record
        it was); the node IDs removed."""
        now = self.registry.clock()
        with self.registry.transaction() as session:
            due = session.exec(
                select(NodeRecordRow.node_id).where(col(NodeRecordRow.expires_at) <= now)
            ).all()
            if not due:
                return []
            changes: dict[Any, Any] = {}
            for node_id in due:
                changes.update(_changes(node_id, None))
            install = self.registry.change_internal(session, ZONE, changes)
            self._drop(session, due, ephemeral_only=True)
        self._installed(install)  # the journal is pruned with the change (``journal_keep``)
        return list(due)

    def withdraw(self, node_id: str) -> bool:
        """End ``node_id``'s joined membership and withdraw its record now (its key was
        revoked); whether it had a record."""
        with self.registry.transaction() as session:
            held = session.get(NodeRecordRow, node_id) is not None
            install = (
                self.registry.change_internal(session, ZONE, _changes(node_id, None))
                if held
                else None
            )
            self._drop(session, [node_id], ephemeral_only=False)
        if install is not None:
            self._installed(install)
        return held

    # -- the zone -------------------------------------------------------------------------------

    @staticmethod
    def _drop(session: Session, node_ids: Iterable[str], *, ephemeral_only: bool) -> None:
        ids = list(node_ids)
        session.exec(delete(NodeRecordRow).where(col(NodeRecordRow.node_id).in_(ids)))
        members = delete(MemberRow).where(col(MemberRow.node_id).in_(ids))
        if ephemeral_only:
            members = members.where(col(MemberRow.ephemeral))
        session.exec(members)

    def _installed(self, install: Callable[[], None]) -> None:
        install()
        for listener in self.listeners:
            self.dispatch(listener)

    def _all_rdatasets(self, session: Session) -> Parsed:
        """Every live record's record sets, for a build of the whole zone."""
        out: dict[Any, Any] = {}
        for node_id, signed in session.exec(
            select(NodeRecordRow.node_id, NodeRecordRow.signed)
        ).all():
            name = dns.name.Name([node_id.encode()])
            for kind, rdataset in record_rdatasets(json.loads(signed)).items():
                out[(name, kind)] = rdataset
        return out
