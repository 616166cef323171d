"""The gateway: an HTTP proxy for browsers that serves HyperMesh names, and only them.

``CONNECT www.acme:443`` gets ``200``, then TLS with a leaf for ``www.acme`` from the local CA,
then HTTP/1.1 requests, each sent to the name's node over HTTP/3 with its key pinned
(``Upstream``). ``GET http://www.acme/…`` does the same without TLS. A name outside the CA's
TLDs gets 403; a name that does not verify, or whose node does not prove its key, gets a 502
page saying what failed. ``GET /proxy.pac``, ``/ca.pem``, ``/status.json`` and ``/`` are the
gateway's own. Connections, header and body sizes and every wait are bounded (``settings``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import h11

from hypermesh.gateway.authority import Authority, AuthorityError
from hypermesh.gateway.http import Closed, HttpStream, Incoming, TooBig, forwardable
from hypermesh.gateway.leaves import Leaves
from hypermesh.gateway.pac import pac_file
from hypermesh.gateway.pages import Page, error_page, index_page, reason
from hypermesh.gateway.settings import GatewaySettings
from hypermesh.gateway.targets import Forward, Local, Refusal, Tunnel, classify, inner_target
from hypermesh.gateway.upstream import Upstream, UpstreamFailure
from hypermesh.timefmt import rfc3339, rfc3339_epoch
from hypermesh.transport.address import format_address, parse_address

log = logging.getLogger(__name__)

PAC_TYPE = "application/x-ns-proxy-autoconfig"


@dataclass(slots=True)
class Counters:
    """What the gateway did since it started (``/status.json``, ``hmctl gateway status``)."""

    requests: int = 0
    """Requests for HyperMesh names (tunnelled or plain)."""
    answered: int = 0
    """Of those, answered by the name's node."""
    verification_failures: int = 0
    """Names whose answers did not verify, or whose node did not prove the pinned key."""
    unreachable: int = 0
    """Names whose resolving node or node could not be reached in time."""
    refused: int = 0
    """Requests refused: names outside the TLDs, malformed requests, bodies too big."""
    tunnels: int = 0
    """CONNECT tunnels opened."""
    connections: int = 0
    """Browser connections open now."""
    by_stage: dict[str, int] = field(default_factory=dict)


