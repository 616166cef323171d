"""The registry's HTTP/3 API, hosted by a node with role ``registry``, and the zones it serves.

Writes are signed (``registry.signing``) and checked before anything is stored; reads are open.
Paths are exact (the router has no path parameters): the TLD travels in the body or the query.

    POST /registry/v1/register   {"tld", "network", "dnssec"?, "ttl"?}          signed
    POST /registry/v1/rrsets     {"tld", "rrsets": [{name, type, changetype,   signed
                                   ttl?, values?}, ...]}
    POST /registry/v1/delete     {"tld"}                                        signed
    GET  /registry/v1/tlds                       every TLD
    GET  /registry/v1/tld?name=NAME              one TLD with its record sets
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from hypermesh.dns.source import StaticZones
from hypermesh.node.router import Request, Response, Router
from hypermesh.registry.errors import RegistryError
from hypermesh.registry.service import Change, DatabaseNonceCache, Registry, TldInfo
from hypermesh.registry.signing import verify_request

PREFIX = "/registry/v1"


def info_json(info: TldInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "network": info.network,
        "owner": info.owner,
        "status": info.status,
        "serial": info.serial,
        "expiresAt": info.expires_at.isoformat(),
        "dnssec": info.dnssec,
        "ds": list(info.ds),
    }


def load_zones(
    registry: Registry, zones: StaticZones, on_serial: Callable[[str, int], None] | None = None
) -> None:
    """Serve every active TLD's zone."""
    for info in registry.list_tlds():
        if info.status == "active":
            zones.set(registry.zone(info.name))
            if on_serial is not None:
                on_serial(info.name, info.serial)


def add_registry_routes(
    router: Router,
    registry: Registry,
    zones: StaticZones,
    *,
    clock: Callable[[], float] = time.time,
    on_registration: Callable[[], None] | None = None,
    on_serial: Callable[[str, int], None] | None = None,
) -> Router:
    nonces = DatabaseNonceCache(registry)

    def publish(tld: str) -> None:
        zones.set(registry.zone(tld))
        if on_serial is not None:
            on_serial(tld, registry.get_tld(tld).serial)

    def body_of(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise RegistryError(f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError("the body must be a JSON object")
        return data

    def signed(request: Request) -> str:
        full = request.path + (f"?{request.query}" if request.query else "")
        return verify_request(
            request.method, full, request.body, dict(request.headers), now=clock(), seen=nonces
        ).signer

    def guarded(
        handler: Callable[[Request], Response],
    ) -> Callable[[Request], Any]:
        async def run(request: Request) -> Response:
            try:
                return handler(request)
            except RegistryError as exc:
                return Response.json({"error": str(exc), "code": exc.code}, status=exc.status)

        return run

    def register(request: Request) -> Response:
        signer = signed(request)
        data = body_of(request)
        info = registry.register(
            str(data.get("tld", "")),
            signer,
            str(data.get("network", "")),
            dnssec=bool(data.get("dnssec", True)),
            default_ttl=int(data.get("ttl", 3600)),
        )
        if info.status == "active":
            publish(info.name)
        if on_registration is not None:
            on_registration()
        return Response.json(info_json(info), status=201)

    def rrsets(request: Request) -> Response:
        signer = signed(request)
        data = body_of(request)
        tld = str(data.get("tld", ""))
        changes = [
            Change(
                str(c["name"]),
                str(c["type"]),
                c.get("changetype", "REPLACE"),
                c.get("ttl"),
                tuple(str(v) for v in c.get("values", ())),
            )
            for c in data.get("rrsets", [])
        ]
        serial = registry.patch(tld, changes, signer=signer)
        publish(tld)
        return Response.json({"tld": tld, "serial": serial})

    def delete(request: Request) -> Response:
        signer = signed(request)
        tld = str(body_of(request).get("tld", ""))
        registry.delete(tld, signer=signer)
        zones.remove(tld)
        return Response.json({"tld": tld, "deleted": True})

    def tlds(request: Request) -> Response:
        return Response.json({"items": [info_json(i) for i in registry.list_tlds()]})

    def tld(request: Request) -> Response:
        name = urllib.parse.parse_qs(request.query).get("name", [""])[0]
        info = registry.get_tld(name)
        records = [r.to_dict() for r in registry.rrsets(name)]
        return Response.json({**info_json(info), "rrsets": records})

    router.add(f"{PREFIX}/register", guarded(register), methods=("POST",))
    router.add(f"{PREFIX}/rrsets", guarded(rrsets), methods=("POST",))
    router.add(f"{PREFIX}/delete", guarded(delete), methods=("POST",))
    router.add(f"{PREFIX}/tlds", guarded(tlds))
    router.add(f"{PREFIX}/tld", guarded(tld))
    return router
