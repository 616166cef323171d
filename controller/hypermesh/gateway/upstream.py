"""From a HyperMesh name to a node's answer, through the SDK's verified path: the HTTPS record
(endpoint) and the TLSA record (key), both checked from the registry's key, then HTTP/3 with
that key pinned. Nothing is sent to a node before both records verified; a node that does not
prove the pinned key gets no request (the handshake stops at the key).

Verified routes are reused for a short while (``route_ttl``, or the records' TTL if shorter) and
connections are kept open per (address, key), so a page's many requests cost one resolution
and one handshake.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from hypermesh.errors import HyperMeshError, IdentityMismatch, TransportError
from hypermesh.sdk.mesh import Mesh, Unverified
from hypermesh.sdk.names import endpoint_of, node_id_of
from hypermesh.sdk.results import DnsResult
from hypermesh.transport.address import format_address
from hypermesh.transport.pool import ConnectionPool

MAX_ROUTES = 4096


class Stage(StrEnum):
    """Where getting an answer failed; what the error page and the counters say."""

    RESOLVE = "resolve"
    """The resolving node could not be asked."""
    VERIFY = "verify"
    """The answers did not check out from the registry's key, or say nothing usable."""
    KEY = "key"
    """The node at the address did not prove the key the TLSA record pins."""
    NODE = "node"
    """The node could not be reached, or did not answer in time."""


class UpstreamFailure(HyperMeshError):
    """Why a name could not be served: the stage and what happened."""

    def __init__(self, stage: Stage, message: str) -> None:
        super().__init__(message)
        self.stage = stage

    @property
    def is_verification(self) -> bool:
        return self.stage in (Stage.VERIFY, Stage.KEY)


@dataclass(frozen=True, slots=True)
class Route:
    """A verified endpoint: where a name's node listens and the key it must prove."""

    address: str
    node_id: str
    expires: float


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _ttl(*results: DnsResult) -> float:
    ttls = [rrset.ttl for r in results for rrset in r.response.answer]
    return float(min(ttls)) if ttls else 0.0


class Upstream:
    """Resolves, verifies and asks nodes for the gateway."""

    def __init__(self, mesh: Mesh, *, route_ttl: float, timeout: float) -> None:
        self.mesh = mesh
        self.route_ttl = route_ttl
        self.timeout = timeout
        self._routes: dict[tuple[str, int | None], Route] = {}
        self._pool = ConnectionPool(mesh.identity)

    async def close(self) -> None:
        await self._pool.aclose()

    async def route(self, host: str, port: int | None) -> Route:
        """The verified route to ``host`` (cached while fresh); ``UpstreamFailure`` else."""
        key = (host, port)
        now = time.monotonic()
        cached = self._routes.get(key)
        if cached is not None and cached.expires > now:
            return cached
        try:
            async with asyncio.timeout(self.timeout):
                https = await self.mesh.resolve(host, "HTTPS")
                if not https.records:
                    raise UpstreamFailure(
                        Stage.VERIFY, f"{host} has no HTTPS record (verified answer: {https.rcode})"
                    )
                address, node_port = endpoint_of(https.response, host, port)
                tlsa = await self.mesh.resolve(f"_{node_port}._udp.{host}", "TLSA")
                node_id = node_id_of(tlsa.response)
        except UpstreamFailure:
            raise
        except Unverified as exc:
            raise UpstreamFailure(
                Stage.VERIFY, f"the answers for {host} did not verify: {exc}"
            ) from None
        except TimeoutError:
            raise UpstreamFailure(
                Stage.RESOLVE, f"resolving {host} took over {self.timeout:g}s"
            ) from None
        except TransportError as exc:
            raise UpstreamFailure(Stage.RESOLVE, f"resolving {host}: {exc}") from None
        except HyperMeshError as exc:
            raise UpstreamFailure(Stage.VERIFY, f"{host}: {exc}") from None
        ttl = min(self.route_ttl, _ttl(https, tlsa))
        route = Route(format_address(address, node_port), node_id, now + ttl)
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[key] = route
        return route

    async def request(
        self,
        route: Route,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
    ) -> Answer:
        """One request to the node of ``route``, its key pinned."""
        try:
            status, answered, data = await self._pool.request(
                route.address,
                route.node_id,
                method,
                path,
                body=body,
                headers=headers,
                timeout=self.timeout,
            )
        except IdentityMismatch as exc:
            self.forget(route)
            raise UpstreamFailure(
                Stage.KEY, f"the node did not prove the key the TLSA record pins: {exc}"
            ) from None
        except TransportError as exc:
            self.forget(route)
            raise UpstreamFailure(Stage.NODE, str(exc)) from None
        return Answer(status, dict(answered), data)

    def forget(self, route: Route) -> None:
        for key, known in list(self._routes.items()):
            if known == route:
                del self._routes[key]
