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
from hypermesh.chain.wire import LINK_SCHEMA, block_json, kind_number, link_from_json
from hypermesh.chain.witness import CosignatureStore, Witness, WitnessRefusal, checkpoint_of
from hypermesh.inputs import BadInput, integer_schema, parse_json, validator, whole_number
from hypermesh.node.owner import check_owner
from hypermesh.node.refusals import Refused, guarded
from hypermesh.node.router import Request, Router, RouteResponse
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
    appender = appender or GroupAppender(store)
    nonces = MemoryNonceCache()
    owner = store.identity.node_id
    me = store.identity.public_key_bytes

    def params(request: Request) -> dict[str, str]:
        return {
            k: v[0] for k, v in urllib.parse.parse_qs(request.query, keep_blank_values=True).items()
        }

    def author_of(values: dict[str, str]) -> bytes:
        try:
            return public_key_from_node_id(values.get("author", ""))
        except ValueError as exc:
            raise BadInput(f"author: {str(exc)[:200]}") from None

    def head(_: Request) -> dict[str, Any]:
        last = store.head
        return {
            "author": owner,
            "size": store.size,
            "root": store.root().hex(),
            "head": None if last is None else block_json(last),
        }

    def block(request: Request) -> dict[str, Any]:
        found = store.block(whole_number(params(request), "seq"))
        return block_json(found, store.payload(found))

    def blocks(request: Request) -> dict[str, Any]:
        values = params(request)
        start = whole_number(values, "from", default=0)
        limit = min(whole_number(values, "limit", default=100), MAX_RANGE)
        return {
            "author": owner,
            "size": store.size,
            "blocks": [block_json(b, store.payload(b)) for b in store.blocks(start, start + limit)],
        }

    def inclusion(request: Request) -> dict[str, Any]:
        values = params(request)
        seq = whole_number(values, "seq")
        size = whole_number(values, "size", default=store.size)
        proof = store.inclusion_proof(seq, size)
        return {
            "seq": seq,
            "size": size,
            "leaf": store.tree.leaf(seq).hex(),
            "root": store.root(size).hex(),
            "proof": [p.hex() for p in proof],
        }

    def consistency(request: Request) -> dict[str, Any]:
        values = params(request)
        old = whole_number(values, "from")
        new = whole_number(values, "to", default=store.size)
        proof = store.consistency_proof(old, new)
        return {
            "from": old,
            "to": new,
            "oldRoot": store.root(old).hex(),
            "root": store.root(new).hex(),
            "proof": [p.hex() for p in proof],
        }

    async def append(request: Request) -> RouteResponse:
        check_owner(request, owner, nonces, clock)
        data = parse_json(request.body or b"{}", APPEND)
        if "text" in data:
            try:
                payload = data["text"].encode()
            except UnicodeEncodeError:
                raise BadInput("text: not valid Unicode (a lone surrogate)") from None
        else:
            payload = base64.b64decode(data.get("payload", ""))
        if len(payload) > MAX_PAYLOAD:
            raise Refused(413, f"payload: {len(payload)} bytes, at most {MAX_PAYLOAD}")
        links = [
            link_from_json(link, f"links[{i}]") for i, link in enumerate(data.get("links", []))
        ]
        kind = kind_number(data.get("kind", "note"))
        if ready is not None:
            await ready.wait()
        made = await appender.append(kind, payload, links)
        return RouteResponse.json(block_json(made), status=201)

    def replica(request: Request) -> dict[str, Any]:
        values = params(request)
        if replicas is None:
            raise Refused(404, "this node keeps no replicas")
        author = author_of(values)
        start = whole_number(values, "from", default=0)
        if author == me:
            found = list(store.blocks(start, start + MAX_RANGE))
            payload = store.payload
        else:
            found = replicas.blocks(author, start, MAX_RANGE)
            payload = replicas.payload
        return {
            "author": node_id_from_public_key(author),
            "forkedAt": replicas.forked_at(author),
            "blocks": [block_json(b, payload(b)) for b in found],
        }

    def lookup(author: bytes, seq: int) -> Block | None:
        if author == me:
            return store.block(seq) if seq < store.size else None
        return None if replicas is None else replicas.block(author, seq)

    def trees(author: bytes) -> MerkleTree | None:
        if author == me:
            return store.tree
        return None if replicas is None else replicas.tree(author)

    def linked(author: bytes) -> list[int]:
        if author == me:
            held: list[Block] = list(store.blocks())
        else:
            held = [] if replicas is None else replicas.blocks(author, 0, 1_000_000)
        return [b.seq for b in held if b.links]

    def provenance(request: Request) -> dict[str, Any]:
        values = params(request)
        target = store.block(whole_number(values, "seq"))
        try:
            origin_author, origin_seq = parse_ref(values.get("origin", ""))
        except ValueError as exc:
            raise BadInput(f"origin: {str(exc)[:200]}") from None
        bundle = find_path(target, origin_author, origin_seq, lookup, trees, linked)
        if bundle is None:
            raise Refused(
                404,
                f"no path from block {target.seq} to {values['origin']} through the blocks "
                "this node holds",
            )
        return bundle.to_json()

    def checkpoint(_: Request) -> dict[str, Any]:
        last = store.head
        if last is None:
            raise Refused(404, "the chain is empty: no checkpoint yet")
        size, root = checkpoint_of(last)
        found = [] if cosignatures is None else cosignatures.for_size(size)
        return {
            "author": owner,
            "size": size,
            "root": root.hex(),
            "block": block_json(last),
            "cosignatures": [
                c.to_json() for c in found if c.root == root and not revocations.of(c.witness)
            ],
        }

    def cosign(request: Request) -> RouteResponse:
        if witness is None:
            raise Refused(404, "this node does not witness chains")
        data = parse_json(request.body or b"{}", WITNESS)
        block = Block.from_wire(base64.b64decode(data["block"]))
        proof = [bytes.fromhex(p) for p in data.get("proof", [])]
        try:
            made = witness.cosign(block, data.get("oldSize", 0), proof)
        except WitnessRefusal as exc:
            return RouteResponse.json({"error": str(exc), "held": exc.held}, status=exc.status)
        return RouteResponse.json(made.to_json())

    def equivocations(_: Request) -> dict[str, Any]:
        proofs = [] if replicas is None else [p.to_json() for p in replicas.equivocations()]
        return {"equivocations": proofs}

    def followed(_: Request) -> dict[str, Any]:
        if replicas is None:
            return {"chains": []}
        return {
            "chains": [
                {
                    "author": node_id_from_public_key(author),
                    "size": replicas.size(author),
                    "root": replicas.tree(author).root().hex(),
                    "forkedAt": replicas.forked_at(author),
                }
                for author in replicas.authors()
            ]
        }

    router.add(f"{PREFIX}/head", guarded(head))
    router.add(f"{PREFIX}/block", guarded(block))
    router.add(f"{PREFIX}/blocks", guarded(blocks))
    router.add(f"{PREFIX}/proof/inclusion", guarded(inclusion))
    router.add(f"{PREFIX}/proof/consistency", guarded(consistency))
    router.add(f"{PREFIX}/append", guarded(append), methods=("POST",))
    router.add(f"{PREFIX}/replica", guarded(replica))
    router.add(f"{PREFIX}/replicas", guarded(followed))
    router.add(f"{PREFIX}/equivocations", guarded(equivocations))
    router.add(f"{PREFIX}/provenance", guarded(provenance))
    router.add(f"{PREFIX}/checkpoint", guarded(checkpoint))
    router.add(f"{PREFIX}/witness", guarded(cosign), methods=("POST",))
    return router
