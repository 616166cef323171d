"""Time to first byte of a HyperMesh page through the browser gateway, against a direct HTTP/3
fetch with the SDK.

Starts the gateway tests' network (the registry-and-names example on loopback, `hmctl apply`),
makes a CA in a temporary HOME and runs `hmctl gateway run`, then times ``--count`` requests
for ``https://www.acme/status`` (alpha's status) each way, and prints p50 and p99 side by side:

  sdk fetch          ``Mesh.fetch``: resolve HTTPS and TLSA (verified from the registry's key),
                     a new QUIC handshake with the key pinned, the request
  gateway, new conn  what a browser's new connection costs: TCP, CONNECT, TLS with the leaf,
                     the request (the gateway's verified route and QUIC connection are warm)
  gateway, kept      the next request on a kept-alive tunnel
  gateway, cold      the first request for a name after the gateway started (one sample):
                     resolution, verification and the QUIC handshake included, as in the SDK's

The SDK's ``fetch`` keeps nothing between calls; the gateway keeps the verified route (at most
60 s, or the records' TTL) and the QUIC connection, which is where its warm figures come from.

Run by hand, not by the tests (about 30 s)::

    .venv/bin/python bench/gateway.py
    .venv/bin/python bench/gateway.py --count 50
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ must not be on the path (bench/operator.py would shadow the standard library's); the
# repository's root must, for tests.gateway.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # for tests.gateway

import argparse  # noqa: E402
import asyncio  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from tests.gateway.conftest import Lab, running_lab  # noqa: E402

from hypermesh.sdk.mesh import Mesh  # noqa: E402

URL_HOST = "www.acme"
PATH = "/status"
DEADLINE = 120.0
"""No series runs longer than this, whatever ``--count`` says."""


class Tunnel:
    """A browser-like connection to the gateway: CONNECT, TLS trusting only the CA, HTTP/1.1."""

    def __init__(self, proxy: str, ca: Path) -> None:
        host, port = proxy.rsplit(":", 1)
        raw = socket.create_connection((host, int(port)), timeout=30)
        raw.sendall(f"CONNECT {URL_HOST}:443 HTTP/1.1\r\nHost: {URL_HOST}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            part = raw.recv(4096)
            if not part:
                raise RuntimeError("the gateway closed the connection after CONNECT")
            head += part
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"CONNECT refused: {head[:80]!r}")
        context = ssl.create_default_context(cafile=str(ca))
        self.conn = context.wrap_socket(raw, server_hostname=URL_HOST)

    def first_byte(self) -> float:
        """Seconds from sending a GET to the response's first byte (then reads it whole)."""
        request = f"GET {PATH} HTTP/1.1\r\nHost: {URL_HOST}\r\n\r\n".encode()
        started = time.perf_counter()
        self.conn.sendall(request)
        data = self.conn.recv(65536)
        elapsed = time.perf_counter() - started
        if not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the gateway answered {data[:80]!r}")
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        while len(body) < length:
            more = self.conn.recv(65536)
            if not more:
                break
            body += more
        return elapsed

    def close(self) -> None:
        self.conn.close()


def new_connection(lab: Lab) -> float:
    """Seconds from opening a connection to the first byte of the answer."""
    started = time.perf_counter()
    tunnel = Tunnel(lab.proxy, lab.ca_pem)
    try:
        tunnel.first_byte()
    finally:
        tunnel.close()
    return time.perf_counter() - started


def series(count: int, sample: Callable[[], float]) -> list[float]:
    """Up to ``count`` samples in milliseconds, stopping at ``DEADLINE``."""
    out: list[float] = []
    deadline = time.monotonic() + DEADLINE
    while len(out) < count and time.monotonic() < deadline:
        out.append(sample() * 1000)
    return out


def sdk_series(lab: Lab, count: int) -> list[float]:
    """``Mesh.fetch`` from the state's mesh, each a fresh resolution and handshake; the time to
    the whole (small) answer, which is its first byte as the SDK returns it."""
    mesh = Mesh.from_state(lab.hmctl.state)

    async def run() -> list[float]:
        out: list[float] = []
        deadline = time.monotonic() + DEADLINE
        async with mesh:
            while len(out) < count and time.monotonic() < deadline:
                started = time.perf_counter()
                answer = await mesh.fetch(f"https://{URL_HOST}{PATH}")
                out.append((time.perf_counter() - started) * 1000)
                if answer.status != 200:
                    raise RuntimeError(f"the SDK fetch answered {answer.status}")
        return out

    return asyncio.run(run())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<20} {'-':>8} {'-':>8} {0:>6}"
    p50 = statistics.median(values)
    return f"{name:<20} {p50:>8.1f} {percentile(values, 99):>8.1f} {len(values):>6}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=30, help="requests per series (default 30)")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= 1000:
        parser.error("--count must be 1 to 1000")
    with (
        tempfile.TemporaryDirectory(prefix="hm-bench-gateway-") as folder,
        running_lab(Path(folder)) as lab,
    ):
        cold = [new_connection(lab) * 1000]
        fresh = series(args.count, lambda: new_connection(lab))
        tunnel = Tunnel(lab.proxy, lab.ca_pem)
        try:
            kept = series(args.count, tunnel.first_byte)
        finally:
            tunnel.close()
        direct = sdk_series(lab, args.count)
    print(f"time to first byte of https://{URL_HOST}{PATH}, milliseconds")
    print(f"{'path':<20} {'p50':>8} {'p99':>8} {'n':>6}")
    for name, values in (
        ("sdk fetch", direct),
        ("gateway, new conn", fresh),
        ("gateway, kept", kept),
        ("gateway, cold", cold),
    ):
        print(row(name, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
