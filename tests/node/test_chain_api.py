"""Bad input to the chain API over a real QUIC socket: every malformed or unauthorised request
gets a clear 4xx naming what is wrong, never a 500, and nothing is appended. Every number in a
query is parsed within its width in the block format (heights up to 2^64-1, ASCII digits only),
every JSON body against its schema."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.chain.block import Block
from hypermesh.chain.merkle import EMPTY_ROOT
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.chain.witness import CosignatureStore, Witness
from hypermesh.dns.source import StaticZones
from hypermesh.node.chain_api import MAX_PAYLOAD, add_chain_routes
from hypermesh.registry.signing import sign_request
from hypermesh.revocation import Revocation, Revocations
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import ServerThread

KEY = Identity.generate()
REVOKED = Identity.generate()
OTHER = Identity.generate()
U64 = 2**64 - 1


async def post(
    address: str, pin: str, body: bytes, signer: Identity | None, path: str = "/chain/v1/append"
) -> tuple[int, str]:
    headers = {"content-type": "application/json"}
    if signer is not None:
        headers |= sign_request(signer, "POST", path, body, now=time.time())
    async with asyncio.timeout(10), connect_h3(address, expected_id=pin, identity=None) as h3:
        status, _, answer = await h3.request("POST", path, headers=list(headers.items()), body=body)
    return status, json.loads(answer).get("error", "")


async def get(address: str, pin: str, path: str) -> tuple[int, str]:
    async with asyncio.timeout(10), connect_h3(address, expected_id=pin, identity=None) as h3:
        status, _, answer = await h3.request("GET", path)
    return status, json.loads(answer).get("error", "")


@dataclass
class Node:
    address: str
    pin: str
    store: ChainStore

    def get(self, path: str) -> tuple[int, str]:
        return asyncio.run(get(self.address, self.pin, path))

    def post(self, body: bytes, signer: Identity | None = KEY, path: str = "/chain/v1/append"):  # type: ignore[no-untyped-def]
        return asyncio.run(post(self.address, self.pin, body, signer, path))


def revoked(node_id: str) -> Revocation | None:
    return Revocation(node_id) if node_id == REVOKED.node_id else None


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node's chain API (chain of 3 blocks, replicas, a witness that knows REVOKED is
    revoked) on a real QUIC socket."""
    base = tmp_path_factory.mktemp("chain-api")
    store = ChainStore.open(base / "chain.db", KEY)
    replicas = Replicas.open(base / "replicas.db")
    for text in (b"one", b"two", b"three"):
        store.append(1, text)
    revocations = Revocations(revoked)

    def routes(router: Any) -> None:
        add_chain_routes(
            router,
            store,
            replicas=replicas,
            witness=Witness(replicas.connection, KEY, revocations=revocations),
            cosignatures=CosignatureStore(store.connection),
            revocations=revocations,
        )

    thread = ServerThread(StaticZones(), routes=routes)
    server = thread.start()
    try:
        yield Node(server.address, server.identity.node_id, store)
    finally:
        thread.stop()
        store.close()
        replicas.close()


