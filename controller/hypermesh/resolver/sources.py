"""Where the stub asks HyperMesh names: a node over DNS over QUIC, its key pinned.

``DoqSource`` keeps one DoQ connection to the node open (opened again when it closes or
fails), so a query costs a stream, not a handshake; it proves ``identity`` when given (a
node's own key, which its InterfacePolicy never refuses). The registry's anchors are fetched
from the same node over HTTP/3 and checked against the registry's node ID (``Anchors.verify``),
then kept: refreshed every ``ANCHORS_REFRESH`` seconds in the background of a query, and the
last good ones still used when the node cannot be reached (they say which zones are the
mesh's, so those names are never sent to the upstreams).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import dns.exception
import dns.message

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.mirror.anchors import Anchors
from hypermesh.mirror.verify import fetch_anchors
from hypermesh.transport.address import PeerRef
from hypermesh.transport.client import connect_pinned
from hypermesh.transport.dns_client import DOQ_ALPN, DoqClientProtocol
from hypermesh.transport.identity import Identity, short_id

ANCHORS_REFRESH = 60.0
"""Seconds between fetches of the registry's anchors."""
CONNECT_TIMEOUT = 3.0
"""Seconds to open the DoQ connection."""


class KeptAnchors:
    """Anchors fetched by ``fetch`` (which checks them), kept and refreshed; never older than
    ``refresh`` seconds while the fetch succeeds."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Anchors]],
        refresh: float = ANCHORS_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch, self._refresh, self._clock = fetch, refresh, clock
        self.held: Anchors | None = None
        self._at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.failure: str | None = None

    async def get(self) -> Anchors | None:
        """The anchors held; the first call (and any call while none are held) waits for the
        fetch, later ones start a refresh in the background when they are old."""
        if self._clock() - self._at < self._refresh:
            return self.held
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._update())
        if self.held is None:
            await asyncio.wait([self._task])
        return self.held

    def expire(self) -> None:
        """Fetch again at the next ``get`` (a check failed: the keys may have changed)."""
        self._at = float("-inf")

    async def _update(self) -> None:
        try:
            self.held = await self._fetch()
            self.failure = None
        except HyperMeshError as exc:
            self.failure = str(exc)
        self._at = self._clock()  # a failure waits for the next refresh too

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])


class DoqSource:
    """A node asked over DNS over QUIC (see the module)."""

    def __init__(
        self,
        node: PeerRef,
        registry: str,
        *,
        identity: Identity | None,
        label: str | None = None,
    ) -> None:
        self.node, self.registry, self.identity = node, registry, identity
        self.label = label or f"{node.address} ({short_id(node.node_id or '')}…)"
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: DoqClientProtocol | None = None
        self._lock = asyncio.Lock()
        self.kept = KeptAnchors(self._fetch_anchors)

    def describe(self) -> str:
        return self.label

    async def _fetch_anchors(self) -> Anchors:
        return await fetch_anchors(
            self.node.address, self.node.node_id, self.registry, caller=self.identity
        )

    async def anchors(self) -> Anchors | None:
        found = await self.kept.get()
        if found is None and self.kept.failure is not None:
            raise HyperMeshError(self.kept.failure)
        return found

    async def ask(self, query: dns.message.Message) -> dns.message.Message:
        for attempt in (1, 2):
            client = await self._connection()
            try:
                wire = await client.query(query.to_wire())
                break
            except TransportError:
                await self._drop()
                if attempt == 2:
                    raise
        try:
            return dns.message.from_wire(wire)
        except dns.exception.DNSException as exc:
            raise TransportError(f"{self.label} answered something that is not DNS: {exc}") from exc

    async def _connection(self) -> DoqClientProtocol:
        if self._client is not None and self._client.close_reason is None:
            return self._client
        async with self._lock:
            if self._client is not None and self._client.close_reason is None:
                return self._client
            await self._drop()
            stack = contextlib.AsyncExitStack()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    self._client = await stack.enter_async_context(
                        connect_pinned(
                            self.node.address,
                            expected_id=self.node.node_id,
                            identity=self.identity,
                            protocol=DoqClientProtocol,
                            alpn=DOQ_ALPN,
                        )
                    )
            except TimeoutError:
                await stack.aclose()
                raise TransportError(f"{self.label}: no DoQ connection within 3s") from None
            except BaseException:
                await stack.aclose()
                raise
            self._stack = stack
            return self._client

    async def _drop(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def close(self) -> None:
        await self.kept.close()
        await self._drop()
