"""``host:port`` addresses as nodes write and read them; IPv6 hosts go in brackets."""

from __future__ import annotations


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
