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
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import dns.exception

from hypermesh.dns.source import StaticZones
from hypermesh.node.registry_page import PAGE, PAGE_HEADERS, render_page
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.registry.errors import Forbidden, RegistryError, ZoneUnservable
from hypermesh.registry.requests import parse_body
from hypermesh.registry.service import Change, DatabaseNonceCache, Registry, TldInfo
from hypermesh.registry.signing import Signed, verify_request
from hypermesh.registry.zones import serial_of
from hypermesh.timefmt import rfc3339

PREFIX = "/registry/v1"

log = logging.getLogger("hypermesh.registry")


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


def guarded(
    handler: Callable[[Request], RouteResponse],
) -> Callable[[Request], Awaitable[RouteResponse]]:
    """An async route handler that answers a ``RegistryError`` as its status and code."""

    async def run(request: Request) -> RouteResponse:
        try:
            return handler(request)
        except RegistryError as exc:
            return RouteResponse.json({"error": str(exc), "code": exc.code}, status=exc.status)

    return run


def add_registry_routes(
    router: Router,
    registry: Registry,
    zones: StaticZones,
    *,
    clock: Callable[[], float] = time.time,
    on_registration: Callable[[], None] | None = None,
    on_serial: Callable[[str, int], None] | None = None,
    on_revocation: Callable[[str], None] | None = None,
) -> Router:
    nonces = DatabaseNonceCache(registry)

    def publish(tld: str) -> None:
        """Serve ``tld``'s zone; one whose stored data does not build is not served (what was
        asked, a renewal or an approval, is done all the same; ``Registry.health`` says why)."""
        try:
            zone = registry.zone(tld)
        except ZoneUnservable:
            withdraw(tld)
            return
        zones.set(zone)
        if on_serial is not None:
            on_serial(tld, registry.get_tld(tld).serial)

    def verified(request: Request, *, cosigned: bool = False) -> Signed:
        full = request.path + (f"?{request.query}" if request.query else "")
        return verify_request(
            request.method,
            full,
            request.body,
            dict(request.headers),
            now=clock(),
            seen=nonces,
            require_cosigner=cosigned,
        )

    def signed(request: Request) -> str:
        signer = verified(request).signer
        if registry.is_revoked(signer):
            raise Forbidden(f"the key {signer} was revoked")
        return signer

    def revoke(request: Request) -> RouteResponse:
        signer = signed(request)
        data = parse_body("revoke", request.body)
        revocation = registry.revoke(
            data["nodeId"],
            signer=signer,
            reason=data.get("reason", ""),
            replaced_by=data.get("replacedBy"),
        )
        if on_revocation is not None:
            on_revocation(revocation.node_id)
        return RouteResponse.json(revocation.to_json())

    def revocations(request: Request) -> RouteResponse:
        return RouteResponse.json({"items": [r.to_json() for r in registry.revocations().values()]})

    def withdraw(tld: str) -> None:
        with contextlib.suppress(dns.exception.DNSException):  # an older release's bad name
            zones.remove(tld)

    def register(request: Request) -> RouteResponse:
        signer = signed(request)
        data = parse_body("register", request.body)
        info = registry.register(
            data["tld"],
            signer,
            data["network"],
            dnssec=data.get("dnssec", True),
            default_ttl=data.get("ttl", 3600),
        )
        if info.status == "active":
            publish(info.name)
        if on_registration is not None:
            on_registration()
        return RouteResponse.json(info_json(info), status=201)

    def rrsets(request: Request) -> RouteResponse:
        signer = signed(request)
        data = parse_body("rrsets", request.body)
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
        serial = registry.patch(data["tld"], changes, signer=signer)
        name = registry.get_tld(data["tld"]).name
        publish(name)
        return RouteResponse.json({"tld": name, "serial": serial})

    def delete(request: Request) -> RouteResponse:
        signer = signed(request)
        tld = registry.get_tld(parse_body("tld", request.body)["tld"]).name
        registry.delete(tld, signer=signer)
        withdraw(tld)
        return RouteResponse.json({"tld": tld, "deleted": True})

    def renew(request: Request) -> RouteResponse:
        signer = signed(request)
        info = registry.renew(parse_body("tld", request.body)["tld"], signer=signer)
        publish(info.name)
        return RouteResponse.json(info_json(info))

    def transfer(request: Request) -> RouteResponse:
        who = verified(request, cosigned=True)
        data = parse_body("transfer", request.body)
        info = registry.transfer(
            data["tld"], data["newOwner"], signer=who.signer, cosigner=who.cosigner
        )
        return RouteResponse.json(info_json(info))

    def admin(
        kind: str, action: Callable[[dict[str, Any], str], Any]
    ) -> Callable[[Request], RouteResponse]:
        def run(request: Request) -> RouteResponse:
            signer = signed(request)
            return RouteResponse.json(action(parse_body(kind, request.body), signer))

        return run

    def approve(data: dict[str, Any], signer: str) -> dict[str, Any]:
        info = registry.approve(data["tld"], signer=signer)
        publish(info.name)
        return info_json(info)

    def reject(data: dict[str, Any], signer: str) -> dict[str, Any]:
        return info_json(registry.reject(data["tld"], data.get("reason", ""), signer=signer))

    def expire(data: dict[str, Any], signer: str) -> dict[str, Any]:
        info = registry.expire(data["tld"], data.get("reason", ""), signer=signer)
        withdraw(info.name)
        return info_json(info)

    def reserve(data: dict[str, Any], signer: str) -> dict[str, Any]:
        registry.reserve(data["name"], signer=signer)
        return policy_json()

    def unreserve(data: dict[str, Any], signer: str) -> dict[str, Any]:
        registry.unreserve(data["name"], signer=signer)
        return policy_json()

    def set_policy(data: dict[str, Any], signer: str) -> dict[str, Any]:
        registry.set_policy(data, signer=signer)
        return policy_json()

    def policy_json() -> dict[str, Any]:
        return {**registry.policy.governance(), "admin": registry.admin}

    def tlds(request: Request) -> RouteResponse:
        return RouteResponse.json({"items": [info_json(i) for i in registry.list_tlds()]})

    def page(request: Request) -> RouteResponse:
        html = render_page(registry.list_tlds(), registry.policy, registry.admin, clock())
        return RouteResponse(200, html.encode(), "text/html; charset=utf-8", PAGE_HEADERS)

    def tld(request: Request) -> RouteResponse:
        name = urllib.parse.parse_qs(request.query).get("name", [""])[0]
        info = registry.get_tld(name)
        records = [r.to_dict() for r in registry.rrsets(name)]
        return RouteResponse.json({**info_json(info), "rrsets": records})

    router.add(f"{PREFIX}/register", guarded(register), methods=("POST",))
    router.add(f"{PREFIX}/rrsets", guarded(rrsets), methods=("POST",))
    router.add(f"{PREFIX}/delete", guarded(delete), methods=("POST",))
    router.add(f"{PREFIX}/renew", guarded(renew), methods=("POST",))
    router.add(f"{PREFIX}/transfer", guarded(transfer), methods=("POST",))
    router.add(f"{PREFIX}/revoke", guarded(revoke), methods=("POST",))
    router.add(f"{PREFIX}/revocations", guarded(revocations))
    for name, kind, action in (
        ("approve", "tld", approve),
        ("reject", "decision", reject),
        ("expire", "decision", expire),
        ("reserve", "name", reserve),
        ("unreserve", "name", unreserve),
        ("policy", "policy", set_policy),
    ):
        router.add(f"{PREFIX}/admin/{name}", guarded(admin(kind, action)), methods=("POST",))
    router.add(f"{PREFIX}/tlds", guarded(tlds))
    router.add(f"{PREFIX}/tld", guarded(tld))
    router.add(f"{PREFIX}/policy", guarded(lambda _: RouteResponse.json(policy_json())))
    router.add(f"{PREFIX}/status", guarded(lambda _: RouteResponse.json(registry.health())))
    router.add(PAGE, guarded(page), methods=("GET", "HEAD"))
    return router


def expire_due(registry: Registry, zones: StaticZones) -> list[str]:
    """Expire every registration whose term ran out and stop serving its zone."""
    expired = registry.expire_due()
    for name in expired:
        with contextlib.suppress(dns.exception.DNSException):  # an older release's bad name
            zones.remove(name)
    return expired


def publish_zones(
    registry: Registry,
    zones: StaticZones,
    names: list[str],
    on_serial: Callable[[str, int], None] | None = None,
) -> None:
    """Serve the current zone of each of ``names`` (after ``Registry.resign_due``, say)."""
    for name in names:
        zone = registry.zone(name)
        zones.set(zone)
        if on_serial is not None:
            on_serial(name, serial_of(zone))
