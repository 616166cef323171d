"""Every class of bad input through the registry API over real HTTP/3, on SQLite and on
PostgreSQL: a 4xx saying what is wrong, never a 500, and nothing stored (every table compared
before and after). Then what the API accepts: canonical names (``Alias`` and ``alias`` are one
record set), the quota of TLDs per key, and look-alike TLDs refused."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlalchemy import text

from hypermesh.dns import StaticZones
from hypermesh.node.mirror_api import add_feed_routes, zone_feed
from hypermesh.node.router import Request, Router
from hypermesh.registry.client import API, tld_path
from hypermesh.registry.service import Registry
from hypermesh.registry.signing import cosign, sign_request
from hypermesh.registry.tables import RegistryBase
from hypermesh.transport.client import connect_h3
from hypermesh.transport.identity import Identity
from tests.registry.conftest import ADMIN, OTHER, OWNER
from tests.registry.test_api import Running, raw_post, run


def dump(registry: Registry) -> dict[str, list[str]]:
    """Every row of every registry table, but the nonces (each request spends one)."""
    out = {}
    with registry.engine.connect() as conn:
        for table in RegistryBase.metadata.sorted_tables:
            if table.name != "registry_nonces":
                rows = conn.execute(text(f"SELECT * FROM {table.name}"))
                out[table.name] = sorted(repr(tuple(r)) for r in rows)
    return out


def change(**fields: Any) -> dict[str, Any]:
    return {"name": "www", "type": "A", "changetype": "REPLACE", "values": ["192.0.2.1"], **fields}


BAD_RRSETS: dict[str, tuple[Any, str]] = {
    # names the full build would refuse
    "owner outside the zone": ([change(name="evil.example.")], "outside the zone"),
    "CNAME at the apex": ([change(name="@", type="CNAME", values=["x.example."])], "apex"),
    "CNAME beside other data": ([change(type="CNAME", values=["x.example."])], "stands alone"),
    "NUL in a name": ([change(name="a\x00b")], "control"),
    "space in a name": ([change(name="a b")], "control"),
    "newline in a name": ([change(name="www\n")], "control"),
    "escape in a name": ([change(name="a\\000b")], "no escapes"),
    "name too long": ([change(name="x" * 300)], "rrsets[0].name"),
    # values
    "newline and $INCLUDE": ([change(type="TXT", values=['"a"\n$INCLUDE /etc/passwd'])], "control"),
    "a second record": ([change(values=["192.0.2.1\nevil 60 IN A 192.0.2.66"])], "control"),
    "a comment": ([change(values=["192.0.2.1 ; x"])], "comment"),
    "unparsable as its type": ([change(values=["not-an-address"])], "not a valid A value"),
    "two CNAME values": ([change(type="CNAME", values=["a.", "b."])], "exactly one value"),
    "duplicate values": ([change(values=["192.0.2.1", "192.0.2.1"])], "given twice"),
    "DNSSEC type": ([change(type="RRSIG")], "DNSSEC"),
    "apex NS": ([change(name="@", type="NS", values=["ns.example."])], "apex"),
    "query type": ([change(type="ANY")], "query type"),
    # shapes
    "ttl as a string": ([change(ttl="3600")], "rrsets[0].ttl"),
    "ttl too large": ([change(ttl=2**31)], "rrsets[0].ttl"),
    "ttl negative": ([change(ttl=-1)], "rrsets[0].ttl"),
    "ttl a float": ([change(ttl=1.5)], "rrsets[0].ttl"),
    "ttl huge": ([change(ttl=10**30)], "rrsets[0].ttl"),
    "missing name": ([{"type": "A", "values": ["192.0.2.1"]}], "rrsets[0].name: missing"),
    "missing values": ([{"name": "www", "type": "A"}], "rrsets[0].values: missing"),
    "no values": ([change(values=[])], "rrsets[0].values"),
    "values not a list": ([change(values="192.0.2.1")], "rrsets[0].values"),
    "a value not a string": ([change(values=[7])], "rrsets[0].values[0]"),
    "unknown field": ([change(colour="red")], "colour"),
    "unknown changetype": ([change(changetype="PATCH")], "changetype"),
    "DELETE with values": ([change(changetype="DELETE")], "rrsets[0]"),
    "rrsets not a list": ({"name": "www"}, "rrsets"),
    "empty batch": ([], "rrsets"),
    "too many changes": ([change(name=f"n{i}") for i in range(1001)], "rrsets"),
    "too many values": ([change(values=[f"192.0.2.{i}" for i in range(101)])], "values"),
    "deep nesting": ([change(values=[[[[[[[["x"]]]]]]]])], "deeper"),
}


def test_every_bad_record_batch_is_refused_and_stores_nothing(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        path = f"{API}/rrsets"
        status, _ = await r.client.call(
            "POST", f"{API}/register", {"tld": "acme", "network": "demo"}, signer=OWNER
        )
        assert status == 201
        good = {"tld": "acme", "rrsets": [change()]}
        assert (await r.client.call("POST", path, good, signer=OWNER))[0] == 200
        before = dump(r.registry)
        for what, (rrsets, message) in BAD_RRSETS.items():
            body = {"tld": "acme", "rrsets": rrsets}
            status, answer = await r.client.call("POST", path, body, signer=OWNER)
            assert status == 400, (what, status, answer)
            assert message in answer["error"], (what, answer)
            assert dump(r.registry) == before, what
        # the zone served is the one before, and still verifies
        status, answer = await r.client.call("GET", tld_path("acme"))
        assert answer["rrsets"] == [{"name": "www", "type": "A", "ttl": 3600,
                                     "values": ["192.0.2.1"]}]  # fmt: skip

    run(registry, scenario)


BAD_BODIES: dict[str, tuple[str, bytes, int, str]] = {
    "not JSON": ("register", b"{", 400, "not JSON"),
    "a list": ("register", b"[]", 400, "the body: must be an object"),
    "a string": ("register", b'"acme"', 400, "the body: must be an object"),
    "deeply nested": ("register", b"[" * 5000 + b"]" * 5000, 400, "deeper"),
    "tld with a newline": ("register", b'{"tld":"com\\n","network":"demo"}', 403, "not a valid"),
    "tld with NUL": ("register", b'{"tld":"ac\\u0000me","network":"demo"}', 403, "control"),
    "tld not a string": ("register", b'{"tld":7,"network":"demo"}', 400, "tld"),
    "ttl a string": ("register", b'{"tld":"acme","network":"demo","ttl":"60"}', 400, "ttl"),
    "ttl zero": ("register", b'{"tld":"acme","network":"demo","ttl":0}', 400, "ttl"),
    "dnssec a string": ("register", b'{"tld":"acme","network":"d","dnssec":"no"}', 400, "dnssec"),
    "network missing": ("register", b'{"tld":"acme"}', 400, "network: missing"),
    "network with a space": ("register", b'{"tld":"acme","network":"a b"}', 400, "network"),
    "too large": ("register", b'{"tld":"' + b"a" * (1024 * 1024) + b'"}', 413, "1048576"),
    "renew, tld missing": ("renew", b"{}", 400, "tld: missing"),
    "transfer, newOwner a number": ("transfer", b'{"tld":"acme","newOwner":1}', 400, "newOwner"),
    "revoke, nodeId missing": ("revoke", b'{"reason":"x"}', 400, "nodeId: missing"),
    "revoke, reason too long": ("revoke", b'{"nodeId":"x","reason":"' + b"r" * 300 + b'"}', 400,
                                "reason"),
    "policy, termDays a string": ("admin/policy", b'{"termDays":"30"}', 400, "termDays"),
    "policy, quota negative": ("admin/policy", b'{"maxTldsPerOwner":-1}', 400, "maxTldsPerOwner"),
    "reserve, name a list": ("admin/reserve", b'{"name":["x"]}', 400, "name"),
    "reject, reason too long": ("admin/reject", b'{"tld":"acme","reason":"' + b"r" * 600 + b'"}',
                                400, "reason"),
}  # fmt: skip


def test_every_bad_body_is_a_4xx_naming_the_field_and_stores_nothing(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        before = dump(r.registry)
        for what, (endpoint, body, code, message) in BAD_BODIES.items():
            path = f"{API}/{endpoint}"
            signer = ADMIN if endpoint.startswith("admin/") else OWNER
            headers = sign_request(signer, "POST", path, body, now=time.time())
            if endpoint == "transfer":
                headers = cosign(OTHER, headers, "POST", path, body)
            status, answer = await post_bytes(r, path, body, headers)
            assert status == code, (what, status, answer)
            assert message in answer["error"], (what, answer)
            assert dump(r.registry) == before, what

    run(registry, scenario)


async def post_bytes(
    r: Running, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:

    pin = r.identity.node_id
    async with connect_h3(r.endpoint.address, expected_id=pin, identity=None) as h3:
        status, _, answer = await h3.request(
            "POST", path, headers=[("content-type", "application/json"), *headers.items()],
            body=body,
        )  # fmt: skip
    return status, json.loads(answer)


ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))


@pytest.mark.parametrize(
    "timestamp", ["now in Arabic-Indic digits", "\u00b2", "17\u00b2", "-1", "+17"]
)
def test_a_timestamp_that_is_not_ascii_decimal_is_refused(
    registry: Registry, timestamp: str
) -> None:
    if timestamp.startswith("now"):  # made here: the test's ID stays the same from run to run
        timestamp = str(int(time.time())).translate(ARABIC_INDIC)

    async def scenario(r: Running) -> None:
        body = {"tld": "acme", "network": "demo"}
        path = f"{API}/register"
        headers = sign_request(OWNER, "POST", path, json.dumps(body).encode(), now=time.time())
        status, answer = await raw_post(r, path, body, {**headers, "hm-timestamp": timestamp})
        assert status == 401, answer
        assert r.registry.list_tlds() == []

    run(registry, scenario)


def test_names_are_canonical_before_they_are_stored_or_compared(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        call = r.client.call
        status, answer = await call(
            "POST", f"{API}/register", {"tld": "ACME", "network": "demo"}, signer=OWNER
        )
        assert (status, answer["name"]) == (201, "acme")
        path = f"{API}/rrsets"
        for name in ("Alias", "alias", "ALIAS.acme."):
            body = {"tld": "Acme", "rrsets": [change(name=name, values=["2001:DB8::1"],
                                                     type="aaaa")]}  # fmt: skip
            assert (await call("POST", path, body, signer=OWNER))[0] == 200
        rrsets = r.registry.rrsets("acme")
        assert [(s.name, s.type, s.values) for s in rrsets] == [("alias", "AAAA", ("2001:db8::1",))]
        body = {
            "tld": "acme",
            "rrsets": [{"name": "ALIAS", "type": "AAAA", "changetype": "DELETE"}],
        }
        assert (await call("POST", path, body, signer=OWNER))[0] == 200
        assert r.registry.rrsets("acme") == []

    run(registry, scenario)


def test_a_key_holds_at_most_the_policy_s_number_of_tlds(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        call = r.client.call
        status, policy = await call("POST", f"{API}/admin/policy", {"maxTldsPerOwner": 2},
                                    signer=ADMIN)  # fmt: skip
        assert (status, policy["maxTldsPerOwner"]) == (200, 2)
        for name in ("mine", "two"):
            body = {"tld": name, "network": "demo"}
            assert (await call("POST", f"{API}/register", body, signer=OWNER))[0] == 201
        before = dump(r.registry)
        body = {"tld": "three", "network": "demo"}
        status, answer = await call("POST", f"{API}/register", body, signer=OWNER)
        assert (status, answer["code"]) == (403, "quota")
        assert "at most 2" in answer["error"]
        # nor may a transfer push another key past it
        fresh = Identity.generate()
        for name in ("x1", "x2"):
            body = {"tld": name, "network": "demo"}
            assert (await call("POST", f"{API}/register", body, signer=OTHER))[0] == 201
        before = dump(r.registry)
        body = {"tld": "mine", "newOwner": OTHER.node_id}
        status, answer = await call("POST", f"{API}/transfer", body, signer=OWNER, cosigner=OTHER)
        assert (status, answer["code"]) == (403, "quota")
        assert dump(r.registry) == before
        body = {"tld": "three", "network": "demo"}
        assert (await call("POST", f"{API}/register", body, signer=fresh))[0] == 201

    run(registry, scenario)


# Cyrillic small a (U+0430) for Latin a, Greek omicron (U+03BF) for o, the digit 1 for l.
LOOK_ALIKES = ["\u0430cme", "xn--cme-5cd", "\u0410CME", "acrne", "ac\u200dme"]


def test_look_alikes_of_registered_or_iana_tlds_are_refused(registry: Registry) -> None:
    async def scenario(r: Running) -> None:
        call = r.client.call
        body = {"tld": "acme", "network": "demo"}
        assert (await call("POST", f"{API}/register", body, signer=OWNER))[0] == 201
        before = dump(r.registry)
        for name in [*LOOK_ALIKES, "g\u03bfogle", "c\u043em", "goog1e"]:
            body = {"tld": name, "network": "demo"}
            status, answer = await call("POST", f"{API}/register", body, signer=OTHER)
            assert (status, answer["code"]) == (403, "policy"), (name, answer)
            assert "looks like" in answer["error"] or "not a valid" in answer["error"], answer
            assert dump(r.registry) == before, name

    run(registry, scenario)


@pytest.mark.parametrize(
    "query",
    [
        "tld=acme&serial=-1",
        "tld=acme&serial=1.5",
        "tld=acme&serial=" + "9" * 40,
        "tld=acme&serial=4294967296",
        "tld=acme&serial=%D9%A1",  # Arabic-Indic one
        "tld=acme&serial=%C2%B2",  # superscript two
        "tld=a..b",
        "tld=acme%0A",
        "tld=ac%00me",
        "tld=" + "x" * 300,
        "serial=1",
    ],
)
def test_the_feed_s_query_is_checked_whole(registry: Registry, query: str) -> None:
    """``/registry/v1/ixfr`` on the registry: a bad serial or TLD is a 400, never a 500."""
    zones = StaticZones()
    router = Router()
    add_feed_routes(router, registry, zones, zone_feed(zones), Identity.generate(), "demo")
    request = Request("GET", f"{API}/ixfr", query=query)
    response = asyncio.run(router.dispatch(request))
    assert response.status == 400, (query, response.body)
