"""A node with every HTTP/3 API, in-process, and requests to it written down as JSON.

``FuzzNode`` routes what a node serves, the way ``hypermesh.node.process.serve`` composes it:
the registry node's public router (registry API, the mirrors' feed, chain, messages, DNS over
HTTPS, metrics, members), a mirror's router (its ``anchors`` and ``ixfr``) and the ephemeral
endpoint's router (tunnels, delivering to the public router). Requests go straight to
``Router.dispatch`` on one event loop: no sockets, so thousands of requests take seconds.

A request is a JSON *spec* (the format of ``corpus/*-api/*.json``)::

    {"node": "public" | "mirror" | "ephemeral",     default "public"
     "method": "POST", "target": "/path?query",
     "sign": "owner" | "admin" | "node" | "stranger" | "cosigned",   optional: hm-* headers
     "headers": [[name, value], ...],               applied after signing, replacing by name
     "body": "text" | {"json": VALUE} | {"base64": "..."} | {"repeat": "[", "times": N}
           | {"sealed": {...}} | {"onion": {...}} | {"tunnel": {...}}}

``sealed`` is a message sealed to the node's messaging key (``messaging.envelope.seal``) with
the fields given; ``onion`` an open message whose layer (JSON) is sealed to the node's tunnel
key; ``tunnel`` a request sent through a freshly opened one-hop tunnel to the node
(``POST /tunnel/v1/relay``). The keys are made once per process; the node's state is reset to
its baseline (a TLD ``fuzz`` owned by ``owner``, a few blocks on its chain) whenever a request
disturbed it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore, GroupAppender
from hypermesh.chain.witness import CosignatureStore, Witness
from hypermesh.dns.answers import DnsEngine
from hypermesh.dns.source import StaticZones
from hypermesh.errors import TransportError
from hypermesh.messaging.envelope import Ref, seal
from hypermesh.messaging.inbox import Mailbox
from hypermesh.mirror.follower import Follower
from hypermesh.node.chain_api import add_chain_routes
from hypermesh.node.message_api import add_message_routes
from hypermesh.node.metrics import NodeMetrics, add_metrics_route
from hypermesh.node.mirror_api import add_feed_routes, add_mirror_routes, zone_feed
from hypermesh.node.registry_api import add_registry_routes
from hypermesh.node.router import Request, Router, RouteResponse
from hypermesh.node.routes import add_dns_routes, add_members_route
from hypermesh.node.tunnel_api import add_tunnel_routes, deliver_to
from hypermesh.registry.service import Registry
from hypermesh.registry.signing import cosign, sign_request
from hypermesh.transport.address import PeerRef
from hypermesh.transport.identity import Identity
from hypermesh.tunnel.onion import (
    DATA,
    OPEN_INFO,
    SUITE,
    Hop,
    build_open,
    decode_response,
    encode_request,
    pad,
    unwrap,
    wrap,
)
from hypermesh.tunnel.relay import OPEN_PATH, RELAY_PATH, TunnelService

NODE = Identity.generate()
"""The node's key: its chain's author, the only signer of its appends and messages."""
OWNER = Identity.generate()
"""The owner of the TLD ``fuzz``."""
ADMIN = Identity.generate()
"""The registry's administrator."""
STRANGER = Identity.generate()
"""Anyone else: a valid key nobody gave any right to."""
SIGNERS = {"node": NODE, "owner": OWNER, "admin": ADMIN, "stranger": STRANGER}
MESSAGE_KEY = X25519PrivateKey.generate()
TUNNEL_KEY = X25519PrivateKey.generate()
TLD = "fuzz"
NETWORK = "fuzz"
TIMEOUT = 10.0
"""Seconds one request may take in-process before it counts as hung."""

ALLOWED_5XX = {
    ("/registry/v1/anchors", 503),  # a mirror that holds no anchors yet says so
    ("/message/v1/send", 502),  # the recipient could not be reached
    (OPEN_PATH, 502),  # the next hop did not answer (this node has no network)
    (RELAY_PATH, 502),
    (OPEN_PATH, 503),  # too many circuits
}
"""The 5xx answers that are the server's honest state, not a failure to handle the input."""


