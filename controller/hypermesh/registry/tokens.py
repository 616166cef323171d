"""Join tokens: how a node on another host becomes a member of the network.

The administrator makes a token (``create``); it is shown once, as ``hmjoin-<id>-<secret>``
(``id`` 12 hex digits, ``secret`` 32 random bytes in lowercase base32 without padding), and
only the SHA-256 of the secret is stored. A node then joins (``join``) with the token, signing
the request with its own key: the registry checks the token and records the key as a member,
in one transaction, so a single-use token admits exactly one key even when two joins race, and
a refused join stores nothing. The secret is compared by its hash, in constant time, and never
logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from hypermesh.registry.errors import NameTaken, NotFound, RegistryError, TokenRefused
from hypermesh.registry.service import Registry
from hypermesh.registry.tables import JoinTokenRow, MemberRow
from hypermesh.timefmt import rfc3339_epoch
from hypermesh.transport.identity import is_node_id

PREFIX = "hmjoin"
MIN_TTL, MAX_TTL = 60, 31_536_000
"""Seconds a token may live: a minute to a year."""
MAX_TAGS = 16
_ID = re.compile(r"[0-9a-f]{12}")
_SECRET = re.compile(r"[a-z2-7]{52}")
_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_REFUSED = "the join token is not valid here"
"""The one answer to an unknown token or a wrong secret: it tells a guesser nothing."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as listed: never its secret or the secret's hash."""

    id: str
    created_at: float
    expires_at: float
    reusable: bool
    ephemeral: bool
    tags: tuple[str, ...]
    uses: int
    revoked: bool
    description: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "createdAt": rfc3339_epoch(self.created_at),
            "expiresAt": rfc3339_epoch(self.expires_at),
            "reusable": self.reusable,
            "ephemeral": self.ephemeral,
            "tags": list(self.tags),
            "uses": self.uses,
            "revoked": self.revoked,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class Member:
    """A node that joined with a token."""

    node_id: str
    name: str
    tags: tuple[str, ...]
    host: str | None
    ephemeral: bool
    joined_at: float

    def to_json(self) -> dict[str, Any]:
        """As the join route answers it."""
        return {
            "name": self.name,
            "identity": self.node_id,
            "kind": "Node",
            "tags": list(self.tags),
            "ephemeral": self.ephemeral,
            "joinedAt": rfc3339_epoch(self.joined_at),
        }

    def anchor_entry(self) -> dict[str, Any]:
        """As the anchors' ``members`` list it."""
        return {
            "identity": self.node_id,
            "kind": "Node",
            "tags": list(self.tags),
            "host": self.host,
        }


def member_of(row: MemberRow) -> Member:
    return Member(
        row.node_id, row.name, tuple(json.loads(row.tags)), row.host, row.ephemeral, row.joined_at
    )


def _info(row: JoinTokenRow) -> TokenInfo:
    return TokenInfo(
        row.id,
        row.created_at,
        row.expires_at,
        row.reusable,
        row.ephemeral,
        tuple(json.loads(row.tags)),
        row.uses,
        row.revoked_at is not None,
        row.description,
    )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def label(value: str, what: str) -> str:
    """``value`` when it is a DNS-1123 label, else ``RegistryError`` naming ``what``."""
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise RegistryError(
            f"{what} {value!r} is not a DNS label (a-z, 0-9 and '-', at most 63, starting "
            "and ending with a letter or digit)"
        )
    return value


