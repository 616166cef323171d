"""The SQL tables behind the state store (SQLModel). Bump SCHEMA_VERSION with every change."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 2
"""1: meta, resources, events. 2: + controller (the loop's suspension and GitOps status)."""


class MetaRow(SQLModel, table=True):
    """Key/value facts about the store itself (``schema_version``)."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class ResourceRow(SQLModel, table=True):
    """One resource this state knows: declared, created, or both."""

    __tablename__ = "resources"
    __table_args__ = (UniqueConstraint("kind", "namespace", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    namespace: str = ""
    name: str
    desired: str | None = None
    """The declared manifest (canonical JSON); None when the files no longer declare it."""
    generation: int = 0
    """Bumped each time the declared spec changes."""
    source: str = ""
    """file:line:column of the declaration, for messages."""
    applied: str | None = None
    """The last-applied spec (canonical JSON); None until an apply converged it."""
    applied_generation: int = 0
    managed: bool = False
    """In the inventory: this state created it in the world, so --prune may delete it."""
    handle: str = "{}"
    """What the driver needs to find it again (JSON: node directory, ...)."""
    status: str = "{}"
    """Observed status (JSON): conditions, address, identity, pid, ..."""
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class EventRow(SQLModel, table=True):
    """Something that happened to a resource, as ``kubectl describe`` shows it."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    kind: str = Field(index=True)
    namespace: str = ""
    name: str = Field(index=True)
    type: str = "Normal"
    reason: str = ""
    message: str = ""


class ControllerRow(SQLModel, table=True):
    """The reconcile loop of this state (``hmctl controller``): one row, name ``default``.
    Suspension and status are separate columns, written by different commands, so that the
    running loop never overwrites a ``suspend`` it has not seen yet."""

    __tablename__ = "controller"

    name: str = Field(default="default", primary_key=True)
    suspended: bool = False
    suspend_reason: str = ""
    suspended_at: datetime | None = None
    """When it was suspended (None while running)."""
    status: str = "{}"
    """What the loop last wrote (JSON): source, revisions, last pass, conditions."""
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
