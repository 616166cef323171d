"""Test helper: a provenance bundle found over chains held in local stores."""

from __future__ import annotations

from collections.abc import Iterable

from hypermesh.chain.block import Block
from hypermesh.chain.provenance import Bundle, find_path
from hypermesh.chain.store import ChainStore


def bundle_between(stores: Iterable[ChainStore], target: Block, origin: Block) -> Bundle | None:
    """``find_path`` from ``target`` back to ``origin``, looking blocks, trees and linking
    blocks up in ``stores`` (one per author)."""
    by_author = {s.identity.public_key_bytes: s for s in stores}

    def lookup(author: bytes, seq: int) -> Block | None:
        store = by_author.get(author)
        return store.block(seq) if store is not None and seq < store.size else None

    return find_path(
        target,
        origin.author,
        origin.seq,
        lookup,
        lambda author: by_author[author].tree,
        lambda author: [x.seq for x in by_author[author].blocks() if x.links],
    )
