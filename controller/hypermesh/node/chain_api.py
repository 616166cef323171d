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
make them: a chain has one writer. Reads are open until interface policies (``chain.read``,
``chain.write``) land. A block is shown only once it is durable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from hypermesh.chain.block import BadBlock, Block
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.merkle import MerkleTree
from hypermesh.chain.provenance import find_path, parse_ref
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainError, ChainStore, GroupAppender
from hypermesh.chain.wire import block_json, kind_number, link_from_json
from hypermesh.chain.witness import (
    CosignatureStore,
    Witness,
    WitnessRefusal,
    checkpoint_of,
)
from hypermesh.node.owner import check_owner
from hypermesh.node.router import Request, Response, Router
from hypermesh.registry.errors import AuthError
from hypermesh.registry.signing import MemoryNonceCache
from hypermesh.transport.identity import node_id_from_public_key, public_key_from_node_id

PREFIX = "/chain/v1"
MAX_RANGE = 500
MAX_PAYLOAD = 64 * 1024
"""Bytes of payload one block may carry through the API."""


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_chain_routes(
    router: Router,
    store: ChainStore,
    *,
    replicas: Replicas | None = None,
    follower: ChainFollower | None = None,
    ready: asyncio.Event | None = None,
    witness: Witness | None = None,
    cosignatures: CosignatureStore | None = None,
    appender: GroupAppender | None = None,
    clock: Callable[[], float] = time.time,
) -> Router:
    """Route the chain API of ``store``; with ``replicas``, also the chains this node follows
    and the equivocations it knows. Appends wait for ``ready`` (set once the node has taken
    back from its peers any of its own blocks it had lost)."""
    appender = appender or GroupAppender(store)
    nonces = MemoryNonceCache()
    owner = store.identity.node_id

    def params(request: Request) -> dict[str, str]:
        return {k: v[0] for k, v in urllib.parse.parse_qs(request.query).items()}

    def number(values: dict[str, str], name: str, default: int | None = None) -> int:
        raw = values.get(name)
        if raw is None and default is not None:
            return default
        if raw is None or not raw.isdigit():
            raise _Refused(400, f"{name} must be a whole number")
        return int(raw)

    def handler(run: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            try:
                result = run(request)
                if hasattr(result, "__await__"):
                    result = await result
                return result if isinstance(result, Response) else Response.json(result)
            except _Refused as exc:
                return Response.error(exc.status, str(exc))
            except (ChainError, ValueError) as exc:
                return Response.error(404 if "no block" in str(exc) else 400, str(exc))
            except BadBlock as exc:
                return Response.error(400, str(exc))
            except AuthError as exc:
                return Response.error(exc.status, str(exc))

        return guarded

    def head(_: Request) -> dict[str, Any]:
        last = store.head
        return {
            "author": owner,
            "size": store.size,
            "root": store.root().hex(),
            "head": None if last is None else block_json(last),
        }

    def block(request: Request) -> dict[str, Any]:
        found = store.block(number(params(request), "seq"))
        return block_json(found, store.payload(found))

    def blocks(request: Request) -> dict[str, Any]:
        values = params(request)
        start = number(values, "from", 0)
        limit = min(number(values, "limit", 100), MAX_RANGE)
        return {
            "author": owner,
            "size": store.size,
            "blocks": [block_json(b, store.payload(b)) for b in store.blocks(start, start + limit)],
        }

    def inclusion(request: Request) -> dict[str, Any]:
        values = params(request)
        seq = number(values, "seq")
        size = number(values, "size", store.size)
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
        old, new = number(values, "from"), number(values, "to", store.size)
        proof = store.consistency_proof(old, new)
        return {
            "from": old,
            "to": new,
            "oldRoot": store.root(old).hex(),
            "root": store.root(new).hex(),
            "proof": [p.hex() for p in proof],
        }

    async def append(request: Request) -> Response:
        check_owner(request, owner, nonces, clock)
        try:
            data = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise _Refused(400, f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _Refused(400, "the body must be a JSON object")
        if "text" in data:
            payload = str(data["text"]).encode()
        else:
            try:
                payload = base64.b64decode(str(data.get("payload", "")), validate=True)
            except (binascii.Error, ValueError):
                raise _Refused(400, "payload must be base64") from None
        if len(payload) > MAX_PAYLOAD:
            raise _Refused(413, f"a payload has at most {MAX_PAYLOAD} bytes")
        links = [link_from_json(link) for link in data.get("links", [])]
        kind = kind_number(data.get("kind", "note"))
        if ready is not None:
            await ready.wait()
        made = await appender.append(kind, payload, links)
        if follower is not None:
            follower.note_links(made)
        return Response.json(block_json(made), status=201)

    def replica(request: Request) -> dict[str, Any]:
        values = params(request)
        if replicas is None:
            raise _Refused(404, "this node keeps no replicas")
        try:
            author = public_key_from_node_id(values.get("author", ""))
        except ValueError as exc:
            raise _Refused(400, f"author: {exc}") from None
        if author == store.identity.public_key_bytes:
            found = list(store.blocks(number(values, "from", 0), number(values, "from", 0) + 500))
            payload = store.payload
        else:
            found = replicas.blocks(author, number(values, "from", 0), MAX_RANGE)
            payload = replicas.payload
        return {
            "author": values["author"],
            "forkedAt": replicas.forked_at(author),
            "blocks": [block_json(b, payload(b)) for b in found],
        }

    def lookup(author: bytes, seq: int) -> Block | None:
        if author == store.identity.public_key_bytes:
            return store.block(seq) if seq < store.size else None
        return None if replicas is None else replicas.block(author, seq)

    def trees(author: bytes) -> MerkleTree | None:
        if author == store.identity.public_key_bytes:
            return store.tree
        return None if replicas is None else replicas.tree(author)

    def linked(author: bytes) -> list[int]:
        if author == store.identity.public_key_bytes:
            held: list[Block] = list(store.blocks())
        else:
            held = [] if replicas is None else replicas.blocks(author, 0, 1_000_000)
        return [b.seq for b in held if b.links]

    def provenance(request: Request) -> dict[str, Any]:
        values = params(request)
        target = store.block(number(values, "seq"))
        try:
            origin_author, origin_seq = parse_ref(values.get("origin", ""))
        except ValueError as exc:
            raise _Refused(400, f"origin: {exc}") from None
        bundle = find_path(target, origin_author, origin_seq, lookup, trees, linked)
        if bundle is None:
            raise _Refused(
                404,
                f"no path from block {target.seq} to {values['origin']} through the blocks "
                "this node holds",
            )
        return bundle.to_json()

    def checkpoint(_: Request) -> dict[str, Any]:
        last = store.head
        if last is None:
            raise _Refused(404, "the chain is empty: no checkpoint yet")
        size, root = checkpoint_of(last)
        found = [] if cosignatures is None else cosignatures.for_size(size)
        return {
            "author": owner,
            "size": size,
            "root": root.hex(),
            "block": block_json(last),
            "cosignatures": [c.to_json() for c in found if c.root == root],
        }

    async def cosign(request: Request) -> Response:
        if witness is None:
            raise _Refused(404, "this node does not witness chains")
        try:
            data = json.loads(request.body or b"{}")
            block = Block.from_wire(base64.b64decode(str(data["block"]), validate=True))
            old = int(data.get("oldSize", 0))
            proof = [bytes.fromhex(str(p)) for p in data.get("proof", [])]
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise _Refused(
                400, f"a cosigning request is {{block, oldSize, proof}}: {exc}"
            ) from None
        try:
            made = witness.cosign(block, old, proof)
        except WitnessRefusal as exc:
            return Response.json({"error": str(exc), "held": exc.held}, status=exc.status)
        return Response.json(made.to_json())

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

    router.add(f"{PREFIX}/head", handler(head))
    router.add(f"{PREFIX}/block", handler(block))
    router.add(f"{PREFIX}/blocks", handler(blocks))
    router.add(f"{PREFIX}/proof/inclusion", handler(inclusion))
    router.add(f"{PREFIX}/proof/consistency", handler(consistency))
    router.add(f"{PREFIX}/append", handler(append), methods=("POST",))
    router.add(f"{PREFIX}/replica", handler(replica))
    router.add(f"{PREFIX}/replicas", handler(followed))
    router.add(f"{PREFIX}/equivocations", handler(equivocations))
    router.add(f"{PREFIX}/provenance", handler(provenance))
    router.add(f"{PREFIX}/checkpoint", handler(checkpoint))
    router.add(f"{PREFIX}/witness", handler(cosign), methods=("POST",))
    return router
