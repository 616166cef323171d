"""The network's own clients say who they are, and a node that its network refuses is not ready.

- Every way to connect names the key to prove, with no default: a new caller cannot forget.
- A refusal of the caller — 403 or 429 from a gate, a TLS alert against its certificate — is
  ``AccessDenied``; any other failure is not (the class of statuses and alerts, not examples).
- A mirror or chain follower proves its node's key to a real QUIC endpoint, and while that
  endpoint refuses it the node's readiness says so, naming the refusal; once it is no longer
  refused (even if the other end is merely unhelpful) the node is ready again.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent
from aioquic.tls import AlertDescription
from hypothesis import given, settings
from hypothesis import strategies as st

from hypermesh.chain.client import ChainClient, ask_witness
from hypermesh.chain.follower import ChainFollower
from hypermesh.chain.replica import Replicas
from hypermesh.chain.store import ChainStore
from hypermesh.dns.source import StaticZones
from hypermesh.errors import TransportError
from hypermesh.mirror.cache import ForwardingCache
from hypermesh.mirror.federation import Federation
from hypermesh.mirror.follower import Follower
from hypermesh.mirror.verify import fetch_anchors
from hypermesh.node.readiness import readiness
from hypermesh.node.router import Router
from hypermesh.node.server import bind_endpoint, server_configuration
from hypermesh.registry.client import RegistryClient
from hypermesh.transport.address import PeerRef
from hypermesh.transport.certificates import self_signed_certificate
from hypermesh.transport.client import (
    REFUSING_ALERTS,
    AccessDenied,
    closed_error,
    connect_h3,
    connect_pinned,
    fetch_status,
    h3_get,
    h3_get_json,
    h3_post,
    status_error,
)
from hypermesh.transport.dns_client import doh3_query, doq_query
from hypermesh.transport.identity import Identity
from hypermesh.transport.pool import ConnectionPool

TIMEOUT = 20.0

# -- the rule: no way to connect without saying who calls ------------------------------------

CLIENTS: list[tuple[Callable[..., Any], str]] = [
    (connect_pinned, "identity"),
    (connect_h3, "identity"),
    (h3_get, "identity"),
    (h3_get_json, "identity"),
    (h3_post, "identity"),
    (fetch_status, "identity"),
    (doq_query, "identity"),
    (doh3_query, "identity"),
    (ConnectionPool, "identity"),
    (RegistryClient, "identity"),
    (ChainClient, "caller"),
    (ask_witness, "identity"),
    (fetch_anchors, "caller"),
    (Follower, "identity"),
    (ForwardingCache, "identity"),
    (Federation, "identity"),
]


@pytest.mark.parametrize(("client", "name"), CLIENTS, ids=[c.__name__ for c, _ in CLIENTS])
def test_every_way_to_connect_names_who_calls(client: Callable[..., Any], name: str) -> None:
    parameter = inspect.signature(client).parameters[name]
    assert parameter.default is inspect.Parameter.empty, f"{client.__name__}({name}=…) defaults"


# -- what counts as a refusal ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=100, max_value=599), st.binary(max_size=64))
def test_a_status_refuses_the_caller_only_when_403_or_429(status: int, body: bytes) -> None:
    error = status_error("192.0.2.1:4433", "GET /x", status, body)
    assert isinstance(error, TransportError)
    assert isinstance(error, AccessDenied) == (status in (403, 429))
    assert str(status) in str(error) and "192.0.2.1:4433" in str(error)
    if isinstance(error, AccessDenied):
        assert error.status == status


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=0x1FF))
def test_a_closed_connection_refuses_the_caller_only_by_a_certificate_alert(code: int) -> None:
    event = ConnectionTerminated(error_code=code, frame_type=None, reason_phrase="bye")
    error = closed_error("192.0.2.1:4433", event, "connection closed")
    refusing = code - 0x100 in {
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_revoked,
        AlertDescription.certificate_expired,
        AlertDescription.certificate_unknown,
        AlertDescription.access_denied,
        AlertDescription.decrypt_error,
        AlertDescription.certificate_required,
    }
    assert isinstance(error, AccessDenied) == refusing == (code in REFUSING_ALERTS)
    assert f"0x{code:x}" in str(error)


# -- real endpoints ----------------------------------------------------------------------------

Gate = Callable[[str | None, str, str], tuple[int, str]]


class Refusing:
    """A gate that records who called and refuses the callers in ``refused`` with ``answer``."""

    def __init__(self, answer: tuple[int, str]) -> None:
        self.answer = answer
        self.refused: set[str] = set()
        self.callers: list[str | None] = []

    def __call__(self, caller: str | None, source: str, operation: str) -> tuple[int, str]:
        self.callers.append(caller)
        return self.answer if caller in self.refused else (0, "")


async def until(predicate: Callable[[], object], what: str) -> None:
    """Wait (bounded in count and time) for ``predicate`` on the running loop."""
    for _ in range(int(TIMEOUT / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {what} within {TIMEOUT:g}s")


def within(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), TIMEOUT * 2))


REFUSALS = [(403, "status.read is denied here (rule 'no-mirrors')"), (429, "rate limit of rule")]


@pytest.mark.parametrize("answer", REFUSALS, ids=["403", "429"])
def test_a_mirror_proves_its_key_and_is_not_ready_while_refused(answer: tuple[int, str]) -> None:
    registry, node = Identity.generate(), Identity.generate()
    gate = Refusing(answer)
    gate.refused.add(node.node_id)

    async def body() -> None:
        endpoint = await bind_endpoint(
            "127.0.0.1",
            0,
            configuration=server_configuration(registry),
            router=Router(),
            gate=gate,
        )
        follower = Follower(
            StaticZones(), lambda: PeerRef(endpoint.address, registry.node_id), identity=node
        )
        task = asyncio.create_task(follower.run())
        try:
            await until(lambda: follower.refused, "the refusal")
            assert node.node_id in gate.callers and None not in gate.callers
            assert str(answer[0]) in str(follower.refused) and answer[1] in str(follower.refused)
            state = readiness(follower, None)
            assert state["ready"] is False and state["reason"] == "MirrorRefused"
            assert answer[1] in str(state["message"])
            assert follower.status()["refused"] == follower.refused
            # No longer refused: the registry here has no API (404), which is a failure to
            # follow, not a refusal; the node is ready again.
            gate.refused.clear()
            await until(lambda: follower.refused is None, "the refusal to clear")
            assert follower.last_error is not None and "404" in follower.last_error
            assert readiness(follower, None) == {"ready": True}
        finally:
            task.cancel()
            endpoint.close()

    within(body)


class _AlertingProtocol(QuicConnectionProtocol):
    """A server that refuses every client certificate once the handshake is done."""

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self._quic.close(
                error_code=0x100 + AlertDescription.access_denied, reason_phrase="not you"
            )
            self.transmit()


def test_a_refused_certificate_is_access_denied_and_a_mirror_says_so() -> None:
    registry, node = Identity.generate(), Identity.generate()

    async def body() -> None:
        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=["h3"],
            certificate=self_signed_certificate(registry),
            private_key=registry.private_key,
        )
        server = await serve(
            "127.0.0.1", 0, configuration=configuration, create_protocol=_AlertingProtocol
        )
        address = f"127.0.0.1:{server._transport.get_extra_info('sockname')[1]}"
        try:
            with pytest.raises(AccessDenied, match="0x131") as refused:
                async with (
                    asyncio.timeout(TIMEOUT),
                    connect_h3(address, expected_id=registry.node_id, identity=node) as h3,
                ):
                    await h3.request("GET", "/registry/v1/anchors")
            assert refused.value.status == 0
            follower = Follower(
                StaticZones(), lambda: PeerRef(address, registry.node_id), identity=node
            )
            task = asyncio.create_task(follower.run())
            try:
                await until(lambda: follower.refused, "the refusal")
                assert readiness(follower, None)["reason"] == "MirrorRefused"
            finally:
                task.cancel()
        finally:
            server.close()

    within(body)


@pytest.mark.parametrize("answer", REFUSALS, ids=["403", "429"])
def test_a_chain_follower_proves_its_key_and_is_not_ready_while_refused(
    tmp_path: Path, answer: tuple[int, str]
) -> None:
    peer, node = Identity.generate(), Identity.generate()
    gate = Refusing(answer)
    gate.refused.add(node.node_id)
    store = ChainStore.open(tmp_path / "chain.db", node)
    replicas = Replicas.open(tmp_path / "replicas.db")

    async def body() -> None:
        endpoint = await bind_endpoint(
            "127.0.0.1", 0, configuration=server_configuration(peer), router=Router(), gate=gate
        )
        chains = ChainFollower(store, replicas, lambda: [PeerRef(endpoint.address, peer.node_id)])
        try:
            await chains.round()
            assert gate.callers and set(gate.callers) == {node.node_id}
            assert answer[1] in chains.refused[peer.node_id]
            state = readiness(None, chains)
            assert state["ready"] is False and state["reason"] == "ChainPeerRefused"
            gate.refused.clear()
            await chains.round()  # answered 404 now: unhelpful, not refusing
            assert chains.refused == {} and readiness(None, chains) == {"ready": True}
        finally:
            endpoint.close()

    try:
        within(body)
    finally:
        store.close()
        replicas.close()
