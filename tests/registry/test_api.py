"""The registry API over real HTTP/3 on loopback, on SQLite and on PostgreSQL: every refused write
leaves nothing behind; renew, transfer and administration; the registry page over HTTP/3 and
over HTTP/1.1 on TCP."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.rcode
import pytest

from hypermesh.dns import DnsEngine, StaticZones
from hypermesh.node.registry_api import add_registry_routes
from hypermesh.node.router import Router
from hypermesh.node.routes import add_dns_routes
from hypermesh.node.server import QuicEndpoint, bind_endpoint, server_configuration
from hypermesh.node.web import WebServer, start_web
from hypermesh.registry.client import API, RegistryClient, tld_path
from hypermesh.registry.service import Registry
from hypermesh.registry.signing import cosign, sign_request
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import connect_h3
from hypermesh.transport.dns_client import doq_query
from hypermesh.transport.identity import Identity
from tests.registry.conftest import ADMIN, OTHER, OWNER


@dataclass
class Running:
    registry: Registry
    zones: StaticZones
    endpoint: QuicEndpoint
    web: WebServer
    identity: Identity

    @property
    def client(self) -> RegistryClient:
        return RegistryClient(self.endpoint.address, self.identity.node_id, identity=None)


@contextlib.asynccontextmanager
async def serving(registry: Registry) -> AsyncIterator[Running]:
    identity = Identity.generate()
    zones = StaticZones()
    router = Router()
    add_registry_routes(router, registry, zones)
    answerer = DnsEngine(zones)
    add_dns_routes(router, answerer)
    endpoint = await bind_endpoint(
        "127.0.0.1",
        0,
        configuration=server_configuration(identity),
        router=router,
        dns_answer=answerer.answer,
    )
    web = await start_web("127.0.0.1:0", router, h3_port=endpoint.port)
    try:
        yield Running(registry, zones, endpoint, web, identity)
    finally:
        web.close()
        endpoint.close()


def run(registry: Registry, scenario: Callable[[Running], Awaitable[None]]) -> None:
    async def main() -> None:
        async with serving(registry) as running:
            await asyncio.wait_for(scenario(running), 60)

    asyncio.run(main())


async def raw_post(
    running: Running, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode()
    pin = running.identity.node_id
    async with (
        asyncio.timeout(10),
        connect_h3(running.endpoint.address, expected_id=pin, identity=None) as h3,
    ):
        status, _, answer = await h3.request(
            "POST",
            path,
            headers=[("content-type", "application/json"), *headers.items()],
            body=data,
        )
    return status, json.loads(answer)


def test_refused_writes_store_nothing(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        path = f"{API}/register"
        body = {"tld": "acme", "network": "demo"}
        raw = json.dumps(body).encode()
        good = sign_request(OWNER, "POST", path, raw, now=time.time())
        attempts = {
            "unsigned": {},
            "wrongly signed": {**good, "hm-signer": OTHER.node_id},
            "stale": sign_request(OWNER, "POST", path, raw, now=time.time() - 3600),
            "signed for another body": sign_request(OWNER, "POST", path, b"{}", now=time.time()),
        }
        for what, headers in attempts.items():
            status, answer = await raw_post(r, path, body, headers)
            assert status == 401, (what, answer)
        assert r.registry.list_tlds() == []

        status, _ = await raw_post(r, path, body, good)
        assert status == 201
        status, answer = await raw_post(r, path, body, good)  # the same request again
        assert (status, answer["code"]) == (401, "unauthorized")
        assert "replayed" in answer["error"]

        change = {"tld": "acme", "rrsets": [{"name": "www", "type": "A", "values": ["192.0.2.7"]}]}
        status, answer = await r.client.call("POST", f"{API}/rrsets", change, signer=OTHER)
        assert (status, answer["code"]) == (403, "forbidden")
        assert r.registry.rrsets("acme") == []
        status, answer = await r.client.call(
            "POST", f"{API}/register", {"tld": "com", "network": "demo"}, signer=OWNER
        )
        assert (status, answer["code"]) == (403, "policy")
        assert [t.name for t in r.registry.list_tlds()] == ["acme"]

    run(registry, scenario)


def test_renew_and_a_cosigned_transfer(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        call = r.client.call
        status, info = await call(
            "POST", f"{API}/register", {"tld": "acme", "network": "demo"}, signer=OWNER
        )
        assert status == 201
        status, renewed = await call("POST", f"{API}/renew", {"tld": "acme"}, signer=OWNER)
        assert status == 200 and renewed["expiresAt"] > info["expiresAt"]

        body = {"tld": "acme", "newOwner": OTHER.node_id}
        status, answer = await call("POST", f"{API}/transfer", body, signer=OWNER)
        assert status == 401 and "hm-cosigner" in answer["error"]
        # cosigned by someone who is not the new owner
        status, answer = await call(
            "POST", f"{API}/transfer", body, signer=OWNER, cosigner=Identity.generate()
        )
        assert status == 403 and "cosigned by the new owner" in answer["error"]
        # a forged cosignature: the new owner's ID over a signature made by another key
        raw = json.dumps(body).encode()
        headers = sign_request(OWNER, "POST", f"{API}/transfer", raw, now=time.time())
        forged = cosign(Identity.generate(), headers, "POST", f"{API}/transfer", raw)
        forged["hm-cosigner"] = OTHER.node_id
        status, answer = await raw_post(r, f"{API}/transfer", body, forged)
        assert status == 401 and "cosignature does not verify" in answer["error"]
        assert r.registry.get_tld("acme").owner == OWNER.node_id

        status, moved = await call("POST", f"{API}/transfer", body, signer=OWNER, cosigner=OTHER)
        assert (status, moved["owner"]) == (200, OTHER.node_id)
        status, _ = await call("POST", f"{API}/renew", {"tld": "acme"}, signer=OWNER)
        assert status == 403  # no longer the owner

    run(registry, scenario)


def test_administration_through_the_api(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        call = r.client.call
        status, policy = await call("GET", f"{API}/policy")
        assert status == 200 and policy["admin"] == ADMIN.node_id
        status, answer = await call(
            "POST", f"{API}/admin/policy", {"approval": "manual"}, signer=OWNER
        )
        assert (status, answer["code"]) == (403, "forbidden")
        status, policy = await call(
            "POST", f"{API}/admin/policy", {"approval": "manual", "termDays": 90}, signer=ADMIN
        )
        assert (policy["approval"], policy["termDays"]) == ("manual", 90)

        for tld in ("acme", "beta"):
            status, info = await call(
                "POST", f"{API}/register", {"tld": tld, "network": "demo"}, signer=OWNER
            )
            assert (status, info["status"]) == (201, "pending")
        assert await _rcode(r, "acme.", "SOA") == dns.rcode.REFUSED  # not served while pending

        status, info = await call("POST", f"{API}/admin/approve", {"tld": "acme"}, signer=ADMIN)
        assert (status, info["status"]) == (200, "active")
        assert await _rcode(r, "acme.", "SOA") == dns.rcode.NOERROR
        body = {"tld": "beta", "reason": "looks like a brand"}
        status, info = await call("POST", f"{API}/admin/reject", body, signer=ADMIN)
        assert (info["status"], info["note"]) == ("rejected", "looks like a brand")

        status, policy = await call("POST", f"{API}/admin/reserve", {"name": "gamma"}, signer=ADMIN)
        assert policy["reserved"] == ["gamma"]
        status, answer = await call(
            "POST", f"{API}/register", {"tld": "gamma", "network": "demo"}, signer=OWNER
        )
        assert (status, answer["code"]) == (403, "policy")

        status, info = await call(
            "POST", f"{API}/admin/expire", {"tld": "acme", "reason": "unpaid"}, signer=ADMIN
        )
        assert (status, info["status"], info["note"]) == (200, "expired", "unpaid")
        assert await _rcode(r, "acme.", "SOA") == dns.rcode.REFUSED  # no longer served
        status, info = await call("POST", f"{API}/renew", {"tld": "acme"}, signer=OWNER)
        assert (status, info["status"]) == (200, "active")
        assert await _rcode(r, "acme.", "SOA") == dns.rcode.NOERROR

        status, listed = await call("GET", f"{API}/tlds")
        assert {i["name"]: i["status"] for i in listed["items"]} == {
            "acme": "active",
            "beta": "rejected",
        }
        status, one = await call("GET", tld_path("beta"))
        assert (status, one["note"], one["rrsets"]) == (200, "looks like a brand", [])

    run(registry, scenario)


async def _rcode(r: Running, name: str, rdtype: str) -> int:
    query = dns.message.make_query(name, rdtype)
    wire = await doq_query(
        r.endpoint.address, query.to_wire(), expected_id=r.identity.node_id, identity=None
    )
    return dns.message.from_wire(wire).rcode()


def test_the_registry_page_over_http3_and_tcp(registry: Registry) -> None:
    registry.register("acme", OWNER.node_id, "demo")
    registry.register("zeta", OWNER.node_id, "demo")
    registry.expire("zeta", "<script>alert(1)</script>", signer=ADMIN.node_id)

    async def scenario(r: Running) -> None:
        pin = r.identity.node_id
        async with (
            asyncio.timeout(10),
            connect_h3(r.endpoint.address, expected_id=pin, identity=None) as h3,
        ):
            status, headers, body = await h3.request("GET", "/registry/")
        assert status == 200
        assert dict(headers)["content-type"].startswith("text/html")
        page = body.decode()
        assert '<tr id="tld-acme">' in page and '<tr id="tld-zeta">' in page
        assert "<script>" not in page and "&lt;script&gt;" in page

        over_tcp = await asyncio.to_thread(_tcp_requests, r.web.address, r.endpoint.port)
        assert over_tcp["GET /registry/"][0] == 200
        tcp_page = over_tcp["GET /registry/"][2].decode()
        assert tcp_page.split("<table>")[1] == page.split("<table>")[1]  # the same page
        assert over_tcp["GET /registry/"][1]["alt-svc"] == f'h3=":{r.endpoint.port}"; ma=86400'
        assert over_tcp["HEAD /registry/"][:1] == (200,) and over_tcp["HEAD /registry/"][2] == b""
        assert over_tcp["GET /registry/v1/tlds"][0] == 200
        assert over_tcp["POST /registry/v1/register"][0] == 405  # read-only over TCP
        assert over_tcp["POST /registry/"][0] == 405
        assert over_tcp["GET /dns-query?dns=AAAB"][0] == 404

    run(registry, scenario)


def _tcp_requests(address: str, h3_port: int) -> dict[str, tuple[int, dict[str, str], bytes]]:
    host, port = parse_address(address)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    answers = {}
    try:  # one keep-alive connection for all of them
        for line in (
            "GET /registry/",
            "HEAD /registry/",
            "GET /registry/v1/tlds",
            "POST /registry/v1/register",
            "POST /registry/",
            "GET /dns-query?dns=AAAB",
        ):
            method, path = line.split(" ")
            connection.request(method, path, body=b"{}" if method == "POST" else None)
            response = connection.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            answers[line] = (response.status, headers, response.read())
    finally:
        connection.close()
    return answers


@pytest.mark.parametrize("junk", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n" * 2000])
def test_bad_http1_input_closes_the_connection_and_the_server_lives(
    registry: Registry, junk: bytes
) -> None:
    async def scenario(r: Running) -> None:
        host, port = parse_address(r.web.address)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(junk)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 "))
        writer.close()
        over_tcp = await asyncio.to_thread(_tcp_requests, r.web.address, r.endpoint.port)
        assert over_tcp["GET /registry/"][0] == 200

    run(registry, scenario)
