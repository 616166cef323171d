"""What a hostile client sends: values that have broken parsers before, and request specs
(``node.py``) for each API built from them.

Every request strategy mixes plausible values (so that requests get past the first checks:
a valid signature, a known TLD, a real record type) with nasty ones (so that what comes after
sees what it did not expect): numbers past their wire range, digits that are not ASCII,
control characters, the wrong JSON type, deep nesting.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from hypermesh.transport.identity import Identity

from .node import NODE, OWNER, STRANGER, TLD

S = st.SearchStrategy

NASTY_TEXT = [
    "",
    " ",
    "com\n",
    "fuzz\n",
    "a\x00b",
    "a b",
    "\t",
    "²",
    "١٢٣",
    "٣",
    "\U0001d7d7",  # MATHEMATICAL BOLD DIGIT NINE
    "1e3",
    "-1",
    "+5",
    " 7",
    "0x10",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "1" * 40,
    "NaN",
    "Infinity",
    "null",
    "évil",
    "\uff26\uff35\uff3a\uff3a",  # FUZZ in full-width letters
    "xn--",
    "xn--80ak6aa92e",
    "..",
    ".",
    "@",
    "*",
    "a" * 64,
    "a" * 300,
    "\u202e",
    "\ud800",
    "$INCLUDE /etc/passwd",
    "x\nevil 60 IN A 192.0.2.66",
    "Alias",
    "evil.example.",
    "www.fuzz.",
    "%00",
    "../../etc/passwd",
]
"""Strings that broke (or could break) a parser: trailing newlines, non-ASCII digits,
numbers past 2^63, zone-file syntax, surrogates, names that case-fold or IDNA-map."""

NASTY_INTS = [
    0,
    -1,
    1,
    255,
    256,
    65535,
    65536,
    99999,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**100,
]

KEYS = [NODE, OWNER, STRANGER, Identity.generate()]
NODE_IDS = [k.node_id for k in KEYS]


def nasty_text() -> S[str]:
    surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2)
    return st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.text(max_size=24),
        st.builds(lambda a, b: a + b, st.text(max_size=6), surrogates),
    )


def nasty_int() -> S[int]:
    return st.one_of(st.sampled_from(NASTY_INTS), st.integers(min_value=-(2**70), max_value=2**70))


def scalars() -> S[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        nasty_int(),
        st.floats(allow_nan=True, allow_infinity=True),
        nasty_text(),
    )


def json_values(max_leaves: int = 10) -> S[Any]:
    """Any JSON value (NaN and Infinity included: Python's json reads them)."""
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(nasty_text(), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def either(plausible: S[Any]) -> S[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(plausible, plausible, json_values(4))


def obj(fields: dict[str, S[Any]]) -> S[dict[str, Any]]:
    """A JSON object with any subset of ``fields`` (each mostly plausible), sometimes with a
    stranger key besides."""
    base = st.fixed_dictionaries({}, optional={k: either(v) for k, v in fields.items()})
    extra = st.dictionaries(nasty_text(), json_values(3), max_size=2)
    return st.one_of(base, st.builds(lambda a, b: {**b, **a}, base, extra))


def hex_bytes(size: int) -> S[str]:
    return st.one_of(st.binary(min_size=size, max_size=size).map(bytes.hex), nasty_text())


def node_ids() -> S[str]:
    return st.one_of(st.sampled_from(NODE_IDS), nasty_text())


def tlds() -> S[str]:
    return st.one_of(st.sampled_from([TLD, TLD, "other", "acme", "FUZZ", "com\n"]), nasty_text())


def digits_or_nasty() -> S[str]:
    return st.one_of(
        st.integers(min_value=0, max_value=2**70).map(str),
        st.sampled_from(NASTY_TEXT),
    )


def query(params: dict[str, S[str]]) -> S[str]:
    """A query string: some of ``params``, sometimes repeated or bare, sometimes junk."""
    if not params:
        return st.one_of(st.just(""), nasty_text())
    pair = st.sampled_from(sorted(params)).flatmap(
        lambda name: params[name].map(lambda value: f"{name}={value}")
    )
    bare = st.sampled_from(sorted(params))
    parts = st.lists(st.one_of(pair, pair, bare, nasty_text()), max_size=4)
    return parts.map("&".join)


def spec(
    target: S[str],
    *,
    method: S[str] | None = None,
    sign: S[Any] | None = None,
    body: S[Any] | None = None,
    node: str = "public",
    headers: S[list[list[str]]] | None = None,
) -> S[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "node": st.just(node),
            "method": method if method is not None else st.just("GET"),
            "target": target,
            "sign": sign if sign is not None else st.none(),
            "body": body if body is not None else st.just(""),
            "headers": headers if headers is not None else st.just([]),
        }
    )


def get(path: str, params: dict[str, S[str]], node: str = "public") -> S[dict[str, Any]]:
    return spec(query(params).map(lambda q: f"{path}?{q}" if q else path), node=node)


def json_body(value: S[Any]) -> S[Any]:
    """A body: the JSON of ``value`` mostly; sometimes deep nesting or bytes that are not JSON."""
    return st.one_of(
        value.map(lambda v: {"json": v}),
        value.map(lambda v: {"json": v}),
        st.sampled_from([{"repeat": "[", "times": 100_000}, {"repeat": '{"a":', "times": 50_000}]),
        st.binary(max_size=64).map(lambda b: {"base64": base64.b64encode(b).decode()}),
    )


def signed_post(
    path: str, value: S[Any], roles: list[str], node: str = "public"
) -> S[dict[str, Any]]:
    return spec(
        st.just(path),
        method=st.just("POST"),
        sign=st.sampled_from([*roles, *roles, *roles, "stranger", None]),
        body=json_body(value),
        node=node,
        headers=st.just([["content-type", "application/json"]]),
    )


# -- the registry API ------------------------------------------------------------------------

RECORD_TYPES = ["A", "AAAA", "TXT", "CNAME", "MX", "NS", "HTTPS", "TLSA", "SRV", "a", "TYPE65"]
RDATA = [
    "192.0.2.1",
    "2001:db8::1",
    '"text"',
    "www",
    "www.fuzz.",
    "10 mx.example.net.",
    '1 . alpn="h3"',
    "3 1 1 " + "ab" * 32,
    "0 5 443 www",
]


def rrset_changes() -> S[dict[str, Any]]:
    return obj(
        {
            "name": st.one_of(st.sampled_from(["www", "@", "api", "a.b", "*"]), nasty_text()),
            "type": st.one_of(st.sampled_from(RECORD_TYPES), nasty_text()),
            "changetype": st.one_of(
                st.sampled_from(["REPLACE", "DELETE", "replace"]), nasty_text()
            ),
            "ttl": nasty_int(),
            "values": st.lists(st.one_of(st.sampled_from(RDATA), nasty_text()), max_size=3),
        }
    )


REGISTRY_BODIES: dict[str, tuple[S[Any], list[str]]] = {
    "register": (
        obj({"tld": tlds(), "network": nasty_text(), "dnssec": st.booleans(), "ttl": nasty_int()}),
        ["owner"],
    ),
    "rrsets": (obj({"tld": tlds(), "rrsets": st.lists(rrset_changes(), max_size=4)}), ["owner"]),
    "delete": (obj({"tld": tlds()}), ["owner"]),
    "renew": (obj({"tld": tlds()}), ["owner"]),
    "transfer": (obj({"tld": tlds(), "newOwner": node_ids()}), ["cosigned", "owner"]),
    "revoke": (
        obj({"nodeId": nasty_text(), "reason": nasty_text(), "replacedBy": nasty_text()}),
        ["owner", "stranger"],
    ),
    "admin/approve": (obj({"tld": tlds()}), ["admin"]),
    "admin/reject": (obj({"tld": tlds(), "reason": nasty_text()}), ["admin"]),
    "admin/expire": (obj({"tld": tlds(), "reason": nasty_text()}), ["admin"]),
    "admin/reserve": (obj({"name": tlds()}), ["admin"]),
    "admin/unreserve": (obj({"name": tlds()}), ["admin"]),
    "admin/policy": (
        obj(
            {
                "approval": st.sampled_from(["automatic", "manual", "AUTOMATIC"]),
                "termDays": nasty_int(),
                "reserved": st.lists(nasty_text(), max_size=3),
            }
        ),
        ["admin"],
    ),
}


def registry_requests() -> S[dict[str, Any]]:
    writes = [
        signed_post(f"/registry/v1/{name}", value, roles)
        for name, (value, roles) in REGISTRY_BODIES.items()
    ]
    reads = [
        get("/registry/v1/tld", {"name": tlds()}),
        get("/registry/v1/tlds", {}),
        get("/registry/v1/policy", {}),
        get("/registry/v1/revocations", {}),
        get("/registry/v1/anchors", {}),
        get("/registry/v1/ixfr", {"tld": tlds(), "serial": digits_or_nasty()}),
        get("/registry/v1/watch", {}),
        spec(st.just("/registry/"), method=st.sampled_from(["GET", "HEAD"])),
    ]
    return st.one_of(*writes, *writes, *reads)


def forged_headers() -> S[dict[str, Any]]:
    """A signed write whose hm-* headers are then replaced by anything: the checks of the
    headers themselves (timestamp digits, nonce length, signer ID, base64) see it all."""
    names = ["hm-signer", "hm-timestamp", "hm-nonce", "hm-signature", "hm-cosigner"]
    values = st.one_of(nasty_text(), st.sampled_from(NODE_IDS), digits_or_nasty())
    headers = st.lists(st.tuples(st.sampled_from(names), values).map(list), min_size=1, max_size=3)
    paths = st.sampled_from(
        [
            "/registry/v1/register",
            "/registry/v1/rrsets",
            "/registry/v1/transfer",
            "/chain/v1/append",
            "/message/v1/send",
            "/message/v1/inbox",
        ]
    )
    return st.fixed_dictionaries(
        {
            "method": st.just("POST"),
            "target": paths,
            "sign": st.sampled_from(["owner", "node", "cosigned"]),
            "headers": headers,
            "body": st.just({"json": {"tld": TLD}}),
        }
    )


# -- the chain API ---------------------------------------------------------------------------


def links() -> S[dict[str, Any]]:
    return obj({"author": node_ids(), "seq": nasty_int(), "hash": hex_bytes(32)})


def chain_requests() -> S[dict[str, Any]]:
    number = digits_or_nasty()
    append = obj(
        {
            "kind": st.one_of(st.sampled_from(["note", "link", "receipt", "7", 300]), nasty_int()),
            "text": nasty_text(),
            "payload": st.one_of(
                st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode())
            ),
            "links": st.lists(links(), max_size=3),
        }
    )
    witness = obj(
        {
            "block": st.one_of(st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())),
            "oldSize": nasty_int(),
            "proof": st.lists(hex_bytes(32), max_size=3),
        }
    )
    return st.one_of(
        signed_post("/chain/v1/append", append, ["node"]),
        signed_post("/chain/v1/witness", witness, ["stranger"]),
        get("/chain/v1/head", {}),
        get("/chain/v1/block", {"seq": number}),
        get("/chain/v1/blocks", {"from": number, "limit": number}),
        get("/chain/v1/proof/inclusion", {"seq": number, "size": number}),
        get("/chain/v1/proof/consistency", {"from": number, "to": number}),
        get("/chain/v1/replica", {"author": node_ids(), "from": number}),
        get("/chain/v1/replicas", {}),
        get("/chain/v1/equivocations", {}),
        get(
            "/chain/v1/provenance",
            {
                "seq": number,
                "origin": st.one_of(
                    st.builds(lambda a, n: f"{a}:{n}", node_ids(), number), nasty_text()
                ),
            },
        ),
        get("/chain/v1/checkpoint", {}),
    )


