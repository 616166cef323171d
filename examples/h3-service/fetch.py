"""Fetch an HTTP/3 service by its HyperMesh name, on the SDK.

    python examples/h3-service/fetch.py https://www.hmshop/status --as client

The name is resolved at the asking node and checked from the registry's key (DNSSEC): the
HTTPS record gives the endpoint (h3, port, address), the TLSA record the key to pin. The QUIC
handshake then proves the server holds that key — no certificate authority involved.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from hypermesh.errors import HyperMeshError
from hypermesh.sdk import Mesh


async def fetch(state: str, node: str, url: str) -> int:
    async with Mesh.from_state(state, node=node) as mesh:
        name = url.split("/")[2]
        https = await mesh.resolve(name, "HTTPS")
        if not https.records:
            print(f"error: {name} has no HTTPS record ({https.rcode})", file=sys.stderr)
            return 1
        print(f"{name} HTTPS {https.records[0]}  (verified: {https.verified})", file=sys.stderr)
        response = await mesh.fetch(url)
        print(f"HTTP/3 {response.status}", file=sys.stderr)
        sys.stdout.write(response.body.decode("utf-8", "replace"))
        return 0 if response.status < 400 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Fetch https://NAME/PATH over HyperMesh.")
    parser.add_argument("url", help="e.g. https://www.hmshop/status")
    parser.add_argument("--as", dest="node", default="client", help="the asking node")
    parser.add_argument("--state", default=".hypermesh", help="hmctl's state directory")
    args = parser.parse_args()
    try:
        return asyncio.run(fetch(args.state, args.node, args.url))
    except HyperMeshError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