def test_bad_requests_are_refused_and_nothing_is_appended(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", KEY)
    thread = ServerThread(StaticZones(), routes=lambda router: add_chain_routes(router, store))
    server = thread.start()
    at, pin = server.address, server.identity.node_id
    try:
        cases = [
            (b"not json", KEY, 400, "not JSON"),
            (b"[1, 2]", KEY, 400, "must be an object"),
            (b"[" * 100_000 + b"]" * 100_000, KEY, 400, "nested too deeply"),
            (json.dumps({"kind": "gossip"}).encode(), KEY, 400, "is not one of"),
            (json.dumps({"payload": "%%%"}).encode(), KEY, 400, "payload"),
            (json.dumps({"links": [{"author": "x"}]}).encode(), KEY, 400, "links[0]"),
            (json.dumps({"text": "x" * (MAX_PAYLOAD + 1)}).encode(), KEY, 413, "at most"),
            (json.dumps({"text": "hi"}).encode(), None, 401, "unsigned"),
            (json.dumps({"text": "hi"}).encode(), Identity.generate(), 403, "only the node"),
        ]
        for body, signer, status, words in cases:
            got, error = asyncio.run(post(at, pin, body, signer))
            assert (got, words in error) == (status, True), (body[:40], got, error)
        assert store.size == 0
        assert asyncio.run(get(at, pin, "/chain/v1/block?seq=x"))[0] == 400
        assert asyncio.run(get(at, pin, "/chain/v1/block?seq=7"))[0] == 404
        assert asyncio.run(get(at, pin, "/chain/v1/proof/consistency?from=0"))[0] == 400
        assert asyncio.run(post(at, pin, json.dumps({"text": "ok"}).encode(), KEY))[0] == 201
        assert store.size == 1
    finally:
        thread.stop()
        store.close()


# -- numbers in queries ----------------------------------------------------------------------

ORIGIN = f"{KEY.node_id}:0"


def _in(low: int, high: int, yes: int, no: int) -> Any:
    return lambda n: yes if low <= n <= high else no


# (path, the parameter, the other parameters, the status for a valid value n on a chain of 3)
NUMBERS: list[tuple[str, str, dict[str, str], Any]] = [
    ("/chain/v1/block", "seq", {}, _in(0, 2, 200, 404)),
    ("/chain/v1/blocks", "from", {}, lambda n: 200),
    ("/chain/v1/blocks", "limit", {}, lambda n: 200),
    ("/chain/v1/proof/inclusion", "seq", {"size": "3"}, _in(0, 2, 200, 400)),
    ("/chain/v1/proof/inclusion", "size", {"seq": "0"}, _in(1, 3, 200, 400)),
    ("/chain/v1/proof/consistency", "from", {"to": "3"}, _in(1, 3, 200, 400)),
    ("/chain/v1/proof/consistency", "to", {"from": "1"}, _in(1, 3, 200, 400)),
    ("/chain/v1/replica", "from", {"author": OTHER.node_id}, lambda n: 200),
    ("/chain/v1/replica", "from", {"author": KEY.node_id}, lambda n: 200),
    ("/chain/v1/provenance", "seq", {"origin": ORIGIN}, _in(1, 2, 200, 404)),
    ("/chain/v1/provenance", "origin", {"seq": "2"}, _in(0, 1, 200, 404)),
]

RAW = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(2**63 - 2, 2**64 + 2).map(str),
    st.sampled_from(
        [
            "",
            "\u0661\u0662",
            "\u00b2",
            "\u0663",
            "\U0001d7d7",
            "0x10",
            "1e3",
            " 1",
            "1 ",
            "+1",
            "-0",
            "1.0",
            "00",
            "9" * 20,
        ]
    ),
    st.sampled_from([10, 21, 100, 5000]).map(lambda n: "9" * n),
    st.text(max_size=12),
)


def valid(raw: str) -> int | None:
    if re.fullmatch(r"[0-9]{1,20}", raw) and int(raw) <= U64:
        return int(raw)
    return None


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(NUMBERS), RAW)
def test_every_number_in_a_query_is_parsed_within_its_wire_range(
    node: Node, route: tuple[str, str, dict[str, str], Any], raw: str
) -> None:
    path, name, others, expect = route
    value = f"{KEY.node_id}:{raw}" if name == "origin" else raw
    query = urllib.parse.urlencode({**others, name: value})
    status, error = node.get(f"{path}?{query}")
    number = valid(raw)
    if number is None:
        assert status == 400, (path, name, raw[:40], status, error)
        assert error.startswith(f"{name}: ") or f"{'SEQ' if name == 'origin' else name}" in error
    else:
        assert status == expect(number), (path, name, raw[:40], status, error)
    assert node.store.size == 3


def test_heights_past_2_63_are_not_found_and_past_2_64_are_refused(node: Node) -> None:
    for n in (2**63 - 1, 2**63, U64):
        assert node.get(f"/chain/v1/block?seq={n}")[0] == 404
        assert node.get(f"/chain/v1/provenance?seq={n}&origin={ORIGIN}")[0] == 404
        assert node.get(f"/chain/v1/replica?author={OTHER.node_id}&from={n}")[0] == 200
    status, error = node.get(f"/chain/v1/block?seq={U64 + 1}")
    assert status == 400 and error.startswith("seq: ") and "out of range" in error


# -- JSON bodies -------------------------------------------------------------------------------

LINK = {"author": OTHER.node_id, "seq": 5, "hash": "ab" * 32}

