"""``host:port`` addresses as nodes write and read them (IPv6 hosts go in brackets), and
``PeerRef``, a node at an address with a pinned key. The only address codec of HyperMesh."""

from __future__ import annotations

from dataclasses import dataclass


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"`` or ``"[v6]:port"`` into ``(host, port)``; ``ValueError`` if bad."""
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {address!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"bad address {address!r}: expected HOST:PORT")
        if ":" in host:
            raise ValueError(f"bad address {address!r}: put an IPv6 host in brackets")
    if not host:
        raise ValueError(f"bad address {address!r}: the host is empty")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad address {address!r}: the port must be 0-65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """The inverse of ``parse_address``: brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class PeerRef:
    """A node at an address with a pinned key: where it answers (``host:port``) and the node
    ID it must prove in the QUIC handshake.

    The one spelling of "another node" across HyperMesh (mirrors, chain followers, tunnels,
    the SDK, the drivers). ``node_id`` is None only where what is fetched is verified by
    other means (a mirror's signed zones, from a registry named by address alone).
    """

    address: str
    node_id: str | None = None

    def __post_init__(self) -> None:
        parse_address(self.address)  # ValueError names the bad address

    @property
    def host(self) -> str:
        return parse_address(self.address)[0]

    @property
    def port(self) -> int:
        return parse_address(self.address)[1]

    def __str__(self) -> str:
        return f"{self.node_id}@{self.address}" if self.node_id else self.address