class JoinTokens:
    """The join tokens and joined members of ``registry``'s database."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def create(
        self,
        *,
        ttl: int,
        signer: str,
        reusable: bool = False,
        ephemeral: bool = False,
        tags: tuple[str, ...] = (),
        description: str = "",
    ) -> tuple[str, TokenInfo]:
        """A new token (the one time its text exists) and its listing; administrator only."""
        self.registry.check_admin(signer)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL <= ttl <= MAX_TTL:
            raise RegistryError(f"ttl must be whole seconds {MIN_TTL} to {MAX_TTL}, not {ttl!r}")
        if len(tags) > MAX_TAGS:
            raise RegistryError(f"a token carries at most {MAX_TAGS} tags, not {len(tags)}")
        for i, tag in enumerate(tags):
            label(tag, f"tags[{i}]")
        if len(description) > 200:
            raise RegistryError("a token's description has at most 200 characters")
        token_id = secrets.token_hex(6)
        secret = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()
        now = self.registry.clock()
        row = JoinTokenRow(
            id=token_id,
            secret_hash=_digest(secret),
            tags=json.dumps(list(tags)),
            reusable=reusable,
            ephemeral=ephemeral,
            description=description,
            created_at=now,
            expires_at=now + ttl,
        )
        with self.registry.transaction() as session:
            session.add(row)
            info = _info(row)
        return f"{PREFIX}-{token_id}-{secret}", info

    def list(self, *, signer: str) -> list[TokenInfo]:
        """Every token, oldest first; administrator only."""
        self.registry.check_admin(signer)
        with self.registry.transaction() as session:
            rows = session.exec(select(JoinTokenRow).order_by(col(JoinTokenRow.created_at)))
            return [_info(r) for r in rows]

    def revoke(self, token_id: str, *, signer: str) -> TokenInfo:
        """Revoke a token (again: unchanged); administrator only. Members it admitted stay."""
        self.registry.check_admin(signer)
        with self.registry.transaction() as session:
            row = session.get(JoinTokenRow, token_id) if isinstance(token_id, str) else None
            if row is None:
                raise NotFound(f"no join token {token_id!r} here")
            if row.revoked_at is None:
                row.revoked_at = self.registry.clock()
                session.add(row)
            return _info(row)

    def join(self, token: str, name: str, host: str | None, *, signer: str) -> tuple[Member, bool]:
        """Make ``signer`` (a verified key) a member named ``name`` with ``token``: the member
        and True when it was made now; the member and False when the key already is one (the
        token untouched). ``TokenRefused`` or ``NameTaken`` with nothing stored."""
        if not is_node_id(signer):
            raise RegistryError(f"the signer {signer!r} is not a node ID")
        label(name, "name")
        if host is not None:
            label(host, "host")
        if self.registry.is_revoked(signer):
            raise TokenRefused(f"the key {signer} was revoked; it cannot join")
        with self.registry.transaction() as session:
            existing = session.get(MemberRow, signer)
            if existing is not None:
                return member_of(existing), False
            row = self._checked(session, token)
            holder = session.exec(select(MemberRow).where(MemberRow.name == name)).first()
            if holder is not None:
                raise NameTaken(f"the name {name!r} is held by another key ({holder.node_id})")
            self._consume(session, row)
            member = MemberRow(
                node_id=signer,
                name=name,
                tags=row.tags,
                host=host,
                ephemeral=row.ephemeral,
                joined_at=self.registry.clock(),
                token_id=row.id,
            )
            session.add(member)
            return member_of(member), True

    def _checked(self, session: Session, token: str) -> JoinTokenRow:
        """The token's row when ``token`` may be used now; ``TokenRefused`` saying why."""
        parts = token.split("-") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != PREFIX or not _ID.fullmatch(parts[1]):
            raise TokenRefused(_REFUSED)
        row = session.get(JoinTokenRow, parts[1])
        given = _digest(parts[2]) if _SECRET.fullmatch(parts[2]) else ""
        if row is None or not hmac.compare_digest(given.encode(), row.secret_hash.encode()):
            raise TokenRefused(_REFUSED)
        if row.revoked_at is not None:
            raise TokenRefused(f"the join token {row.id} was revoked")
        if self.registry.clock() >= row.expires_at:
            raise TokenRefused(
                f"the join token {row.id} expired at {rfc3339_epoch(row.expires_at)}"
            )
        if not row.reusable and row.uses > 0:
            raise TokenRefused(f"the join token {row.id} was already used")
        return row

    @staticmethod
    def _consume(session: Session, row: JoinTokenRow) -> None:
        """Count one use; a single-use token only if nobody used it meanwhile (two joins racing
        for it: one wins, the other is refused and rolled back)."""
        change = update(JoinTokenRow).where(col(JoinTokenRow.id) == row.id)
        if not row.reusable:
            change = change.where(col(JoinTokenRow.uses) == 0)
        done = session.execute(change.values(uses=col(JoinTokenRow.uses) + 1))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise TokenRefused(f"the join token {row.id} was already used")
