"""The SDK's DNS plumbing: one message asked over DoQ or DoH3 with the server's key pinned,
checked from the registry's key when asked to, and what HTTPS and TLSA answers say of an
endpoint (for ``Mesh.fetch``)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from hypermesh.errors import HyperMeshError, NotReady, TransportError
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.verify import fetch_anchors, verified_query
from hypermesh.sdk.results import DnsResult
from hypermesh.transport.address import PeerRef
from hypermesh.transport.dns_client import doh3_query, doq_query
from hypermesh.transport.identity import Identity, node_id_from_public_key

DnsTransport = Literal["doq", "doh3", "doh3-get"]
"""DNS over QUIC, or DNS over HTTPS on HTTP/3 with POST (``doh3``) or GET (``doh3-get``)."""


class Asker:
    """Asks one server one message at a time, its key pinned, proving ``identity``; keeps the
    size of the first answer (what ``dig`` reports)."""

    def __init__(
        self, server: PeerRef, identity: Identity | None, transport: DnsTransport, timeout: float
    ) -> None:
        self.server, self.identity, self.transport, self.timeout = (
            server,
            identity,
            transport,
            timeout,
        )
        self.size = 0

    async def __call__(self, query: dns.message.Message) -> dns.message.Message:
        server = self.server
        if self.transport == "doq":
            wire = await doq_query(
                server.address,
                query.to_wire(),
                expected_id=server.node_id,
                identity=self.identity,
                timeout=self.timeout,
            )
        else:
            wire = await doh3_query(
                server.address,
                query.to_wire(),
                expected_id=server.node_id,
                identity=self.identity,
                method="GET" if self.transport == "doh3-get" else "POST",
                timeout=self.timeout,
            )
        try:
            answer = dns.message.from_wire(wire)
        except dns.exception.DNSException as exc:
            raise TransportError(
                f"{server.address} answered something that is not DNS: {exc}"
            ) from exc
        self.size = self.size or len(wire)
        return answer


async def ask(asker: Asker, query: dns.message.Message, anchor: str | None) -> DnsResult:
    """``query`` asked through ``asker``; with ``anchor`` (the registry's node ID), checked
    from that key down, the verdict in the result."""
    zone: str | None = None
    failure: str | None = None
    if anchor is not None:
        anchors = await anchors_when_ready(asker, anchor)
        checked = await verified_query(asker, query, anchors)
        response, zone, failure = checked.response, checked.zone, checked.failure
    else:
        response = await asker(query)
    question = query.question[0]
    records = tuple(
        rd.to_text() for rrset in response.answer if rrset.rdtype == question.rdtype for rd in rrset
    )
    return DnsResult(
        name=question.name.to_text(omit_final_dot=True),
        type=dns.rdatatype.to_text(question.rdtype),
        rcode=dns.rcode.to_text(response.rcode()),
        records=records,
        verified=anchor is not None and failure is None,
        response=response,
        size=asker.size,
        zone=str(zone) if zone is not None else None,
        failure=failure,
    )


READY_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.5)
"""Pauses between asks while a node answers that it holds no anchors yet; the last repeats."""


async def anchors_when_ready(asker: Asker, anchor: str) -> Anchors:
    """The registry's anchors as ``asker``'s node holds them. A node started a moment ago
    answers 503 until its mirror has copied them from the registry (right after ``hmctl
    apply``, most often): it is asked again for up to ``asker.timeout`` seconds before the
    ``NotReady`` is raised, saying how long it was waited for."""
    server = asker.server
    deadline = time.monotonic() + asker.timeout
    for attempt in range(1_000):
        try:
            return await fetch_anchors(
                server.address, server.node_id, anchor, caller=asker.identity
            )
        except NotReady as exc:
            pause = READY_PAUSES[min(attempt, len(READY_PAUSES) - 1)]
            if time.monotonic() + pause > deadline:
                raise NotReady(f"{exc} (still so after {asker.timeout:g} s)") from exc
            await asyncio.sleep(pause)
    raise NotReady(f"{server.address}: no anchors after 1,000 asks")


def endpoint_of(response: dns.message.Message, name: str, port: int | None) -> tuple[str, int]:
    """(address, port) from an HTTPS answer: its port and address hint, else ``port``/443."""
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.HTTPS:
            continue
        for rd in rrset:
            params = rd.params
            alpn = params.get(dns.rdtypes.svcbbase.ParamKey.ALPN)
            if alpn is not None and b"h3" not in alpn.ids:
                continue
            found = params.get(dns.rdtypes.svcbbase.ParamKey.PORT)
            hints = params.get(dns.rdtypes.svcbbase.ParamKey.IPV4HINT) or params.get(
                dns.rdtypes.svcbbase.ParamKey.IPV6HINT
            )
            if hints is None:
                raise HyperMeshError(f"{name}: the HTTPS record has no address hint")
            return str(hints.addresses[0]), int(found.port) if found else (port or 443)
    raise HyperMeshError(f"{name}: no HTTPS record offering h3")


def node_id_of(response: dns.message.Message) -> str:
    """The node ID a TLSA ``3 1 0`` record pins (the DER SubjectPublicKeyInfo of an Ed25519
    key)."""
    for rrset in response.answer:
        if rrset.rdtype != dns.rdatatype.TLSA:
            continue
        for rd in rrset:
            if (rd.usage, rd.selector, rd.mtype) != (3, 1, 0):
                continue
            key = load_der_public_key(rd.cert)
            if isinstance(key, Ed25519PublicKey):
                return node_id_from_public_key(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    raise HyperMeshError("no TLSA 3 1 0 record with an Ed25519 key pins this name")
