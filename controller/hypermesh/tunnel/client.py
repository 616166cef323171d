"""Opening a tunnel and sending requests through it: the client's side.

    hops = await fetch_hops(pool, [(relay1_address, relay1_id), ..., (dest_address, dest_id)])
    async with await Tunnel.open(hops, ttl=60, pool=pool) as tunnel:
        answer = await tunnel.request("GET", "/status")

The client connects to the first relay without a certificate: nothing in the handshake or the
messages names it. Fetch the cards of more nodes than the tunnel uses (``fetch_hops`` takes
any list) so that the fetching does not single out the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.transport.address import PeerRef
from hypermesh.transport.pool import ConnectionPool
from hypermesh.tunnel.onion import (
    CLOSE,
    DATA,
    OPENED,
    BadTunnel,
    Hop,
    build_open,
    check_card,
    decode_response,
    encode_request,
    unwrap,
    wrap,
)
from hypermesh.tunnel.records import RECORD_DATA, Opener, Sealer, open_records, seal_records
from hypermesh.tunnel.relay import OPEN_PATH, RELAY_PATH, RELAY_STREAM_PATH

KEY_PATH = "/tunnel/v1/key"
MIN_RELAYS = 2
"""Relays a tunnel goes through at the least."""


class TunnelFailed(HyperMeshError):
    """A tunnel could not be opened or a request through it failed (the text says where)."""


@dataclass(frozen=True, slots=True)
class TunnelResponse:
    """The destination's answer to a request sent through a tunnel."""

    status: int
    content_type: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch_hops(
    pool: ConnectionPool,
    nodes: Iterable[tuple[str, str]],
    timeout: float = 5.0,  # noqa: ASYNC109 - per request, on the pool
) -> dict[str, Hop]:
    """The tunnel key cards of ``nodes`` ((ephemeral address, node ID) pairs), checked against
    their node IDs: ``{node ID: Hop}``. ``TunnelFailed`` naming the first node that fails."""

    async def one(address: str, node_id: str) -> Hop:
        try:
            status, _, body = await pool.request(address, node_id, "GET", KEY_PATH, timeout=timeout)
            if status != 200:
                raise TunnelFailed(f"{address}: GET {KEY_PATH} answered {status}")
            return Hop(PeerRef(address, node_id), check_card(json.loads(body), node_id))
        except (TransportError, BadTunnel, ValueError) as exc:
            raise TunnelFailed(f"{address} ({node_id}): no tunnel key card: {exc}") from None

    pairs = list(nodes)
    hops = await asyncio.gather(*(one(address, node_id) for address, node_id in pairs))
    return {str(hop.peer.node_id): hop for hop in hops}


class Tunnel:
    """An open tunnel: fresh circuit IDs and keys, one per hop, until ``expires``."""

    def __init__(
        self,
        pool: ConnectionPool,
        hops: Sequence[Hop],
        circuits: Sequence[bytes],
        keys: Sequence[bytes],
        expires: float,
    ) -> None:
        self.hops = tuple(hops)
        self.expires = expires
        self._pool = pool
        self._circuits = tuple(circuits)
        self._keys = tuple(keys)
        self._closed = False
        self.streaming: bool | None = None
        """True: send requests as version 2 messages (records each relay passes on as they
        arrive); False: as version 1 (each relay stores the whole message, then forwards
        it); None: version 2 for a request padded to more than one record
        (``RECORD_DATA``), version 1 for a smaller one (a little cheaper a hop, and as small
        to store)."""

    @classmethod
    async def open(
        cls,
        hops: Sequence[Hop],
        *,
        ttl: float,
        pool: ConnectionPool | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - the message names the limit
        min_relays: int = MIN_RELAYS,
    ) -> Tunnel:
        """Open a tunnel through ``hops`` (relays in order, the destination last) for ``ttl``
        seconds; checks that every hop took its layer. Fewer than ``min_relays`` relays is
        refused: with one, that relay knows both ends (benchmarks measure it with 1)."""
        if len(hops) - 1 < max(1, min_relays):
            raise TunnelFailed(
                f"a tunnel goes through at least {max(1, min_relays)} relays, so that no "
                f"single relay learns both ends; {len(hops) - 1} given"
            )
        expires = time.time() + ttl
        message, circuits, keys = build_open(hops, expires)
        tunnel = cls(pool or ConnectionPool(None), hops, circuits, keys, expires)  # anonymous
        answer = await tunnel._post(OPEN_PATH, message, timeout)
        try:
            confirmed = unwrap(keys, circuits, answer)
        except BadTunnel as exc:
            raise TunnelFailed(f"the tunnel's open answer does not check out: {exc}") from None
        if confirmed != OPENED:
            raise TunnelFailed("the destination did not confirm the tunnel")
        return tunnel

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 30.0,  # noqa: ASYNC109 - the message names the limit
    ) -> TunnelResponse:
        """Send one request to the destination's services and wait for its answer."""
        if self._closed:
            raise TunnelFailed("the tunnel is closed")
        if time.time() >= self.expires:
            raise TunnelFailed("the tunnel's TTL has run out")
        payload = encode_request(method, path, headers, body)
        try:
            if self.streaming or (self.streaming is None and len(payload) > RECORD_DATA):
                padded = await self._exchange(payload, timeout)
            else:
                message = wrap(self._keys, self._circuits, DATA, payload)
                answer = await self._post(RELAY_PATH, self._circuits[0] + message, timeout)
                padded = unwrap(self._keys, self._circuits, answer)
            status, content_type, answered, data = decode_response(padded)
        except BadTunnel as exc:
            raise TunnelFailed(f"the answer through the tunnel does not check out: {exc}") from None
        return TunnelResponse(status, content_type, answered, data)

    async def _exchange(self, payload: bytes, timeout: float) -> bytes:  # noqa: ASYNC109
        """``payload`` as a version 2 message (records), and the answer's padded payload."""
        pairs = list(zip(self._keys, self._circuits, strict=True))
        sealers = [Sealer(key, circuit, forward=True) for key, circuit in pairs]
        message = b"".join((self._circuits[0], *seal_records(sealers, payload)))
        answer = await self._post(RELAY_STREAM_PATH, message, timeout)
        openers = [Opener(key, circuit, forward=False) for key, circuit in pairs]
        padded = b"".join(open_records(openers, answer))
        for opener in openers:
            opener.finish()
        return padded

    async def close(self) -> None:
        """Tear the circuits down at every hop now, rather than at expiry (best effort)."""
        if self._closed:
            return
        self._closed = True
        message = wrap(self._keys, self._circuits, CLOSE, b"")
        with contextlib.suppress(TunnelFailed):
            await self._post(RELAY_PATH, self._circuits[0] + message, 5.0)

    async def _post(self, path: str, body: bytes, timeout: float) -> bytes:  # noqa: ASYNC109
        first = self.hops[0]
        try:
            status, _, answer = await self._pool.request(
                first.peer.address, first.peer.node_id, "POST", path, body=body, timeout=timeout
            )
        except TransportError as exc:
            raise TunnelFailed(f"first hop {first.peer.address}: {exc}") from None
        if status != 200:
            raise TunnelFailed(
                f"first hop {first.peer.address} answered {status}: {_error(answer)}"
            )
        return answer

    async def __aenter__(self) -> Tunnel:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _error(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    return str(data.get("error", data)) if isinstance(data, dict) else str(data)
