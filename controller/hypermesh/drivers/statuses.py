"""The controller's kept connections to the nodes it observes.

While an apply converges, every pass asks each node for ``GET /status``, and a node just
started is asked again at each pass until it is Ready: on a fresh QUIC connection each time,
that was a handshake on both sides per node per pass (in a start of 50 nodes, 250 handshakes:
as much CPU again as the nodes' own first exchanges). ``StatusConnections`` keeps one connection
per node process while it is held (``hold``, for the passes of one converge) and closes them
all at ``release``; outside a hold every ask opens and closes its own, as before.

A connection is kept per (address, node ID, pid): a node restarted on the same address is a
new process, asked on a new connection, never on the dead one's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypermesh.transport.client import h3_get_json, json_object
from hypermesh.transport.identity import Identity
from hypermesh.transport.pool import ConnectionPool

STATUS = "/status"

Key = tuple[str, str | None, int]


class StatusConnections:
    """``GET /status`` of node processes, on kept connections while held."""

    def __init__(self) -> None:
        self._held = 0
        self._pools: dict[Key, ConnectionPool] = {}

    async def status(
        self,
        address: str,
        identity: str | None,
        pid: int,
        operator: Callable[[], Identity | None],
        timeout: float,  # noqa: ASYNC109 - the caller's bound on one ask
    ) -> dict[str, Any]:
        """The node's status as JSON; ``TransportError`` (``IdentityMismatch``) as
        ``h3_get_json`` raises it. ``operator`` gives the key the controller proves."""
        if not self._held:
            return await h3_get_json(
                address, STATUS, expected_id=identity, timeout=timeout, identity=operator()
            )
        key = (address, identity, pid)
        pool = self._pools.get(key)
        if pool is None:
            for old in [k for k in self._pools if k[0] == address]:  # an earlier process there
                await self._pools.pop(old).aclose()
            pool = self._pools[key] = ConnectionPool(operator(), max_connections=1)
        code, _, body = await pool.request(address, identity, "GET", STATUS, timeout=timeout)
        return json_object(address, STATUS, code, body)

    def hold(self) -> None:
        """Keep connections from now on, until as many ``release`` as ``hold``."""
        self._held += 1

    async def release(self) -> None:
        """End one ``hold``; the last one closes every kept connection."""
        self._held = max(0, self._held - 1)
        if not self._held:
            pools, self._pools = list(self._pools.values()), {}
            for pool in pools:
                await pool.aclose()
