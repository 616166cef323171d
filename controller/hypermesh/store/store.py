"""The state store over SQLModel: SQLite under the state directory, or a database URL.

Every write is one transaction, so ``kill -9`` at any moment leaves either the state before or
the state after it; ``batch`` makes several writes one transaction (all or none of them). SQLite
runs in WAL mode: readers (``hmctl get``) never wait for a writer (``hmctl apply``).

What must not be lost is committed with ``synchronous=FULL`` (synced to disk before the call
returns): the declared specs, the inventory, the last-applied specs, tombstones and forgets, the
loop's suspension. Status and events, which the next pass's observe writes again, are committed
with ``synchronous=NORMAL`` (PostgreSQL: ``synchronous_commit=off``): a crash of the process
loses none of them (the operating system has them), a crash of the machine may lose the last
ones, never a durable write before or after them (the WAL is replayed in order), and no commit
waits for the disk. A durable commit makes every earlier one durable too.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, create_engine, delete, select

from hypermesh.errors import StateError
from hypermesh.model.resources import DesiredState, ResourceKey, canonical_json
from hypermesh.store.directory import require_writable
from hypermesh.store.tables import (
    SCHEMA_VERSION,
    ControllerRow,
    EventRow,
    MetaRow,
    ResourceRow,
)

DB_FILE = "state.db"
MIGRATE_ATTEMPTS = 5
"""Tries at making a new store's tables while other processes make them too."""


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    """A read-only view of one row of the resources table."""

    key: ResourceKey
    desired: Mapping[str, Any] | None
    generation: int
    source: str
    applied: Mapping[str, Any] | None
    applied_generation: int
    managed: bool
    handle: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None

    @property
    def declared(self) -> bool:
        return self.desired is not None


@dataclass(frozen=True, slots=True)
class Event:
    at: datetime
    key: ResourceKey
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ControllerState:
    """The reconcile loop's row: whether it is suspended, and the status it last wrote."""

    suspended: bool = False
    reason: str = ""
    suspended_at: datetime | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None


def _record(row: ResourceRow) -> ResourceRecord:
    return ResourceRecord(
        key=ResourceKey(row.kind, row.name, row.namespace),
        desired=json.loads(row.desired) if row.desired is not None else None,
        generation=row.generation,
        source=row.source,
        applied=json.loads(row.applied) if row.applied is not None else None,
        applied_generation=row.applied_generation,
        managed=row.managed,
        handle=json.loads(row.handle),
        status=json.loads(row.status),
        updated_at=row.updated_at,
    )


