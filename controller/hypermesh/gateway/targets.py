"""What a browser's request to the proxy asks for: pure, bytes in, a value out.

A proxy sees three forms of request target (RFC 9112 §3.2): ``CONNECT host:port`` (a tunnel for
``https://``), an absolute URI (``GET http://host/path`` for ``http://``), and origin form
(``GET /proxy.pac``: the gateway's own pages). Anything else, or a name outside the HyperMesh
TLDs, is refused with the status and reason said here.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from hypermesh.gateway.authority import host_under

MAX_TARGET = 8 * 1024


@dataclass(frozen=True, slots=True)
class Tunnel:
    """``CONNECT host:port``: TLS with a leaf for ``host``, then requests to it."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Forward:
    """A request for ``http://host:port/path`` (or, inside a tunnel, ``https://``)."""

    host: str
    port: int | None
    path: str


@dataclass(frozen=True, slots=True)
class Local:
    """A request for one of the gateway's own pages."""

    path: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the gateway answers with ``status`` and ``reason`` and nothing else."""

    status: int
    reason: str


Target = Tunnel | Forward | Local | Refusal


def classify(method: bytes, target: bytes, tlds: tuple[str, ...]) -> Target:
    """What a request to the proxy (not inside a tunnel) asks for."""
    if len(target) > MAX_TARGET:
        return Refusal(414, "the request target is too long")
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return Refusal(400, "the request target is not ASCII")
    if method == b"CONNECT":
        return _connect(text, tlds)
    if text.startswith("/"):
        return Local(text.split("?", 1)[0])
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "https":
        return Refusal(400, "https:// goes through CONNECT, not as a plain proxy request")
    if parts.scheme != "http" or not parts.hostname:
        return Refusal(400, f"not a request target a proxy takes: {text[:100]!r}")
    try:
        port = parts.port
    except ValueError:
        return Refusal(400, "the port is not a number from 1 to 65535")
    refused = _outside(parts.hostname, tlds)
    if refused is not None:
        return refused
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Forward(parts.hostname.lower().rstrip("."), port, path)


def _connect(text: str, tlds: tuple[str, ...]) -> Target:
    host, colon, port_text = text.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return Refusal(400, "CONNECT takes HOST:PORT")
    refused = _outside(host, tlds)
    if refused is not None:
        return refused
    return Tunnel(host.lower().rstrip("."), int(port_text))


def _outside(host: str, tlds: tuple[str, ...]) -> Refusal | None:
    if host_under(host, tlds):
        return None
    return Refusal(
        403,
        f"{host[:253]} is not a HyperMesh name: this gateway only serves names under "
        + ", ".join(f".{t}" for t in tlds)
        + " (the PAC file sends everything else DIRECT)",
    )


def inner_target(target: bytes, host: str, port: int) -> Forward | Refusal:
    """A request inside the tunnel to ``host``: origin form (``/path``), or an absolute
    ``https://`` URI for that same host."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        return Refusal(400, "the request target is not ASCII")
    if len(text) > MAX_TARGET:
        return Refusal(414, "the request target is too long")
    if text.startswith("/"):
        return Forward(host, port, text)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme == "https" and (parts.hostname or "").rstrip(".") == host:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Forward(host, port, path)
    return Refusal(400, f"this tunnel is for {host}; the request asked for {text[:100]!r}")
