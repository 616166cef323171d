"""Messages between nodes over HTTP/3 (``hypermesh.messaging``), with receipts on both chains.

    GET  /message/v1/key                      the node's messaging key card (signed by its key)
    POST /message/v1/inbox                    a sealed message (application/octet-stream):
                                              opened, checked, stored, and answered with the
                                              receipt block appended to this node's chain
    POST /message/v1/send  {"to", "address"?, "text"}    signed by the node itself: send one
    GET  /message/v1/inbox?limit=N            signed by the node itself: what it received
    GET  /message/v1/watch                    signed by the node itself: each message as it
                                              arrives, streamed as NDJSON (below)

Where the message goes: to ``address`` when the sender gives one, over a fresh connection
with the recipient's key pinned; without one, or when that address does not answer, to the
recipient's node ID over the node's paths (``node.paths``: the recipient found in the node
directory and reached directly, or through its relay where NATs allow nothing else), so a
message reaches a node behind any NAT that the paths reach.

Sending, as the sender's node does it: take the recipient's key card (its signature checked
against the recipient's pinned node ID); append a ``message`` block recording the sending (the
recipient's key and the message id, not the text); seal the text, naming that block; deliver
it; the recipient appends a ``receipt`` block linking to the sender's block; the sender
appends a ``receipt`` block linking to the recipient's. Each chain then holds the other's
signed acknowledgement. A message that cannot be opened, or does not check out, is refused
with 400 and nothing is stored; a message signed by a revoked key is refused with 403
(``hypermesh.revocation``), and so is sending to a revoked key (its key card is its word).
Bodies and queries are parsed strictly (``hypermesh.inputs``): what does not hold is 400 naming
the field.

``GET /message/v1/watch`` pushes each message the moment it is stored (``hypermesh.mirror.feed``'s
``Feed``), one object a line, so a reader waits instead of polling the inbox:

    {"received": 12}                          first (and after falling behind): messages so far;
                                              read the inbox for what came before
    {"message": {"id", "from", "sentMs", "text", "messageBlock", "receiptBlock"}}
                                              a message received, as the inbox lists it
    {}                                        a heartbeat, every ``WATCH_HEARTBEAT`` seconds
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hypermesh.chain.block import KIND_NUMBERS, MAX_STORED, Link
from hypermesh.chain.store import GroupAppender
from hypermesh.chain.wire import WATCH_HEARTBEAT
from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.inputs import BadInput, check, integer_schema, parse_json, validator, whole_number
from hypermesh.messaging.envelope import (
    MAX_TEXT,
    BadMessage,
    Ref,
    check_card,
    key_card,
    open_sealed,
    seal,
)
from hypermesh.messaging.inbox import Mailbox
from hypermesh.mirror.feed import Feed
from hypermesh.node.owner import check_owner
from hypermesh.node.refusals import Refused
from hypermesh.node.router import Request, Route, Router, RouteResponse, get, post
from hypermesh.registry.signing import MemoryNonceCache
from hypermesh.revocation import NONE, Revocations
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import h3_get_json, h3_post, json_answer, json_object
from hypermesh.transport.identity import Identity, public_key_from_node_id

PREFIX = "/message/v1"
SEALED = "application/octet-stream"
MAX_SEALED = 80 * 1024
"""Bytes of one sealed message, at most."""
MAX_INBOX_PAGE = 1000
"""Messages one ``GET /message/v1/inbox`` may ask for."""

SEND = validator(
    {
        "type": "object",
        "properties": {
            "to": {"type": "string", "format": "node-id"},
            "address": {"type": "string", "minLength": 1, "maxLength": 300},
            "text": {"type": "string", "maxLength": MAX_TEXT},
        },
        "required": ["to"],
        "additionalProperties": False,
    }
)
"""``POST /message/v1/send``: the recipient's node ID, its address (optional: without it, the
recipient is reached by key over the node's paths), the text."""
RECEIPT = validator(
    {
        "type": "object",
        "properties": {
            "receipt": {
                "type": "object",
                "properties": {
                    "seq": integer_schema(0, MAX_STORED),
                    "hash": {"type": "string", "format": "hex32"},
                },
                "required": ["seq", "hash"],
            }
        },
        "required": ["receipt"],
    }
)
"""The recipient's answer to a delivery: its receipt block."""


class PeerRequests(Protocol):
    """Requests to a peer by node ID on its best path (``node.paths.PathManager``)."""

    async def request(
        self,
        target: str,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,  # noqa: ASYNC109 - as PathManager.request
    ) -> tuple[int, dict[str, str], bytes]: ...


