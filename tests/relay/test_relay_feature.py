"""The relay role on a node: the hub behind the public endpoint (QUIC, ALPN ``hm-relay``) and
the node's TLS listener on the same port number over TCP (``features.tls_tcp``, which serves
it), members only in a private network, its counters among the node's metrics, everything
closed with the node."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from prometheus_client import generate_latest

from hypermesh.node.config import NodeConfig
from hypermesh.node.feature import NodeContext
from hypermesh.node.features.public import PublicInterface
from hypermesh.node.features.relay import RelayFeature
from hypermesh.node.features.tls_tcp import TlsTcpFeature
from hypermesh.node.relay_hub import RelayHub, RelayLimits
from hypermesh.transport import relaywire as wire
from hypermesh.transport.address import parse_address
from hypermesh.transport.client import client_configuration
from hypermesh.transport.identity import Identity
from hypermesh.transport.relaywire import Frame, FrameDecoder

WAIT = 10.0


def _config(tmp_path: Path, member: Identity, mode: str = "private") -> NodeConfig:
    node_dir = tmp_path / "relay"
    node_dir.mkdir(mode=0o700)
    return NodeConfig(
        name="relay",
        network="lab",
        listen="127.0.0.1:0",
        prefer_port=None,
        interfaces=("public",),
        roles=("relay",),
        tags=(),
        generation=1,
        node_dir=str(node_dir),
        log_file=str(node_dir / "node.log"),
        directory={"alpha": {"kind": "Node", "identity": member.node_id, "tags": []}},
        network_mode=mode,
    )


async def _frames(reader: asyncio.StreamReader, count: int) -> list[Frame]:
    decoder, frames = FrameDecoder(), []
    async with asyncio.timeout(WAIT):
        while len(frames) < count:
            data = await reader.read(65536)
            if not data:
                break
            frames += decoder.feed(data)
    return frames


async def _attach_tcp(port: int, identity: Identity) -> tuple[Frame, asyncio.StreamWriter]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([wire.RELAY_ALPN])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    [challenge] = await _frames(reader, 1)
    nonce, relay_id = wire.parse_challenge(challenge.payload)
    writer.write(wire.auth(identity, nonce, relay_id))
    [answer] = await _frames(reader, 1)
    return answer, writer


async def _attach_quic(port: int, relay_id: str, identity: Identity) -> Frame:
    """Over QUIC as a node's relay link does: a PING opens the stream, then the handshake."""
    configuration = client_configuration(relay_id, wire.RELAY_ALPN, identity=None)
    async with connect("127.0.0.1", port, configuration=configuration) as protocol:
        reader, writer = await protocol.create_stream()
        writer.write(wire.ping(b"open-str"))
        challenge, pong = await _frames(reader, 2)
        assert (challenge.type, pong) == (wire.CHALLENGE, Frame(wire.PONG, b"open-str"))
        nonce, named = wire.parse_challenge(challenge.payload)
        assert named == relay_id
        writer.write(wire.auth(identity, nonce, relay_id))
        [answer] = await _frames(reader, 1)
        writer.close()
        return answer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def test_a_relay_node_serves_members_over_quic_and_tcp_and_counts(tmp_path: Path) -> None:
    member, outsider = Identity.generate(), Identity.generate()
    config = _config(tmp_path, member)

    async def main() -> None:
        node = NodeContext.starting(config, Identity.generate())
        async with contextlib.AsyncExitStack() as stack:
            for feature in (PublicInterface(), RelayFeature(), TlsTcpFeature()):
                assert feature.enabled(config)
                await feature.open(node, stack)
            hub: Any = node.relay_hub
            assert isinstance(hub, RelayHub) and hub.limits == RelayLimits()
            assert node.relay_serve == hub.serve_stream
            assert node.addresses.public is not None
            port = parse_address(node.addresses.public)[1]

            answer = await _attach_quic(port, node.identity.node_id, member)
            assert answer.type == wire.WELCOME, answer.payload
            assert wire.parse_welcome(answer.payload).observed.startswith("127.0.0.1:")

            answer, writer = await _attach_tcp(port, member)
            assert answer.type == wire.WELCOME
            assert hub.attached() == [member.node_id]
            refused, other = await _attach_tcp(port, outsider)
            assert wire.parse_refused(refused.payload) == (
                403,
                f"{outsider.node_id} is not a member of network lab",
            )
            text = generate_latest(node.metrics.registry).decode()
            assert "hypermesh_relay_attached 1.0" in text
            assert 'hypermesh_relay_refused_total{reason="member"} 1.0' in text
            assert "hypermesh_relay_bytes_total 0.0" in text
            for each in (writer, other):
                await _close(each)
        assert hub.attached() == []
        # the TCP port is free again, and the metrics are gone with the hub
        with socket.socket() as tcp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", port))
        assert "hypermesh_relay" not in generate_latest(node.metrics.registry).decode()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_public_networks_relay_admits_anyone_under_public_limits(tmp_path: Path) -> None:
    config = _config(tmp_path, Identity.generate(), mode="public")
    stranger = Identity.generate()

    async def main() -> None:
        node = NodeContext.starting(config, Identity.generate())
        async with contextlib.AsyncExitStack() as stack:
            for feature in (PublicInterface(), RelayFeature(), TlsTcpFeature()):
                await feature.open(node, stack)
            hub: Any = node.relay_hub
            assert hub.limits == RelayLimits.public() and hub.admits is None
            assert node.addresses.public is not None
            answer, writer = await _attach_tcp(parse_address(node.addresses.public)[1], stranger)
            assert answer.type == wire.WELCOME
            assert wire.parse_welcome(answer.payload).limits["circuit_bytes"] == 1 << 20
            await _close(writer)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_role_is_off_unless_the_config_asks() -> None:
    assert not RelayFeature().enabled(
        NodeConfig(
            name="n",
            network="lab",
            listen="127.0.0.1:0",
            prefer_port=None,
            interfaces=("public",),
            roles=("mirror",),
            tags=(),
            generation=1,
            node_dir="/nonexistent",
            log_file="/nonexistent/log",
        )
    )
