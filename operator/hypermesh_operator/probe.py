"""``python -m hypermesh_operator.probe --config PATH``: the readiness probe of a node's pod.

The kubelet's ``httpGet`` probe speaks HTTP/1.1 over TCP; a node serves its API over HTTP/3 on
UDP. So the probe is an ``exec``: ``GET /healthz`` over HTTP/3 on the pod's own QUIC port, the
node's key pinned and presented (its interface policies never refuse their own node). Exit 0
when the node answers, 1 otherwise, with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from hypermesh.errors import HyperMeshError
from hypermesh.node.config import NodeConfig
from hypermesh.transport.address import format_address
from hypermesh.transport.client import h3_get_json
from hypermesh.transport.identity import KEY_FILE, load_identity, read_node_id

TIMEOUT = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hypermesh_operator.probe")
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        config = NodeConfig.load(args.config)
        node_dir = Path(config.node_dir)
        node_id = read_node_id(node_dir)
        key = load_identity(node_dir / KEY_FILE)
        address = format_address("127.0.0.1", config.port)
        answer = asyncio.run(
            h3_get_json(address, "/healthz", expected_id=node_id, timeout=TIMEOUT, identity=key)
        )
    except (OSError, ValueError, HyperMeshError) as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1
    if answer.get("ok") is not True:
        print(f"not ready: /healthz answered {answer}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