# -- messages --------------------------------------------------------------------------------


def sealed() -> S[dict[str, Any]]:
    roles = st.sampled_from(["stranger", "owner", "node"])
    return st.fixed_dictionaries(
        {
            "sender": roles,
            "recipient": st.sampled_from(["node", "node", "stranger"]),
            "author": st.one_of(roles, hex_bytes(32)),
            "seq": st.one_of(
                st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]),
                st.integers(min_value=0, max_value=2**64 - 1),
            ),
            "hash": hex_bytes(32),
            "timestampMs": st.integers(min_value=0, max_value=2**64 - 1),
            "text": nasty_text(),
        },
        optional={"id": hex_bytes(16)},
    )


BAD_ADDRESSES = ["", "nohost", "[::1", "127.0.0.1:99999", "127.0.0.1:-1", "::1:5", "a:b", ":"]
"""Addresses a send may name that fail before any packet leaves (no lookups, no waits)."""


def message_requests() -> S[dict[str, Any]]:
    send = obj(
        {
            "to": node_ids(),
            "address": st.sampled_from(BAD_ADDRESSES),
            "text": nasty_text(),
        }
    )
    return st.one_of(
        spec(
            st.just("/message/v1/inbox"),
            method=st.just("POST"),
            body=st.one_of(
                sealed().map(lambda s: {"sealed": s}),
                sealed().map(lambda s: {"sealed": s}),
                st.binary(max_size=200).map(lambda b: {"base64": base64.b64encode(b).decode()}),
            ),
        ),
        spec(
            query({"limit": digits_or_nasty()}).map(lambda q: f"/message/v1/inbox?{q}"),
            sign=st.sampled_from(["node", "stranger", None]),
        ),
        signed_post("/message/v1/send", send, ["node"]).filter(_no_lookup),
        get("/message/v1/key", {}),
    )


