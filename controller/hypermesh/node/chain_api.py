"""The node's chain over HTTP/3 (``hypermesh.chain``).

    GET  /chain/v1/head                              {"author", "size", "root", "head": block|null}
    GET  /chain/v1/block?seq=N                       one block, with its payload when kept
    GET  /chain/v1/blocks?from=N&limit=M             up to 500 blocks from N, with payloads
    GET  /chain/v1/proof/inclusion?seq=N&size=S      {"seq", "size", "leaf", "root", "proof"}
    GET  /chain/v1/proof/consistency?from=A&to=B     {"from", "to", "oldRoot", "root", "proof"}
    GET  /chain/v1/replica?author=ID&from=N          blocks of a chain this node follows
    GET  /chain/v1/replicas                          the chains it follows: size, head, fork
    GET  /chain/v1/equivocations                     the proofs of equivocation it holds
    GET  /chain/v1/provenance?seq=N&origin=ID:SEQ    a bundle of proofs from block N back to
                                                     block SEQ of chain ID (``chain.provenance``)
    GET  /chain/v1/checkpoint                        the latest checkpoint and its cosignatures
    GET  /chain/v1/watch                             the head feed, streamed as NDJSON (below)
    POST /chain/v1/witness {"block", "oldSize", "proof"}   cosign another chain's checkpoint
                                                     (``chain.witness``: C2SP tlog-witness rules)
    POST /chain/v1/append  {"kind", "payload" (base64) | "text", "links"?}    signed by the node

Appends are signed requests (the scheme of ``registry.signing``) and only the node's own key may
make them: a chain has one writer. Who may read is the interfaces' gates' business
(``chain.read``, ``chain.write``). A block is shown only once it is durable.

Every number in a query is a whole number in ASCII digits within its width in the block format
(heights and sizes 0 … 2^64-1; ``hypermesh.inputs``), and every JSON body is checked against
its schema (``APPEND``, ``WITNESS``) before anything reads it: what does not hold is 400 naming
the field. A height past the head is 404, whatever its size. A witness cosigns nothing for a
revoked key (403), and a checkpoint shows no cosignature made by one.

``GET /chain/v1/watch`` pushes what changes (``hypermesh.mirror.feed.Feed``), one object a line,
so that nobody need poll:

    {"author": ID, "size": 7, "root": HEX, "replicas": {ID: 3, …}}   first (and after a reader
                                       fell behind): the node's head and the replicas' sizes
    {"author": ID, "size": 8, "root": HEX}      the node's own chain grew (a new checkpoint)
    {"replica": ID, "size": 4}                  a chain the node follows grew
    {"cosigned": 8, "root": HEX, "witness": ID} a witness cosigned the checkpoint of that size
    {"equivocation": ID}                        a proof of equivocation about ID was recorded
    {}                                          a heartbeat, after ``WATCH_HEARTBEAT`` s idle
"""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from hypermesh.chain.block import MAX_BLOCK_TEXT, Block
from hypermesh.chain.merkle import MerkleTree
from hypermesh.chain.provenance import find_path, parse_ref
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.chain.wire import (
    LINK_SCHEMA,
    WATCH_HEARTBEAT,
    block_json,
    kind_number,
    link_from_json,
)
from hypermesh.chain.witness import Cosignature, CosignatureStore, Witness, checkpoint_of
from hypermesh.inputs import BadInput, integer_schema, parse_json, validator, whole_number
from hypermesh.mirror.feed import Feed
from hypermesh.node.owner import check_owner
from hypermesh.node.refusals import Refused
from hypermesh.node.router import Request, Route, Router, RouteResponse, get, post
from hypermesh.registry.signing import MemoryNonceCache
from hypermesh.revocation import NONE, Revocations
from hypermesh.transport.identity import node_id_from_public_key, public_key_from_node_id

PREFIX = "/chain/v1"
MAX_RANGE = 500
"""Blocks one request may ask for."""
MAX_PAYLOAD = 64 * 1024
"""Bytes of payload one block may carry through the API."""

