"""The registry's HTTP/3 API, hosted by a node with role ``registry``, and the zones it serves.

Writes are signed (``registry.signing``) and checked before anything is stored; reads are open.
Paths are exact (the router has no path parameters): the TLD travels in the body or the query.

    POST /registry/v1/register   {"tld", "network", "dnssec"?, "ttl"?}          signed
    POST /registry/v1/rrsets     {"tld", "rrsets": [{name, type, changetype,   signed
                                   ttl?, values?}, ...]}
    POST /registry/v1/delete     {"tld"}                                        signed
    POST /registry/v1/renew      {"tld"}                                        signed
    POST /registry/v1/transfer   {"tld", "newOwner"}                signed and cosigned
    GET  /registry/v1/tlds                       every TLD
    GET  /registry/v1/tld?name=NAME              one TLD with its record sets
    GET  /registry/v1/policy                     the governance and the administrator's ID
    POST /registry/v1/revoke     {"nodeId", "reason"?, "replacedBy"?}   signed by the key
                                 itself or by the administrator
    GET  /registry/v1/revocations                every revoked node key
    GET  /registry/v1/status                     whether every active TLD's zone is served

Joining and the node directory (``registry.tokens``, ``registry.directory``):

    POST /registry/v1/tokens         {"ttl", "reusable"?, "ephemeral"?, "tags"?,  administrator
                                      "description"?} -> 201 {"id", "token", …}
    POST /registry/v1/tokens/list    {}                                          administrator
    POST /registry/v1/tokens/revoke  {"id"}                                      administrator
    POST /registry/v1/join           {"token", "name", "host"?}  signed by the joining node's key
    POST /registry/v1/nodes          a signed node record -> {"stored": true, "expiresAt"}
    GET  /registry/v1/node?id=NODE_ID | ?name=MEMBER     the live signed record, or 404
    GET  /registry/v1/nodes?after=NODE_ID&limit=N        {"items": [records], "next"}

A token is shown once, in the answer that makes it; it is never logged.

A revoked key signs nothing more here (403), and the revocation travels to every node with the
registry's signed anchors (``hypermesh.mirror.anchors``), whose gates then refuse the key.

Administration, signed by the administrator's key (``Registry.admin``):

    POST /registry/v1/admin/approve   {"tld"}
    POST /registry/v1/admin/reject    {"tld", "reason"?}
    POST /registry/v1/admin/expire    {"tld", "reason"?}
    POST /registry/v1/admin/reserve   {"name"}
    POST /registry/v1/admin/unreserve {"name"}
    POST /registry/v1/admin/policy    {"approval"?, "termDays"?, "maxTldsPerOwner"?}

and ``GET /registry/`` is the registry's page (HTML) for people.

Every body is parsed against its JSON Schema (``registry.requests``) before use: a body that
does not match is answered 400 naming the field (413 past ``MAX_BODY``), and names and records
then meet the one rule of ``hypermesh.zonedata``, so nothing the zone build would refuse is
ever stored.

The registry's database is never touched on the event loop: each handler runs its registry
calls on the registry's writer thread (``Registry.worker``, one thread, calls in order) and
awaits them, then serves the changed zone on the loop. Node records published in the same few
milliseconds are stored in one transaction (``registry.batching``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import dns.exception
import dns.zone

from hypermesh.dns.source import StaticZones
from hypermesh.node.registry_page import PAGE, PAGE_HEADERS, render_page
from hypermesh.node.router import Request, Route, Router, RouteResponse, get, post
from hypermesh.registry.batching import PublishBatcher
from hypermesh.registry.directory import ZONE, Directory
from hypermesh.registry.errors import Forbidden, RegistryError, ZoneUnservable
from hypermesh.registry.requests import parse_body
from hypermesh.registry.service import Change, DatabaseNonceCache, Registry, Revocation, TldInfo
from hypermesh.registry.signing import Signed, verify_request
from hypermesh.registry.tokens import JoinTokens
from hypermesh.registry.zones import serial_of
from hypermesh.timefmt import rfc3339, rfc3339_epoch
from hypermesh.transport.identity import is_node_id

PREFIX = "/registry/v1"

log = logging.getLogger("hypermesh.registry")
_T = TypeVar("_T")
_P = ParamSpec("_P")


def info_json(info: TldInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "network": info.network,
        "owner": info.owner,
        "status": info.status,
        "serial": info.serial,
        "expiresAt": rfc3339(info.expires_at),
        "dnssec": info.dnssec,
        "ds": list(info.ds),
        "note": info.note,
        "problem": info.problem,
    }


def load_zones(
    registry: Registry,
    zones: StaticZones,
    on_serial: Callable[[str, int], None] | None = None,
    on_problem: Callable[[str, str | None], None] | None = None,
) -> list[str]:
    """Serve every active TLD's zone. A zone whose stored data does not build is not served
    and holds no other back: it is logged, passed to ``on_problem`` (a metric) and kept in
    ``Registry.health``; returns those TLDs."""
    unservable = []
    for info in registry.list_tlds():
        if info.status != "active":
            continue
        try:
            zone = registry.zone(info.name)
        except RegistryError as exc:
            unservable.append(info.name)
            if on_problem is not None:
                on_problem(info.name, str(exc))
            continue
        zones.set(zone)
        if on_problem is not None:
            on_problem(info.name, None)
        if on_serial is not None:
            on_serial(info.name, info.serial)
    if unservable:
        log.error(
            "registry started without some zones: their stored data does not build",
            extra={"tlds": unservable},
        )
    return unservable


def add_registry_routes(
    router: Router,
    registry: Registry,
    zones: StaticZones,
    *,
    clock: Callable[[], float] = time.time,
    on_registration: Callable[[], None] | None = None,
    on_serial: Callable[[str, int], None] | None = None,
    on_revocation: Callable[[str], None] | None = None,
    directory: Directory | None = None,
) -> Router:
    """Route the registry's API over ``registry``, serving its active zones in ``zones``;
    ``on_registration``, ``on_serial`` and ``on_revocation`` are told of what it did. With
    ``directory``, also the join tokens and the node directory (and its zone, served)."""
    api = RegistryApi(registry, zones, clock, on_registration, on_serial, on_revocation)
    routes = api.routes()
    if directory is not None:
        routes += DirectoryApi(api, directory).routes()
    return router.add_all(routes)


class RegistryApi:
    """The registry API's handlers, one a route. Each runs its registry calls on the
    registry's writer thread (``_db``) and serves what changed on the event loop."""

    def __init__(
        self,
        registry: Registry,
        zones: StaticZones,
        clock: Callable[[], float],
        on_registration: Callable[[], None] | None,
        on_serial: Callable[[str, int], None] | None,
        on_revocation: Callable[[str], None] | None,
    ) -> None:
        self.registry = registry
        self.zones = zones
        self.clock = clock
        self.on_registration = on_registration
        self.on_serial = on_serial
        self.on_revocation = on_revocation
        self.nonces = DatabaseNonceCache(registry)
        self.directory: Directory | None = None
        """The node directory, whose records a revoked key loses at once (``DirectoryApi``)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None

    def routes(self) -> list[Route]:
        """Each path, its handler and its methods."""
        admin = f"{PREFIX}/admin"
        return [
            post(f"{PREFIX}/register", self.register),
            post(f"{PREFIX}/rrsets", self.rrsets),
            post(f"{PREFIX}/delete", self.delete),
            post(f"{PREFIX}/renew", self.renew),
            post(f"{PREFIX}/transfer", self.transfer),
            post(f"{PREFIX}/revoke", self.revoke),
            get(f"{PREFIX}/revocations", self.revocations),
            post(f"{admin}/approve", self.approve),
            post(f"{admin}/reject", self.reject),
            post(f"{admin}/expire", self.expire),
            post(f"{admin}/reserve", self.reserve),
            post(f"{admin}/unreserve", self.unreserve),
            post(f"{admin}/policy", self.set_policy),
            get(f"{PREFIX}/tlds", self.tlds),
            get(f"{PREFIX}/tld", self.tld),
            get(f"{PREFIX}/policy", self.policy),
            get(f"{PREFIX}/status", self.status),
            Route(PAGE, self.page, frozenset({"GET", "HEAD"})),
        ]

    async def _db(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``call`` on the registry's writer thread, the loop serving meanwhile."""
        if self.loop is None:
            self.loop, self.loop_thread = asyncio.get_running_loop(), threading.get_ident()
        return await self.registry.worker.run(call, *args, **kwargs)

    def on_loop(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the event loop: now when already there, else at its next turn
        (before the handler that awaits the writer's answer resumes)."""
        if self.loop is None or threading.get_ident() == self.loop_thread:
            call()
        else:
            self.loop.call_soon_threadsafe(call)

    def _zone_of(self, tld: str) -> dns.zone.Zone | None:
        """On the writer: ``tld``'s current zone, or None when its stored data does not build
        (what was asked, a renewal or an approval, is done all the same; ``Registry.health``
        says why)."""
        try:
            return self.registry.zone(tld)
        except ZoneUnservable:
            return None

    def _serve(self, tld: str, zone: dns.zone.Zone | None) -> None:
        """On the loop: serve ``zone`` as ``tld``'s (None: withdraw it)."""
        if zone is None:
            self._withdraw(tld)
            return
        self.zones.set(zone)
        if self.on_serial is not None:
            self.on_serial(tld, serial_of(zone))

    def _withdraw(self, tld: str) -> None:
        with contextlib.suppress(dns.exception.DNSException):  # an older release's bad name
            self.zones.remove(tld)

    def _verified(self, request: Request, *, cosigned: bool = False) -> Signed:
        full = request.path + (f"?{request.query}" if request.query else "")
        return verify_request(
            request.method,
            full,
            request.body,
            dict(request.headers),
            now=self.clock(),
            seen=self.nonces,
            require_cosigner=cosigned,
        )

    def _signed_now(self, request: Request) -> str:
        signer = self._verified(request).signer
        if self.registry.is_revoked(signer):
            raise Forbidden(f"the key {signer} was revoked")
        return signer

    async def _signed(self, request: Request) -> str:
        """The signer of ``request``, whose key must not be revoked (the nonce is stored on
        the writer)."""
        return await self._db(self._signed_now, request)

    def _signed_body_now(self, request: Request, schema: str) -> tuple[str, dict[str, Any]]:
        return self._signed_now(request), parse_body(schema, request.body)

    async def _signed_body(self, request: Request, schema: str) -> tuple[str, dict[str, Any]]:
        """The signer of ``request`` (checked first) and its body parsed against ``schema``,
        both on the writer (a large body costs milliseconds to check)."""
        return await self._db(self._signed_body_now, request, schema)

    def _policy_json(self) -> dict[str, Any]:
        return {**self.registry.policy.governance(), "admin": self.registry.admin}

    def _revoke(self, signer: str, data: dict[str, Any]) -> Revocation:
        revocation = self.registry.revoke(
            data["nodeId"],
            signer=signer,
            reason=data.get("reason", ""),
            replaced_by=data.get("replacedBy"),
        )
        if self.directory is not None:
            self.directory.withdraw(revocation.node_id)
        return revocation

    async def revoke(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "revoke")
        revocation = await self._db(self._revoke, signer, data)
        if self.on_revocation is not None:
            self.on_revocation(revocation.node_id)
        return RouteResponse.json(revocation.to_json())

    async def revocations(self, _: Request) -> RouteResponse:
        revoked = self.registry.revocations().values()
        return RouteResponse.json({"items": [r.to_json() for r in revoked]})

    def _register(self, request: Request) -> tuple[TldInfo, dns.zone.Zone | None]:
        signer, data = self._signed_body_now(request, "register")
        info = self.registry.register(
            data["tld"],
            signer,
            data["network"],
            dnssec=data.get("dnssec", True),
            default_ttl=data.get("ttl", 3600),
        )
        return info, self._zone_of(info.name) if info.status == "active" else None

    async def register(self, request: Request) -> RouteResponse:
        info, zone = await self._db(self._register, request)
        if info.status == "active":
            self._serve(info.name, zone)
        if self.on_registration is not None:
            self.on_registration()
        return RouteResponse.json(info_json(info), status=201)

    def _patch(self, request: Request) -> tuple[str, int, dns.zone.Zone | None]:
        signer, data = self._signed_body_now(request, "rrsets")
        changes = [
            Change(
                c["name"],
                c["type"],
                c.get("changetype", "REPLACE"),
                c.get("ttl"),
                tuple(c.get("values", ())),
            )
            for c in data["rrsets"]
        ]
        serial = self.registry.patch(data["tld"], changes, signer=signer)
        name = self.registry.get_tld(data["tld"]).name
        return name, serial, self._zone_of(name)

    async def rrsets(self, request: Request) -> RouteResponse:
        name, serial, zone = await self._db(self._patch, request)
        self._serve(name, zone)
        return RouteResponse.json({"tld": name, "serial": serial})

    def _delete(self, signer: str, tld: str) -> str:
        name = self.registry.get_tld(tld).name
        self.registry.delete(name, signer=signer)
        return name

    async def delete(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "tld")
        tld = await self._db(self._delete, signer, data["tld"])
        self._withdraw(tld)
        return RouteResponse.json({"tld": tld, "deleted": True})

    def _then_zone(
        self, call: Callable[..., TldInfo], tld: str, signer: str
    ) -> tuple[TldInfo, dns.zone.Zone | None]:
        """``call(tld, signer=signer)`` (a renewal, an approval), then the zone to serve."""
        info = call(tld, signer=signer)
        return info, self._zone_of(info.name)

    async def renew(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "tld")
        info, zone = await self._db(self._then_zone, self.registry.renew, data["tld"], signer)
        self._serve(info.name, zone)
        return RouteResponse.json(info_json(info))

    async def transfer(self, request: Request) -> RouteResponse:
        who = await self._db(self._verified, request, cosigned=True)
        data = await self._db(parse_body, "transfer", request.body)
        info = await self._db(
            self.registry.transfer,
            data["tld"],
            data["newOwner"],
            signer=who.signer,
            cosigner=who.cosigner,
        )
        return RouteResponse.json(info_json(info))

    async def approve(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "tld")
        info, zone = await self._db(self._then_zone, self.registry.approve, data["tld"], signer)
        self._serve(info.name, zone)
        return RouteResponse.json(info_json(info))

    async def reject(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "decision")
        info = await self._db(
            self.registry.reject, data["tld"], data.get("reason", ""), signer=signer
        )
        return RouteResponse.json(info_json(info))

    async def expire(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "decision")
        info = await self._db(
            self.registry.expire, data["tld"], data.get("reason", ""), signer=signer
        )
        self._withdraw(info.name)
        return RouteResponse.json(info_json(info))

    async def reserve(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "name")
        await self._db(self.registry.reserve, data["name"], signer=signer)
        return RouteResponse.json(self._policy_json())

    async def unreserve(self, request: Request) -> RouteResponse:
        signer, data = await self._signed_body(request, "name")
        await self._db(self.registry.unreserve, data["name"], signer=signer)
        return RouteResponse.json(self._policy_json())

    async def set_policy(self, request: Request) -> RouteResponse:
        signer, changes = await self._signed_body(request, "policy")
        await self._db(self.registry.set_policy, changes, signer=signer)
        return RouteResponse.json(self._policy_json())

    async def tlds(self, _: Request) -> RouteResponse:
        infos = await self._db(self.registry.list_tlds)
        return RouteResponse.json({"items": [info_json(i) for i in infos]})

    def _tld_json(self, name: str) -> dict[str, Any]:
        info = self.registry.get_tld(name)
        records = [r.to_dict() for r in self.registry.rrsets(name)]
        return {**info_json(info), "rrsets": records}

    async def tld(self, request: Request) -> RouteResponse:
        name = urllib.parse.parse_qs(request.query).get("name", [""])[0]
        return RouteResponse.json(await self._db(self._tld_json, name))

    async def policy(self, _: Request) -> RouteResponse:
        return RouteResponse.json(self._policy_json())

    async def status(self, _: Request) -> RouteResponse:
        return RouteResponse.json(await self._db(self.registry.health))

    async def page(self, _: Request) -> RouteResponse:
        registry = self.registry
        tlds = await self._db(registry.list_tlds)
        html = render_page(tlds, registry.policy, registry.admin, self.clock())
        return RouteResponse(200, html.encode(), "text/html; charset=utf-8", PAGE_HEADERS)


def expire_due(registry: Registry, zones: StaticZones) -> list[str]:
    """Expire every registration whose term ran out and stop serving its zone."""
    expired = registry.expire_due()
    for name in expired:
        with contextlib.suppress(dns.exception.DNSException):  # an older release's bad name
            zones.remove(name)
    return expired


def _param(request: Request, name: str) -> str | None:
    values = urllib.parse.parse_qs(request.query).get(name)
    return values[0] if values else None


def _node_id(text: str, what: str) -> str:
    if not is_node_id(text):
        raise RegistryError(f"{what} {text[:80]!r} is not a node ID (hm1 and 52 base32 letters)")
    return text


class DirectoryApi:
    """The join tokens and the node directory's handlers, beside the registry's (``RegistryApi``,
    whose request checks and writer thread they share)."""

    def __init__(self, api: RegistryApi, directory: Directory) -> None:
        self.api = api
        self.directory = directory
        self.batcher = PublishBatcher(directory.publish_many, run=api._db)
        self.tokens = JoinTokens(api.registry)
        api.directory = directory
        directory.dispatch = api.on_loop
        directory.listeners.append(self._serve)

    def routes(self) -> list[Route]:
        return [
            post(f"{PREFIX}/tokens", self.create_token),
            post(f"{PREFIX}/tokens/list", self.list_tokens),
            post(f"{PREFIX}/tokens/revoke", self.revoke_token),
            post(f"{PREFIX}/join", self.join),
            Route(f"{PREFIX}/nodes", self.nodes_route, frozenset({"GET", "POST"})),
            get(f"{PREFIX}/node", self.node),
        ]

    def _members_changed(self, node_id: str) -> None:
        """Tell followers to fetch the anchors anew (their ``members`` changed): the feed's
        revocation notice is the one that makes them do it."""
        if self.api.on_revocation is not None:
            self.api.on_revocation(node_id)

    def _serve(self) -> None:
        """On the loop, after a change: serve the directory zone as the writer left it."""
        zone = self.api.registry.cached_zone(ZONE)
        if zone is not None:
            self.api._serve(ZONE, zone)

    async def create_token(self, request: Request) -> RouteResponse:
        signer, data = await self.api._signed_body(request, "token_create")
        token, info = await self.api._db(
            self.tokens.create,
            ttl=data["ttl"],
            signer=signer,
            reusable=data.get("reusable", False),
            ephemeral=data.get("ephemeral", False),
            tags=tuple(data.get("tags", ())),
            description=data.get("description", ""),
        )
        log.info("join token made", extra={"token_id": info.id, "reusable": info.reusable})
        body = {
            "id": info.id,
            "token": token,
            "expiresAt": rfc3339_epoch(info.expires_at),
            "reusable": info.reusable,
            "ephemeral": info.ephemeral,
            "tags": list(info.tags),
        }
        return RouteResponse.json(body, status=201)

    async def list_tokens(self, request: Request) -> RouteResponse:
        signer, _ = await self.api._signed_body(request, "empty")
        infos = await self.api._db(self.tokens.list, signer=signer)
        return RouteResponse.json({"items": [i.to_json() for i in infos]})

    async def revoke_token(self, request: Request) -> RouteResponse:
        signer, data = await self.api._signed_body(request, "token_revoke")
        info = await self.api._db(self.tokens.revoke, data["id"], signer=signer)
        log.info("join token revoked", extra={"token_id": info.id})
        return RouteResponse.json(info.to_json())

    async def join(self, request: Request) -> RouteResponse:
        signer, data = await self.api._signed_body(request, "join")
        member, made = await self.api._db(
            self.tokens.join, data["token"], data["name"], data.get("host"), signer=signer
        )
        if made:
            log.info("member joined", extra={"member": member.name, "node_id": signer})
            self._members_changed(signer)
        return RouteResponse.json({"member": member.to_json()}, status=201 if made else 200)

    async def nodes_route(self, request: Request) -> RouteResponse:
        """One path, two methods: POST publishes a record, GET lists a page of them."""
        if request.method == "POST":
            return await self.publish(request)
        return await self.nodes(request)

    async def publish(self, request: Request) -> RouteResponse:
        record = await self.batcher.publish(parse_body("node_record", request.body))
        expires = rfc3339_epoch(record.expires_at)
        return RouteResponse.json({"stored": True, "expiresAt": expires})

    async def node(self, request: Request) -> RouteResponse:
        node_id, name = _param(request, "id"), _param(request, "name")
        if (node_id is None) == (name is None):
            raise RegistryError("give exactly one of id (a node ID) or name (a member's name)")
        if node_id is not None:
            found = await self.api._db(self.directory.get, _node_id(node_id, "id"))
        else:
            assert name is not None
            found = await self.api._db(self.directory.by_name, name[:253])
        return RouteResponse.json(dict(found.signed))

    async def nodes(self, request: Request) -> RouteResponse:
        after, text = _param(request, "after"), _param(request, "limit") or "100"
        if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= 1000):
            raise RegistryError(f"limit must be a whole number 1 to 1000, not {text[:20]!r}")
        page, following = await self.api._db(
            self.directory.page, None if after is None else _node_id(after, "after"), int(text)
        )
        items = [dict(s.signed) for s in page]
        return RouteResponse.json({"items": items, "next": following})