def _no_lookup(request: dict[str, Any]) -> bool:
    """Keep sends whose address cannot make the node look a name up or wait on a peer."""
    body = request["body"]
    if not isinstance(body, dict) or "json" not in body or not isinstance(body["json"], dict):
        return True
    address = body["json"].get("address")
    return not isinstance(address, str) or address in BAD_ADDRESSES


# -- mirrors, DNS over HTTPS -----------------------------------------------------------------


def mirror_requests() -> S[dict[str, Any]]:
    return st.one_of(
        get("/registry/v1/anchors", {}, node="mirror"),
        get("/registry/v1/ixfr", {"tld": tlds(), "serial": digits_or_nasty()}, node="mirror"),
    )


def dns_requests() -> S[dict[str, Any]]:
    dns_param = st.one_of(
        st.binary(max_size=80).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()),
        nasty_text(),
    )
    types = st.sampled_from(
        ["application/dns-message", "text/plain", "", "APPLICATION/DNS-MESSAGE"]
    )
    return st.one_of(
        get("/dns-query", {"dns": dns_param, "ct": nasty_text()}),
        spec(
            st.just("/dns-query"),
            method=st.just("POST"),
            body=st.binary(max_size=300).map(lambda b: {"base64": base64.b64encode(b).decode()}),
            headers=types.map(lambda t: [["content-type", t]]),
        ),
    )


