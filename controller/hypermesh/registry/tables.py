"""The registry's tables, in a metadata of their own (never mixed into a controller's store)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, MetaData, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 5
"""1: the first tables. 2: ``registry_tlds.note`` (why a TLD was rejected or expired).
3: ``registry_signed_zones`` (the signed zones as they were served, kept over a restart; a new
table, which ``create_all`` makes). 4: ``registry_revocations`` (revoked node keys; a new
table). 5: ``registry_join_tokens``, ``registry_members`` and ``registry_node_records`` (join
tokens, the members that joined with them, and the node directory; new tables).
``Registry.open`` upgrades older databases in place (``MIGRATIONS``), keeping their data."""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE registry_tlds ADD COLUMN note VARCHAR NOT NULL DEFAULT ''",),
}
"""The statements that take a database from version ``n - 1`` to ``n``."""


class RegistryBase(SQLModel):
    metadata = MetaData()


def _now() -> datetime:
    return datetime.now(UTC)


class RegistryMetaRow(RegistryBase, table=True):
    __tablename__ = "registry_meta"
    key: str = Field(primary_key=True)
    value: str


class TldRow(RegistryBase, table=True):
    """One registered TLD and its zone's state. Zone keys are kept as PEM: protect the database
    as you protect a node's key file (the SQLite file is created 0600)."""

    __tablename__ = "registry_tlds"
    name: str = Field(primary_key=True)
    network: str
    owner: str
    status: str = "active"
    """active, pending (awaiting an administrator), rejected, or expired."""
    created_at: datetime = Field(default_factory=_now)
    expires_at: datetime
    dnssec: bool = True
    default_ttl: int = 3600
    serial: int = 1
    ksk_pem: str = ""
    zsk_pem: str = ""
    note: str = ""
    """Why the TLD is rejected or expired, for its owner and the registry page."""


class RRsetRow(RegistryBase, table=True):
    __tablename__ = "registry_rrsets"
    __table_args__ = (UniqueConstraint("tld", "name", "type"),)
    id: int | None = Field(default=None, primary_key=True)
    tld: str = Field(index=True)
    name: str
    type: str
    ttl: int
    values: str
    """JSON list of values in presentation format."""


class JournalRow(RegistryBase, table=True):
    __tablename__ = "registry_journal"
    id: int | None = Field(default=None, primary_key=True)
    tld: str = Field(index=True)
    from_serial: int
    to_serial: int
    removed: str
    added: str
    at: datetime = Field(default_factory=_now)


class NonceRow(RegistryBase, table=True):
    __tablename__ = "registry_nonces"
    signer: str = Field(primary_key=True)
    nonce: str = Field(primary_key=True)
    seen_at: float = Field(index=True)


class SignedZoneRow(RegistryBase, table=True):
    """A zone exactly as it was signed and served, saved when the registry closes, so that
    after a restart the same serial still means the same bytes and mirrors' increments apply."""

    __tablename__ = "registry_signed_zones"
    tld: str = Field(primary_key=True)
    serial: int
    signed_at: float
    """When it was last signed in full (``Registry`` signs it again in full after half the
    signatures' lifetime)."""
    text: str


class RevocationRow(RegistryBase, table=True):
    """A node key the registry has revoked: every node of the network refuses it once the
    revocation reaches it with the registry's anchors."""

    __tablename__ = "registry_revocations"
    node_id: str = Field(primary_key=True)
    revoked_at: float
    reason: str = ""
    signer: str
    """Who revoked it: the administrator, or the key itself."""
    replaced_by: str | None = None
    """The key that took its place, when it was rotated."""


class JoinTokenRow(RegistryBase, table=True):
    """A join token. Only the SHA-256 of its secret is kept: the token itself is shown once,
    when it is made, and cannot be read back."""

    __tablename__ = "registry_join_tokens"
    id: str = Field(primary_key=True)
    """12 hex digits: the public part of ``hmjoin-<id>-<secret>``."""
    secret_hash: str
    tags: str = "[]"
    """JSON list of the tags a member that joins with it gets."""
    reusable: bool = False
    ephemeral: bool = False
    description: str = ""
    created_at: float
    expires_at: float
    uses: int = 0
    revoked_at: float | None = None


class MemberRow(RegistryBase, table=True):
    """A node that joined the network with a token (static members live in the registry node's
    configuration, not here)."""

    __tablename__ = "registry_members"
    node_id: str = Field(primary_key=True)
    name: str = Field(unique=True)
    tags: str = "[]"
    """JSON list of labels."""
    host: str | None = None
    ephemeral: bool = False
    """Its membership ends when its node record expires."""
    joined_at: float
    token_id: str | None = None


class NodeRecordRow(RegistryBase, table=True):
    """The live node record of one key, as the node signed it (``hypermesh.transport.
    noderecord``)."""

    __tablename__ = "registry_node_records"
    node_id: str = Field(primary_key=True)
    name: str = Field(index=True)
    seq: int = Field(sa_type=BigInteger)
    issued_at: float
    expires_at: float = Field(index=True)
    signed: str
    """JSON ``{"document", "signature"}``."""
