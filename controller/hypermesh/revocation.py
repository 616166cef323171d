"""Revoked node keys: one rule for everything a node accepts that a node key signed.

The registry revokes node keys and its signed anchors carry the list to every node
(``docs/interfaces.md``). From the moment a node knows of a revocation it accepts nothing more
on the revoked key's word, wherever signed data from a node comes in:

- a connection proving the key (the interface gates, ``node.interfaces``);
- a message it signed (the inbox), and a key card it signed (sending to it);
- a checkpoint of its chain to cosign (the witness), and a cosignature it made (the collector);
- a block of its chain not held yet (``chain.replica``).

``Revocations.refuse`` is that rule, and every one of those places calls it. Two things are
still taken from a revoked key, because they are not taken on its word:

- a proof of equivocation (two blocks it signed at one height): evidence against the key;
- the blocks of its chain up to and including the block that hands over to its successor,
  when it was revoked in favour of one (a rotation, ``chain.rotation``): its history ends
  there, signed while the key was good, and the successor's chain links to it. Nothing past
  that block is taken.

Blocks a node already held when it learnt of the revocation stay: they were accepted while the
key was good, and a chain is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypermesh.errors import HyperMeshError
from hypermesh.transport.identity import node_id_from_public_key


@dataclass(frozen=True, slots=True)
class Revocation:
    """A revoked key, and the key that replaced it when it was a rotation."""

    node_id: str
    successor: str | None = None


class KeyRevoked(HyperMeshError):
    """Signed data from a revoked key, refused (an API answers 403)."""

    status = 403

    def __init__(self, revocation: Revocation, what: str) -> None:
        super().__init__(f"{what}: the key {revocation.node_id} was revoked at the registry")
        self.revocation = revocation


Lookup = Callable[[str], Revocation | None]
"""The revocation of a node ID, or None (from the registry's anchors as this node holds them)."""


def _none(_: str) -> Revocation | None:
    return None


class Revocations:
    """The revocations this node knows, through ``lookup`` (read anew at every question, so a
    revocation counts from the moment it arrives)."""

    def __init__(self, lookup: Lookup = _none) -> None:
        self._lookup = lookup

    def of(self, key: bytes | str) -> Revocation | None:
        """The revocation of ``key`` (a raw public key or a node ID), or None."""
        return self._lookup(key if isinstance(key, str) else node_id_from_public_key(key))

    def is_revoked(self, node_id: str) -> bool:
        return self.of(node_id) is not None

    def refuse(self, key: bytes | str, what: str) -> None:
        """``KeyRevoked`` when ``key`` is revoked: ``what`` (``a message``, ``a checkpoint to
        cosign``) is not accepted on its word."""
        revocation = self.of(key)
        if revocation is not None:
            raise KeyRevoked(revocation, what)


NONE = Revocations()
"""No revocations known (a node without a registry, and the tests)."""
