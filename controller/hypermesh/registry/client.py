"""The registry API's client: one signed JSON request over HTTP/3 to a pinned registry.

The controller's TLD and Record drivers and ``hmctl registry`` both talk to the registry
through ``RegistryClient``, so there is one client of the API, not two. The same client makes
every other signed request to a node (chain appends, messages: ``label`` names the other end).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from hypermesh.errors import HyperMeshError, TransportError
from hypermesh.registry.signing import cosign, sign_request
from hypermesh.transport.client import H3ClientProtocol, connect_h3
from hypermesh.transport.identity import Identity
from hypermesh.transport.noderecord import NodeRecord

API = "/registry/v1"


def tld_path(name: str) -> str:
    """The path that reads one TLD with its record sets."""
    return f"{API}/tld?{urllib.parse.urlencode({'name': name})}"


Opener = Callable[[], AbstractAsyncContextManager[H3ClientProtocol]]
"""A connection to the registry for one request (kept open or not, as the opener decides)."""


class RegistryClient:
    """Requests to the registry at ``address`` whose key must be ``expected_id`` (pinned; None
    accepts any key, for a first contact the caller checks otherwise).

    Every request proves a key in the handshake, so that the other end's gates know who asks:
    a signed request its signer's, any other ``identity``'s (``None``: anonymous)."""

    def __init__(
        self,
        address: str,
        expected_id: str | None,
        *,
        identity: Identity | None,
        timeout: float = 10.0,
        label: str = "registry",
        opener: Opener | None = None,
    ) -> None:
        self.address = address
        self.expected_id = expected_id
        self.identity = identity
        """The key unsigned requests prove in the handshake (None: anonymous)."""
        self.timeout = timeout
        self.label = label
        """What the errors call the other end (the client serves any signed JSON API)."""
        self.opener = opener
        """Where the connection comes from when not a fresh one of its own: a node's paths
        (``PathManager.opener``), so a node behind a NAT or without UDP reaches its registry
        the way it reaches any peer. The connection proves the node's key then."""

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        signer: Identity | None = None,
        cosigner: Identity | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; returns the status and the decoded JSON body (an answer that is
        not a JSON object comes back as ``{"error": text}`` or ``{"data": value}``).

        Raises ``TransportError`` when the registry cannot be reached or does not answer in
        time; a refusal is an answer, not an exception.
        """
        raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        headers = {"content-type": "application/json"}
        if signer is not None:
            headers |= sign_request(signer, method, path, raw, now=time.time())
            if cosigner is not None:
                headers = cosign(cosigner, headers, method, path, raw)
        try:
            async with (
                asyncio.timeout(self.timeout),
                (
                    self.opener()
                    if self.opener is not None
                    else connect_h3(
                        self.address, expected_id=self.expected_id, identity=signer or self.identity
                    )
                ) as h3,
            ):
                status, _, answer = await h3.request(
                    method, path, headers=list(headers.items()), body=raw
                )
        except TimeoutError:
            raise TransportError(
                f"{self.label} at {self.address}: no answer within {self.timeout:g}s"
                + (
                    " (is it running and reachable? writes need the registry; mirrors go on "
                    "answering queries meanwhile)"
                    if self.label == "registry"
                    else ""
                )
            ) from None
        except TransportError as exc:
            raise TransportError(f"{self.label} at {self.address}: {exc}") from exc
        try:
            data = json.loads(answer or b"{}")
        except ValueError:
            data = {"error": answer[:200].decode(errors="replace")}
        return status, data if isinstance(data, dict) else {"data": data}

    async def node_record(
        self, *, node_id: str | None = None, name: str | None = None
    ) -> NodeRecord | None:
        """The live record of the key ``node_id`` (or of the member ``name``) in the registry's
        node directory, verified: its signature, its expiry and, asked by key, that it is that
        key's. None when the directory holds none; ``HyperMeshError`` for another answer,
        ``BadNodeRecord`` for a record that does not verify, ``TransportError`` when the
        registry cannot be reached."""
        query = urllib.parse.urlencode({"id": node_id} if node_id else {"name": name})
        status, data = await self.call("GET", f"{API}/node?{query}")
        if status == 404:
            return None
        if status != 200:
            raise HyperMeshError(f"the node directory answered {refusal(status, data)}")
        return NodeRecord.verify(data, now=time.time(), node_id=node_id)


def refusal(status: int, data: Mapping[str, Any]) -> str:
    """The registry's refusal in one line: ``403 forbidden: only the … may do this``."""
    code = data.get("code")
    return f"{status}{' ' + str(code) if code else ''}: {data.get('error', data)}"
