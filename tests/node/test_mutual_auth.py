"""Mutual authentication: a client holding a node key proves it in the QUIC handshake, and the
handler sees the caller's node ID; a client without one stays anonymous. Nothing to spoof: the
ID is derived from the key the client proved it holds (TLS CertificateVerify)."""

from __future__ import annotations

import asyncio
import json

from hypermesh.dns.source import StaticZones
from hypermesh.node.router import Request, Response, Router
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from tests.dns.conftest import ServerThread


def whoami_routes(router: Router) -> None:
    async def whoami(request: Request) -> Response:
        return Response.json({"caller": request.peer_id})

    router.add("/whoami", whoami)


async def ask(address: str, server: str, identity: Identity | None) -> object:
    async with (
        asyncio.timeout(10),
        connect_h3(address, expected_id=server, identity=identity) as h3,
    ):
        status, _, body = await h3.request("GET", "/whoami")
    assert status == 200
    return json.loads(body)["caller"]


def test_the_handler_sees_who_calls() -> None:
    thread = ServerThread(StaticZones(), routes=whoami_routes)
    server = thread.start()
    try:
        alice = Identity.generate()
        pinned = server.identity.node_id
        assert asyncio.run(ask(server.address, pinned, alice)) == alice.node_id
        assert asyncio.run(ask(server.address, pinned, None)) is None
        bob = Identity.generate()
        assert asyncio.run(ask(server.address, pinned, bob)) == bob.node_id
    finally:
        thread.stop()
