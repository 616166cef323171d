"""Mutual authentication: a client holding a node key proves it in the QUIC handshake, and the
handler sees the caller's node ID; a client without one stays anonymous. Nothing to spoof: the
ID is derived from the key the client proved it holds (TLS CertificateVerify)."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest
from aioquic.asyncio.client import connect
from cryptography import x509
from cryptography.x509.oid import NameOID

from hypermesh.dns.source import StaticZones
from hypermesh.errors import TransportError
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import H3ClientProtocol, client_configuration, connect_h3
from hypermesh.transport.identity import Identity
from tests.harness.dns_server import ServerThread


def whoami_routes(router: Router) -> None:
    async def whoami(request: Request) -> RouteResponse:
        return RouteResponse.json({"caller": request.peer_id})

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


def spoofed_certificate(victim: Identity, attacker: Identity) -> x509.Certificate:
    """A certificate that names the victim's key (and node ID), made and signed by the attacker,
    who does not hold the victim's private key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, victim.node_id)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(victim.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(attacker.private_key, None)
    )


def test_a_spoofed_id_is_refused_in_the_handshake() -> None:
    """Claiming a member's node ID without its key: the certificate carries the member's public
    key, but the handshake's CertificateVerify is signed with the attacker's key, so the server
    refuses the handshake and no handler ever sees the claimed ID."""
    seen: list[str | None] = []

    def routes(router: Router) -> None:
        async def whoami(request: Request) -> RouteResponse:
            seen.append(request.peer_id)
            return RouteResponse.json({"caller": request.peer_id})

        router.add("/whoami", whoami)

    thread = ServerThread(StaticZones(), routes=routes)
    server = thread.start()
    victim, attacker = Identity.generate(), Identity.generate()

    async def spoof() -> None:
        configuration = client_configuration(server.identity.node_id, identity=None)
        configuration.certificate = spoofed_certificate(victim, attacker)
        configuration.private_key = attacker.private_key
        host, port = parse_address(server.address)
        async with (
            asyncio.timeout(5),
            connect(
                host, int(port), configuration=configuration, create_protocol=H3ClientProtocol
            ) as h3,
        ):
            h3.address = server.address
            await h3.request("GET", "/whoami")

    try:
        with pytest.raises(TransportError, match="0x133"):  # TLS alert 51: decrypt_error
            asyncio.run(spoof())
        assert victim.node_id not in seen
        # The real victim, with its key, gets in as itself.
        assert asyncio.run(ask(server.address, server.identity.node_id, victim)) == victim.node_id
    finally:
        thread.stop()
