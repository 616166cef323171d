"""Fuzzing the block decoder and provenance bundles: valid blocks with every field at its
edges (heights and link heights up to 2^64-1), then changed, cut or extended; a real bundle
across three chains, then its JSON changed anywhere (``targets.check_block``,
``targets.check_provenance_bundle``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypermesh.chain.block import MAX_LINKS, Block, Link
from hypermesh.chain.merkle import EMPTY_ROOT
from hypermesh.chain.store import ChainStore
from hypermesh.transport.identity import Identity
from tests.harness.provenance import bundle_between

from .budget import fuzz
from .corpus import run
from .strategies import json_values

# Strategies over long sample lists make Hypothesis warn when it describes them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

AUTHOR = Identity.generate()
U64 = st.one_of(
    st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]),
    st.integers(min_value=0, max_value=2**64 - 1),
)


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    seq = draw(U64)
    first = seq == 0
    return Block.create(
        AUTHOR,
        kind=draw(st.integers(min_value=0, max_value=255)),
        seq=seq,
        prev=bytes(32) if first else draw(st.binary(min_size=32, max_size=32)),
        tree_root=EMPTY_ROOT if first else draw(st.binary(min_size=32, max_size=32)),
        timestamp_ms=draw(U64),
        payload=draw(st.binary(max_size=40)),
        links=tuple(
            draw(
                st.lists(
                    st.builds(
                        Link,
                        st.binary(min_size=32, max_size=32),
                        U64,
                        st.binary(min_size=32, max_size=32),
                    ),
                    max_size=3,
                )
            )
        ),
    )


@st.composite
def changed(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with a few bytes set, cut short, or extended."""
    how = draw(st.sampled_from(["set", "cut", "extend", "count", "as is"]))
    data = bytearray(wire)
    if how == "set":
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            data[draw(st.integers(min_value=0, max_value=len(data) - 1))] = draw(
                st.integers(min_value=0, max_value=255)
            )
    elif how == "cut":
        del data[draw(st.integers(min_value=0, max_value=len(data))) :]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=72 * 2))
    elif how == "count":  # the number of links (bytes 6-7)
        data[6:8] = draw(st.sampled_from([0, 1, MAX_LINKS, MAX_LINKS + 1, 65535])).to_bytes(2)
    return bytes(data)


@fuzz(150)
@given(st.data())
def test_blocks(data: st.DataObject) -> None:
    wire = data.draw(blocks()).to_wire()
    run("block", data.draw(changed(wire)), "blocks")


@fuzz(60)
@given(st.binary(max_size=400))
def test_random_bytes_as_a_block(raw: bytes) -> None:
    run("block", raw, "block-bytes")


def _bundle() -> dict[str, Any]:
    """A real bundle: c's block links to b's, whose history reaches its link to a's origin."""
    with tempfile.TemporaryDirectory() as folder:
        stores = {
            name: ChainStore.open(Path(folder) / f"{name}.db", Identity.generate())
            for name in "abc"
        }
        a, b, c = stores["a"], stores["b"], stores["c"]
        origin = a.append(1, b"the origin")
        b.append(2, b"", [Link(origin.author, origin.seq, origin.hash)])
        b3 = b.append(1, b"more on b")
        target = c.append(2, b"", [Link(b3.author, b3.seq, b3.hash)])
        bundle = bundle_between(stores.values(), target, origin)
        assert bundle is not None
        for store in stores.values():
            store.close()
        return bundle.to_json()


BUNDLE = _bundle()


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


PATHS = _paths(BUNDLE)[1:]


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    holder = copy
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return copy


@fuzz(100)
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values(4)), max_size=3))
def test_provenance_bundles(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    document: Any = BUNDLE
    for path, value in changes:
        try:
            document = _replaced(document, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change took that path away
    run("provenance-bundle", json.dumps(document).encode(), "bundles")