def no_paths() -> PeerRequests | None:
    """A node without paths (no registry, no relay): messages go only to given addresses."""
    return None


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one delivery reaches node ``to``: ``via`` an address (fresh connections with its
    key pinned), or by node ID over the node's paths."""

    to: str
    via: str | PeerRequests
    identity: Identity

    async def get_json(self, path: str) -> dict[str, Any]:
        if isinstance(self.via, str):
            return await h3_get_json(self.via, path, expected_id=self.to, identity=self.identity)
        status, body = await self._on_paths("GET", path, b"", ("accept", "application/json"))
        return json_object(self.to, path, status, body)

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        if isinstance(self.via, str):
            return await h3_post(
                self.via,
                path,
                body,
                expected_id=self.to,
                identity=self.identity,
                content_type=content_type,
            )
        status, raw = await self._on_paths("POST", path, body, ("content-type", content_type))
        return status, json_answer(raw)

    async def _on_paths(
        self, method: str, path: str, body: bytes, header: tuple[str, str]
    ) -> tuple[int, bytes]:
        """One request over the paths; a peer they cannot find (no live record in the node
        directory, or this very node) is a ``TransportError`` like one that does not answer."""
        assert not isinstance(self.via, str)
        try:
            status, _, raw = await self.via.request(
                self.to, method, path, body=body, headers=[header]
            )
        except TransportError:
            raise
        except HyperMeshError as exc:
            raise TransportError(f"{self.to}: {exc}") from None
        return status, raw


def add_message_routes(
    router: Router,
    identity: Identity,
    key: X25519PrivateKey,
    mailbox: Mailbox,
    appender: GroupAppender,
    *,
    ready: asyncio.Event | None = None,
    revocations: Revocations = NONE,
    clock: Callable[[], float] = time.time,
    paths: Callable[[], PeerRequests | None] = no_paths,
) -> Router:
    """Route the message API of the node ``identity`` (its messaging ``key``, its ``mailbox``,
    its chain's ``appender``, which waits for ``ready``; ``paths``: the node's paths to its
    peers, once they are open)."""
    api = MessageApi(identity, key, mailbox, appender, ready, revocations, clock, paths)
    return router.add_all(api.routes())


