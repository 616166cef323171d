"""What every hmctl command shares: durations, the state directory, "nothing declared", a
node named by address and key."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hypermesh.errors import Position, Problem, UsageError
from hypermesh.policy import parse_duration
from hypermesh.transport.address import PeerRef


def duration(text: str) -> float:
    """``90``, ``90s``, ``1m30s``, ``500ms`` → seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def state_dir(args: argparse.Namespace) -> Path:
    raw = args.state or os.environ.get("HM_STATE") or ".hypermesh"
    return Path(raw).expanduser().resolve()


def nothing_declared(files: list[str]) -> list[Problem]:
    return [
        Problem(Position(file), "no resources found (empty, or only comments)")
        for file in files or ["<input>"]
    ]


def peer_ref(address: str, node_id: str | None) -> PeerRef:
    """The node at ``address`` whose key is ``node_id`` (None: any key); ``UsageError``
    naming what is wrong with a bad address."""
    try:
        return PeerRef(address, node_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
