"""The message API over a real QUIC socket: a message signed by a revoked key is refused with
403 and nothing is stored or appended; sending to a revoked key is refused; bodies and queries
are parsed strictly (400 naming the field, never a 500)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.dns.source import StaticZones
from hypermesh.messaging.envelope import Ref, load_or_create_message_key, seal
from hypermesh.messaging.inbox import Mailbox
from hypermesh.node.message_api import SEALED, add_message_routes
from hypermesh.registry.signing import sign_request
from hypermesh.revocation import Revocation, Revocations
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import ServerThread

BOB = Identity.generate()
"""The node whose message API it is."""
ALICE, MALLORY = Identity.generate(), Identity.generate()
"""A sender in good standing, and one whose key the registry revoked."""


@dataclass
class Node:
    address: str
    pin: str
    chain: ChainStore
    mailbox: Mailbox
    message_key: Any

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str]:
        async with (
            asyncio.timeout(10),
            connect_h3(self.address, expected_id=self.pin, identity=None) as h3,
        ):
            status, _, answer = await h3.request(
                method, path, headers=list(headers.items()), body=body
            )
        return status, json.loads(answer).get("error", "")

    def request(
        self, method: str, path: str, body: bytes = b"", signer: Identity | None = BOB
    ) -> tuple[int, str]:
        headers = {"content-type": SEALED if path.endswith("inbox") else "application/json"}
        if signer is not None:
            headers |= sign_request(signer, method, path, body, now=time.time())
        return asyncio.run(self._request(method, path, body, headers))

    def sealed_from(self, sender: Identity, text: bytes = b"hello") -> bytes:
        block = Ref(sender.public_key_bytes, 0, hashlib.sha256(text).digest())
        return seal(
            sender,
            BOB.node_id,
            self.message_key.public_key(),
            text,
            block,
            message_id=hashlib.sha256(text + sender.public_key_bytes).digest()[:16],
            timestamp_ms=1,
        )


def revoked(node_id: str) -> Revocation | None:
    return Revocation(node_id) if node_id == MALLORY.node_id else None


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("messages")
    chain = ChainStore.open(base / "chain.db", BOB)
    mailbox = Mailbox.open(base / "messages.db")
    key = load_or_create_message_key(base)

    def routes(router: Any) -> None:
        add_message_routes(
            router, BOB, key, mailbox, GroupAppender(chain), revocations=Revocations(revoked)
        )

    thread = ServerThread(StaticZones(), routes=routes)
    server = thread.start()
    try:
        yield Node(server.address, server.identity.node_id, chain, mailbox, key)
    finally:
        thread.stop()
        chain.close()
        mailbox.close()


def test_a_message_signed_by_a_revoked_key_is_refused_and_nothing_stored(node: Node) -> None:
    before = node.chain.size
    status, error = node.request("POST", "/message/v1/inbox", node.sealed_from(MALLORY), None)
    assert status == 403 and f"the key {MALLORY.node_id} was revoked" in error
    assert node.chain.size == before and node.mailbox.inbox() == []
    status, _ = node.request("POST", "/message/v1/inbox", node.sealed_from(ALICE), None)
    assert status == 201 and node.chain.size == before + 1  # the receipt
    assert [m["from"] for m in node.mailbox.inbox()] == [ALICE.node_id]


def test_a_message_delivered_twice_at_once_gets_one_receipt(node: Node) -> None:
    sealed = node.sealed_from(ALICE, b"twice at once")
    before = node.chain.size

    async def both() -> list[tuple[int, str]]:
        headers = {"content-type": SEALED}
        return list(
            await asyncio.gather(
                *(node._request("POST", "/message/v1/inbox", sealed, headers) for _ in range(2))
            )
        )

    statuses = sorted(status for status, _ in asyncio.run(both()))
    assert statuses == [201, 409] and node.chain.size == before + 1


def test_sending_to_a_revoked_key_is_refused(node: Node) -> None:
    body = json.dumps({"to": MALLORY.node_id, "address": "127.0.0.1:9", "text": "hi"}).encode()
    status, error = node.request("POST", "/message/v1/send", body)
    assert status == 403 and "revoked" in error


SEND: dict[str, Any] = {"to": ALICE.node_id, "address": "127.0.0.1:9", "text": "hi"}
SEND_CASES: list[tuple[Any, str]] = [
    *[({**SEND, "to": v}, "to") for v in [5, None, "hm1", ALICE.node_id.upper(), []]],
    *[({**SEND, "address": v}, "address") for v in [5, None, "", "nowhere", "h:99999", "x" * 400]],
    *[({**SEND, "text": v}, "text") for v in [5, None, [], "\ud800"]],
    ({**SEND, "text": "x" * 70_000}, "text"),
    ({**SEND, "extra": 1}, "extra"),
    ({"to": ALICE.node_id}, "address"),
    ([SEND], "the body"),
]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SEND_CASES))
def test_a_send_body_is_checked_against_its_schema(node: Node, case: tuple[Any, str]) -> None:
    body, field = case
    status, error = node.request("POST", "/message/v1/send", json.dumps(body).encode())
    assert status in (400, 413), (body, status, error)
    assert field in error, (body, error)


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(["", "\u0661\u0662", "\u00b2", "1.0", "9" * 50, "0"]),
        st.text(max_size=8),
    )
)
def test_the_inbox_limit_is_a_number_in_range(node: Node, raw: str) -> None:
    path = f"/message/v1/inbox?{urllib.parse.urlencode({'limit': raw})}"
    status, error = node.request("GET", path)
    good = raw.isascii() and raw.isdigit() and int(raw) <= 1000
    assert status == (200 if good else 400), (raw, status, error)
    if not good:
        assert error.startswith("limit: ")
