"""The chain API's client: reads from any node, appends signed by the node's own key, and
hears of every change of the node's chain as it happens (``watch``, ``heads``: the head feed,
``GET /chain/v1/watch``)."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from hypermesh.chain.block import BadBlock, Block, Link, Unverified
from hypermesh.chain.merkle import verify_consistency, verify_inclusion
from hypermesh.chain.wire import WATCH_SILENCE, block_from_json, link_json
from hypermesh.chain.witness import Cosignature
from hypermesh.errors import TransportError
from hypermesh.inputs import BadInput, check, integer_schema, validator
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import (
    AccessDenied,
    H3ClientProtocol,
    h3_get_json,
    h3_post,
)
from hypermesh.transport.feeds import NoFeed, watched
from hypermesh.transport.identity import Identity

API = "/chain/v1"
PAGE = 500
"""Bytes of one line of the head feed, at most (a longer one ends the watch)."""
RETRY = (0.2, 0.5, 1.0, 2.0, 5.0, 15.0, 30.0)
"""Waits before reconnecting a lost head feed (``heads``), the last repeated."""

_HEX32 = {"type": "string", "format": "hex32"}
_PROOF = {"type": "array", "items": _HEX32, "maxItems": 64}


def _answer(properties: dict[str, Any]) -> Any:
    """The schema of a node's answer: these fields at least (others are ignored)."""
    return validator({"type": "object", "properties": properties, "required": list(properties)})


HEAD = _answer(
    {"author": {"type": "string", "format": "node-id"}, "size": integer_schema(), "root": _HEX32}
)
INCLUSION = _answer({"size": integer_schema(), "leaf": _HEX32, "root": _HEX32, "proof": _PROOF})
CONSISTENCY = _answer({"to": integer_schema(), "oldRoot": _HEX32, "root": _HEX32, "proof": _PROOF})
CHECKPOINT = _answer(
    {
        "size": integer_schema(),
        "root": _HEX32,
        "cosignatures": {"type": "array", "items": {"type": "object"}, "maxItems": 1000},
    }
)


def _checked(schema: Any, data: Any, what: str) -> dict[str, Any]:
    """A node's answer once it holds against ``schema``; ``Unverified`` naming the field."""
    try:
        check(schema, data)
    except BadInput as exc:
        raise Unverified(f"the node's {what} is malformed: {exc}") from None
    return dict(data)


@dataclass(frozen=True, slots=True)
class Head:
    """What a node says of its chain: its author, size and tree head."""

    author: str
    size: int
    root: bytes