class Gateway:
    """One running gateway; ``start`` binds, ``close`` stops."""

    def __init__(
        self,
        settings: GatewaySettings,
        authority: Authority,
        upstream: Upstream,
        installed: list[dict[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.authority = authority
        self.tlds = authority.tlds
        self.upstream = upstream
        self.installed = list(installed or [])
        self.leaves = Leaves(authority, settings.max_leaves)
        self.counters = Counters()
        self.address = settings.listen
        self.started = time.time()
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Listen; the address bound (``HOST:PORT``). ``OSError`` when it cannot be bound."""
        host, port = parse_address(self.settings.listen)
        self._server = await asyncio.start_server(self._on_connection, host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = format_address(bound[0], bound[1])
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        await self.upstream.close()
        self.leaves.close()

    def status(self) -> dict[str, Any]:
        """The body of ``GET /status.json``."""
        certificate = self.authority.certificate
        return {
            "listen": self.address,
            "pid": os.getpid(),
            "startedAt": rfc3339_epoch(self.started),
            "tlds": list(self.tlds),
            "ca": {
                "subject": certificate.subject.rfc4514_string(),
                "fingerprint": self.authority.fingerprint,
                "notAfter": rfc3339(certificate.not_valid_after_utc),
                "permitted": list(self.tlds),
                "installed": self.installed,
            },
            "leavesIssued": self.leaves.issued,
            "counters": asdict(self.counters),
        }

    # -- connections -----------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._slots.locked():
            writer.close()
            return
        async with self._slots:
            self.counters.connections += 1
            try:
                await self._serve(reader, writer)
            except (Closed, ConnectionError, OSError) as exc:
                log.debug("connection ended", extra={"error": str(exc)})
            finally:
                self.counters.connections -= 1
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 2)

    def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpStream:
        return HttpStream(
            reader,
            writer,
            max_header_bytes=self.settings.max_header_bytes,
            idle_timeout=self.settings.idle_timeout,
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on a browser's connection until it closes or a CONNECT turns it into a
        tunnel."""
        http = self._stream(reader, writer)
        while True:
            incoming = await self._read(http)
            if incoming is None:
                return
            target = classify(incoming.method.encode(), incoming.target, self.tlds)
            if isinstance(target, Tunnel):
                await self._tunnel(http, target)
                return
            if isinstance(target, Refusal):
                await self._refuse(http, target, incoming.method == "HEAD")
            elif isinstance(target, Local):
                await self._page(http, self._local(incoming, target), incoming.method)
            else:
                await self._forward(http, incoming, target)
            if not http.next_cycle():
                return

    async def _read(self, http: HttpStream) -> Incoming | None:
        """The next request; a malformed one or a body too big is answered here (None)."""
        try:
            return await http.request(self.settings.max_body_bytes)
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint >= 400 else 400
            refusal = Refusal(status, f"malformed request: {exc}")
        except TooBig as exc:
            refusal = Refusal(413, str(exc))
        if http.can_respond():
            self.counters.refused += 1
            page = error_page(refusal.status, reason(refusal.status), refusal.reason)
            with contextlib.suppress(h11.LocalProtocolError):
                await http.respond(
                    page.status, [("content-type", page.content_type)], page.body, close=True
                )
        return None

    async def _tunnel(self, http: HttpStream, tunnel: Tunnel) -> None:
        """200, TLS with a leaf for the host, then the requests inside."""
        try:
            context = self.leaves.context(tunnel.host)
        except AuthorityError as exc:
            await self._refuse(http, Refusal(403, str(exc)), False)
            return
        if not await http.established():
            return
        self.counters.tunnels += 1
        try:
            await http.writer.start_tls(context, ssl_handshake_timeout=self.settings.tls_timeout)
        except (OSError, TimeoutError) as exc:
            log.debug("TLS handshake failed", extra={"host": tunnel.host, "error": str(exc)})
            return
        inner = self._stream(http.reader, http.writer)
        while True:
            incoming = await self._read(inner)
            if incoming is None:
                return
            target = inner_target(incoming.target, tunnel.host, tunnel.port)
            if isinstance(target, Refusal):
                await self._refuse(inner, target, incoming.method == "HEAD")
            else:
                await self._forward(inner, incoming, target, secure=True)
            if not inner.next_cycle():
                return

    # -- answers ---------------------------------------------------------------------------

    async def _refuse(self, http: HttpStream, refusal: Refusal, head: bool) -> None:
        self.counters.refused += 1
        page = error_page(refusal.status, reason(refusal.status), refusal.reason)
        await http.respond(page.status, [("content-type", page.content_type)], page.body, head=head)

    async def _page(self, http: HttpStream, page: Page, method: str) -> None:
        headers = [("content-type", page.content_type), ("cache-control", "no-store")]
        await http.respond(page.status, headers, page.body, head=method == "HEAD")

    def _local(self, incoming: Incoming, target: Local) -> Page:
        if incoming.method not in ("GET", "HEAD"):
            return error_page(405, reason(405), "the gateway's own pages take GET and HEAD")
        if target.path == "/proxy.pac":
            return Page(200, PAC_TYPE, pac_file(self.tlds, self.address).encode())
        if target.path == "/ca.pem":
            return Page(200, "application/x-pem-file", self.authority.pem)
        if target.path == "/status.json":
            return Page(200, "application/json", json.dumps(self.status(), indent=2).encode())
        if target.path == "/":
            return index_page(self.address, self.tlds, self.authority.fingerprint)
        return error_page(404, reason(404), f"the gateway has no page {target.path[:200]}")

    async def _forward(
        self, http: HttpStream, incoming: Incoming, target: Forward, *, secure: bool = False
    ) -> None:
        """Ask the name's node; its answer, or a page saying what failed."""
        self.counters.requests += 1
        head = incoming.method == "HEAD"
        try:
            route = await self.upstream.route(target.host, None if secure else target.port)
            answer = await self.upstream.request(
                route, incoming.method, target.path, forwardable(incoming.headers), incoming.body
            )
        except UpstreamFailure as exc:
            await self._failed(http, target.host, exc, head)
            return
        if not 200 <= answer.status <= 599 or len(answer.body) > self.settings.max_response_bytes:
            failure = f"the node answered status {answer.status} with {len(answer.body)} bytes"
            self.counters.unreachable += 1
            page = error_page(502, "The node's answer was not usable", failure, target.host)
            await self._page(http, page, incoming.method)
            return
        self.counters.answered += 1
        await http.respond(answer.status, list(answer.headers.items()), answer.body, head=head)

    async def _failed(
        self, http: HttpStream, host: str, failure: UpstreamFailure, head: bool
    ) -> None:
        stage = failure.stage.value
        self.counters.by_stage[stage] = self.counters.by_stage.get(stage, 0) + 1
        if failure.is_verification:
            self.counters.verification_failures += 1
            title = "This HyperMesh name did not verify"
        else:
            self.counters.unreachable += 1
            title = "The HyperMesh node could not be reached"
        page = error_page(502, title, f"{stage}: {failure}", host)
        headers = [("content-type", page.content_type), ("x-hypermesh-failure", stage)]
        await http.respond(502, headers, page.body, head=head)