class StateStore:
    """Open with ``StateStore.open(state_dir)``; every method is its own transaction."""

    def __init__(self, engine: Engine, location: str) -> None:
        self.engine = engine
        self.location = location
        self._sqlite = engine.dialect.name == "sqlite"
        self._batch: Session | None = None
        """The session of the open ``batch``, which every write joins."""

    @classmethod
    def open(cls, state_dir: Path, url: str | None = None) -> StateStore:
        """Open (creating if needed) the store of ``state_dir``, or the database at ``url``."""
        if url is None:
            require_writable(state_dir)  # SQLite's journal needs to write beside the file
            url = f"sqlite:///{state_dir / DB_FILE}"
        try:
            engine = create_engine(url, connect_args=_connect_args(url))
            if url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
            store = cls(engine, url)
            store._migrate_racing()
        except SQLAlchemyError as exc:
            raise StateError(
                f"cannot open state store {url}: {exc.__class__.__name__}: {exc}"
            ) from exc
        return store

    def close(self) -> None:
        self.engine.dispose()

    def _migrate_racing(self) -> None:
        """``_migrate``, again when another process made a table between this one's check and
        its ``CREATE TABLE``, or stamped the version first (two hmctl commands opening a new
        store at once): the next try sees what the other made and goes on."""
        for attempt in range(MIGRATE_ATTEMPTS):
            try:
                self._migrate()
                return
            except SQLAlchemyError as exc:
                raced = isinstance(exc, IntegrityError) or "already exists" in str(exc)
                if not raced or attempt == MIGRATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.02 * (attempt + 1))

    def _migrate(self) -> None:
        """Refuse a store newer than this code; bring an older one up to date (every step so
        far only adds tables, which ``create_all`` makes); stamp a new one."""
        SQLModel.metadata.create_all(self.engine, tables=[SQLModel.metadata.tables["meta"]])
        with Session(self.engine) as session:
            meta = session.get(MetaRow, "schema_version")
            if meta is not None and int(meta.value) > SCHEMA_VERSION:
                raise StateError(
                    f"state store {self.location} has schema version {meta.value}, newer than "
                    f"this hmctl understands ({SCHEMA_VERSION}); upgrade hmctl"
                )
        SQLModel.metadata.create_all(self.engine)
        with Session(self.engine) as session:
            meta = session.get(MetaRow, "schema_version")
            if meta is None:
                session.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(meta.value) < SCHEMA_VERSION:
                meta.value = str(SCHEMA_VERSION)
                session.add(meta)
            session.commit()

    def schema_version(self) -> int:
        with self._session() as session:
            meta = session.get(MetaRow, "schema_version")
            return int(meta.value) if meta is not None else 0

    @contextmanager
    def _session(self, *, durable: bool | None = None) -> Iterator[Session]:
        """One transaction (reads: ``durable`` None), or the open ``batch``'s session, which
        the batch commits. ``durable``: the commit is on disk when it returns (``FULL``);
        False: it is with the operating system, and on disk at the next durable commit."""
        if self._batch is not None:
            yield self._batch
            return
        try:
            with Session(self.engine) as session:
                if durable is not None:
                    self._set_durability(session, durable)
                yield session
                session.commit()
        except SQLAlchemyError as exc:
            raise StateError(f"state store {self.location}: {exc}") from exc

    @contextmanager
    def batch(self, *, durable: bool = True) -> Iterator[None]:
        """Make every write inside one transaction, committed at the end (``durable`` as for
        one write): all of them or, when anything inside raises or the commit fails, none.
        Reads inside see the batch's writes. Only for code that does not await meanwhile
        (other tasks' writes would join the batch); a batch inside a batch joins it."""
        if self._batch is not None:
            yield
            return
        try:
            with Session(self.engine) as session:
                self._set_durability(session, durable)
                self._batch = session
                try:
                    yield
                finally:
                    self._batch = None
                session.commit()
        except SQLAlchemyError as exc:
            raise StateError(f"state store {self.location}: {exc}") from exc

    def _set_durability(self, session: Session, durable: bool) -> None:
        """Set, before the transaction writes, whether its commit waits for the disk."""
        connection = session.connection()
        if self._sqlite:  # outside a transaction: pysqlite begins one at the first write
            connection.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        elif not durable and connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    @staticmethod
    def _row(session: Session, key: ResourceKey) -> ResourceRow | None:
        query = select(ResourceRow).where(
            ResourceRow.kind == key.kind,
            ResourceRow.namespace == key.namespace,
            ResourceRow.name == key.name,
        )
        return session.exec(query).first()

    # -- reads --------------------------------------------------------------------------

    def records(self, kind: str | None = None) -> list[ResourceRecord]:
        with self._session() as session:
            query = select(ResourceRow)
            if kind is not None:
                query = query.where(ResourceRow.kind == kind)
            rows = session.exec(query).all()
            return sorted((_record(r) for r in rows), key=lambda r: r.key.order)

    def record(self, key: ResourceKey) -> ResourceRecord | None:
        with self._session() as session:
            row = self._row(session, key)
            return _record(row) if row is not None else None

    def events(self, key: ResourceKey | None = None, limit: int = 20) -> list[Event]:
        with self._session() as session:
            query = select(EventRow).order_by(col(EventRow.id).desc()).limit(limit)
            if key is not None:
                query = query.where(
                    EventRow.kind == key.kind,
                    EventRow.namespace == key.namespace,
                    EventRow.name == key.name,
                )
            rows = session.exec(query).all()
            return [
                Event(r.at, ResourceKey(r.kind, r.name, r.namespace), r.type, r.reason, r.message)
                for r in reversed(rows)
            ]

    # -- writes -------------------------------------------------------------------------

    def save_desired(
        self, desired: DesiredState, *, hold: Collection[ResourceKey] = ()
    ) -> dict[ResourceKey, int]:
        """Record what the manifests declare now (one transaction); returns generations.

        A spec that changed bumps its generation; resources no longer declared keep their row
        (the inventory still knows them) with ``desired`` cleared. Rows of ``hold`` are left
        exactly as they are, and no row is made for them (an expired network's resources).
        """
        generations: dict[ResourceKey, int] = {}
        with self._session(durable=True) as session:
            rows = {
                ResourceKey(r.kind, r.name, r.namespace): r
                for r in session.exec(select(ResourceRow)).all()
            }
            for key in hold:
                rows.pop(key, None)
            for resource in desired:
                if resource.key in hold:
                    continue
                text = canonical_json(resource.to_manifest())
                row = rows.pop(resource.key, None)
                source = str(resource.position())
                if row is None:
                    row = ResourceRow(
                        kind=resource.kind,
                        namespace=resource.namespace,
                        name=resource.name,
                        desired=text,
                        generation=1,
                        source=source,
                    )
                    session.add(row)
                elif row.desired != text:
                    old_spec = json.loads(row.desired)["spec"] if row.desired else None
                    if old_spec != resource.spec or row.generation == 0:
                        row.generation += 1
                    row.desired, row.source = text, source
                    row.updated_at = datetime.now(UTC)
                    session.add(row)
                elif row.source != source:
                    row.source = source
                    session.add(row)
                generations[resource.key] = row.generation
            for row in rows.values():
                if row.desired is not None:
                    row.desired = None
                    session.add(row)
                if not row.managed and row.applied is None:
                    session.delete(row)
        return generations

    def mark_managed(self, key: ResourceKey, handle: Mapping[str, Any]) -> None:
        """Put ``key`` in the inventory *before* its driver creates it in the world, so that a
        crash between the two leaves something the next apply can find and adopt."""
        with self._session(durable=True) as session:
            row = self._row(session, key) or ResourceRow(
                kind=key.kind, namespace=key.namespace, name=key.name
            )
            row.managed = True
            row.handle = canonical_json(dict(handle))
            row.updated_at = datetime.now(UTC)
            session.add(row)

    def record_applied(
        self,
        key: ResourceKey,
        spec: Mapping[str, Any],
        generation: int,
        handle: Mapping[str, Any],
        status: Mapping[str, Any],
        *,
        managed: bool = True,
    ) -> None:
        """After a driver converged ``key``: last-applied spec, inventory and status at once."""
        with self._session(durable=True) as session:
            row = self._row(session, key) or ResourceRow(
                kind=key.kind, namespace=key.namespace, name=key.name
            )
            row.applied = canonical_json(dict(spec))
            row.applied_generation = generation
            row.managed = row.managed or managed
            row.handle = canonical_json(dict(handle))
            row.status = canonical_json(dict(status))
            row.updated_at = datetime.now(UTC)
            session.add(row)

    def set_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        with self._session(durable=False) as session:
            row = self._row(session, key)
            if row is None:
                return
            text = canonical_json(dict(status))
            if row.status != text:
                row.status = text
                row.updated_at = datetime.now(UTC)
                session.add(row)

    def tombstone(
        self, key: ResourceKey, handle: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        """``key`` was torn down but is still declared: keep its row only as a marker, with no
        inventory entry, no last-applied spec, and ``handle`` and ``status`` replaced."""
        with self._session(durable=True) as session:
            row = self._row(session, key)
            if row is None:
                return
            row.applied, row.applied_generation, row.managed = None, 0, False
            row.handle = canonical_json(dict(handle))
            row.status = canonical_json(dict(status))
            row.updated_at = datetime.now(UTC)
            session.add(row)

    def forget(self, key: ResourceKey) -> None:
        """The driver deleted ``key`` from the world: drop it from the store altogether (a later
        apply that still declares it starts afresh)."""
        with self._session(durable=True) as session:
            row = self._row(session, key)
            if row is not None:
                session.delete(row)

    def add_event(self, key: ResourceKey, type_: str, reason: str, message: str) -> None:
        with self._session(durable=False) as session:
            session.add(
                EventRow(
                    at=datetime.now(UTC),
                    kind=key.kind,
                    namespace=key.namespace,
                    name=key.name,
                    type=type_,
                    reason=reason,
                    message=message,
                )
            )

    # -- the reconcile loop ---------------------------------------------------------------

    def controller(self) -> ControllerState:
        """The loop's suspension and last status (defaults when no loop ever ran)."""
        with self._session() as session:
            row = session.get(ControllerRow, "default")
            if row is None:
                return ControllerState()
            return ControllerState(
                row.suspended,
                row.suspend_reason,
                row.suspended_at,
                json.loads(row.status),
                row.updated_at,
            )

    def set_suspended(self, suspended: bool, reason: str = "") -> bool:
        """Suspend (or resume) the loop; False when it already was so (nothing changed)."""
        with self._session(durable=True) as session:
            row = session.get(ControllerRow, "default") or ControllerRow()
            if row.suspended == suspended and (not suspended or row.suspend_reason == reason):
                return False
            row.suspended = suspended
            row.suspend_reason = reason if suspended else ""
            row.suspended_at = datetime.now(UTC) if suspended else None
            row.updated_at = datetime.now(UTC)
            session.add(row)
            return True

    def set_controller_status(self, status: Mapping[str, Any]) -> None:
        """What the loop writes after each pass; the suspension columns are left alone."""
        with self._session(durable=False) as session:
            row = session.get(ControllerRow, "default") or ControllerRow()
            row.status = canonical_json(dict(status))
            row.updated_at = datetime.now(UTC)
            session.add(row)

    def prune_events(self, keep: int = 10_000) -> None:
        """Keep the newest ``keep`` events."""
        with self._session(durable=False) as session:
            newest = session.exec(
                select(EventRow.id).order_by(col(EventRow.id).desc()).offset(keep).limit(1)
            ).first()
            if newest is not None:
                session.exec(delete(EventRow).where(col(EventRow.id) <= newest))


WAL_WAIT = 30.0
"""Seconds a connection tries to put a new database in WAL mode while others hold it."""


def _wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another process holds the database (it
    is making a new store's tables): changing the journal mode does not wait for a lock as
    other statements do (the busy timeout), it fails at once with "database is locked"."""
    deadline = time.monotonic() + WAL_WAIT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _connect_args(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"check_same_thread": False, "timeout": 30}
    return {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    _wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