class ChainClient:
    """The chain of the node at ``address`` whose key is ``identity`` (pinned), read proving
    ``caller``'s key in the handshake (``None``: anonymous)."""

    def __init__(
        self,
        address: str,
        identity: str | None,
        *,
        caller: Identity | None,
        timeout: float = 10.0,
    ) -> None:
        self.address, self.identity, self.timeout = address, identity, timeout
        self.caller = caller

    async def _get(self, path: str) -> dict[str, Any]:
        return await h3_get_json(
            self.address,
            f"{API}{path}",
            expected_id=self.identity,
            identity=self.caller,
            timeout=self.timeout,
        )

    async def head(self) -> dict[str, Any]:
        return await self._get("/head")

    async def checked_head(self) -> Head:
        """The head, its fields checked; ``Unverified`` when malformed."""
        data = _checked(HEAD, await self._get("/head"), "head")
        return Head(str(data["author"]), int(data["size"]), bytes.fromhex(data["root"]))

    async def watch(
        self, connected: Callable[[H3ClientProtocol], None] | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The node's head feed (``GET /chain/v1/watch``), one notice at a time as it comes
        (see ``hypermesh.node.chain_api``), heartbeats left out, over one connection kept
        open (given to ``connected`` once the feed is answered, for other requests to the
        node while it lasts); ``TransportError`` (``AccessDenied``: refused) when it cannot be
        had or is lost."""
        async with watched(
            self.address,
            self.identity,
            f"{API}/watch",
            identity=self.caller,
            silence=WATCH_SILENCE,
            timeout=self.timeout,
        ) as (h3, notices):
            if connected is not None:
                connected(h3)
            async for notice in notices:
                yield notice
        raise TransportError(f"{self.address}: the node ended the watch")

    async def heads(self) -> AsyncIterator[Head]:
        """The node's head now, then each new one as the node announces it (pushed over the
        head feed: nothing is polled). A lost feed is reconnected after ``RETRY`` waits, and
        the head then heard is yielded when it differs from the last; a refusal (403, 429:
        ``AccessDenied``), a node that serves no feed (404: ``NoFeed``, for a caller that falls
        back to asking ``checked_head``) or a malformed head (``Unverified``) ends the
        iteration with it."""
        last: Head | None = None
        attempt = 0
        while True:
            try:
                async for notice in self.watch():
                    attempt = 0
                    if "author" not in notice:
                        continue
                    data = _checked(HEAD, notice, "head")
                    head = Head(str(data["author"]), int(data["size"]), bytes.fromhex(data["root"]))
                    if head != last:
                        last = head
                        yield head
            except (AccessDenied, NoFeed):
                raise
            except (TransportError, TimeoutError, OSError):
                pass
            await asyncio.sleep(RETRY[min(attempt, len(RETRY) - 1)])
            attempt += 1

    async def block(self, seq: int) -> tuple[Block, bytes | None]:
        return block_from_json(await self._get(f"/block?seq={seq}"))

    async def blocks(self, start: int = 0) -> AsyncIterator[tuple[Block, bytes | None]]:
        """Every block from ``start`` on, page by page, each checked on arrival."""
        while True:
            page = await self._get(f"/blocks?from={start}&limit={PAGE}")
            items = page.get("blocks", [])
            for item in items:
                yield block_from_json(item)
            if len(items) < PAGE:
                return
            start += len(items)

    async def inclusion(self, seq: int, size: int | None = None) -> dict[str, Any]:
        """The inclusion proof of block ``seq``, checked here; ``BadBlock`` if it fails."""
        query = f"seq={seq}" + (f"&size={size}" if size is not None else "")
        data = _checked(INCLUSION, await self._get(f"/proof/inclusion?{query}"), "proof")
        proof = [bytes.fromhex(p) for p in data["proof"]]
        leaf, root = bytes.fromhex(data["leaf"]), bytes.fromhex(data["root"])
        block, _ = await self.block(seq)
        if block.leaf != leaf or not verify_inclusion(leaf, seq, int(data["size"]), proof, root):
            raise BadBlock(f"the inclusion proof of block {seq} does not verify")
        return data

    async def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """The consistency proof from ``old`` to ``new`` blocks, checked here."""
        query = f"from={old}" + (f"&to={new}" if new is not None else "")
        data = _checked(CONSISTENCY, await self._get(f"/proof/consistency?{query}"), "proof")
        proof = [bytes.fromhex(p) for p in data["proof"]]
        if not verify_consistency(
            old,
            int(data["to"]),
            bytes.fromhex(data["oldRoot"]),
            bytes.fromhex(data["root"]),
            proof,
        ):
            raise BadBlock(f"the consistency proof from {old} to {data['to']} does not verify")
        return data

    async def provenance(self, seq: int, origin: str) -> dict[str, Any]:
        """The node's bundle of proofs from its block ``seq`` back to ``origin``
        (``NODE_ID:SEQ``), unchecked (see ``provenance.verify_bundle``)."""
        query = urllib.parse.urlencode({"seq": seq, "origin": origin})
        return await self._get(f"/provenance?{query}")

    async def replicas(self) -> dict[str, Any]:
        """The chains this node follows (``{"chains": [{"author", "size", …}]}``)."""
        return await self._get("/replicas")

    async def checked_checkpoint(self) -> tuple[int, bytes, list[Cosignature]]:
        """The latest checkpoint (size, tree head) and the cosignatures shown with it, their
        shapes checked (each signature is for the caller to count); ``Unverified`` when
        malformed."""
        data = _checked(CHECKPOINT, await self._get("/checkpoint"), "checkpoint")
        try:
            cosignatures = [Cosignature.from_json(c) for c in data["cosignatures"]]
        except Unverified as exc:
            raise Unverified(f"the node's checkpoint is malformed: {exc}") from None
        return int(data["size"]), bytes.fromhex(data["root"]), cosignatures

    async def checkpoint(self) -> dict[str, Any]:
        return await self._get("/checkpoint")

    async def append(
        self, signer: Identity, kind: str, payload: bytes, links: tuple[Link, ...] = ()
    ) -> Block:
        """Append a block (``signer`` must be the node's own key)."""
        body = {
            "kind": kind,
            "payload": base64.b64encode(payload).decode(),
            "links": [link_json(link) for link in links],
        }
        client = RegistryClient(
            self.address,
            self.identity,
            identity=self.caller,
            timeout=self.timeout,
            label=f"node {self.address}",
        )
        status, data = await client.call("POST", f"{API}/append", body, signer=signer)
        if status != 201:
            raise TransportError(f"{self.address}: append refused ({status}): {data.get('error')}")
        block, _ = block_from_json(data)
        return block


async def ask_witness(
    peer: PeerRef, body: dict[str, Any], *, identity: Identity | None
) -> tuple[int, dict[str, Any]]:
    """POST a cosigning request to the witness ``peer`` (address, node ID), proving
    ``identity`` (the asking node's key)."""
    return await h3_post(
        peer.address,
        f"{API}/witness",
        json.dumps(body).encode(),
        expected_id=peer.node_id,
        identity=identity,
    )
