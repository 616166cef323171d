"""Bad input to the chain API over a real QUIC socket: every malformed or unauthorised request
gets a clear 4xx and nothing is appended."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from hypermesh.chain.store import ChainStore
from hypermesh.dns.source import StaticZones
from hypermesh.node.chain_api import MAX_PAYLOAD, add_chain_routes
from hypermesh.registry.signing import sign_request
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from tests.dns.conftest import ServerThread

KEY = Identity.generate()


async def post(address: str, pin: str, body: bytes, signer: Identity | None) -> tuple[int, str]:
    path = "/chain/v1/append"
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


def test_bad_requests_are_refused_and_nothing_is_appended(tmp_path: Path) -> None:
    store = ChainStore.open(tmp_path / "chain.db", KEY)
    thread = ServerThread(StaticZones(), routes=lambda router: add_chain_routes(router, store))
    server = thread.start()
    at, pin = server.address, server.identity.node_id
    try:
        cases = [
            (b"not json", KEY, 400, "not JSON"),
            (b"[1, 2]", KEY, 400, "JSON object"),
            (json.dumps({"kind": "gossip"}).encode(), KEY, 400, "is not one of"),
            (json.dumps({"payload": "%%%"}).encode(), KEY, 400, "base64"),
            (json.dumps({"links": [{"author": "x"}]}).encode(), KEY, 400, "a link must be"),
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