APPEND = validator(
    {
        "type": "object",
        "properties": {
            "kind": {"type": ["string", "integer"], "maxLength": 16},
            "payload": {"type": "string", "format": "base64"},
            "text": {"type": "string"},
            "links": {"type": "array", "items": LINK_SCHEMA, "maxItems": 16},
        },
        "additionalProperties": False,
        "dependentSchemas": {"text": {"properties": {"payload": {"not": {}}}}},
    }
)
"""``POST /chain/v1/append``: a kind (name or number), a payload (base64) or a text, links."""
WITNESS = validator(
    {
        "type": "object",
        "properties": {
            "block": {"type": "string", "format": "base64", "maxLength": MAX_BLOCK_TEXT},
            "oldSize": integer_schema(),
            "proof": {
                "type": "array",
                "items": {"type": "string", "format": "hex32"},
                "maxItems": 64,
            },
        },
        "required": ["block"],
        "additionalProperties": False,
    }
)
"""``POST /chain/v1/witness``: the checkpoint block, the size last cosigned, the proof."""


def add_chain_routes(
    router: Router,
    store: ChainStore,
    *,
    replicas: Replicas | None = None,
    ready: asyncio.Event | None = None,
    witness: Witness | None = None,
    cosignatures: CosignatureStore | None = None,
    appender: GroupAppender | None = None,
    revocations: Revocations = NONE,
    clock: Callable[[], float] = time.time,
) -> Router:
    """Route the chain API of ``store``; with ``replicas``, also the chains this node follows
    and the equivocations it knows. Appends wait for ``ready`` (set once the node has taken
    back from its peers any of its own blocks it had lost)."""
    api = ChainApi(
        store,
        replicas=replicas,
        ready=ready,
        witness=witness,
        cosignatures=cosignatures,
        appender=appender or GroupAppender(store),
        revocations=revocations,
        clock=clock,
    )
    return router.add_all(api.routes())


