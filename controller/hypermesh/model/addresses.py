"""``host:port``: the one address type of the manifests, checked by one rule.

``HOST_PORT_PATTERN`` (``hypermesh.model.schemas``) is that rule: the schemas give it to every
address field, so ``hmctl validate``, the CRDs on a cluster and this module answer alike. Here
it splits an address into host and port, and says in words what is wrong with one it refuses.
"""

from __future__ import annotations

import ipaddress

from hypermesh.model.schemas import HOST_PORT_PATTERN, ecma_regex

__all__ = ["EXAMPLE", "explain", "split_host_port"]

EXAMPLE = "e.g. 127.0.0.1:0, [::1]:4433 or node.example:443"
"""What an address looks like, for messages."""

MAX_PORT = 65535


def split_host_port(text: str) -> tuple[str, int]:
    """``"127.0.0.1:0"`` → ``("127.0.0.1", 0)``; ``"[::1]:53"`` → ``("::1", 53)``.

    ``ValueError`` saying what is wrong when ``text`` is not a ``host:port`` the schemas accept.
    """
    if not isinstance(text, str) or not ecma_regex(HOST_PORT_PATTERN).search(text):
        raise ValueError(explain(text))
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:]
    else:
        host, _, port = text.rpartition(":")
    return host, int(port)


def explain(text: object) -> str:
    """Why ``text`` is not a ``host:port`` (for one that ``split_host_port`` refuses)."""
    if not isinstance(text, str):
        return f"expected host:port as a string, got {type(text).__name__}"
    if not text:
        return f"expected host:port, got an empty string ({EXAMPLE})"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return f"{text!r}: an IPv6 host needs its closing bracket ({EXAMPLE})"
        if not rest.startswith(":"):
            return f"{text!r}: expected :PORT after the bracketed IPv6 host ({EXAMPLE})"
        port = rest[1:]
        problem = _port_problem(port) or _ipv6_problem(host)
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            return f"{text!r} has no port: expected host:port ({EXAMPLE})"
        if ":" in host:
            return f"{text!r}: put an IPv6 host in brackets, as in [::1]:{port}"
        problem = _port_problem(port) or _host_problem(host)
    return f"{text!r}: {problem or 'not a host:port'}"


def _port_problem(port: str) -> str | None:
    if not port:
        return "the port is missing (0 picks any free port)"
    if not (port.isascii() and port.isdigit()):
        return f"the port {port!r} is not a number"
    if int(port) > MAX_PORT:
        return f"port {int(port)} is out of range (0-{MAX_PORT})"
    if len(port) > 1 and port.startswith("0"):
        return f"the port {port!r} has leading zeros"
    return None


def _ipv6_problem(host: str) -> str | None:
    address, _, zone = host.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return f"{address!r} is not an IPv6 address"
    if "%" in host and not zone:
        return "the IPv6 zone after '%' is empty"
    return "the IPv6 zone may hold only letters, digits, '_', '.' and '-'" if zone else None


def _host_problem(host: str) -> str:
    if not host:
        return "the host is missing"
    if all(part.isascii() and part.isdigit() for part in host.split(".")):
        return f"{host!r} is not an IPv4 address (four numbers 0-255 without leading zeros)"
    return (
        f"{host!r} is not a host name (letters, digits and '-' in dot-separated labels, the "
        "last one holding a letter)"
    )