BAD_NUMBERS: list[Any] = [-1, U64 + 1, 2**70, "5", "١٢", 5.0, 5.5, True, None, [], {}]
BAD_TEXTS: list[Any] = [5, None, True, [], {}, "x" * 5000]

APPEND_CASES: list[tuple[dict[str, Any], str]] = [
    *[({"links": [{**LINK, "seq": v}]}, "links[0].seq") for v in BAD_NUMBERS],
    *[({"links": [{**LINK, "hash": v}]}, "links[0].hash") for v in [*BAD_TEXTS, "AB" * 32]],
    *[({"links": [{**LINK, "author": v}]}, "links[0].author") for v in [*BAD_TEXTS, "hm1"]],
    ({"links": [{**LINK, "extra": 1}]}, "links[0].extra"),
    *[
        ({"links": [{k: v for k, v in LINK.items() if k != gone}]}, f"links[0].{gone}")
        for gone in LINK
    ],
    ({"links": [LINK] * 17}, "links"),
    *[({"links": v}, "links") for v in [5, "x", {}, None]],
    *[({"kind": v}, "kind") for v in [256, -1, 2**64, "\u0661", "", "x" * 1000, 1.5, None, [], {}]],
    *[({"payload": v}, "payload") for v in ["%%", "QR==", "QQ", 5, None, []]],
    *[({"text": v}, "text") for v in [5, None, [], {}, True]],
    ({"text": "a", "payload": "QQ=="}, "payload"),
    ({"extra": 1}, "extra"),
]
"""(a body of ``POST /chain/v1/append`` with one field broken, the field the answer names)"""

BLOCK = base64.b64encode(
    Block.create(
        OTHER, kind=1, seq=0, prev=bytes(32), tree_root=EMPTY_ROOT, timestamp_ms=1, payload=b""
    ).wire
).decode()
WITNESS_CASES: list[tuple[dict[str, Any], str]] = [
    *[({"block": BLOCK, "oldSize": v}, "oldSize") for v in BAD_NUMBERS if v is not None],
    *[({"block": v}, "block") for v in [*BAD_TEXTS, "%%", BLOCK[:-4], "QUFB"]],
    *[({"block": BLOCK, "proof": v}, "proof") for v in [5, "x", {}, ["zz"], [5], ["00" * 32] * 65]],
    ({"block": BLOCK, "extra": 1}, "extra"),
    ({}, "block"),
]
"""(a body of ``POST /chain/v1/witness`` with one field broken, the field the answer names)"""

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@settings(max_examples=120, deadline=None)
@given(
    st.one_of(
        st.sampled_from(APPEND_CASES).map(lambda c: ("/chain/v1/append", *c)),
        st.sampled_from(WITNESS_CASES).map(lambda c: ("/chain/v1/witness", *c)),
        JSON.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("/chain/v1/append", v, "")),
    )
)
def test_every_json_body_is_checked_against_its_schema(
    node: Node, case: tuple[str, Any, str]
) -> None:
    path, body, field = case
    status, error = node.post(json.dumps(body).encode(), KEY, path)
    assert 400 <= status < 500 and status != 404, (path, body, status, error)
    assert field in error, (path, body, error)
    assert node.store.size == 3


def test_a_witness_cosigns_nothing_for_a_revoked_key_nor_past_any_real_height(node: Node) -> None:
    first = Block.create(
        REVOKED, kind=1, seq=0, prev=bytes(32), tree_root=EMPTY_ROOT, timestamp_ms=1, payload=b""
    )
    body = json.dumps({"block": base64.b64encode(first.wire).decode()}).encode()
    status, error = node.post(body, None, "/chain/v1/witness")
    assert status == 403 and f"the key {REVOKED.node_id} was revoked" in error
    far = Block.create(
        OTHER, kind=1, seq=2**63, prev=b"\1" * 32, tree_root=b"\2" * 32, timestamp_ms=1, payload=b""
    )
    body = json.dumps({"block": base64.b64encode(far.wire).decode()}).encode()
    status, error = node.post(body, None, "/chain/v1/witness")
    assert status == 422 and "no chain is that long" in error
    body = json.dumps({"block": BLOCK}).encode()
    assert node.post(body, None, "/chain/v1/witness")[0] == 200  # a good key is cosigned
