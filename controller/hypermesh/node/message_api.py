"""Messages between nodes over HTTP/3 (``hypermesh.messaging``), with receipts on both chains.

    GET  /message/v1/key                      the node's messaging key card (signed by its key)
    POST /message/v1/inbox                    a sealed message (application/octet-stream):
                                              opened, checked, stored, and answered with the
                                              receipt block appended to this node's chain
    POST /message/v1/send  {"to", "address", "text"}     signed by the node itself: send one
    GET  /message/v1/inbox?limit=N            signed by the node itself: what it received

Sending, as the sender's node does it: take the recipient's key card (its signature checked
against the recipient's pinned node ID); append a ``message`` block recording the sending (the
recipient's key and the message id, not the text); seal the text, naming that block; deliver
it; the recipient appends a ``receipt`` block linking to the sender's block; the sender
appends a ``receipt`` block linking to the recipient's. Each chain then holds the other's
signed acknowledgement. A message that cannot be opened, or does not check out, is refused
with 400 and nothing is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hypermesh.chain.block import KIND_NUMBERS, Link
from hypermesh.chain.store import GroupAppender
from hypermesh.errors import TransportError
from hypermesh.messaging.envelope import (
    BadMessage,
    Ref,
    check_card,
    key_card,
    open_sealed,
    seal,
)
from hypermesh.messaging.inbox import Mailbox
from hypermesh.node.owner import check_owner
from hypermesh.node.router import Handler, Request, Response, Router
from hypermesh.registry.errors import AuthError
from hypermesh.registry.signing import MemoryNonceCache
from hypermesh.transport.client import h3_get_json, h3_post
from hypermesh.transport.identity import Identity, public_key_from_node_id

PREFIX = "/message/v1"
SEALED = "application/octet-stream"
MAX_SEALED = 80 * 1024


def add_message_routes(
    router: Router,
    identity: Identity,
    key: X25519PrivateKey,
    mailbox: Mailbox,
    appender: GroupAppender,
    *,
    ready: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Router:
    card = key_card(identity, key)
    nonces = MemoryNonceCache()

    async def append(kind: str, payload: bytes, links: tuple[Link, ...]) -> Ref:
        if ready is not None:
            await ready.wait()
        block = await appender.append(KIND_NUMBERS[kind], payload, links)
        return Ref(block.author, block.seq, block.hash)

    async def get_key(_: Request) -> Response:
        return Response.json(card)

    async def inbox_post(request: Request) -> Response:
        if len(request.body) > MAX_SEALED:
            return Response.error(413, f"a sealed message has at most {MAX_SEALED} bytes")
        try:
            message = open_sealed(request.body, identity, key)
        except BadMessage as exc:
            return Response.error(400, str(exc))
        if mailbox.seen(message.id):
            return Response.error(409, "this message was delivered before")
        digest = hashlib.sha256(request.body).digest()
        link = Link(message.block.author, message.block.seq, message.block.hash)
        receipt = await append("receipt", message.id + digest, (link,))
        mailbox.receive(message, receipt)
        return Response.json({"id": message.id.hex(), "receipt": receipt.to_json()}, status=201)

    async def send(request: Request) -> Response:
        try:
            check_owner(request, identity.node_id, nonces, clock)
        except AuthError as exc:
            return Response.error(exc.status, str(exc))
        try:
            data = json.loads(request.body or b"{}")
            to, address = str(data["to"]), str(data["address"])
            text = str(data.get("text", "")).encode()
            recipient = public_key_from_node_id(to)
        except (KeyError, TypeError, ValueError) as exc:
            return Response.error(400, f"send needs to (a node ID), address and text: {exc}")
        try:
            their_key = check_card(
                await h3_get_json(address, f"{PREFIX}/key", expected_id=to, identity=identity),
                to,
            )
            message_id = secrets.token_bytes(16)
            sent = await append("message", b"to " + recipient + message_id, ())
            sealed = seal(
                identity,
                to,
                their_key,
                text,
                sent,
                message_id=message_id,
                timestamp_ms=int(clock() * 1000),
            )
            mailbox.sent(message_id, recipient, sent.seq)
            status, answer = await h3_post(
                address,
                f"{PREFIX}/inbox",
                sealed,
                expected_id=to,
                identity=identity,
                content_type=SEALED,
            )
        except (BadMessage, TransportError) as exc:
            return Response.error(502, f"not delivered: {exc}")
        if status != 201:
            return Response.error(
                502, f"{to} refused the message ({status}): {answer.get('error')}"
            )
        theirs = answer["receipt"]
        receipt = Ref(recipient, int(theirs["seq"]), bytes.fromhex(theirs["hash"]))
        ack = await append(
            "receipt", message_id, (Link(receipt.author, receipt.seq, receipt.hash),)
        )
        mailbox.acknowledged(message_id, receipt, ack.seq)
        return Response.json(
            {
                "id": message_id.hex(),
                "message": sent.to_json(),
                "receipt": receipt.to_json(),
                "ack": ack.to_json(),
            },
            status=201,
        )

    async def inbox_get(request: Request) -> Response:
        try:
            check_owner(request, identity.node_id, nonces, clock)
        except AuthError as exc:
            return Response.error(exc.status, str(exc))
        values = urllib.parse.parse_qs(request.query)
        limit = values.get("limit", ["100"])[0]
        return Response.json({"messages": mailbox.inbox(int(limit) if limit.isdigit() else 100)})

    router.add(f"{PREFIX}/key", get_key)
    router.add(f"{PREFIX}/inbox", _by_method(inbox_get, inbox_post), methods=("GET", "POST"))
    router.add(f"{PREFIX}/send", send, methods=("POST",))
    return router


def _by_method(get: Handler, post: Handler) -> Handler:
    async def route(request: Request) -> Response:
        return await (post if request.method == "POST" else get)(request)

    return route