@dataclass(frozen=True)
class Outcome:
    """What the node answered, and the tracebacks of anything that failed inside it."""

    response: RouteResponse
    errors: tuple[str, ...]
    inner: RouteResponse | None = None
    """For a request through a tunnel: the destination's own answer."""

    def failure(self, path: str) -> str | None:
        """Why this outcome breaks the contract (no 5xx but the allowed, nothing raised inside),
        or None when it holds."""
        for response in (self.response, self.inner):
            if response is None:
                continue
            status = response.status
            if status >= 500 and (path, status) not in ALLOWED_5XX:
                body = response.body[:300].decode("utf-8", "replace")
                return f"{status} on {path}: {body}\n" + "\n".join(self.errors)
        if self.errors:
            return f"an error was logged on {path}:\n" + "\n".join(self.errors)
        return None


class _Tracebacks(logging.Handler):
    """Keeps the traceback of every record logged with an exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.seen.append("".join(traceback.format_exception(*record.exc_info)))


def last_line(text: str) -> str:
    """A traceback's last line (the exception and its message)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


class FuzzNode:
    """The routers of a registry node and of a mirror, and an ephemeral endpoint, on one loop."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="hm-fuzz-"))
        self.loop = asyncio.new_event_loop()
        self.registry = Registry.open(self.base / "registry.db", admin=ADMIN.node_id)
        self.zones = StaticZones()
        feed = zone_feed(self.zones)
        self.public = Router()
        add_registry_routes(self.public, self.registry, self.zones, on_revocation=feed.revoked)
        add_feed_routes(self.public, self.registry, self.zones, feed, NODE, NETWORK)
        self.chain = ChainStore.open(self.base / "chain.db", NODE)
        self.replicas = Replicas.open(self.base / "replicas.db")
        ready = asyncio.Event()
        ready.set()
        appender = GroupAppender(self.chain)
        add_chain_routes(
            self.public,
            self.chain,
            replicas=self.replicas,
            ready=ready,
            witness=Witness(self.replicas.connection, NODE),
            cosignatures=CosignatureStore(self.chain.connection),
            appender=appender,
        )
        self.mailbox = Mailbox.open(self.base / "messages.db")
        add_message_routes(self.public, NODE, MESSAGE_KEY, self.mailbox, appender, ready=ready)
        metrics = NodeMetrics(name="fuzz", network=NETWORK, identity=NODE.node_id, version="0")
        add_dns_routes(self.public, DnsEngine(self.zones), metrics)
        add_metrics_route(self.public, metrics)
        add_members_route(self.public, lambda: [{"name": "fuzz", "identity": NODE.node_id}])

        self.mirror = add_mirror_routes(
            Router(), Follower(StaticZones(), lambda: None, identity=NODE)
        )

        async def no_network(address: str, node_id: str, path: str, body: bytes) -> Any:
            raise TransportError(f"{address}: this node has no network")

        self.tunnels = TunnelService(
            NODE, TUNNEL_KEY, no_network, deliver_to(self.public, None), relays=True
        )
        self.ephemeral = add_tunnel_routes(Router(), self.tunnels)
        self.routers = {"public": self.public, "mirror": self.mirror, "ephemeral": self.ephemeral}
        self._baseline()

    # -- state -------------------------------------------------------------------------------

    def _baseline(self) -> None:
        for spec in (
            {
                "target": "/registry/v1/register",
                "sign": "owner",
                "body": {"json": {"tld": TLD, "network": NETWORK}},
            },
            {
                "target": "/registry/v1/rrsets",
                "sign": "owner",
                "body": {
                    "json": {
                        "tld": TLD,
                        "rrsets": [
                            {"name": "www", "type": "A", "ttl": 60, "values": ["192.0.2.1"]},
                            {"name": "@", "type": "TXT", "ttl": 60, "values": ['"fuzz"']},
                        ],
                    }
                },
            },
            {"target": "/chain/v1/append", "sign": "node", "body": {"json": {"text": "one"}}},
            {"target": "/chain/v1/append", "sign": "node", "body": {"json": {"text": "two"}}},
        ):
            status = self.perform({"method": "POST", **spec}).response.status
            assert status in (200, 201), f"the fuzz node's baseline failed: {spec} → {status}"

    def healthy(self) -> bool:
        """Whether the baseline still holds: the TLD ``fuzz`` active and owned by ``owner``,
        no key of ours revoked, the chain still there."""
        try:
            info = self.registry.get_tld(TLD)
            revoked = any(self.registry.is_revoked(k.node_id) for k in SIGNERS.values())
        except Exception:
            return False
        return (
            info.status == "active"
            and info.owner == OWNER.node_id
            and not revoked
            and self.chain.size >= 2
        )

    def restart_problem(self, tlds: set[str]) -> str | None:
        """Why a restart would not serve the active zones among ``tlds`` as they are stored
        (a fresh registry on the same database builds each in full), or None."""
        fresh = Registry.open(self.base / "registry.db")
        try:
            active = {i.name for i in fresh.list_tlds() if i.status == "active"}
            for name in sorted(tlds & active):
                try:
                    fresh.zone(name)
                except Exception as exc:
                    return f"after a restart, zone {name} does not build: {exc!r}"
        finally:
            fresh.engine.dispose()
        return None

    def close(self) -> None:
        self.tunnels.clear()
        for closing in (self.registry.close, self.chain.close, self.replicas.close):
            with contextlib.suppress(Exception):
                closing()
        self.mailbox.close()
        self.loop.close()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- requests ----------------------------------------------------------------------------

    def perform(self, spec: dict[str, Any]) -> Outcome:
        """Send the request ``spec`` describes; what came back and what failed inside."""
        catcher = _Tracebacks()
        logger = logging.getLogger("hypermesh")
        logger.addHandler(catcher)
        logger.propagate = False  # the failure message carries them; shrinking logs thousands
        try:
            response, inner = self.loop.run_until_complete(
                asyncio.wait_for(self._perform(spec), TIMEOUT)
            )
        finally:
            logger.removeHandler(catcher)
            logger.propagate = True
        return Outcome(response, tuple(catcher.seen), inner)

    async def _perform(self, spec: dict[str, Any]) -> tuple[RouteResponse, RouteResponse | None]:
        body_spec = spec.get("body", "")
        if isinstance(body_spec, dict) and "tunnel" in body_spec:
            return await self._through_tunnel(body_spec["tunnel"])
        router = self.routers[str(spec.get("node", "public"))]
        method = _as_sent(spec.get("method", "GET"))
        target = _as_sent(spec.get("target", "/"))
        body = self._body(body_spec)
        headers = self._headers(spec, method, target, body)
        path, _, query = target.partition("?")
        request = Request(method, path, query, headers, body, "127.0.0.1:40000", None)
        response = await router.dispatch(request)
        await _drain(response)
        return response, None

    def _headers(
        self, spec: dict[str, Any], method: str, target: str, body: bytes
    ) -> tuple[tuple[str, str], ...]:
        signed: dict[str, str] = {}
        role = spec.get("sign")
        if role == "cosigned":
            signed = sign_request(OWNER, method, target, body, now=time.time())
            signed = cosign(STRANGER, signed, method, target, body)
        elif isinstance(role, str) and role in SIGNERS:
            signed = sign_request(SIGNERS[role], method, target, body, now=time.time())
        given = [(_as_sent(k).lower(), _as_sent(v)) for k, v in spec.get("headers", [])]
        names = {k for k, _ in given}
        kept = [(k, v) for k, v in signed.items() if k not in names]
        return tuple([*kept, *given])

    def _body(self, spec: Any) -> bytes:
        if isinstance(spec, str):
            return spec.encode("utf-8", "surrogatepass")
        if not isinstance(spec, dict):
            return b""
        if "json" in spec:
            return json.dumps(spec["json"]).encode()
        if "base64" in spec:
            return base64.b64decode(spec["base64"])
        if "repeat" in spec:
            return str(spec["repeat"]).encode() * int(spec.get("times", 1))
        if "sealed" in spec:
            return _sealed(spec["sealed"])
        if "onion" in spec:
            return _onion(spec["onion"])
        return b""

    async def _through_tunnel(
        self, spec: dict[str, Any]
    ) -> tuple[RouteResponse, RouteResponse | None]:
        """Open a one-hop tunnel to the node, send the request ``spec`` describes through it,
        and read the destination's answer."""
        hop = Hop(PeerRef("127.0.0.1:0", NODE.node_id), TUNNEL_KEY.public_key())
        message, circuits, keys = build_open([hop], time.time() + 60)
        opened = await self.ephemeral.dispatch(_post(OPEN_PATH, message))
        assert opened.status == 200, opened.body
        if "request" in spec:
            inner = spec["request"]
            payload = encode_request(
                str(inner.get("method", "GET")),
                str(inner.get("target", "/")),
                [(str(k), str(v)) for k, v in inner.get("headers", [])],
                self._body(inner.get("body", "")),
            )
        else:
            payload = pad(self._body(spec.get("raw", "")))
        kind = int(spec.get("kind", DATA)) % 256
        sent = wrap(keys, circuits, kind, payload)
        response = await self.ephemeral.dispatch(_post(RELAY_PATH, circuits[0] + sent))
        inner_response = None
        if response.status == 200 and kind == DATA:
            status, content_type, headers, data = decode_response(
                unwrap(keys, circuits, response.body)
            )
            inner_response = RouteResponse(status, data, content_type, headers)
        return response, inner_response


