"""The contract of each parser that takes bytes from outside, as a check of one input.

Each check takes the input's bytes (as a corpus file holds them) and raises ``AssertionError``
(or lets the parser's unexpected exception through) when the contract does not hold:

- ``manifest``: ``hmctl validate``'s loading and validation never raise, whatever the bytes:
  every problem is reported as a problem; a manifest that validates has only host:port values
  the node and the drivers can use (port 0-65535).
- ``dns-message``: the answering engine answers FORMERR (or nothing, below 12 bytes or for a
  response) and never raises; an answer carries the query's ID and parses.
- ``block``: ``Block.from_wire`` refuses with ``BadBlock`` only; what it accepts encodes back to
  the same bytes and survives the JSON form the chain API sends.
- ``provenance-bundle``: a bundle file (``hmctl chain verify --bundle``) is refused with
  ``BadBlock`` only, never an unexpected exception.
- ``*-api`` (the registry, chain, message, mirror, DNS-over-HTTPS and tunnel APIs, and ``any-api``
  for any path): the request spec (``node.py``) is answered without a 5xx (but the few that
  report the server's state) and without anything failing inside the node.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import dns.message
import dns.rcode

from hypermesh.chain.block import BadBlock, Block
from hypermesh.chain.provenance import Bundle, verify_bundle
from hypermesh.chain.wire import block_from_json, block_json
from hypermesh.dns import DnsEngine, StaticZones
from hypermesh.model.loader import load
from hypermesh.model.validate import build
from hypermesh.transport.address import parse_address
from hypermesh.tunnel.relay import RELAY_PATH
from tests.harness.dns_server import make_zone, sign

from .node import NODES, TLD

Check = Callable[[bytes], None]

# -- manifests -------------------------------------------------------------------------------

ADDRESS_KEYS = {"listen", "address", "endpoint"}
"""Spec fields that hold host:port, wherever they sit in a resource's spec."""


def _addresses(value: Any, path: str = "spec") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in ADDRESS_KEYS and isinstance(item, str):
                yield where, item
            else:
                yield from _addresses(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _addresses(item, f"{path}[{i}]")


def check_manifest(raw: bytes) -> None:
    loaded = load(["-"], stdin=io.BytesIO(raw))
    desired, problems = build(loaded)
    for problem in problems:
        assert str(problem), problem  # renders (FILE:LINE:COL: message)
    if problems:
        return
    for resource in desired:
        for where, address in _addresses(resource.spec):
            try:
                parse_address(address)
            except ValueError as exc:
                raise AssertionError(
                    f"{resource.key} validated, but {where} = {address!r} is not usable: {exc}"
                ) from None


# -- DNS messages ----------------------------------------------------------------------------

ANSWERERS = (
    DnsEngine(StaticZones([make_zone()])),
    DnsEngine(StaticZones([sign(make_zone()).zone])),
)
"""The engine over the test zone, unsigned and signed (DNSSEC answers take other paths)."""

RCODES = {
    dns.rcode.NOERROR,
    dns.rcode.NXDOMAIN,
    dns.rcode.FORMERR,
    dns.rcode.REFUSED,
    dns.rcode.NOTIMP,
    dns.rcode.BADVERS,
}


def check_dns_answer(wire: bytes, answerer: DnsEngine) -> None:
    """None only below 12 bytes or for a response; else a parseable answer with the query's
    ID and an rcode the engine may give."""
    answer = answerer.answer(wire)
    if answer is None:
        assert len(wire) < 12 or wire[2] & 0x80
        return
    assert isinstance(answer, bytes)
    assert answer[:2] == wire[:2]
    assert dns.message.from_wire(answer).rcode() in RCODES


def check_dns_message(raw: bytes) -> None:
    for answerer in ANSWERERS:
        check_dns_answer(raw, answerer)


# -- blocks and bundles ----------------------------------------------------------------------


def check_block(raw: bytes) -> None:
    try:
        block = Block.from_wire(raw)
    except BadBlock:
        return
    assert block.to_wire() == raw
    assert Block.from_wire(block.to_wire()) == block
    sent = json.loads(json.dumps(block_json(block)))
    assert block_from_json(sent) == (block, None)


def check_provenance_bundle(raw: bytes) -> None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON: the command line says so before any bundle is read
    try:
        verify_bundle(Bundle.from_json(data))
    except BadBlock:
        return


# -- HTTP/3 APIs -----------------------------------------------------------------------------


def check_request(raw: bytes) -> None:
    spec = json.loads(raw)
    body = spec.get("body")
    path = RELAY_PATH if isinstance(body, dict) and "tunnel" in body else str(spec.get("target"))
    node = NODES.get()
    outcome = node.perform(spec)
    failure = outcome.failure(path.partition("?")[0])
    assert failure is None, failure
    if path.startswith("/registry/v1/") and 200 <= outcome.response.status < 300:
        # What the registry accepted, it serves after a restart (the zone builds in full).
        data = body.get("json") if isinstance(body, dict) else None
        named = data.get("tld") if isinstance(data, dict) else None
        tlds = {TLD, *([named] if isinstance(named, str) else [])}
        problem = node.restart_problem(tlds)
        assert problem is None, f"{problem}\n(request: {spec})"


# -- every parser, by the name of its corpus folder ------------------------------------------

PARSERS: dict[str, Check] = {
    "manifest": check_manifest,
    "dns-message": check_dns_message,
    "block": check_block,
    "provenance-bundle": check_provenance_bundle,
    "registry-api": check_request,
    "chain-api": check_request,
    "message-api": check_request,
    "mirror-api": check_request,
    "dns-api": check_request,
    "tunnel-api": check_request,
    "any-api": check_request,
}

SUFFIXES = {"manifest": ".yaml", "dns-message": ".bin", "block": ".bin"}
"""The file suffix of a corpus entry (``.json`` for the others)."""


def encode_spec(spec: dict[str, Any]) -> bytes:
    """A request spec as a corpus file holds it."""
    return json.dumps(spec, indent=1, ensure_ascii=True).encode() + b"\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