# -- tunnels ---------------------------------------------------------------------------------


def tunnel_requests() -> S[dict[str, Any]]:
    layer = obj(
        {
            "v": st.sampled_from([1, 2, "1"]),
            "c": hex_bytes(16),
            "k": st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
            "exp": st.one_of(
                st.sampled_from([float("nan"), float("inf"), -1.0, 1e300, 4e9]),
                st.floats(allow_nan=True),
            ),
            "next": st.one_of(
                st.none(),
                obj({"a": st.sampled_from(BAD_ADDRESSES), "i": node_ids(), "c": hex_bytes(16)}),
            ),
            "inner": st.just(""),
        }
    )
    open_message = st.fixed_dictionaries(
        {"layer": layer, "for": st.sampled_from(["node", "node", "stranger"])}
    )
    inner_request = st.fixed_dictionaries(
        {
            "method": st.one_of(st.sampled_from(["GET", "POST", "HEAD"]), nasty_text()),
            "target": st.one_of(
                st.sampled_from(
                    ["/chain/v1/head", "/registry/v1/tld?name=fuzz", "/dns-query", "/status"]
                ),
                nasty_text(),
            ),
            "headers": st.lists(st.tuples(nasty_text(), nasty_text()).map(list), max_size=2),
            "body": nasty_text(),
        }
    )
    through = st.one_of(
        inner_request.map(lambda r: {"request": r}),
        st.binary(max_size=200).map(lambda b: {"raw": {"base64": base64.b64encode(b).decode()}}),
        st.integers(min_value=1, max_value=255).map(lambda k: {"kind": k, "raw": ""}),
    )
    return st.one_of(
        spec(
            st.just("/tunnel/v1/open"),
            method=st.just("POST"),
            node="ephemeral",
            body=st.one_of(
                open_message.map(lambda o: {"onion": o}),
                st.binary(max_size=200).map(lambda b: {"base64": base64.b64encode(b).decode()}),
            ),
        ),
        spec(
            st.just("/tunnel/v1/relay"),
            method=st.just("POST"),
            node="ephemeral",
            body=st.binary(max_size=200).map(lambda b: {"base64": base64.b64encode(b).decode()}),
        ),
        st.builds(lambda t: {"body": {"tunnel": t}}, through),
        get("/tunnel/v1/key", {}, node="ephemeral"),
    )


# -- anything at all, on any path ------------------------------------------------------------


def raw_requests(paths: list[str]) -> S[dict[str, Any]]:
    """Any method on any path (routed or nearly), any headers and any body, unsigned."""
    path = st.one_of(
        st.sampled_from(paths),
        st.sampled_from(paths).map(lambda p: p + "/"),
        st.sampled_from(paths).map(str.upper),
        st.sampled_from(paths).map(lambda p: "/" + p),
        st.text(max_size=30).map(lambda t: "/" + t),
    )
    target = st.builds(
        lambda p, q: f"{p}?{q}" if q else p, path, st.one_of(st.just(""), nasty_text())
    )
    header_names = st.sampled_from(
        [
            "content-type",
            "accept",
            "hm-signer",
            "hm-timestamp",
            "hm-nonce",
            "hm-signature",
            "content-length",
            "x-anything",
            ":path",
            "",
        ]
    )
    headers = st.lists(st.tuples(header_names, nasty_text()).map(list), max_size=4)
    body = st.one_of(
        st.just(""),
        st.binary(max_size=300).map(lambda b: {"base64": base64.b64encode(b).decode()}),
        json_values().map(lambda v: {"json": v}),
    )
    return st.fixed_dictionaries(
        {
            "node": st.sampled_from(["public", "public", "mirror", "ephemeral"]),
            "method": st.one_of(
                st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "get"]),
                nasty_text(),
            ),
            "target": target,
            "headers": headers,
            "body": body,
        }
    )