def _as_sent(text: Any) -> str:
    """``text`` as the endpoint hands it to the router: HTTP/3 carries bytes, which it decodes
    as UTF-8 with replacement (so never a lone surrogate)."""
    return str(text).encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _post(path: str, body: bytes) -> Request:
    return Request("POST", path, "", (), body, "127.0.0.1:40001", None)


async def _drain(response: RouteResponse) -> None:
    """Read a streamed answer's first piece (bounded) and close it, as a client going away."""
    if response.stream is None:
        return
    try:
        async with asyncio.timeout(0.2):
            async for _ in response.stream:
                break
    except TimeoutError:
        pass
    closing = getattr(response.stream, "aclose", None)
    if closing is not None:
        await closing()


def _key_bytes(value: Any, default: bytes) -> bytes:
    if isinstance(value, str) and value in SIGNERS:
        return SIGNERS[value].public_key_bytes
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            return default
        return raw[:32].ljust(32, b"\0")
    return default


_MESSAGE_IDS = itertools.count(1)


def _sealed(spec: dict[str, Any]) -> bytes:
    """A message sealed to the node's messaging key, its fields as ``spec`` says (``sender``
    a role; ``author`` a role or hex; integers are taken modulo their wire range)."""
    sender = SIGNERS.get(str(spec.get("sender", "stranger")), STRANGER)
    recipient = SIGNERS.get(str(spec.get("recipient", "node")), NODE)
    author = _key_bytes(spec.get("author", "stranger"), sender.public_key_bytes)
    digest = _key_bytes(spec.get("hash", "00"), bytes(32))
    block = Ref(author, int(spec.get("seq", 0)) % 2**64, digest)
    text = str(spec.get("text", "")).encode("utf-8", "surrogatepass")[: 64 * 1024]
    if "id" in spec:
        message_id = _key_bytes(spec["id"], bytes(32))[:16]
    else:  # a fresh ID each time (a repeated one is refused as delivered before)
        message_id = next(_MESSAGE_IDS).to_bytes(16, "big")
    return seal(
        sender,
        recipient.node_id,
        MESSAGE_KEY.public_key(),
        text,
        block,
        message_id=message_id,
        timestamp_ms=int(spec.get("timestampMs", 0)) % 2**64,
    )


def _onion(spec: dict[str, Any]) -> bytes:
    """An open message whose layer is ``spec["layer"]`` (any JSON), sealed to the node's
    tunnel key for the node's ID (or ``spec["for"]``'s)."""
    plain = json.dumps(spec.get("layer")).encode()
    for_id = SIGNERS.get(str(spec.get("for", "node")), NODE).node_id
    return SUITE.encrypt(plain, TUNNEL_KEY.public_key(), info=OPEN_INFO + for_id.encode())


class Nodes:
    """One ``FuzzNode`` per process, rebuilt when a request disturbed its baseline."""

    def __init__(self, make: Callable[[], FuzzNode] = FuzzNode) -> None:
        self._make = make
        self._node: FuzzNode | None = None
        self.rebuilt = 0

    def get(self) -> FuzzNode:
        if self._node is not None and not self._node.healthy():
            self._node.close()
            self._node = None
            self.rebuilt += 1
        if self._node is None:
            self._node = self._make()
        return self._node

    def close(self) -> None:
        if self._node is not None:
            self._node.close()
            self._node = None


NODES = Nodes()