def _params(request: Request) -> dict[str, str]:
    """The query's parameters, the first value of each."""
    parsed = urllib.parse.parse_qs(request.query, keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _author(values: dict[str, str]) -> bytes:
    """The public key of the chain named by ``author``."""
    try:
        return public_key_from_node_id(values.get("author", ""))
    except ValueError as exc:
        raise BadInput(f"author: {str(exc)[:200]}") from None


def _append_payload(data: dict[str, Any]) -> bytes:
    """The payload an append carries: its text, or its base64 payload."""
    if "text" in data:
        try:
            payload: bytes = data["text"].encode()
        except UnicodeEncodeError:
            raise BadInput("text: not valid Unicode (a lone surrogate)") from None
    else:
        payload = base64.b64decode(data.get("payload", ""))
    if len(payload) > MAX_PAYLOAD:
        raise Refused(413, f"payload: {len(payload)} bytes, at most {MAX_PAYLOAD}")
    return payload


class ChainApi:
    """The chain API's handlers, one a route, over the node's chain and what it follows."""

    def __init__(
        self,
        store: ChainStore,
        *,
        replicas: Replicas | None,
        ready: asyncio.Event | None,
        witness: Witness | None,
        cosignatures: CosignatureStore | None,
        appender: GroupAppender,
        revocations: Revocations,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.replicas = replicas
        self.ready = ready
        self.witness = witness
        self.cosignatures = cosignatures
        self.appender = appender
        self.revocations = revocations
        self.clock = clock
        self.nonces = MemoryNonceCache()
        self.owner = store.identity.node_id
        self.me = store.identity.public_key_bytes
        self.feed = Feed(self._snapshot, WATCH_HEARTBEAT)
        store.on_append(self._appended)
        if replicas is not None:
            replicas.on_change(self._replica_changed)
        if cosignatures is not None:
            cosignatures.on_add(self._cosigned)

    def _own_head(self) -> dict[str, Any]:
        return {"author": self.owner, "size": self.store.size, "root": self.store.root().hex()}

    def _snapshot(self) -> dict[str, Any]:
        """The feed's first line: the node's head and the size of every replica it holds."""
        replicas = self.replicas
        held = (
            {}
            if replicas is None
            else {node_id_from_public_key(a): replicas.size(a) for a in replicas.authors()}
        )
        return {**self._own_head(), "replicas": held}

    def _appended(self, block: Block) -> None:
        if self.feed.subscribers and block.seq == self.store.size - 1:  # once per batch
            self.feed.publish(self._own_head())

    def _cosigned(self, cosignature: Cosignature) -> None:
        if self.feed.subscribers and not self.revocations.of(cosignature.witness):
            self.feed.publish(
                {
                    "cosigned": cosignature.size,
                    "root": cosignature.root.hex(),
                    "witness": node_id_from_public_key(cosignature.witness),
                }
            )

    def _replica_changed(self, author: bytes, what: str) -> None:
        if not self.feed.subscribers:
            return
        node_id = node_id_from_public_key(author)
        if what == "block":
            assert self.replicas is not None
            self.feed.publish({"replica": node_id, "size": self.replicas.size(author)})
        else:
            self.feed.publish({"equivocation": node_id})

    def routes(self) -> list[Route]:
        """Each path, its handler and its methods."""
        return [
            get(f"{PREFIX}/head", self.head),
            get(f"{PREFIX}/block", self.block),
            get(f"{PREFIX}/blocks", self.blocks),
            get(f"{PREFIX}/proof/inclusion", self.inclusion),
            get(f"{PREFIX}/proof/consistency", self.consistency),
            post(f"{PREFIX}/append", self.append),
            get(f"{PREFIX}/replica", self.replica),
            get(f"{PREFIX}/replicas", self.followed),
            get(f"{PREFIX}/equivocations", self.equivocations),
            get(f"{PREFIX}/provenance", self.provenance),
            get(f"{PREFIX}/checkpoint", self.checkpoint),
            post(f"{PREFIX}/witness", self.cosign),
            get(f"{PREFIX}/watch", self.watch),
        ]

    async def watch(self, _: Request) -> RouteResponse:
        return RouteResponse(200, b"", "application/x-ndjson", stream=self.feed.watch())

    async def head(self, _: Request) -> RouteResponse:
        store, last = self.store, self.store.head
        return RouteResponse.json(
            {
                "author": self.owner,
                "size": store.size,
                "root": store.root().hex(),
                "head": None if last is None else block_json(last),
            }
        )

    async def block(self, request: Request) -> RouteResponse:
        found = self.store.block(whole_number(_params(request), "seq"))
        return RouteResponse.json(block_json(found, self.store.payload(found)))

    async def blocks(self, request: Request) -> RouteResponse:
        values, store = _params(request), self.store
        start = whole_number(values, "from", default=0)
        limit = min(whole_number(values, "limit", default=100), MAX_RANGE)
        found = [block_json(b, store.payload(b)) for b in store.blocks(start, start + limit)]
        return RouteResponse.json({"author": self.owner, "size": store.size, "blocks": found})

    async def inclusion(self, request: Request) -> RouteResponse:
        values, store = _params(request), self.store
        seq = whole_number(values, "seq")
        size = whole_number(values, "size", default=store.size)
        proof = store.inclusion_proof(seq, size)
        return RouteResponse.json(
            {
                "seq": seq,
                "size": size,
                "leaf": store.tree.leaf(seq).hex(),
                "root": store.root(size).hex(),
                "proof": [p.hex() for p in proof],
            }
        )

    async def consistency(self, request: Request) -> RouteResponse:
        values, store = _params(request), self.store
        old = whole_number(values, "from")
        new = whole_number(values, "to", default=store.size)
        proof = store.consistency_proof(old, new)
        return RouteResponse.json(
            {
                "from": old,
                "to": new,
                "oldRoot": store.root(old).hex(),
                "root": store.root(new).hex(),
                "proof": [p.hex() for p in proof],
            }
        )

    async def append(self, request: Request) -> RouteResponse:
        check_owner(request, self.owner, self.nonces, self.clock)
        data = parse_json(request.body or b"{}", APPEND)
        payload = _append_payload(data)
        links = [
            link_from_json(link, f"links[{i}]") for i, link in enumerate(data.get("links", []))
        ]
        kind = kind_number(data.get("kind", "note"))
        if self.ready is not None:
            await self.ready.wait()
        made = await self.appender.append(kind, payload, links)
        return RouteResponse.json(block_json(made), status=201)

    async def replica(self, request: Request) -> RouteResponse:
        values, store, replicas = _params(request), self.store, self.replicas
        if replicas is None:
            raise Refused(404, "this node keeps no replicas")
        author = _author(values)
        start = whole_number(values, "from", default=0)
        if author == self.me:
            found = list(store.blocks(start, start + MAX_RANGE))
            payload = store.payload
        else:
            found = replicas.blocks(author, start, MAX_RANGE)
            payload = replicas.payload
        return RouteResponse.json(
            {
                "author": node_id_from_public_key(author),
                "forkedAt": replicas.forked_at(author),
                "blocks": [block_json(b, payload(b)) for b in found],
            }
        )

    def _lookup(self, author: bytes, seq: int) -> Block | None:
        if author == self.me:
            return self.store.block(seq) if seq < self.store.size else None
        return None if self.replicas is None else self.replicas.block(author, seq)

    def _tree(self, author: bytes) -> MerkleTree | None:
        if author == self.me:
            return self.store.tree
        return None if self.replicas is None else self.replicas.tree(author)

    def _linked(self, author: bytes) -> list[int]:
        if author == self.me:
            held: list[Block] = list(self.store.blocks())
        else:
            held = [] if self.replicas is None else self.replicas.blocks(author, 0, 1_000_000)
        return [b.seq for b in held if b.links]

    async def provenance(self, request: Request) -> RouteResponse:
        values = _params(request)
        target = self.store.block(whole_number(values, "seq"))
        try:
            origin_author, origin_seq = parse_ref(values.get("origin", ""))
        except ValueError as exc:
            raise BadInput(f"origin: {str(exc)[:200]}") from None
        bundle = find_path(
            target, origin_author, origin_seq, self._lookup, self._tree, self._linked
        )
        if bundle is None:
            raise Refused(
                404,
                f"no path from block {target.seq} to {values['origin']} through the blocks "
                "this node holds",
            )
        return RouteResponse.json(bundle.to_json())

    async def checkpoint(self, _: Request) -> RouteResponse:
        last = self.store.head
        if last is None:
            raise Refused(404, "the chain is empty: no checkpoint yet")
        size, root = checkpoint_of(last)
        found = [] if self.cosignatures is None else self.cosignatures.for_size(size)
        cosigned = [
            c.to_json() for c in found if c.root == root and not self.revocations.of(c.witness)
        ]
        return RouteResponse.json(
            {
                "author": self.owner,
                "size": size,
                "root": root.hex(),
                "block": block_json(last),
                "cosignatures": cosigned,
            }
        )

    async def cosign(self, request: Request) -> RouteResponse:
        if self.witness is None:
            raise Refused(404, "this node does not witness chains")
        data = parse_json(request.body or b"{}", WITNESS)
        block = Block.from_wire(base64.b64decode(data["block"]))
        proof = [bytes.fromhex(p) for p in data.get("proof", [])]
        made = self.witness.cosign(block, data.get("oldSize", 0), proof)
        return RouteResponse.json(made.to_json())

    async def equivocations(self, _: Request) -> RouteResponse:
        replicas = self.replicas
        proofs = [] if replicas is None else [p.to_json() for p in replicas.equivocations()]
        return RouteResponse.json({"equivocations": proofs})

    async def followed(self, _: Request) -> RouteResponse:
        replicas = self.replicas
        if replicas is None:
            return RouteResponse.json({"chains": []})
        chains = [
            {
                "author": node_id_from_public_key(author),
                "size": replicas.size(author),
                "root": replicas.tree(author).root().hex(),
                "forkedAt": replicas.forked_at(author),
            }
            for author in replicas.authors()
        ]
        return RouteResponse.json({"chains": chains})