class MessageApi:
    """The message API's handlers, one a route."""

    def __init__(
        self,
        identity: Identity,
        key: X25519PrivateKey,
        mailbox: Mailbox,
        appender: GroupAppender,
        ready: asyncio.Event | None,
        revocations: Revocations,
        clock: Callable[[], float],
        paths: Callable[[], PeerRequests | None] = no_paths,
    ) -> None:
        self.identity = identity
        self.key = key
        self.mailbox = mailbox
        self.appender = appender
        self.ready = ready
        self.revocations = revocations
        self.clock = clock
        self.card = key_card(identity, key)
        self.paths = paths
        """The node's paths to its peers, once open (None: messages go only to addresses)."""
        self.nonces = MemoryNonceCache()
        self.receiving: set[bytes] = set()
        """Messages whose receipt is being appended: a second delivery meanwhile is a replay."""
        self.feed = Feed(lambda: {"received": mailbox.count()}, WATCH_HEARTBEAT)
        """Each message received, announced to the node's own watchers."""

    def routes(self) -> list[Route]:
        """Each path, its handler and its methods."""
        return [
            get(f"{PREFIX}/key", self.get_key),
            Route(f"{PREFIX}/inbox", self.inbox, frozenset({"GET", "POST"})),
            post(f"{PREFIX}/send", self.send),
            get(f"{PREFIX}/watch", self.watch),
        ]

    async def _append(self, kind: str, payload: bytes, links: tuple[Link, ...]) -> Ref:
        if self.ready is not None:
            await self.ready.wait()
        block = await self.appender.append(KIND_NUMBERS[kind], payload, links)
        return Ref(block.author, block.seq, block.hash)

    async def get_key(self, _: Request) -> RouteResponse:
        return RouteResponse.json(self.card)

    async def inbox(self, request: Request) -> RouteResponse:
        """``POST``: a sealed message delivered; ``GET``: what the node received."""
        if request.method == "POST":
            return await self.receive(request)
        return await self.read_inbox(request)

    async def receive(self, request: Request) -> RouteResponse:
        if len(request.body) > MAX_SEALED:
            raise Refused(413, f"a sealed message has at most {MAX_SEALED} bytes")
        message = open_sealed(request.body, self.identity, self.key)
        self.revocations.refuse(message.sender, "a message")
        if message.id in self.receiving or self.mailbox.seen(message.id):
            raise Refused(409, "this message was delivered before")
        digest = hashlib.sha256(request.body).digest()
        link = Link(message.block.author, message.block.seq, message.block.hash)
        self.receiving.add(message.id)
        try:
            receipt = await self._append("receipt", message.id + digest, (link,))
            stored = self.mailbox.receive(message, receipt)
        finally:
            self.receiving.discard(message.id)
        self.feed.publish({"message": stored})
        return RouteResponse.json(
            {"id": message.id.hex(), "receipt": receipt.to_json()}, status=201
        )

    async def watch(self, request: Request) -> RouteResponse:
        """The node's own message feed: only the node's key may read it."""
        check_owner(request, self.identity.node_id, self.nonces, self.clock)
        return RouteResponse(200, b"", "application/x-ndjson", stream=self.feed.watch())

    async def read_inbox(self, request: Request) -> RouteResponse:
        check_owner(request, self.identity.node_id, self.nonces, self.clock)
        parsed = urllib.parse.parse_qs(request.query, keep_blank_values=True)
        values = {k: v[0] for k, v in parsed.items()}
        limit = whole_number(values, "limit", default=100, high=MAX_INBOX_PAGE)
        return RouteResponse.json({"messages": self.mailbox.inbox(limit)})

    async def send(self, request: Request) -> RouteResponse:
        check_owner(request, self.identity.node_id, self.nonces, self.clock)
        data = parse_json(request.body or b"{}", SEND)
        to, address = data["to"], data.get("address")
        try:
            if address is not None:
                parse_address(address)
            text = data.get("text", "").encode()
        except ValueError as exc:  # UnicodeEncodeError too: a lone surrogate
            raise BadInput(f"address, text: {str(exc)[:200]}") from None
        if address is None and self.paths() is None:
            raise BadInput(
                "address: required here (this node has no registry or relay to find "
                f"{to} by key through)"
            )
        if len(text) > MAX_TEXT:
            raise Refused(413, f"text: {len(text)} bytes, a message has at most {MAX_TEXT}")
        recipient = public_key_from_node_id(to)
        self.revocations.refuse(recipient, f"sending to {to}")
        message_id, sent, receipt = await self._deliver(to, address, recipient, text)
        ack = await self._append(
            "receipt", message_id, (Link(receipt.author, receipt.seq, receipt.hash),)
        )
        self.mailbox.acknowledged(message_id, receipt, ack.seq)
        return RouteResponse.json(
            {
                "id": message_id.hex(),
                "message": sent.to_json(),
                "receipt": receipt.to_json(),
                "ack": ack.to_json(),
            },
            status=201,
        )

    async def _key_card(self, to: str, address: str | None) -> tuple[Delivery, dict[str, Any]]:
        """The recipient's key card and the way it came: ``address`` first when given, else
        (or when it does not answer) the node's paths to ``to``."""
        paths = self.paths()
        if address is not None:
            delivery = Delivery(to, address, self.identity)
            try:
                return delivery, await delivery.get_json(f"{PREFIX}/key")
            except TransportError:
                if paths is None:
                    raise
        assert paths is not None  # send() refuses a message without an address then
        delivery = Delivery(to, paths, self.identity)
        return delivery, await delivery.get_json(f"{PREFIX}/key")

    async def _deliver(
        self, to: str, address: str | None, recipient: bytes, text: bytes
    ) -> tuple[bytes, Ref, Ref]:
        """Record the sending on the chain, seal ``text`` and deliver it: the message id, the
        block that records the sending and the recipient's receipt."""
        identity = self.identity
        try:
            delivery, card = await self._key_card(to, address)
            their_key = check_card(card, to)
            message_id = secrets.token_bytes(16)
            sent = await self._append("message", b"to " + recipient + message_id, ())
            stamp = int(self.clock() * 1000)
            sealed = seal(
                identity, to, their_key, text, sent, message_id=message_id, timestamp_ms=stamp
            )
            self.mailbox.sent(message_id, recipient, sent.seq)
            status, answer = await delivery.post(f"{PREFIX}/inbox", sealed, SEALED)
        except (BadMessage, TransportError) as exc:
            raise Refused(502, f"not delivered: {exc}") from None
        return message_id, sent, _receipt(to, recipient, status, answer)


def _receipt(to: str, recipient: bytes, status: int, answer: dict[str, Any]) -> Ref:
    """The recipient's receipt in its answer to a delivery; 502 when there is none."""
    if status != 201:
        raise Refused(502, f"{to} refused the message ({status}): {answer.get('error')}")
    try:
        check(RECEIPT, answer)
    except BadInput as exc:
        raise Refused(502, f"{to} answered with no valid receipt: {exc}") from None
    theirs = answer["receipt"]
    return Ref(recipient, theirs["seq"], bytes.fromhex(theirs["hash"]))
